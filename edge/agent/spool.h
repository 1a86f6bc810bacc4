// Spool: the agent's durable outbox. An event is written (WAL synced) before it
// is sent and removed only when an ack from ingestd covers it, so a killed
// agent, bridge or ingestd loses nothing. Several devices may share one
// SpoolDb (roller-fleet); each Spool owns the keys of its device.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rollertrace/v1/events.pb.h"
#include "rollertrace/v1/records.pb.h"

namespace rocksdb {
class DB;
}

namespace rollertrace::edge {

class SpoolDb {
 public:
  static absl::StatusOr<std::unique_ptr<SpoolDb>> Open(const std::string& path);
  ~SpoolDb();
  SpoolDb(const SpoolDb&) = delete;
  SpoolDb& operator=(const SpoolDb&) = delete;
  rocksdb::DB* db() { return db_.get(); }

 private:
  explicit SpoolDb(std::unique_ptr<rocksdb::DB> db);
  std::unique_ptr<rocksdb::DB> db_;
};

class Spool {
 public:
  // Loads the device's pending events and bookkeeping from `db`.
  static absl::StatusOr<std::unique_ptr<Spool>> Open(SpoolDb& db, std::string device_id);
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Stamps `event` with the device id and the next sequence number and writes
  // it, with source_cursor, durably. Returns the stamped event.
  absl::StatusOr<rollertrace::v1::Event> Append(rollertrace::v1::Event event, uint64_t source_cursor);

  // Forgets every pending event the ack covers. Returns how many it removed.
  absl::StatusOr<size_t> Acknowledge(const rollertrace::v1::DeviceAck& ack);

  // Pending events with sequence > after, in order, at most `limit`. A
  // pending event that no longer parses is never skipped silently: it is
  // moved to the spool's quarantine (kept, counted, named on stderr) and
  // leaves a gap ingestd records.
  std::vector<rollertrace::v1::Event> Pending(uint64_t after, size_t limit);

  // The agent's state for offline decisions (AgentState), nullopt before the
  // first; `sync` for what the server said, not for the device's own events
  // (those are replayed from the spool on a restart, see DeviceAgent).
  absl::StatusOr<std::optional<rollertrace::v1::AgentState>> LoadAgentState() const;
  absl::Status SaveAgentState(const rollertrace::v1::AgentState& state, bool sync);
  // Events moved to the quarantine since the spool was opened, and in all.
  uint64_t quarantined() const;

  size_t pending_count() const;
  // Whether any sequence in [first, last] is still pending.
  bool AnyPending(uint64_t first, uint64_t last) const;
  // Device time of the oldest pending event; 0 when none.
  int64_t oldest_pending_unix_ms() const;
  rollertrace::v1::SpoolMeta meta() const;
  const std::string& device_id() const { return device_id_; }

 private:
  Spool(SpoolDb& db, std::string device_id) : db_(db.db()), device_id_(std::move(device_id)) {}

  rocksdb::DB* db_;
  const std::string device_id_;
  mutable std::mutex mu_;
  rollertrace::v1::SpoolMeta meta_;
  std::set<uint64_t> pending_;
  int64_t oldest_pending_unix_ms_ = 0;
  uint64_t quarantined_ = 0;
};

}  // namespace rollertrace::edge
