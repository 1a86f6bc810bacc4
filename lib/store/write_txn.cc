#include "store/write_txn.h"

#include <rocksdb/db.h>
#include <rocksdb/utilities/write_batch_with_index.h>

#include "store/chain.h"
#include "store/keys.h"
#include "util/cat.h"

namespace rollertrace::store {

WriteTxn::WriteTxn(const Db& db)
    : db_(db),
      batch_(std::make_unique<rocksdb::WriteBatchWithIndex>(rocksdb::BytewiseComparator(), 0,
                                                            /*overwrite_key=*/true)) {}

WriteTxn::~WriteTxn() = default;

absl::StatusOr<bool> WriteTxn::Get(Family family, std::string_view key, std::string* value) const {
  rocksdb::Status s = batch_->GetFromBatchAndDB(db_.raw(), rocksdb::ReadOptions(), db_.handle(family),
                                                rocksdb::Slice(key.data(), key.size()), value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return absl::InternalError(util::Cat("read ", Info(family).name, ": ", s.ToString()));
  return true;
}

std::unique_ptr<rocksdb::Iterator> WriteTxn::Iterate(Family family) const {
  rocksdb::ColumnFamilyHandle* h = db_.handle(family);
  return std::unique_ptr<rocksdb::Iterator>(
      batch_->NewIteratorWithBase(h, db_.raw()->NewIterator(rocksdb::ReadOptions(), h)));
}

void WriteTxn::Put(Family family, std::string_view key, std::string_view value) {
  batch_->Put(db_.handle(family), rocksdb::Slice(key.data(), key.size()), rocksdb::Slice(value.data(), value.size()));
}

void WriteTxn::PutRecord(rollertrace::v1::DeviceRecord* owner, Family family, std::string_view key,
                         std::string_view value, int64_t now) {
  Put(family, key, value);
  rollertrace::v1::LedgerEntry entry =
      NextLedgerEntry(owner->mutable_state(), KindOf(family), key, Sha256(value), now);
  Put(Family::kLedger, DeviceSequenceKey(owner->device().device_id(), entry.index()), entry.SerializeAsString());
}

WriteTxn::Loaded& WriteTxn::Touch(Loaded& loaded) {
  if (!loaded.touched) {
    loaded.touched = true;
    loaded.definition_before = loaded.record.device().SerializeAsString();
    touched_.push_back(loaded.record.device().device_id());
  }
  return loaded;
}

absl::StatusOr<rollertrace::v1::DeviceRecord*> WriteTxn::Device(const std::string& device_id) {
  if (auto it = devices_.find(device_id); it != devices_.end()) return &Touch(it->second).record;
  Loaded loaded;
  absl::StatusOr<bool> found = Read(Family::kDevices, device_id, &loaded.record);
  if (!found.ok()) return found.status();
  if (!*found) return nullptr;
  return &Touch(devices_.emplace(device_id, std::move(loaded)).first->second).record;
}

rollertrace::v1::DeviceRecord* WriteTxn::AddDevice(rollertrace::v1::DeviceRecord record) {
  const std::string id = record.device().device_id();
  Loaded& loaded = devices_[id];
  loaded.record = std::move(record);
  loaded.touched = true;
  loaded.definition_before.clear();
  touched_.push_back(id);
  return &loaded.record;
}

void WriteTxn::EndCommand(int64_t now) {
  for (const std::string& id : touched_) {
    Loaded& loaded = devices_.at(id);
    if (!loaded.touched) continue;
    loaded.touched = false;
    const std::string definition = loaded.record.device().SerializeAsString();
    if (definition != loaded.definition_before) {
      rollertrace::v1::LedgerEntry entry =
          NextLedgerEntry(loaded.record.mutable_state(), KindOf(Family::kDevices), id, Sha256(definition), now);
      Put(Family::kLedger, DeviceSequenceKey(id, entry.index()), entry.SerializeAsString());
    }
    Put(Family::kDevices, id, loaded.record.SerializeAsString());
  }
  touched_.clear();
}

void WriteTxn::ForgetCommand() {
  for (const std::string& id : touched_) {
    Loaded& loaded = devices_.at(id);
    if (loaded.definition_before.empty() && loaded.touched) {
      devices_.erase(id);  // added by this command
      continue;
    }
    loaded.touched = false;
  }
  touched_.clear();
}

size_t WriteTxn::Count() const { return static_cast<size_t>(batch_->GetWriteBatch()->Count()); }

absl::Status WriteTxn::Commit(std::string_view what) {
  if (Count() == 0) return absl::OkStatus();
  return db_.Write(batch_->GetWriteBatch(), what);
}

}  // namespace rollertrace::store
