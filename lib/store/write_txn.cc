#include "store/write_txn.h"

#include <rocksdb/db.h>
#include <rocksdb/utilities/write_batch_with_index.h>

#include "store/chain.h"
#include "store/keys.h"
#include "util/cat.h"

namespace rollertrace::store {

WriteTxn::WriteTxn(const Db& db, DeviceCache* cache, std::unique_ptr<rocksdb::WriteBatchWithIndex>* spare)
    : db_(db), cache_(cache), spare_(spare) {
  if (spare_ != nullptr && *spare_ != nullptr) {
    batch_ = std::move(*spare_);
  } else {
    batch_ = std::make_unique<rocksdb::WriteBatchWithIndex>(rocksdb::BytewiseComparator(), 0, /*overwrite_key=*/true);
  }
}

WriteTxn::~WriteTxn() {
  if (spare_ == nullptr || batch_->GetWriteBatch()->Data().capacity() > kSpareBytes) return;
  batch_->Clear();  // the write batch keeps its buffer; the index starts anew
  *spare_ = std::move(batch_);
}

absl::StatusOr<bool> WriteTxn::Get(Family family, std::string_view key, std::string* value) const {
  if (!Info(family).read_in_write) {
    return absl::InternalError(util::Cat(Info(family).name, " are not read back during a write"));
  }
  rocksdb::Status s = batch_->GetFromBatchAndDB(db_.raw(), rocksdb::ReadOptions(), db_.handle(family),
                                                rocksdb::Slice(key.data(), key.size()), value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return absl::InternalError(util::Cat("read ", Info(family).name, ": ", s.ToString()));
  return true;
}

std::unique_ptr<rocksdb::Iterator> WriteTxn::Iterate(Family family) const {
  if (!Info(family).read_in_write) {
    // Not indexed (Put): an iterator over them would miss this write's.
    return std::unique_ptr<rocksdb::Iterator>(rocksdb::NewErrorIterator(
        rocksdb::Status::NotSupported(util::Cat(Info(family).name, " are not read back during a write"))));
  }
  rocksdb::ColumnFamilyHandle* h = db_.handle(family);
  return std::unique_ptr<rocksdb::Iterator>(
      batch_->NewIteratorWithBase(h, db_.raw()->NewIterator(rocksdb::ReadOptions(), h)));
}

void WriteTxn::Put(Family family, std::string_view key, std::string_view value) {
  if (family == Family::kDevices) written_around_.emplace_back(key);
  const rocksdb::Slice k(key.data(), key.size());
  const rocksdb::Slice v(value.data(), value.size());
  if (family == Family::kCommands) {
    log_.Put(db_.handle(family), k, v);  // not read back during a write (schema.cc)
  } else if (Info(family).read_in_write) {
    batch_->Put(db_.handle(family), k, v);
  } else {
    // Into the batch itself, around the index (appending keeps the offsets
    // the index holds); Get and Iterate refuse the family.
    batch_->GetWriteBatch()->Put(db_.handle(family), k, v);
  }
}

void WriteTxn::Delete(Family family, std::string_view key) {
  const rocksdb::Slice k(key.data(), key.size());
  if (Info(family).read_in_write) {
    batch_->Delete(db_.handle(family), k);
  } else {
    batch_->GetWriteBatch()->Delete(db_.handle(family), k);
  }
}

absl::StatusOr<std::optional<std::string>> WriteTxn::StoredEventBytes(const rollertrace::v1::Event& event,
                                                                        const std::string& key) const {
  for (; pending_indexed_ < pending_events_.size(); ++pending_indexed_) {
    pending_index_.insert(pending_events_[pending_indexed_]);
  }
  if (auto it = pending_index_.find({event.device_id(), event.sequence()}); it != pending_index_.end()) {
    return it->second->SerializeAsString();
  }
  std::string value;
  rocksdb::Status s = db_.raw()->Get(rocksdb::ReadOptions(), db_.handle(Family::kEvents), key, &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return absl::InternalError(util::Cat("read events: ", s.ToString()));
  rollertrace::v1::StoredEvent stored;
  if (!stored.ParseFromString(value)) return Corrupt(Family::kEvents, key);
  return stored.event().SerializeAsString();
}

void WriteTxn::PutEvent(std::string_view key, std::string_view value, const rollertrace::v1::Event* event) {
  pending_events_.emplace_back(EventRef(event->device_id(), event->sequence()), event);
  Put(Family::kEvents, key, value);
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
    loaded.existed = true;
    const auto& d = loaded.record.device();
    loaded.lifecycle = d.lifecycle();
    loaded.retired_unix_ms = d.retired_unix_ms();
    loaded.retired_reason = d.retired_reason();
    touched_.push_back(d.device_id());
  }
  return loaded;
}

absl::StatusOr<bool> WriteTxn::HasDevice(const std::string& device_id) {
  if (devices_.count(device_id)) return true;
  if (cache_ != nullptr && cache_->count(device_id)) return true;
  std::string value;
  return Get(Family::kDevices, device_id, &value);
}

absl::StatusOr<uint64_t> WriteTxn::NextCommandIndex() {
  if (next_command_ == 0) {
    absl::StatusOr<uint64_t> next = ReadCounter(kMetaNextCommand, 1);
    if (!next.ok()) return next.status();
    next_command_ = *next;
  }
  return next_command_;
}

void WriteTxn::AdvanceCommandIndex() {
  ++next_command_;
  command_index_moved_ = true;
}

absl::StatusOr<rollertrace::v1::DeviceRecord*> WriteTxn::Device(const std::string& device_id) {
  if (auto it = devices_.find(device_id); it != devices_.end()) return &Touch(it->second).record;
  Loaded loaded;
  if (auto cached = cache_ != nullptr ? cache_->find(device_id) : DeviceCache::iterator{};
      cache_ != nullptr && cached != cache_->end()) {
    loaded.record = cached->second;
  } else {
    absl::StatusOr<bool> found = Read(Family::kDevices, device_id, &loaded.record);
    if (!found.ok()) return found.status();
    if (!*found) return nullptr;
  }
  return &Touch(devices_.emplace(device_id, std::move(loaded)).first->second).record;
}

rollertrace::v1::DeviceRecord* WriteTxn::AddDevice(rollertrace::v1::DeviceRecord record) {
  const std::string id = record.device().device_id();
  Loaded& loaded = devices_[id];
  loaded.record = std::move(record);
  loaded.touched = true;
  loaded.existed = false;
  touched_.push_back(id);
  return &loaded.record;
}

void WriteTxn::EndCommand(int64_t now) {
  for (const std::string& id : touched_) {
    Loaded& loaded = devices_.at(id);
    if (!loaded.touched) continue;
    loaded.touched = false;
    loaded.changed = true;
    const auto& d = loaded.record.device();
    if (!loaded.existed || d.lifecycle() != loaded.lifecycle || d.retired_unix_ms() != loaded.retired_unix_ms ||
        d.retired_reason() != loaded.retired_reason) {
      rollertrace::v1::LedgerEntry entry = NextLedgerEntry(loaded.record.mutable_state(), KindOf(Family::kDevices), id,
                                                           Sha256(d.SerializeAsString()), now);
      Put(Family::kLedger, DeviceSequenceKey(id, entry.index()), entry.SerializeAsString());
    }
  }
  touched_.clear();
}

void WriteTxn::ForgetCommand() {
  for (const std::string& id : touched_) {
    Loaded& loaded = devices_.at(id);
    if (!loaded.existed && loaded.touched) {
      devices_.erase(id);  // added by this command
      continue;
    }
    loaded.touched = false;
  }
  touched_.clear();
}

size_t WriteTxn::Count() const { return static_cast<size_t>(batch_->GetWriteBatch()->Count() + log_.Count()); }

absl::Status WriteTxn::Commit(std::string_view what, std::vector<std::string>* written) {
  for (auto& [id, loaded] : devices_) {
    if (loaded.changed) batch_->Put(db_.handle(Family::kDevices), id, loaded.record.SerializeAsString());
  }
  if (command_index_moved_) {
    Put(Family::kMeta, kMetaNextCommand, CounterValue(next_command_));
  }
  if (Count() == 0) return absl::OkStatus();
  // The commands first, through the synced WAL; then their effects into the
  // memtables only (the log brings them back after a crash). Without a logged
  // command (nothing writes so), the effects would need the WAL themselves.
  const bool logged = log_.Count() > 0;
  absl::Status s = logged ? db_.Write(&log_, what) : absl::OkStatus();
  if (s.ok()) {
    s = logged ? db_.WriteWithoutLog(batch_->GetWriteBatch(), what) : db_.Write(batch_->GetWriteBatch(), what);
  }
  if (!s.ok()) {
    if (cache_ != nullptr) cache_->clear();  // what is on disk is not known for sure now
    return s;
  }
  if (written != nullptr) {
    for (const auto& [id, loaded] : devices_) {
      if (loaded.changed) written->push_back(id);
    }
    written->insert(written->end(), written_around_.begin(), written_around_.end());
  }
  if (cache_ == nullptr) return absl::OkStatus();
  for (auto& [id, loaded] : devices_) (*cache_)[id] = std::move(loaded.record);
  for (const std::string& id : written_around_) cache_->erase(id);
  devices_.clear();
  return absl::OkStatus();
}

}  // namespace rollertrace::store
