// JetStreamLog: one shard's partition of the replicated log, a JetStream
// stream of its own (docs/ARCHITECTURE.md, "The cluster"). The one wrapper of
// nats.c: a connection that reconnects on its own, the stream made if
// missing, fenced publishing, and reading back by sequence. Not thread-safe:
// one owner (the replicator) calls it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rollertrace::cluster {

// Whether a JetStream API error code is what a cluster answers while it has
// no quorum or no leader yet (nodes restarting, an election under way):
// "JetStream system temporarily unavailable" (10008) and its kin. Such an
// error is reported as UNAVAILABLE, so a caller waits and tries again.
bool TemporarilyUnavailable(int code);

struct LogOptions {
  // nats://host:port of every node (the client moves between them).
  std::vector<std::string> servers;
  // The shard's name: stream RT_<shard>, subject rollertrace.log.<shard>.
  std::string shard;
  int replicas = 3;
  // Messages older than this are dropped by the stream (0: kept for ever).
  int64_t max_age_ms = 0;
  // Inside this window a resend with the same message id is answered as a duplicate.
  int64_t duplicate_window_ms = 120000;
  // How long Connect tries (the cluster may still be electing its leaders).
  int64_t connect_timeout_ms = 30000;
  // How long one request to JetStream waits.
  int64_t request_timeout_ms = 5000;
};

// Sequences of the stream (first 0 and last 0: empty and never written).
struct StreamBounds {
  uint64_t first = 0;
  uint64_t last = 0;
  uint64_t messages = 0;
};

// What a Publish did: the stream holds the entries through `last` (acked,
// in order); `error` is the first failure, OK when all were acked.
struct PublishOutcome {
  uint64_t last = 0;
  absl::Status error;
};

class JetStreamLog {
 public:
  static absl::StatusOr<std::unique_ptr<JetStreamLog>> Connect(const LogOptions& options);
  ~JetStreamLog();
  JetStreamLog(const JetStreamLog&) = delete;
  JetStreamLog& operator=(const JetStreamLog&) = delete;

  absl::StatusOr<StreamBounds> Bounds();
  // Publishes entries[i] (bytes) as sequence first_index + i, each fenced by
  // "the stream's last sequence is the one before" and carrying message id
  // <shard>-<index>-<fingerprint of the bytes>; waits for the acks. Returns how far the stream got.
  PublishOutcome Publish(uint64_t first_index, std::span<const std::string> entries);
  // The bytes stored at `sequence`; NotFound when the stream has none there.
  absl::StatusOr<std::string> Get(uint64_t sequence);
  // Calls visit(sequence, bytes) for every message from `from` through `to`,
  // in order (an ephemeral pull consumer); visit's error stops the read.
  absl::Status Read(uint64_t from, uint64_t to,
                    const std::function<absl::Status(uint64_t, std::string_view)>& visit);

  const std::string& stream() const { return stream_; }
  const std::string& subject() const { return subject_; }

 private:
  struct Handles;
  JetStreamLog(LogOptions options, std::unique_ptr<Handles> handles);
  absl::Status EnsureStream();

  LogOptions options_;
  std::string stream_;
  std::string subject_;
  std::unique_ptr<Handles> h_;
};

}  // namespace rollertrace::cluster
