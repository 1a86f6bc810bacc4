#include "ingest/cluster_shard.h"

#include <chrono>
#include <iostream>
#include <thread>

namespace rollertrace::ingest {

absl::StatusOr<std::unique_ptr<ClusterShard>> ClusterShard::Start(store::EventStore& store,
                                                                   const ClusterOptions& options,
                                                                   const rules::Policy& policy, int64_t now_unix_ms,
                                                                   metrics::Metrics& metrics,
                                                                   std::function<void(const absl::Status&)> on_fatal) {
  cluster::LogOptions lo;
  lo.servers = options.nats;
  lo.shard = options.shard;
  lo.replicas = options.replicas;
  lo.max_age_ms = int64_t{options.retention_days} * 86400 * 1000;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(options.start_wait_s);
  // Connecting and catching up are both safe to repeat (a catch-up resumes
  // at the store's next command); a NATS cluster that does not answer yet is
  // waited for, anything else stops the start.
  auto transient = [&](const absl::Status& s) {
    if (!absl::IsUnavailable(s) || std::chrono::steady_clock::now() >= give_up) return false;
    std::cerr << "ingestd: shard " << options.shard << ": " << s.message() << "; trying again in 1 s" << std::endl;
    std::this_thread::sleep_for(std::chrono::seconds(1));
    return true;
  };
  std::unique_ptr<cluster::JetStreamLog> log;
  for (;;) {
    absl::StatusOr<std::unique_ptr<cluster::JetStreamLog>> connected = cluster::JetStreamLog::Connect(lo);
    if (connected.ok()) {
      log = std::move(*connected);
      break;
    }
    if (!transient(connected.status())) return connected.status();
  }
  std::cerr << "ingestd: shard " << options.shard << ": stream " << log->stream() << " on " << options.nats.size()
            << " NATS nodes" << std::endl;
  auto last_line = std::chrono::steady_clock::now();
  for (;;) {
    absl::Status caught_up = cluster::CatchUp(store, *log, [&](uint64_t done, uint64_t total) {
      const auto now = std::chrono::steady_clock::now();
      if (done == total || now - last_line > std::chrono::seconds(2)) {
        last_line = now;
        std::cerr << "ingestd: shard " << options.shard << ": catching up with the stream: " << done << " of "
                  << total << " commands applied" << std::endl;
      }
    });
    if (caught_up.ok()) break;
    if (!transient(caught_up)) return caught_up;
  }
  if (absl::Status s = store.AdoptPolicy(policy, now_unix_ms); !s.ok()) return s;
  auto replicator = std::make_unique<cluster::Replicator>(store, std::move(log), metrics, std::move(on_fatal));
  return std::unique_ptr<ClusterShard>(new ClusterShard(std::move(replicator)));
}

}  // namespace rollertrace::ingest
