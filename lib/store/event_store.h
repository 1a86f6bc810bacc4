// EventStore: the system of record in RocksDB. One column family per kind of
// record (events, devices, gaps); keys from store/keys.h.
//
// Exactly-once: an event is identified by (device id, sequence). Append stores
// each new event, the device's updated state and its gap records in one
// atomic WriteBatch, with the WAL synced (StoreOptions::sync) before it
// returns; a repeated (device, sequence) is acknowledged again but not stored.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
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
#include "rules/policy.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace rollertrace::store {

// ArchiveHeader.format of the archives this store writes and reads.
// /2 archives end with a trailer; /1 archives (no trailer) are refused.
inline constexpr char kArchiveFormat[] = "rollertrace-archive/2";

struct StoreOptions {
  // Sync the WAL before Append returns. Only benchmarks turn this off.
  bool sync = true;
  // The rules applied to every session start and cycle on ingestion.
  rules::Policy policy;
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
  // Domain outcomes of this append, for metrics and for the devices.
  std::vector<rollertrace::v1::Violation> violations;
  std::vector<rollertrace::v1::Decision> decisions;  // re-checks of ingested session starts
  std::vector<rollertrace::v1::Command> commands;
  std::vector<rollertrace::v1::CycleRecord> cycles;
  // Device input refused or flagged (DOMAIN.md, "Whose word counts").
  std::vector<rollertrace::v1::Finding> findings;
  // Recalls started by a steriliser's own failed biological indicator.
  std::vector<rollertrace::v1::RecallReport> recalls;
};

// An authorisation decision as decided, to be stored with the next write.
struct RecordedDecision {
  rollertrace::v1::Decision decision;
  uint64_t counter = 0;  // part of its key
  bool store = false;    // false for an unknown device: answered, not stored
};

// A biological-indicator result and what it set off.
struct BiologicalIndicatorOutcome {
  rollertrace::v1::CycleRecord cycle;
  bool recalled = false;
  rollertrace::v1::RecallReport recall;
  std::vector<rollertrace::v1::Command> commands;
};

struct ViolationFilter {
  int64_t from_unix_ms = 0;
  int64_t to_unix_ms = 0;  // 0: no bound
  std::string rule;
  std::string device_id;
  rollertrace::v1::Severity severity = rollertrace::v1::SEVERITY_UNSPECIFIED;
};

// Tamper evidence: a stored event's hash is
// SHA-256(prev_hash || be64(chain_index) || be64(receive_unix_ms) || the event's bytes).
std::string ChainHash(const rollertrace::v1::StoredEvent& stored);
// SHA-256 of a record chain entry: over its prev_hash and the entry with `hash` empty.
std::string LedgerHash(const rollertrace::v1::LedgerEntry& entry);
std::string Sha256(std::string_view bytes);
// The StoredEvent bytes for `event`, linked to its device's chain (which advances).
void EncodeStoredEvent(const rollertrace::v1::Event& event, int64_t receive_unix_ms,
                       rollertrace::v1::DeviceState* state, std::string* out);

class EventStore {
 public:
  // Opens (creating if missing) the store in directory `path`.
  static absl::StatusOr<std::unique_ptr<EventStore>> Open(const std::string& path, StoreOptions options = {});
  ~EventStore();
  EventStore(const EventStore&) = delete;
  EventStore& operator=(const EventStore&) = delete;

  // Appends every batch atomically, and stores the given decisions (of
  // Decide) in the same write. Events of unregistered devices, and events
  // still holding a raw patient reference, are rejected (not stored) and listed
  // in the result. An error status means nothing was written.
  // Thread-safe; callers batch many requests into one call for group commit.
  absl::StatusOr<AppendResult> Append(std::span<const rollertrace::v1::EventBatch* const> batches,
                                      int64_t receive_unix_ms, std::span<const RecordedDecision> decisions = {});

