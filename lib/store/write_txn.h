// WriteTxn: one write of the store, built up by the applier and committed
// once: the commands it logs first, through the synced WAL, then their
// effects without it (docs/ARCHITECTURE.md, "The log is the WAL"). Reads of the families the applier reads while writing
// (schema.h, read_in_write) see what the write has put so far (a
// WriteBatchWithIndex over the DB), so nothing in the applier has to keep its
// own list of "written in this batch, not yet on disk"; reads of the others
// are refused.
//
// Device records are loaded once per write and staged by EndCommand, after
// each command: a changed definition (lifecycle, lock, retirement) is linked
// into the device's record chain when it differs from what the store held
// before the command. That decision reads only the store, never a cache.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <rocksdb/write_batch.h>

#include "rollertrace/v1/records.pb.h"
#include "store/db.h"

namespace rocksdb {
class WriteBatchWithIndex;
}

namespace rollertrace::store {

// A copy of committed device records, kept by the one writer to spare a read
// per device per write. It holds exactly what the store holds (updated after
// a commit, dropped for any device written around EndCommand), so it changes
// no byte written; the definition-link decision compares with the record as
// loaded, cached or not.
using DeviceCache = std::map<std::string, rollertrace::v1::DeviceRecord, std::less<>>;

class WriteTxn final : public ReadView {
 public:
  // `cache` (may be null) must be used by one txn at a time; so must `spare`
  // (may be null): a batch kept between writes, taken here and given back
  // emptied, with its buffer, by the destructor. A write then does not grow
  // its batch from empty (reallocations and fresh pages: 5 % of ingestd's
  // CPU in a burst), unless the last one left it larger than kSpareBytes.
  explicit WriteTxn(const Db& db, DeviceCache* cache = nullptr,
                    std::unique_ptr<rocksdb::WriteBatchWithIndex>* spare = nullptr);
  static constexpr size_t kSpareBytes = size_t{64} << 20;
  ~WriteTxn() override;
  WriteTxn(const WriteTxn&) = delete;
  WriteTxn& operator=(const WriteTxn&) = delete;

  absl::StatusOr<bool> Get(Family family, std::string_view key, std::string* value) const override;
  std::unique_ptr<rocksdb::Iterator> Iterate(Family family) const override;

  // Only a family read back during a write (FamilyInfo::read_in_write) is
  // put through the batch's index: the index is the cost of a write. Get and
  // Iterate refuse the others.
  void Put(Family family, std::string_view key, std::string_view value);
  void Delete(Family family, std::string_view key);
  // Events are not read back during a write either (a repeat is found from
  // the device's state; its stored bytes by StoredEventBytes).
  // `event` must outlive the txn (it is the command's own).
  void PutEvent(std::string_view key, std::string_view value, const rollertrace::v1::Event* event);
  // The bytes of the event stored for `event`'s device and sequence under
  // `key` (this write's or the store's); nullopt when there is none.
  absl::StatusOr<std::optional<std::string>> StoredEventBytes(const rollertrace::v1::Event& event,
                                                              const std::string& key) const;
  // Writes a record ingestd owns (session, violation, decision, log entry,
  // cycle, recall, closed gap, finding) and links it into `owner`'s record
  // chain. REQUIRES: owner from Device() or AddDevice() of this txn.
  void PutRecord(rollertrace::v1::DeviceRecord* owner, Family family, std::string_view key, std::string_view value,
                 int64_t now);
  // The record of `device_id` as this write sees it; nullptr when the id is
  // not registered. The pointer stays valid until Commit.
  absl::StatusOr<rollertrace::v1::DeviceRecord*> Device(const std::string& device_id);
  // A device new to the store (a registration): its definition is linked by EndCommand.
  rollertrace::v1::DeviceRecord* AddDevice(rollertrace::v1::DeviceRecord record);
  // Ends a command: each device it touched whose definition changed is
  // linked (above); the records themselves are written once, at Commit.
  void EndCommand(int64_t now);
  // Whether `device_id` is registered as this write sees it.
  absl::StatusOr<bool> HasDevice(const std::string& device_id);
  // The command log's next index as this write sees it, and its advance
  // (written once, at Commit).
  absl::StatusOr<uint64_t> NextCommandIndex();
  void AdvanceCommandIndex();
  // Drops the devices touched since the last EndCommand (the command was
  // refused before it wrote anything of its own).
  void ForgetCommand();

  size_t Count() const;
  // Writes the logged commands (family commands) through the write-ahead
  // log, synced when the store syncs, then everything else without it; then
  // brings the device cache up to date. On an error the log may hold
  // commands whose effects were not written: the caller applies them from
  // the log before its next write (EventStore::CatchUp). Once written, the
  // ids of the device records it wrote are appended to `written` (may be
  // null).
  absl::Status Commit(std::string_view what, std::vector<std::string>* written = nullptr);

 private:
  struct Loaded {
    rollertrace::v1::DeviceRecord record;
    // The definition before this command (after registration only these change).
    bool existed = false;
    rollertrace::v1::Lifecycle lifecycle = rollertrace::v1::LIFECYCLE_UNSPECIFIED;
    int64_t retired_unix_ms = 0;
    std::string retired_reason;
    bool touched = false;
    bool changed = false;  // to be written at Commit
  };
  Loaded& Touch(Loaded& loaded);

  const Db& db_;
  DeviceCache* cache_;
  std::vector<std::string> written_around_;  // device records Put directly (imports)
  // This write's events in the order written; the views point into the events.
  // Looked up only for a repeat of an event of the same write (rare), so the
  // index by (device id, sequence) is built on the first lookup, not per event.
  using EventRef = std::pair<std::string_view, uint64_t>;
  struct EventRefHash {
    size_t operator()(const EventRef& k) const {
      return std::hash<std::string_view>()(k.first) ^ (k.second * 0x9e3779b97f4a7c15ULL);
    }
  };
  std::vector<std::pair<EventRef, const rollertrace::v1::Event*>> pending_events_;
  mutable std::unordered_map<EventRef, const rollertrace::v1::Event*, EventRefHash> pending_index_;
  mutable size_t pending_indexed_ = 0;  // entries of pending_events_ in pending_index_
  std::unique_ptr<rocksdb::WriteBatchWithIndex> batch_;  // the effects
  std::unique_ptr<rocksdb::WriteBatchWithIndex>* spare_;
  rocksdb::WriteBatch log_;  // the commands
  std::map<std::string, Loaded> devices_;
  std::vector<std::string> touched_;  // in the order first touched by the command
  uint64_t next_command_ = 0;         // 0: not read yet
  bool command_index_moved_ = false;
};

}  // namespace rollertrace::store
