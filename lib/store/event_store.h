// EventStore: the system of record in RocksDB. One column family per kind of
// record (events, devices, gaps); keys from store/keys.h.
//
// Exactly-once: an event is identified by (device id, sequence). Append stores
// each new event, the device's updated state and its gap records in one
// atomic WriteBatch, with the WAL synced (StoreOptions::sync) before it
// returns; a repeated (device, sequence) is acknowledged again but not stored.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "rollertrace/v1/records.pb.h"
#include "rollertrace/v1/services.pb.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace rollertrace::store {

struct StoreOptions {
  // Sync the WAL before Append returns. Only benchmarks turn this off.
  bool sync = true;
};

struct RejectedEvent {
  size_t batch_index;  // into Append's `batches`
  rollertrace::v1::Rejection rejection;
};

struct AppendResult {
  // One ack per device that had an event committed or repeated.
  std::vector<rollertrace::v1::DeviceAck> acks;
  std::vector<RejectedEvent> rejections;
  std::map<std::string, uint64_t> stored_by_type;  // codec::EventType label -> count
  uint64_t duplicates = 0;
  uint64_t gaps_opened = 0;
};

class EventStore {
 public:
  // Opens (creating if missing) the store in directory `path`.
  static absl::StatusOr<std::unique_ptr<EventStore>> Open(const std::string& path, StoreOptions options = {});
  ~EventStore();
  EventStore(const EventStore&) = delete;
  EventStore& operator=(const EventStore&) = delete;

  // Appends every batch atomically. Events of unregistered devices, and events
  // still holding a raw patient reference, are rejected (not stored) and listed
  // in the result. An error status means nothing was written.
  // Thread-safe; callers batch many requests into one call for group commit.
  absl::StatusOr<AppendResult> Append(std::span<const rollertrace::v1::EventBatch* const> batches,
                                      int64_t receive_unix_ms);

  // Registers a device; InvalidArgument outside DOMAIN.md's ranges,
  // AlreadyExists for a known id.
  absl::StatusOr<rollertrace::v1::Device> Register(rollertrace::v1::Device device, int64_t now_unix_ms);
  // FailedPrecondition when already retired: a retired device never returns.
  absl::StatusOr<rollertrace::v1::Device> Retire(std::string_view device_id, std::string_view reason,
                                                 int64_t now_unix_ms);
  absl::StatusOr<rollertrace::v1::DeviceRecord> GetDevice(std::string_view device_id) const;
  // KIND_UNSPECIFIED lists every kind. Ordered by device id.
  absl::StatusOr<std::vector<rollertrace::v1::DeviceRecord>> ListDevices(rollertrace::v1::DeviceKind kind) const;

  // Events of one device from `from_sequence` on, in sequence order.
  absl::StatusOr<rollertrace::v1::HistoryResponse> History(std::string_view device_id, uint64_t from_sequence,
                                                           uint32_t limit) const;
  // Open gaps, then closed ones.
  absl::StatusOr<std::vector<rollertrace::v1::Gap>> Gaps(std::string_view device_id) const;

  // RocksDB integer properties for metrics, e.g. "rocksdb.estimate-live-data-size".
  std::map<std::string, uint64_t> Properties() const;

 private:
  EventStore(std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> handles,
             StoreOptions options);
  absl::StatusOr<bool> LoadDevice(std::string_view device_id, rollertrace::v1::DeviceRecord* record) const;
  // REQUIRES: write_mu_ held. The writers' view of device records, kept in
  // memory; updated only after the write that changes a record succeeded.
  absl::StatusOr<bool> LoadDeviceForWrite(const std::string& device_id, rollertrace::v1::DeviceRecord* record);
  absl::Status PutDevice(const rollertrace::v1::DeviceRecord& record);

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // owned; destroyed before db_
  rocksdb::ColumnFamilyHandle* events_;
  rocksdb::ColumnFamilyHandle* devices_;
  rocksdb::ColumnFamilyHandle* gaps_;
  StoreOptions options_;
  std::mutex write_mu_;  // serialises read-modify-write of device records
  std::map<std::string, rollertrace::v1::DeviceRecord> write_cache_;  // guarded by write_mu_
};

}  // namespace rollertrace::store