  // Registers a device; InvalidArgument outside DOMAIN.md's ranges,
  // AlreadyExists for a known id.
  absl::StatusOr<rollertrace::v1::Device> Register(rollertrace::v1::Device device, int64_t now_unix_ms);
  // FailedPrecondition when already retired: a retired device never returns.
  absl::StatusOr<rollertrace::v1::Device> Retire(std::string_view device_id, std::string_view reason,
                                                 int64_t now_unix_ms);
  absl::StatusOr<rollertrace::v1::DeviceRecord> GetDevice(std::string_view device_id) const;
  // KIND_UNSPECIFIED lists every kind. Ordered by device id.
  absl::StatusOr<std::vector<rollertrace::v1::DeviceRecord>> ListDevices(rollertrace::v1::DeviceKind kind) const;

  // The rules' answer for a session about to start, from the committed state
  // (no write lock: never waits behind a commit); not yet stored, pass it to
  // Append. An unregistered roller gets a deny with UNKNOWN_DEVICE.
  // REQUIRES: the session's patient reference already pseudonymised.
  absl::StatusOr<RecordedDecision> Decide(const rollertrace::v1::AuthorizeRequest& request,
                                          int64_t now_unix_ms) const;
  // Decide, and store the decision before returning.
  absl::StatusOr<rollertrace::v1::Decision> Authorize(const rollertrace::v1::AuthorizeRequest& request,
                                                      int64_t now_unix_ms);
  // Records the lab's biological-indicator result (PASS or FAIL), always,
  // whatever the steriliser reported (kept beside it). When the result that
  // counts becomes FAIL and no recall exists yet, every load of the
  // steriliser since its last lab-confirmed negative indicator is recalled:
  // sessions marked at risk, rollers not sterilised again since locked.
  absl::StatusOr<BiologicalIndicatorOutcome> RecordBiologicalIndicator(
      const rollertrace::v1::BiologicalIndicatorRequest& request, int64_t now_unix_ms);
  // Releases a locked roller; FailedPrecondition when it is not locked.
  absl::StatusOr<rollertrace::v1::Device> Unlock(std::string_view device_id, std::string_view reason,
                                                 std::string_view by, int64_t now_unix_ms,
                                                 rollertrace::v1::Command* command);
  absl::StatusOr<rollertrace::v1::CycleRecord> GetCycle(std::string_view steriliser_id, uint64_t cycle) const;
  // Findings of one device, in sequence order.
  absl::StatusOr<std::vector<rollertrace::v1::Finding>> Findings(std::string_view device_id) const;
  absl::StatusOr<rollertrace::v1::RecallReport> GetRecall(std::string_view steriliser_id, uint64_t cycle) const;
  absl::StatusOr<std::vector<rollertrace::v1::Violation>> ListViolations(const ViolationFilter& filter) const;
  // Trails (DOMAIN.md, "What a compliance officer must be able to answer"),
  // read from key ranges and indexes only.
  absl::StatusOr<rollertrace::v1::RollerTrail> RollerTrail(std::string_view device_id) const;
  // REQUIRES: a pseudonym (the service pseudonymises a clinic reference first).
  absl::StatusOr<rollertrace::v1::PatientTrail> PatientTrail(std::string_view patient_pseudonym) const;
  absl::StatusOr<rollertrace::v1::CycleTrail> CycleTrail(std::string_view steriliser_id, uint64_t cycle) const;

  // Recomputes the event chain of one device (or all, when empty) from what
  // is on disk and reports the first broken record of each broken device.
  // With a trusted public key, the latest signed checkpoint is checked too:
  // its signature, and that every chain still holds the head it recorded.
  absl::StatusOr<rollertrace::v1::VerifyReport> Verify(std::string_view device_id,
                                                       std::string_view trusted_public_key = {}) const;
  // Signs the heads of every device's chain and stores the checkpoint.
  absl::Status WriteCheckpoint(const class Signer& signer, int64_t now_unix_ms);

