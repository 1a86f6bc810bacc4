// ingestd as one shard of the cluster (docs/ARCHITECTURE.md, "The cluster"):
// connects to JetStream, brings the store up to the shard's stream, then
// replicates every command the store commits. It is the Durability the
// group committer and the gRPC writes wait for.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster/replicator.h"
#include "ingest/durability.h"
#include "metrics/metrics.h"
#include "rules/policy.h"
#include "store/event_store.h"

namespace rollertrace::ingest {

struct ClusterOptions {
  std::vector<std::string> nats;  // nats://host:port of every node
  std::string shard;
  int replicas = 3;
  int retention_days = 400;
  // How long a starting shard waits for JetStream to answer (a node that just
  // restarted, a stream electing its leader) before it gives up.
  int start_wait_s = 300;
};

class ClusterShard : public Durability {
 public:
  // The store must be opened without a policy: `policy` is adopted only after
  // the store caught up with the stream. on_fatal: the partition would fork.
  static absl::StatusOr<std::unique_ptr<ClusterShard>> Start(store::EventStore& store, const ClusterOptions& options,
                                                              const rules::Policy& policy, int64_t now_unix_ms,
                                                              metrics::Metrics& metrics,
                                                              std::function<void(const absl::Status&)> on_fatal);

  uint64_t LogEnd() const override { return replicator_->LogEnd(); }
  void WhenDurable(uint64_t index, std::function<void(bool)> done) override {
    replicator_->WhenReplicated(index, std::move(done));
  }
  absl::Status AwaitDurable(uint64_t index, std::chrono::milliseconds timeout) override {
    return replicator_->AwaitReplicated(index, timeout);
  }
  // nats-server's max_payload in deploy/cluster (8 MiB), less room for headers.
  size_t MaxCommandBytes() const override { return (size_t{8} << 20) - 4096; }
  // Stopping: whatever still waits is answered "not confirmed".
  void Abandon() { replicator_->Abandon(); }

 private:
  explicit ClusterShard(std::unique_ptr<cluster::Replicator> r) : replicator_(std::move(r)) {}
  std::unique_ptr<cluster::Replicator> replicator_;
};

}  // namespace rollertrace::ingest
