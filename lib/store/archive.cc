// EventStore archives (export and import of whole devices) and online
// backups (RocksDB checkpoints).
#include <rocksdb/db.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include <filesystem>
#include <set>

#include "store/event_store.h"
#include "store/keys.h"
#include "util/cat.h"

namespace rollertrace::store {
namespace {

// What an archive may hold: a device's own column families. Indexes are
// rebuilt on import; checkpoints belong to the ingestd that signed them.
constexpr const char* kArchivedKinds[] = {"devices",    "events",    "ledger", "sessions", "violations",
                                          "decisions", "device_log", "cycles", "recalls",  "gaps"};

bool Archived(std::string_view kind) {
  for (const char* k : kArchivedKinds) {
    if (kind == k) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> EventStore::SelectForExport(const std::vector<std::string>& device_ids,
                                                                     int64_t from, int64_t to) const {
  std::set<std::string> chosen;
  if (device_ids.empty()) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), devices_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      rollertrace::v1::DeviceRecord d;
      if (!d.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError(util::Cat("device record of ", it->key().ToString(), " is corrupt"));
      }
      const int64_t registered = d.device().registered_unix_ms();
      if (registered < to && (registered >= from || d.state().last_receive_unix_ms() >= from)) {
        chosen.insert(d.device().device_id());
      }
    }
    return std::vector<std::string>(chosen.begin(), chosen.end());
  }
  for (const std::string& id : device_ids) {
    rollertrace::v1::DeviceRecord d;
    absl::StatusOr<bool> found = LoadDevice(id, &d);
    if (!found.ok()) return found.status();
    if (!*found) return absl::NotFoundError(util::Cat("device ", id, " is not registered"));
    chosen.insert(id);
    // A roller's cycles come with it: the sterilisers it relied on.
    const std::string prefix = DevicePrefix(id);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), roller_cycles_));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      auto cycle =
          DecodeDeviceSequenceKey(std::string_view(it->key().data(), it->key().size()).substr(prefix.size() + 8));
      if (cycle) chosen.insert(cycle->device_id);
    }
  }
  return std::vector<std::string>(chosen.begin(), chosen.end());
}

absl::Status EventStore::ExportDevices(
    const std::vector<std::string>& chosen,
    const std::function<absl::Status(const rollertrace::v1::ArchiveRecord&)>& sink) const {
  // One snapshot for the whole archive: it is consistent while ingestion goes on.
  std::shared_ptr<const rocksdb::Snapshot> snapshot(
      db_->GetSnapshot(), [db = db_.get()](const rocksdb::Snapshot* s) { db->ReleaseSnapshot(s); });
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot.get();

  rollertrace::v1::ArchiveRecord record;
  auto emit = [&](const std::string& kind, std::string_view key, std::string_view value) {
    record.set_kind(kind);
    record.set_key(std::string(key));
    record.set_value(std::string(value));
    return sink(record);
  };
  auto emit_range = [&](rocksdb::ColumnFamilyHandle* cf, const std::string& prefix) -> absl::Status {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      if (absl::Status s = emit(cf->GetName(), std::string_view(it->key().data(), it->key().size()),
                                std::string_view(it->value().data(), it->value().size()));
          !s.ok()) {
        return s;
      }
    }
    return it->status().ok() ? absl::OkStatus() : absl::InternalError(it->status().ToString());
  };
  for (const std::string& id : chosen) {
    const std::string prefix = DevicePrefix(id);
    if (absl::Status s = emit_range(events_, prefix); !s.ok()) return s;
    if (absl::Status s = emit_range(ledger_, prefix); !s.ok()) return s;
    // Every record the device's record chain vouches for, once each.
    std::set<std::pair<std::string, std::string>> owned;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, ledger_));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      rollertrace::v1::LedgerEntry entry;
      if (!entry.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError(util::Cat("a record-chain entry of ", id, " is corrupt"));
      }
      if (entry.kind() != "devices") owned.emplace(entry.kind(), entry.key());
    }
    for (const auto& [kind, key] : owned) {
      rocksdb::ColumnFamilyHandle* cf = Family(kind);
      if (cf == nullptr || !Archived(kind)) continue;
      std::string value;
      rocksdb::Status s = db_->Get(ro, cf, key, &value);
      if (s.IsNotFound()) continue;  // verify names it; the archive holds what is there
      if (!s.ok()) return absl::InternalError(s.ToString());
      if (absl::Status e = emit(kind, key, value); !e.ok()) return e;
    }
    std::string device;
    rocksdb::Status s = db_->Get(ro, devices_, id, &device);
    if (!s.ok()) return absl::InternalError(util::Cat("read device ", id, ": ", s.ToString()));
    if (absl::Status e = emit("devices", id, device); !e.ok()) return e;
  }
  return absl::OkStatus();
}