  // The compliance report of [from, to), from the time indexes.
  absl::StatusOr<rollertrace::v1::PeriodReport> Report(int64_t from_unix_ms, int64_t to_unix_ms,
                                                       int64_t now_unix_ms) const;
  // Archives. The devices to export: `device_ids` with the sterilisers their
  // cycles came from, or with no ids, the devices registered before `to` and
  // registered or sending in [from, to).
  absl::StatusOr<std::vector<std::string>> SelectForExport(const std::vector<std::string>& device_ids,
                                                           int64_t from_unix_ms, int64_t to_unix_ms) const;
  // Every stored pair of these devices, read from one snapshot, handed to
  // `sink` device by device (its device record last).
  absl::Status ExportDevices(const std::vector<std::string>& device_ids,
                             const std::function<absl::Status(const rollertrace::v1::ArchiveRecord&)>& sink) const;
  // Checks a whole archive, then writes its records as they were, and the
  // indexes derived from them, in one atomic write. Refused, with nothing
  // written, when any device is already here, any record belongs to a device
  // the header does not name, does not parse, names another device, or a
  // named device has no device record.
  absl::Status Import(const std::vector<std::string>& device_ids,
                      const std::vector<rollertrace::v1::ArchiveRecord>& records);
  // A RocksDB checkpoint of the whole store in `directory` (which must not exist).
  absl::StatusOr<rollertrace::v1::BackupResult> Backup(const std::string& directory);

