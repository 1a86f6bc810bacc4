// Replicator: a shard's command log copied, in order, into its JetStream
// stream (docs/ARCHITECTURE.md, "The cluster"). The store applies first; the
// replicator publishes each logged command as stream sequence = its index,
// and tells waiters when an index is held by a quorum. It also repairs a
// stream that lost its tail (every NATS node restarted at once) from the
// store's log, and stops the shard when the stream holds other content at
// an index than the store (a second writer): a partition never forks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "cluster/jetstream_log.h"
#include "metrics/metrics.h"
#include "store/event_store.h"

namespace rollertrace::cluster {

// Before a shard serves: applies the stream's commands from the store's next
// index on, in stream order (a new disk, or a restored backup). `progress`
// gets (applied, to apply) now and then. FailedPrecondition when the stream
// no longer holds the store's next command (it starts later).
absl::Status CatchUp(store::EventStore& store, JetStreamLog& log,
                     const std::function<void(uint64_t, uint64_t)>& progress = {});

class Replicator {
 public:
  // on_fatal: the stream and the store disagree; the shard must stop.
  Replicator(store::EventStore& store, std::unique_ptr<JetStreamLog> log, metrics::Metrics& metrics,
             std::function<void(const absl::Status&)> on_fatal);
  ~Replicator();
  Replicator(const Replicator&) = delete;
  Replicator& operator=(const Replicator&) = delete;

  // The store's log grew: publish.
  void Committed();
  // The last index of the store's log now.
  uint64_t LogEnd() const;
  // Calls done(true) (on the replicator's thread, or at once) when every
  // command through `index` is in the stream; done(false) if the replicator
  // gave up first (Abandon, or destroyed).
  void WhenReplicated(uint64_t index, std::function<void(bool)> done);
  // Shutting down: every waiter now and from now on gets done(false).
  void Abandon();
  // Unavailable after `timeout`: the command stays committed on this shard and
  // is replicated once the stream takes it.
  absl::Status AwaitReplicated(uint64_t index, std::chrono::milliseconds timeout);
  uint64_t replicated() const;

 private:
  void Run();
  void Advance(uint64_t through);
  // After a failed publish: learn the stream's last sequence; false on a fork.
  bool Resync();

  store::EventStore& store_;
  std::unique_ptr<JetStreamLog> log_;
  std::function<void(const absl::Status&)> on_fatal_;
  prometheus::Gauge& replicated_gauge_;
  prometheus::Gauge& lag_gauge_;
  prometheus::Counter& errors_;
  prometheus::Counter& republished_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable replicated_cv_;
  uint64_t replicated_ = 0;  // guarded by mu_
  bool committed_ = false;   // guarded by mu_
  std::multimap<uint64_t, std::function<void(bool)>> waiters_;  // guarded by mu_
  bool stopping_ = false;
  bool abandoned_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace rollertrace::cluster
