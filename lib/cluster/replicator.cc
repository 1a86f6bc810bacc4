#include "cluster/replicator.h"

#include <iostream>
#include <vector>

#include "util/cat.h"

namespace rollertrace::cluster {
namespace {

constexpr size_t kPublishWindow = 512;
constexpr size_t kReplayGroup = 256;

// The store's commands [from, to] as the bytes the stream holds.
absl::StatusOr<std::vector<std::string>> LogEntries(const store::EventStore& store, uint64_t from, uint64_t to) {
  std::vector<std::string> out;
  absl::Status s = store.log().ForEach(from, [&](const rollertrace::v1::StoreCommand& c) -> absl::StatusOr<bool> {
    if (c.index() > to) return false;
    out.push_back(c.SerializeAsString());
    return c.index() < to;
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace

absl::Status CatchUp(store::EventStore& store, JetStreamLog& log,
                     const std::function<void(uint64_t, uint64_t)>& progress) {
  absl::StatusOr<uint64_t> next = store.log().NextIndex();
  if (!next.ok()) return next.status();
  absl::StatusOr<StreamBounds> bounds = log.Bounds();
  if (!bounds.ok()) return bounds.status();
  if (bounds->last < *next) return absl::OkStatus();  // nothing newer; the replicator sends what the stream lacks
  if (bounds->messages > 0 && bounds->first > *next) {
    return absl::FailedPreconditionError(util::Cat(
        "stream ", log.stream(), " starts at command ", bounds->first, " but this store's next command is ", *next,
        ": restore a backup of the shard taken at command ", bounds->first - 1, " or later, then start again"));
  }
  const uint64_t total = bounds->last - *next + 1;
  uint64_t applied = 0;
  std::vector<rollertrace::v1::StoreCommand> group;
  auto flush = [&]() -> absl::Status {
    if (group.empty()) return absl::OkStatus();
    auto results = store.ExecuteGroup(group);
    if (!results.ok()) return results.status();
    for (size_t i = 0; i < results->size(); ++i) {
      if (!(*results)[i].ok()) {
        return absl::DataLossError(util::Cat("command ", group[i].index(), " of ", log.stream(),
                                             " was refused on replay: ", (*results)[i].status().message()));
      }
    }
    applied += group.size();
    group.clear();
    if (progress) progress(applied, total);
    return absl::OkStatus();
  };
  absl::Status read = log.Read(*next, bounds->last, [&](uint64_t seq, std::string_view bytes) -> absl::Status {
    rollertrace::v1::StoreCommand& c = group.emplace_back();
    if (!c.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      return absl::DataLossError(util::Cat("message ", seq, " of ", log.stream(), " is not a store command"));
    }
    if (c.index() != seq) {
      return absl::DataLossError(
          util::Cat("message ", seq, " of ", log.stream(), " carries command ", c.index(), ", not ", seq));
    }
    return group.size() >= kReplayGroup ? flush() : absl::OkStatus();
  });
  if (!read.ok()) return read;
  if (absl::Status s = flush(); !s.ok()) return s;
  return store.ResumeCounters();
}

Replicator::Replicator(store::EventStore& store, std::unique_ptr<JetStreamLog> log, metrics::Metrics& metrics,
                       std::function<void(const absl::Status&)> on_fatal)
    : store_(store),
      log_(std::move(log)),
      on_fatal_(std::move(on_fatal)),
      replicated_gauge_(metrics.Gauge("rollertrace_cluster_replicated_index",
                                      "The last command index of this shard its JetStream stream holds (acked by a "
                                      "quorum)")
                            .Add({})),
      lag_gauge_(metrics.Gauge("rollertrace_cluster_replication_lag_commands",
                               "Commands committed on this shard and not yet held by its stream")
                     .Add({})),
      errors_(metrics.Counter("rollertrace_cluster_publish_errors_total",
                              "Publishes to the shard's stream that failed (NATS unreachable, no quorum, fenced)")
                  .Add({})),
      republished_(metrics.Counter("rollertrace_cluster_republished_commands_total",
                                   "Commands published again because the stream had lost them")
                       .Add({})) {
  // What the stream holds already (at most the store's end, after CatchUp).
  if (absl::StatusOr<StreamBounds> b = log_->Bounds(); b.ok()) replicated_ = std::min(b->last, LogEnd());
  replicated_gauge_.Set(static_cast<double>(replicated_));
  thread_ = std::thread([this] { Run(); });
}

Replicator::~Replicator() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  replicated_cv_.notify_all();
  thread_.join();
  Abandon();
}

void Replicator::Abandon() {
  std::multimap<uint64_t, std::function<void(bool)>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    abandoned_ = true;
    left.swap(waiters_);
  }
  for (auto& [index, done] : left) done(false);
}

uint64_t Replicator::LogEnd() const {
  absl::StatusOr<uint64_t> next = store_.log().NextIndex();
  return next.ok() && *next > 0 ? *next - 1 : 0;
}

uint64_t Replicator::replicated() const {
  std::lock_guard<std::mutex> lock(mu_);
  return replicated_;
}

void Replicator::Committed() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    committed_ = true;
  }
  work_cv_.notify_one();
}

void Replicator::WhenReplicated(uint64_t index, std::function<void(bool)> done) {
  bool durable = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (index > replicated_ && abandoned_) {
      durable = false;
    } else if (index > replicated_) {
      waiters_.emplace(index, std::move(done));
      committed_ = true;
      work_cv_.notify_one();
      return;
    }
  }
  done(durable);
}

