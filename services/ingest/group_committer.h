// GroupCommitter: the single writer of ingestd. Requests from every stream
// and call queue here; one thread takes all that waits (up to a bound), appends
// it to the EventStore in one synced WriteBatch, and answers each request.
// Many events thus share one WAL sync.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "ingest/ingest_metrics.h"
#include "pseudonym/pseudonymizer.h"
#include "rollertrace/v1/services.pb.h"
#include "store/event_store.h"

namespace rollertrace::ingest {

struct GroupCommitOptions {
  // Upper bound on the events of one commit group.
  size_t max_group_events = 16384;
};

class GroupCommitter {
 public:
  using Clock = std::function<int64_t()>;  // unix milliseconds

  // Borrows store, pseudonymizer and metrics; they must outlive this object.
  GroupCommitter(store::EventStore& store, const pseudonym::Pseudonymizer& pseudonymizer, IngestMetrics& metrics,
                 Clock clock, GroupCommitOptions options = {});
  // Answers what is queued, then joins the writer thread.
  ~GroupCommitter();
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  // Validates and pseudonymises on the caller's thread, then queues. The future
  // is ready once the request's events are committed (WAL synced); invalid
  // events and events the store refused are listed as rejections. Thread-safe.
  std::future<rollertrace::v1::IngestResponse> Submit(rollertrace::v1::IngestRequest request);

  // Commands raised outside ingestion (recalls, unlocks) ride on the next
  // response; the bridge publishes them. Thread-safe.
  void Enqueue(std::vector<rollertrace::v1::Command> commands);

 private:
  struct Pending {
    std::chrono::steady_clock::time_point received;
    rollertrace::v1::IngestRequest request;
    rollertrace::v1::IngestResponse response;  // holds validation rejections
    std::promise<rollertrace::v1::IngestResponse> promise;
  };
  void Run();
  void CommitGroup(std::deque<Pending>& group);

  store::EventStore& store_;
  const pseudonym::Pseudonymizer& pseudonymizer_;
  IngestMetrics& metrics_;
  Clock clock_;
  GroupCommitOptions options_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  std::vector<rollertrace::v1::Command> outbox_;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace rollertrace::ingest
