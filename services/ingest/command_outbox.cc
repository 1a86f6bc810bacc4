#include "ingest/command_outbox.h"

#include <algorithm>

namespace rollertrace::ingest {

CommandOutbox::CommandOutbox(IngestMetrics& metrics, StorePublished store_published,
                             std::chrono::milliseconds resend_after)
    : metrics_(metrics),
      store_published_(std::move(store_published)),
      resend_after_(resend_after),
      resender_([this] { RunResends(); }) {}

CommandOutbox::~CommandOutbox() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  resender_.join();
}

void CommandOutbox::Enqueue(std::vector<rollertrace::v1::Command> commands) {
  if (commands.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : commands) metrics_.commands.Add({{"command", c.command()}}).Increment();
  }
  Deliver(std::move(commands));
}

void CommandOutbox::Resume(std::vector<rollertrace::v1::Command> commands) { Deliver(std::move(commands)); }

void CommandOutbox::CountLocked() {
  metrics_.commands_unpublished.Set(static_cast<double>(waiting_.size() + sent_.size()));
}

void CommandOutbox::Deliver(std::vector<rollertrace::v1::Command> commands) {
  while (!commands.empty()) {
    Sink sink;
    uint64_t id = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (sinks_.empty()) {
        for (auto& c : commands) waiting_.push_back(std::move(c));
        CountLocked();
        return;
      }
      // Round robin over the connected bridges.
      auto it = sinks_.upper_bound(last_sink_);
      if (it == sinks_.end()) it = sinks_.begin();
      id = last_sink_ = it->first;
      sink = it->second;
      // Owed by this sink from now on (before it can confirm them).
      const auto now = std::chrono::steady_clock::now();
      for (const auto& c : commands) {
        if (c.outbox_index() != 0) sent_[c.outbox_index()] = Sent{id, now, c};
      }
      CountLocked();
    }
    std::vector<uint64_t> indexes;
    for (const auto& c : commands) indexes.push_back(c.outbox_index());
    if (sink(commands)) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (uint64_t index : indexes) sent_.erase(index);
      CountLocked();
    }
    RemoveSink(id);  // its stream closed meanwhile: the next one
  }
}

void CommandOutbox::Published(const std::vector<uint64_t>& outbox_indexes) {
  std::vector<uint64_t> known;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint64_t index : outbox_indexes) {
      if (index == 0) continue;
      sent_.erase(index);
      // One sent before a restart of ingestd may be waiting here again.
      std::erase_if(waiting_, [&](const rollertrace::v1::Command& c) { return c.outbox_index() == index; });
      known.push_back(index);
    }
    CountLocked();
  }
  if (!known.empty()) store_published_(std::move(known));
}

uint64_t CommandOutbox::AddSink(Sink sink) {
  std::vector<rollertrace::v1::Command> waiting;
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_sink_++;
    sinks_.emplace(id, std::move(sink));
    waiting.swap(waiting_);
    CountLocked();
  }
  Deliver(std::move(waiting));
  return id;
}

void CommandOutbox::RemoveSink(uint64_t id) {
  std::vector<rollertrace::v1::Command> owed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sinks_.erase(id);
    owed = TakeSentLocked([id](const Sent& s) { return s.sink == id; });
  }
  Deliver(std::move(owed));
}

std::vector<rollertrace::v1::Command> CommandOutbox::TakeSentLocked(const std::function<bool(const Sent&)>& which) {
  std::vector<rollertrace::v1::Command> taken;
  for (auto it = sent_.begin(); it != sent_.end();) {
    if (!which(it->second)) {
      ++it;
      continue;
    }
    taken.push_back(std::move(it->second.command));
    it = sent_.erase(it);
  }
  CountLocked();
  return taken;
}

void CommandOutbox::RunResends() {
  const auto tick = std::max(std::chrono::milliseconds(10), resend_after_ / 4);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_cv_.wait_for(lock, tick, [this] { return stopping_; })) {
    const auto due = std::chrono::steady_clock::now() - resend_after_;
    std::vector<rollertrace::v1::Command> overdue = TakeSentLocked([due](const Sent& s) { return s.at <= due; });
    if (overdue.empty()) continue;
    lock.unlock();
    Deliver(std::move(overdue));
    lock.lock();
  }
}

}  // namespace rollertrace::ingest