absl::Status Replicator::AwaitReplicated(uint64_t index, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  committed_ = true;
  work_cv_.notify_one();
  if (replicated_cv_.wait_for(lock, timeout, [&] { return replicated_ >= index || stopping_; }) &&
      replicated_ >= index) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(util::Cat("committed on this shard as command ", index,
                                          ", but the replicated log has not confirmed it yet (is a NATS quorum up?); "
                                          "it is replicated once the log takes it"));
}

void Replicator::Advance(uint64_t through) {
  std::vector<std::function<void(bool)>> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (through <= replicated_) return;
    replicated_ = through;
    auto end = waiters_.upper_bound(through);
    for (auto it = waiters_.begin(); it != end; ++it) done.push_back(std::move(it->second));
    waiters_.erase(waiters_.begin(), end);
  }
  replicated_gauge_.Set(static_cast<double>(through));
  replicated_cv_.notify_all();
  for (auto& d : done) d(true);
}

bool Replicator::Resync() {
  absl::StatusOr<StreamBounds> b = log_->Bounds();
  if (!b.ok()) return true;  // unreachable: try again later
  const uint64_t mine = replicated();
  if (b->last < mine) {
    // Every node restarted and lost its unsynced tail: the store still has it.
    std::cerr << "ingestd: stream " << log_->stream() << " holds commands only through " << b->last
              << ", this shard had replicated through " << mine
              << " (the NATS nodes lost their unsynced tail?): publishing them again from the store's log"
              << std::endl;
    std::lock_guard<std::mutex> lock(mu_);
    replicated_ = b->last;  // what was acked stays acked: the shard's synced disk holds it
    return true;
  }
  // The stream is ahead of what we saw acked (an ack lost): it must hold our commands.
  const uint64_t end = std::min(b->last, LogEnd());
  for (uint64_t i = mine + 1; i <= end; ++i) {
    absl::StatusOr<std::string> theirs = log_->Get(i);
    if (!theirs.ok()) return true;
    absl::StatusOr<std::vector<std::string>> ours = LogEntries(store_, i, i);
    if (!ours.ok() || ours->size() != 1) return true;
    if (*theirs != ours->front()) {
      on_fatal_(absl::DataLossError(util::Cat("stream ", log_->stream(), " holds other content at command ", i,
                                              " than this shard's store: another ingestd writes this shard's log; "
                                              "this one stops")));
      return false;
    }
    Advance(i);
  }
  if (b->last > LogEnd()) {
    on_fatal_(absl::DataLossError(util::Cat("stream ", log_->stream(), " holds commands through ", b->last,
                                             ", beyond this shard's store (", LogEnd(),
                                             "): another ingestd writes this shard's log; this one stops")));
    return false;
  }
  return true;
}

void Replicator::Run() {
  auto last_check = std::chrono::steady_clock::now();
  bool failing = false;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait_for(lock, std::chrono::milliseconds(1000),
                        [this] { return stopping_ || committed_; });
      if (stopping_) return;
      committed_ = false;
    }
    const uint64_t end = LogEnd();
    const uint64_t from = replicated() + 1;
    lag_gauge_.Set(static_cast<double>(end >= from ? end - from + 1 : 0));
    if (end < from) {
      // Idle: now and then check that the stream still holds what it acked.
      if (std::chrono::steady_clock::now() - last_check > std::chrono::seconds(2)) {
        last_check = std::chrono::steady_clock::now();
        const uint64_t before = replicated();
        if (!Resync()) return;
        if (replicated() < before) {
          republished_.Increment(static_cast<double>(before - replicated()));
          Committed();
        }
      }
      continue;
    }
    const uint64_t to = std::min<uint64_t>(end, from + kPublishWindow - 1);
    absl::StatusOr<std::vector<std::string>> entries = LogEntries(store_, from, to);
    if (!entries.ok()) {
      on_fatal_(entries.status());
      return;
    }
    PublishOutcome out = log_->Publish(from, *entries);
    Advance(out.last);
    lag_gauge_.Set(static_cast<double>(end - std::min(end, replicated())));
    if (out.error.ok()) {
      failing = false;
      if (to < end) Committed();
      continue;
    }
    errors_.Increment();
    if (!failing) std::cerr << "ingestd: replicating to " << log_->stream() << ": " << out.error.message() << std::endl;
    failing = true;
    const uint64_t before = replicated();
    if (!Resync()) return;
    if (replicated() < before) republished_.Increment(static_cast<double>(before - replicated()));
    std::unique_lock<std::mutex> lock(mu_);  // back off, then try again
    work_cv_.wait_for(lock, std::chrono::milliseconds(250), [this] { return stopping_; });
    committed_ = true;
  }
}

}  // namespace rollertrace::cluster
