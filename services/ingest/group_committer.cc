#include "ingest/group_committer.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <iostream>
#include <map>
#include <set>

#include "codec/codec.h"
#include "process/priority.h"
#include "util/cat.h"

namespace rollertrace::ingest {
namespace {

using rollertrace::v1::EventBatch;
using rollertrace::v1::IngestRequest;
using rollertrace::v1::IngestResponse;

void RejectBatch(const EventBatch& batch, std::string_view reason, const std::string& detail,
                 IngestResponse* response) {
  auto add = [&](uint64_t sequence) {
    auto* r = response->add_rejections();
    r->set_device_id(batch.device_id());
    r->set_sequence(sequence);
    r->set_reason(std::string(reason));
    r->set_detail(detail);
  };
  if (batch.events_size() == 0) add(0);
  for (const auto& event : batch.events()) add(event.sequence());
}

}  // namespace

GroupCommitter::GroupCommitter(store::EventStore& store, const pseudonym::Pseudonymizer& pseudonymizer,
                               IngestMetrics& metrics, Clock clock, GroupCommitOptions options, StoreGuard* guard)
    : store_(store),
      pseudonymizer_(pseudonymizer),
      metrics_(metrics),
      clock_(std::move(clock)),
      options_(options),
      guard_(guard),
      outbox_(metrics, [this](std::vector<uint64_t> indexes) { StorePublished(std::move(indexes)); },
              options.command_resend_after),
      writer_([this] { Run(); }) {}

void GroupCommitter::StorePublished(std::vector<uint64_t> outbox_indexes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    decisions_.push_back(store::CommandsPublishedCommand(store_, outbox_indexes, clock_()));
  }
  cv_.notify_one();
}

GroupCommitter::~GroupCommitter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  room_cv_.notify_all();
  writer_.join();
}

GroupCommitter::Pending GroupCommitter::Prepare(IngestRequest request) {
  Pending p;
  p.received = std::chrono::steady_clock::now();
  p.response.set_request_id(request.request_id());
  auto* batches = request.mutable_batches();
  int keep = 0;
  for (int i = 0; i < batches->size(); ++i) {
    EventBatch& batch = (*batches)[i];
    if (absl::Status s = codec::ValidateEvents(batch.device_id(), &batch); !s.ok()) {
      const std::string reason(codec::RejectReason(s));
      RejectBatch(batch, reason, std::string(s.message()), &p.response);
      metrics_.Rejected(reason, std::max(1, batch.events_size()));
      continue;
    }
    for (auto& event : *batch.mutable_events()) {
      if (!event.has_session_started() || event.session_started().patient_ref().empty()) continue;
      auto* started = event.mutable_session_started();
      started->set_patient_pseudonym(pseudonymizer_.Pseudonym(started->patient_ref()));
      started->clear_patient_ref();
    }
    if (keep != i) batches->SwapElements(keep, i);
    ++keep;
  }
  batches->DeleteSubrange(keep, batches->size() - keep);
  // Each batch becomes a store command, judged now: the time it entered ingestd.
  const int64_t judged = clock_();
  for (auto& b : *batches) {
    p.events += static_cast<size_t>(b.events_size());
    rollertrace::v1::StoreCommand& c = p.commands.emplace_back(store::NewCommand(store_, judged));
    c.mutable_ingest()->Swap(&b);
    if (guard_ != nullptr) p.command_bytes += c.ByteSizeLong();
  }
  p.bridge_received_unix_ms = request.bridge_received_unix_ms();
  return p;
}

void GroupCommitter::Queue(Pending p) {
  const size_t events = p.events;
  {
    std::unique_lock<std::mutex> lock(mu_);
    // Backpressure: a request larger than the bound is let in alone.
    room_cv_.wait(lock, [&] {
      return stopping_ || queued_events_ == 0 || queued_events_ + events <= options_.max_queued_events;
    });
    queued_events_ += events;
    queue_.push_back(std::move(p));
  }
  cv_.notify_one();
}

std::future<IngestResponse> GroupCommitter::Submit(IngestRequest request) {
  Pending p = Prepare(std::move(request));
  std::future<IngestResponse> answer = p.promise.get_future();
  Queue(std::move(p));
  return answer;
}

IngestResponse GroupCommitter::SubmitAndWait(IngestRequest request) {
  Pending p = Prepare(std::move(request));
  std::future<IngestResponse> answer = p.promise.get_future();
  std::unique_lock<std::mutex> lock(mu_);
  if (writing_ || !queue_.empty() || stopping_) {
    // A commit is under way or others wait: join them, in order.
    lock.unlock();
    Queue(std::move(p));
    return answer.get();
  }
  // Lead: commit this request (and the decisions waiting) here, now.
  writing_ = true;
  std::vector<rollertrace::v1::StoreCommand> decisions;
  decisions.swap(decisions_);
  lock.unlock();
  if (!decisions.empty()) room_cv_.notify_all();
  std::deque<Pending> group;
  group.push_back(std::move(p));
  CommitGroup(group, decisions);
  lock.lock();
  writing_ = false;
  lock.unlock();
  cv_.notify_one();  // what queued meanwhile is the writer's
  return answer.get();
}