  // Cycles whose biological indicator is still pending (or not recorded).
  absl::StatusOr<uint64_t> CountPendingBiologicalIndicators() const;
  // Sessions of one device, in order.
  absl::StatusOr<std::vector<rollertrace::v1::SessionRecord>> Sessions(std::string_view device_id) const;

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
  struct Touched {
    rollertrace::v1::DeviceRecord record;
    std::vector<uint64_t> committed;
    std::vector<rollertrace::v1::Gap> closed_gaps;
    // Session records written in this batch, by the sequence of their start.
    std::map<uint64_t, rollertrace::v1::SessionRecord> sessions;
    // Cycle records written in this batch, by cycle number (sterilisers).
    std::map<uint64_t, rollertrace::v1::CycleRecord> cycles;
  };
  using TouchedMap = std::map<std::string, Touched>;
  // Applies DOMAIN.md to one new event of `self` (before its counters move).
  // May touch other devices (the rollers of a cycle's load).
  absl::Status ApplyDomain(const rollertrace::v1::Event& event, int64_t now, Touched& self, TouchedMap& touched,
                           rocksdb::WriteBatch& wb, AppendResult* result);
  // Appends a device log entry (registration, lock, unlock, retirement) to wb,
  // chained into `device`'s records. REQUIRES: write_mu_ held.
  void Log(rocksdb::WriteBatch& wb, rollertrace::v1::DeviceRecord* device, int64_t now, const char* kind,
           const std::string& reason, const std::string& by);
  // Writes a record ingestd owns (session, violation, decision, log entry,
  // cycle, recall, closed gap) and links it into `owner`'s record chain; the
  // owner's record must be staged in the same batch afterwards.
  void PutRecord(rocksdb::WriteBatch& wb, rollertrace::v1::DeviceRecord* owner, rocksdb::ColumnFamilyHandle* cf,
                 const std::string& key, const std::string& value, int64_t now);
  void LinkRecord(rocksdb::WriteBatch& wb, rollertrace::v1::DeviceRecord* owner, const std::string& kind,
                  const std::string& key, std::string content_hash, int64_t now);
  // Stages a device record in wb; a changed definition (identity, lifecycle,
  // retirement) is linked into its record chain first. REQUIRES: write_mu_
  // held, write_cache_ still holding the record as it was before this batch.
  void StageDevice(rocksdb::WriteBatch& wb, rollertrace::v1::DeviceRecord& record, int64_t now);
  // The column family called `name`; nullptr when there is none.
  rocksdb::ColumnFamilyHandle* Family(std::string_view name) const;
  // Recomputes one device's record chain; true when intact.
  bool VerifyRecords(const rollertrace::v1::DeviceRecord& record, const rollertrace::v1::ChainHead* signed_head,
                     std::map<std::string, std::string>* chained_keys, rollertrace::v1::VerifyReport* report) const;
  // The indexes of a session, a violation (stored under violation_key) and a
  // cycle: written beside them on ingestion, rebuilt from them on import.
  void IndexSession(rocksdb::WriteBatch& wb, const rollertrace::v1::SessionRecord& session);
  void IndexViolation(rocksdb::WriteBatch& wb, const rollertrace::v1::Violation& violation,
                      const std::string& violation_key);
  void IndexCycle(rocksdb::WriteBatch& wb, const rollertrace::v1::CycleRecord& cycle);
  // The record of `device_id` in this write, loaded on first use; nullptr
  // when the id is not registered. REQUIRES: write_mu_ held.
  absl::StatusOr<Touched*> Touch(TouchedMap& touched, const std::string& device_id);
  // Applies a biological-indicator report (the steriliser's or the lab's) to
  // `cycle`: records it, recomputes the result that counts, updates the load's
  // rollers and, when the report is a FAIL and no recall exists, recalls.
  // `pending`: the steriliser's cycles written in this batch, not yet on disk
  // (may be null).
  using PendingCycles = std::map<uint64_t, rollertrace::v1::CycleRecord>;
  absl::Status ApplyIndicator(rollertrace::v1::CycleRecord* cycle, const rollertrace::v1::IndicatorReport& report,
                              int64_t now, rocksdb::WriteBatch& wb, TouchedMap& touched,
                              BiologicalIndicatorOutcome* outcome, const PendingCycles* pending = nullptr);
  absl::Status RecallFrom(const rollertrace::v1::CycleRecord& failed, int64_t now, rocksdb::WriteBatch& wb,
                          TouchedMap& touched, BiologicalIndicatorOutcome* outcome,
                          const PendingCycles* pending = nullptr);
  void StoreDecision(rocksdb::WriteBatch& wb, rollertrace::v1::DeviceRecord* owner, const RecordedDecision& d,
                     int64_t now);
  // Stores a finding in `owner`'s records (chained) and lists it in result.
  void RecordFinding(rocksdb::WriteBatch& wb, rollertrace::v1::DeviceRecord* owner, rollertrace::v1::Finding finding,
                     int64_t now, AppendResult* result);
  // The cycle a session starting at `start` relies on: the roller's latest
  // cycle that ended before it, and the latest passing one. Replaces the
  // facts' last cycle when that one ends after `start`.
  absl::Status CycleBefore(const std::string& roller_id, int64_t start, rollertrace::v1::RollerUse* use) const;
  absl::StatusOr<bool> LoadDevice(std::string_view device_id, rollertrace::v1::DeviceRecord* record) const;
  // REQUIRES: write_mu_ held. The writers' view of device records, kept in
  // memory; updated only after the write that changes a record succeeded.
  absl::StatusOr<bool> LoadDeviceForWrite(const std::string& device_id, rollertrace::v1::DeviceRecord* record);

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // owned; destroyed before db_
  rocksdb::ColumnFamilyHandle* events_;
  rocksdb::ColumnFamilyHandle* devices_;
  rocksdb::ColumnFamilyHandle* gaps_;
  rocksdb::ColumnFamilyHandle* cycles_;
  rocksdb::ColumnFamilyHandle* sessions_;
  rocksdb::ColumnFamilyHandle* cycle_sessions_;
  rocksdb::ColumnFamilyHandle* violations_;
  rocksdb::ColumnFamilyHandle* decisions_;
  rocksdb::ColumnFamilyHandle* recalls_;
  rocksdb::ColumnFamilyHandle* patient_sessions_;
  rocksdb::ColumnFamilyHandle* roller_cycles_;
  rocksdb::ColumnFamilyHandle* device_violations_;
  rocksdb::ColumnFamilyHandle* device_log_;
  rocksdb::ColumnFamilyHandle* checkpoints_;
  rocksdb::ColumnFamilyHandle* ledger_;
  rocksdb::ColumnFamilyHandle* sessions_by_time_;  // TimeKey(start, roller, sequence)
  rocksdb::ColumnFamilyHandle* cycles_by_time_;    // TimeKey(end, steriliser, cycle number)
  rocksdb::ColumnFamilyHandle* findings_;          // DeviceSequenceKey(device, sequence) + kind
  StoreOptions options_;
  mutable std::atomic<uint64_t> decision_counter_{0};
  std::mutex write_mu_;  // serialises read-modify-write of device records
  std::map<std::string, rollertrace::v1::DeviceRecord> write_cache_;  // guarded by write_mu_
};

}  // namespace rollertrace::store
