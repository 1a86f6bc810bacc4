// GroupCommitter: the single writer of ingestd. Requests from every stream
// and call queue here as store commands (stamped with the time they entered);
// one thread takes all that waits (up to a bound), applies it to the
// EventStore in one synced write (ExecuteGroup), and answers each request.
// Many events thus share one WAL sync. What waits is bounded: a full queue
// makes Submit wait, which is the backpressure that reaches the bridges.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <future>
#include <mutex>
#include <thread>

#include "ingest/command_outbox.h"
#include "ingest/durability.h"
#include "ingest/ingest_metrics.h"
#include "ingest/store_guard.h"
#include "pseudonym/pseudonymizer.h"
#include "rollertrace/v1/services.pb.h"
#include "store/commands.h"

namespace rollertrace::ingest {

struct GroupCommitOptions {
  // Upper bound on the events of one commit group.
  size_t max_group_events = 16384;
  // Events admitted and not yet taken by the writer; Submit waits beyond it.
  size_t max_queued_events = 65536;
  // Decisions waiting to be stored; Authorize waits beyond it.
  size_t max_queued_decisions = 4096;
  // A device command handed to a bridge and not confirmed within this is
  // handed out again (its bridge lost the control connection, say).
  std::chrono::milliseconds command_resend_after{10000};
  // The writer thread's nice value (process/priority.h): storing events is
  // bulk work, behind the authorisations on a busy machine. 0 = off.
  int bulk_nice = 0;
};

class GroupCommitter {
 public:
  using Clock = std::function<int64_t()>;  // unix milliseconds

  // Borrows store, pseudonymizer and metrics; they must outlive this object.
  // With a guard, nothing is applied while it says the store takes no writes:
  // requests are answered with IngestResponse.unavailable (not stored, not
  // acked) and decisions wait.
  GroupCommitter(store::EventStore& store, const pseudonym::Pseudonymizer& pseudonymizer, IngestMetrics& metrics,
                 Clock clock, GroupCommitOptions options = {}, StoreGuard* guard = nullptr);
  // Answers what is queued, then joins the writer thread.
  ~GroupCommitter();
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  // Validates and pseudonymises on the caller's thread, then queues, waiting
  // while max_queued_events are queued already. The future is ready once the
  // request's events are committed (WAL synced); invalid events and events the
  // store refused are listed as rejections. Thread-safe.
  std::future<rollertrace::v1::IngestResponse> Submit(rollertrace::v1::IngestRequest request);

  // Submit and wait for the answer, for a caller that waits anyway (a unary
  // IngestBatch): when no commit is under way and nothing is queued, the
  // request is committed on the caller's own thread, sparing it the round
  // trip through the writer thread; else it queues as Submit does.
  // Thread-safe.
  rollertrace::v1::IngestResponse SubmitAndWait(rollertrace::v1::IngestRequest request);

  // Decides at once (EventStore::Decide, no write lock) and answers; the
  // decision is stored with the next commit group. Thread-safe.
  absl::StatusOr<rollertrace::v1::Decision> Authorize(const rollertrace::v1::AuthorizeRequest& request);

  // OK when the store takes writes now (always, without a guard); for the
  // writes that do not go through the queue (registrations, unlocks, …).
  absl::Status StoreWritable() { return guard_ != nullptr ? guard_->Writable() : absl::OkStatus(); }

  // Cluster mode: requests are answered only once `durability` holds their
  // commands too (it must outlive this object). Set before the first request.
  void SetDurability(Durability* durability) { durability_ = durability; }
  // For the writes that do not go through the queue: OK once everything the
  // store has committed is durable (at once without durability).
  absl::Status AwaitDurable();
  // The largest command the store takes now (0: no bound beyond the store's).
  size_t MaxCommandBytes() const { return durability_ != nullptr ? durability_->MaxCommandBytes() : 0; }

  // The device commands owed to the bridges (command_outbox.h).
  CommandOutbox& outbox() { return outbox_; }

 private:
  // Bytes written to the store's disk per byte of command, at most (records,
  // command log, indexes, chains; the WAL first): what a group must find free.
  static constexpr uint64_t kWriteAmplification = 4;
  struct Pending {
    std::chrono::steady_clock::time_point received;
    std::vector<rollertrace::v1::StoreCommand> commands;  // one per valid batch, stamped at Submit
    int64_t bridge_received_unix_ms = 0;
    uint64_t command_bytes = 0;  // of `commands`, measured on the submitting thread
    size_t events = 0;           // in `commands`
    rollertrace::v1::IngestResponse response;  // holds validation rejections
    std::promise<rollertrace::v1::IngestResponse> promise;
  };
  // Validates, pseudonymises and stamps the request's batches as commands.
  Pending Prepare(rollertrace::v1::IngestRequest request);
  // Queues a prepared request for the writer, waiting for room.
  void Queue(Pending p);
  void Run();
  // The bridges published these device commands: stored with the next group.
  void StorePublished(std::vector<uint64_t> outbox_indexes);
  // False when the group was held back (the store takes no writes).
  bool CommitGroup(std::deque<Pending>& group, std::vector<rollertrace::v1::StoreCommand>& decisions);
  // Answers every request of the group "not stored, send again" and puts the
  // decisions back at the head of the queue.
  void HoldBack(std::deque<Pending>& group, std::vector<rollertrace::v1::StoreCommand>& decisions,
                const absl::Status& why);

  store::EventStore& store_;
  const pseudonym::Pseudonymizer& pseudonymizer_;
  IngestMetrics& metrics_;
  Clock clock_;
  GroupCommitOptions options_;
  StoreGuard* guard_;
  Durability* durability_ = nullptr;

  std::mutex mu_;
  std::condition_variable cv_;       // work for the writer
  std::condition_variable room_cv_;  // room in the queue
  std::deque<Pending> queue_;
  size_t queued_events_ = 0;
  // Decision and commands-published commands, stored with the next group.
  std::vector<rollertrace::v1::StoreCommand> decisions_;
  bool stopping_ = false;
  bool writing_ = false;  // a group is being committed (by the writer or a caller)
  CommandOutbox outbox_;  // before writer_, which hands it commands
  std::thread writer_;
};

}  // namespace rollertrace::ingest