absl::StatusOr<rollertrace::v1::Decision> GroupCommitter::Authorize(const rollertrace::v1::AuthorizeRequest& request) {
  // Cluster mode: decide only from what the stream holds too. A cycle this
  // shard committed but a quorum does not hold yet would be gone with a lost
  // disk, and a session allowed on it would meet NOT_STERILE at its re-check
  // (seen in the cluster fleet test). Without durability this returns at once.
  if (absl::Status durable = AwaitDurable(); !durable.ok()) return durable;
  const int64_t now = clock_();
  absl::StatusOr<store::RecordedDecision> d = store_.Decide(request, now);
  if (!d.ok()) return d.status();
  if (d->store) {
    rollertrace::v1::StoreCommand command = store::DecisionCommand(store_, *d, now);
    std::unique_lock<std::mutex> lock(mu_);
    room_cv_.wait(lock, [&] { return stopping_ || decisions_.size() < options_.max_queued_decisions; });
    decisions_.push_back(std::move(command));
    lock.unlock();
    cv_.notify_one();
  }
  return d->decision;
}

void GroupCommitter::Run() {
  pthread_setname_np(pthread_self(), "ingest-writer");
  if (absl::Status lowered = process::LowerThisThread(options_.bulk_nice); !lowered.ok()) {
    std::cerr << "ingestd: " << lowered.message() << "; the writer thread keeps its priority" << std::endl;
  }
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    // A caller committing its own request (SubmitAndWait) finishes first.
    cv_.wait(lock, [this] { return !writing_ && (stopping_ || !queue_.empty() || !decisions_.empty()); });
    if (queue_.empty() && decisions_.empty()) return;  // stopping, and everything answered
    std::deque<Pending> group;
    size_t events = 0;
    while (!queue_.empty() && (group.empty() || events < options_.max_group_events)) {
      events += queue_.front().events;
      group.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    queued_events_ -= std::min(queued_events_, events);
    std::vector<rollertrace::v1::StoreCommand> decisions;
    decisions.swap(decisions_);
    writing_ = true;
    lock.unlock();
    room_cv_.notify_all();
    const bool committed = CommitGroup(group, decisions);
    lock.lock();
    writing_ = false;
    if (!committed && stopping_ && !decisions_.empty()) {
      std::cerr << "ingestd: stopping with " << decisions_.size()
                << " authorisation decisions answered but not stored (the store took no writes)" << std::endl;
      decisions_.clear();
    } else if (!committed) {
      // Held back: wait a moment rather than spin on a store that takes no writes.
      cv_.wait_for(lock, std::chrono::milliseconds(StoreGuard::kRetryAfterMs / 4), [this] { return stopping_; });
    }
  }
}

void GroupCommitter::HoldBack(std::deque<Pending>& group, std::vector<rollertrace::v1::StoreCommand>& decisions,
                              const absl::Status& why) {
  for (auto& p : group) {
    p.response.set_unavailable(std::string(why.message()));
    p.response.set_retry_after_ms(StoreGuard::kRetryAfterMs);
    p.promise.set_value(std::move(p.response));
  }
  if (decisions.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& d : decisions_) decisions.push_back(std::move(d));
  decisions_ = std::move(decisions);
}

