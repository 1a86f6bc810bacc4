// WriteTxn: one atomic write of the store, built up by the applier and
// committed once. Reads see what the write has put so far (a
// WriteBatchWithIndex over the DB), so nothing in the applier has to keep its
// own list of "written in this batch, not yet on disk".
//
// Device records are loaded once per write and staged by EndCommand, after
// each command: a changed definition (lifecycle, lock, retirement) is linked
// into the device's record chain when it differs from what the store held
// before the command. That decision reads only the store, never a cache.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rollertrace/v1/records.pb.h"
#include "store/db.h"

namespace rocksdb {
class WriteBatchWithIndex;
}

namespace rollertrace::store {

class WriteTxn final : public ReadView {
 public:
  explicit WriteTxn(const Db& db);
  ~WriteTxn() override;
  WriteTxn(const WriteTxn&) = delete;
  WriteTxn& operator=(const WriteTxn&) = delete;

  absl::StatusOr<bool> Get(Family family, std::string_view key, std::string* value) const override;
  std::unique_ptr<rocksdb::Iterator> Iterate(Family family) const override;

  void Put(Family family, std::string_view key, std::string_view value);
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
  // Stages every device the command touched (above). Call once per command.
  void EndCommand(int64_t now);
  // Drops the devices touched since the last EndCommand (the command was
  // refused before it wrote anything of its own).
  void ForgetCommand();

  size_t Count() const;
  // Writes everything in one batch (synced when the store syncs).
  absl::Status Commit(std::string_view what);

 private:
  struct Loaded {
    rollertrace::v1::DeviceRecord record;
    std::string definition_before;  // serialised Device before this command; empty: a new device
    bool touched = false;
  };
  Loaded& Touch(Loaded& loaded);

  const Db& db_;
  std::unique_ptr<rocksdb::WriteBatchWithIndex> batch_;
  std::map<std::string, Loaded> devices_;
  std::vector<std::string> touched_;  // in the order first touched by the command
};

}  // namespace rollertrace::store