absl::Status EventStore::CheckImportable(const std::vector<std::string>& device_ids) {
  std::lock_guard<std::mutex> lock(write_mu_);
  for (const std::string& id : device_ids) {
    rollertrace::v1::DeviceRecord existing;
    absl::StatusOr<bool> found = LoadDevice(id, &existing);
    if (!found.ok()) return found.status();
    if (*found) {
      return absl::AlreadyExistsError(
          util::Cat("device ", id, " is already in this store: an archive is imported into a store without it"));
    }
  }
  return absl::OkStatus();
}

absl::Status EventStore::ImportRecords(const google::protobuf::RepeatedPtrField<rollertrace::v1::ArchiveRecord>& records) {
  std::lock_guard<std::mutex> lock(write_mu_);
  rocksdb::WriteBatch wb;
  for (const auto& r : records) {
    if (!Archived(r.kind())) {
      return absl::InvalidArgumentError(util::Cat("an archive record of unknown kind '", r.kind(), "'"));
    }
    rocksdb::ColumnFamilyHandle* cf = Family(r.kind());
    wb.Put(cf, r.key(), r.value());
    if (cf == sessions_) {
      rollertrace::v1::SessionRecord s;
      if (!s.ParseFromString(r.value())) return absl::InvalidArgumentError("an archived session does not parse");
      IndexSession(wb, s);
    } else if (cf == violations_) {
      rollertrace::v1::Violation v;
      if (!v.ParseFromString(r.value())) return absl::InvalidArgumentError("an archived violation does not parse");
      IndexViolation(wb, v, r.key());
    } else if (cf == cycles_) {
      rollertrace::v1::CycleRecord c;
      if (!c.ParseFromString(r.value())) return absl::InvalidArgumentError("an archived cycle does not parse");
      IndexCycle(wb, c);
    } else if (cf == devices_) {
      write_cache_.erase(r.key());
    }
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  rocksdb::Status s = db_->Write(wo, &wb);
  return s.ok() ? absl::OkStatus() : absl::InternalError(util::Cat("import: ", s.ToString()));
}

absl::StatusOr<rollertrace::v1::BackupResult> EventStore::Backup(const std::string& directory) {
  if (directory.empty()) return absl::InvalidArgumentError("a backup needs a directory");
  std::error_code ec;
  if (std::filesystem::exists(directory, ec)) {
    return absl::AlreadyExistsError(util::Cat(directory, " exists: a backup goes into a new directory"));
  }
  const auto parent = std::filesystem::absolute(directory).parent_path();
  std::filesystem::create_directories(parent, ec);
  if (ec) return absl::FailedPreconditionError(util::Cat("cannot create ", parent.string(), ": ", ec.message()));
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(db_.get(), &raw);
  if (!s.ok()) return absl::InternalError(util::Cat("backup: ", s.ToString()));
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  uint64_t sequence = 0;
  s = checkpoint->CreateCheckpoint(directory, /*log_size_for_flush=*/0, &sequence);
  if (!s.ok()) return absl::InternalError(util::Cat("backup into ", directory, ": ", s.ToString()));
  rollertrace::v1::BackupResult result;
  result.set_directory(std::filesystem::absolute(directory).string());
  result.set_sequence(sequence);
  for (const auto& f : std::filesystem::directory_iterator(directory, ec)) {
    if (!f.is_regular_file()) continue;
    result.set_files(result.files() + 1);
    result.set_bytes(result.bytes() + f.file_size());
  }
  return result;
}

}  // namespace rollertrace::store