bool GroupCommitter::CommitGroup(std::deque<Pending>& group, std::vector<rollertrace::v1::StoreCommand>& decisions) {
  if (guard_ != nullptr) {
    // What the group will write: each event is stored as a record, in the
    // command log, in indexes and the chains; the WAL holds it all first.
    uint64_t bytes = 0;
    for (const auto& p : group) bytes += p.command_bytes;
    if (absl::Status writable = guard_->Writable(kWriteAmplification * bytes); !writable.ok()) {
      HoldBack(group, decisions, writable);
      return false;
    }
  }
  // Decisions first, then every batch in the order it arrived: one write.
  std::vector<rollertrace::v1::StoreCommand> commands = std::move(decisions);
  const size_t first_batch = commands.size();
  std::vector<size_t> owner;
  for (size_t i = 0; i < group.size(); ++i) {
    for (auto& c : group[i].commands) {
      commands.push_back(std::move(c));
      owner.push_back(i);
    }
    group[i].commands.clear();
  }
  const int64_t now = clock_();
  const auto started = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<absl::StatusOr<store::CommandResult>>> results =
      commands.empty() ? absl::StatusOr<std::vector<absl::StatusOr<store::CommandResult>>>(
                             std::vector<absl::StatusOr<store::CommandResult>>{})
                       : store_.ExecuteGroup(commands);
  const auto finished = std::chrono::steady_clock::now();

  if (!results.ok()) {
    // Nothing was written: every request is held back, the decisions wait.
    std::cerr << "ingestd: a commit failed, nothing of it was stored: " << results.status().message() << std::endl;
    if (guard_ != nullptr) guard_->WriteFailed(results.status());
    std::vector<rollertrace::v1::StoreCommand> held(std::make_move_iterator(commands.begin()),
                                                    std::make_move_iterator(commands.begin() + first_batch));
    // The batches go back into their requests' answers as "send again".
    HoldBack(group, held, absl::UnavailableError(util::Cat("the store's write failed (", results.status().message(),
                                                           "); nothing was stored, send it again")));
    return false;
  }

  // Each request's own rejections; everything else counted for the whole group.
  store::CommandResult merged;
  for (size_t k = 0; k < results->size(); ++k) {
    absl::StatusOr<store::CommandResult>& r = (*results)[k];
    if (!r.ok()) {
      std::cerr << "ingestd: a store command was refused: " << r.status().message() << std::endl;
      continue;
    }
    if (k >= first_batch) {
      for (auto& rejection : r->rejections) {
        metrics_.Rejected(rejection.reason());
        *group[owner[k - first_batch]].response.add_rejections() = std::move(rejection);
      }
      r->rejections.clear();
    }
    store::MergeResult(std::move(*r), &merged);
  }
  store::CommandResult* result = &merged;
  std::vector<const EventBatch*> batches;
  for (size_t k = first_batch; k < commands.size(); ++k) batches.push_back(&commands[k].ingest());

  size_t total = 0;
  for (const auto* b : batches) {
    total += b->events_size();
    for (const auto& e : b->events()) {
      if (e.device_time_unix_ms() > 0 && now >= e.device_time_unix_ms()) {
        metrics_.latency_device.Observe((now - e.device_time_unix_ms()) / 1000.0);
      }
    }
  }
  if (!batches.empty()) {
    metrics_.commit_seconds.Observe(std::chrono::duration<double>(finished - started).count());
    metrics_.commit_events.Observe(static_cast<double>(total));
  }
  for (const auto& [type, n] : result->stored_by_type) {
    metrics_.ingested.Add({{"type", std::string(type)}}).Increment(static_cast<double>(n));
  }
  metrics_.duplicates.Increment(static_cast<double>(result->duplicates));
  metrics_.conflicting.Increment(static_cast<double>(result->conflicts));
  for (const auto& v : result->violations) {
    metrics_.violations.Add({{"rule", v.rule()}, {"severity", IngestMetrics::SeverityLabel(v.severity())}}).Increment();
  }
  for (const auto& d : result->decisions) metrics_.Decided(d, "ingest");
  for (const auto& c : result->cycles) {
    metrics_.cycles.Add({{"result", c.parameters_passed() ? "pass" : "fail"}}).Increment();
  }
  for (const auto& f : result->findings) metrics_.findings.Add({{"kind", f.kind()}}).Increment();
  metrics_.recalls.Increment(static_cast<double>(result->recalls.size()));
  outbox_.Enqueue(std::move(result->commands));
  metrics_.gaps.Increment(static_cast<double>(result->gaps_opened));

  std::map<std::string, const rollertrace::v1::DeviceAck*> acks;
  // Cluster mode: answered once the replicated log holds the group too (and
  // everything before it, which a repeated event's ack relies on).
  auto answers = durability_ != nullptr ? std::make_shared<std::vector<Pending>>() : nullptr;
  for (const auto& ack : result->acks) acks[ack.device_id()] = &ack;
  std::vector<std::set<std::string>> devices_of(group.size());
  for (size_t k = 0; k < batches.size(); ++k) devices_of[owner[k]].insert(batches[k]->device_id());
  for (size_t i = 0; i < group.size(); ++i) {
    Pending& p = group[i];
    const std::set<std::string>& devices = devices_of[i];
    for (const auto& id : devices) {
      if (auto it = acks.find(id); it != acks.end()) *p.response.add_acks() = *it->second;
    }
    metrics_.latency_ingestd.Observe(std::chrono::duration<double>(finished - p.received).count());
    if (p.bridge_received_unix_ms > 0 && now >= p.bridge_received_unix_ms) {
      metrics_.latency_bridge.Observe((now - p.bridge_received_unix_ms) / 1000.0);
    }
    if (answers) {
      answers->push_back(std::move(p));
    } else {
      p.promise.set_value(std::move(p.response));
    }
  }
  if (answers && !answers->empty()) {
    durability_->WhenDurable(durability_->LogEnd(), [answers](bool durable) {
      for (auto& p : *answers) {
        if (!durable) {
          // Committed here, not confirmed by the replicated log: no ack, the
          // device sends it again (a repeat is acknowledged, not stored twice).
          p.response.clear_acks();
          p.response.set_unavailable("ingestd is stopping before the replicated log confirmed this; send it again");
          p.response.set_retry_after_ms(StoreGuard::kRetryAfterMs);
        }
        p.promise.set_value(std::move(p.response));
      }
    });
  }
  return true;
}

absl::Status GroupCommitter::AwaitDurable() {
  if (durability_ == nullptr) return absl::OkStatus();
  return durability_->AwaitDurable(durability_->LogEnd(), std::chrono::seconds(10));
}

}  // namespace rollertrace::ingest
