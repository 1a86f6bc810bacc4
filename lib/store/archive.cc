// EventStore archives (export and import of whole devices) and online
// backups (RocksDB checkpoints).
#include <rocksdb/db.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include <filesystem>
#include <optional>
#include <set>

#include "codec/codec.h"
#include "store/event_store.h"
#include "store/keys.h"
#include "util/cat.h"

namespace rollertrace::store {
namespace {

// What an archive may hold: a device's own column families. Indexes are
// rebuilt on import; checkpoints belong to the ingestd that signed them.
constexpr const char* kArchivedKinds[] = {"devices",    "events",    "ledger", "sessions", "violations",
                                          "decisions", "device_log", "cycles", "recalls",  "gaps", "findings"};

bool Archived(std::string_view kind) {
  for (const char* k : kArchivedKinds) {
    if (kind == k) return true;
  }
  return false;
}

// What an archived record says about itself, once checked.
struct ArchivedRecord {
  std::string device_id;  // the device it belongs to
  rollertrace::v1::SessionRecord session;
  rollertrace::v1::Violation violation;
  rollertrace::v1::CycleRecord cycle;
};

// The device a per-device key belongs to: its id before the first '\0'.
std::optional<std::string> KeyDevice(std::string_view key) {
  const size_t nul = key.find('\0');
  if (nul == std::string_view::npos || nul == 0 || key.size() < nul + 9) return std::nullopt;
  return std::string(key.substr(0, nul));
}

template <typename Message>
bool Parse(const std::string& value, Message* m) {
  return m->ParseFromString(value);
}

// Checks that an archive record is of a kind an archive may hold, that its
// value parses, and that its key and its content name the same device.
absl::StatusOr<ArchivedRecord> CheckArchivedRecord(const rollertrace::v1::ArchiveRecord& r) {
  ArchivedRecord out;
  const std::string& kind = r.kind();
  if (!Archived(kind)) return absl::InvalidArgumentError(util::Cat("unknown kind '", kind, "'"));
  std::optional<std::string> owner;
  if (kind == "devices") {
    owner = r.key();
  } else if (kind == "violations") {
    if (auto parts = DecodeTimeKey(r.key())) owner = parts->device_id;
  } else {
    owner = KeyDevice(r.key());
  }
  if (!owner || !codec::ValidateDeviceId(*owner).ok()) return absl::InvalidArgumentError("its key names no device");
  out.device_id = *owner;
  std::string named;  // the device the content names
  bool parsed = false;
  if (kind == "devices") {
    rollertrace::v1::DeviceRecord d;
    parsed = Parse(r.value(), &d);
    named = d.device().device_id();
  } else if (kind == "events") {
    rollertrace::v1::StoredEvent e;
    parsed = Parse(r.value(), &e);
    auto k = DecodeDeviceSequenceKey(r.key());
    named = e.event().device_id();
    if (parsed && (!k || k->sequence != e.event().sequence())) return absl::InvalidArgumentError("key and sequence differ");
  } else if (kind == "ledger") {
    rollertrace::v1::LedgerEntry l;
    parsed = Parse(r.value(), &l);
    auto k = DecodeDeviceSequenceKey(r.key());
    named = *owner;
    if (parsed && (!k || k->sequence != l.index())) return absl::InvalidArgumentError("key and chain index differ");
  } else if (kind == "sessions") {
    parsed = Parse(r.value(), &out.session);
    named = out.session.device_id();
  } else if (kind == "violations") {
    parsed = Parse(r.value(), &out.violation);
    named = out.violation.device_id();
  } else if (kind == "decisions") {
    rollertrace::v1::Decision d;
    parsed = Parse(r.value(), &d);
    named = d.device_id();
  } else if (kind == "device_log") {
    rollertrace::v1::DeviceLogEntry l;
    parsed = Parse(r.value(), &l);
    named = l.device_id();
  } else if (kind == "cycles") {
    parsed = Parse(r.value(), &out.cycle);
    named = out.cycle.cycle().steriliser_id();
  } else if (kind == "recalls") {
    rollertrace::v1::RecallReport rr;
    parsed = Parse(r.value(), &rr);
    named = rr.steriliser_id();
  } else if (kind == "gaps") {
    rollertrace::v1::Gap g;
    parsed = Parse(r.value(), &g);
    named = g.device_id();
  } else if (kind == "findings") {
    rollertrace::v1::Finding f;
    parsed = Parse(r.value(), &f);
    named = f.device_id();
  }
  if (!parsed) return absl::InvalidArgumentError("its value does not parse");
  if (named != *owner) {
    return absl::InvalidArgumentError(
        util::Cat("its key belongs to device ", *owner, " but its content names '", named, "'"));
  }
  return out;
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

absl::Status EventStore::Import(const std::vector<std::string>& device_ids,
                               const std::vector<rollertrace::v1::ArchiveRecord>& records) {
  const std::set<std::string> named(device_ids.begin(), device_ids.end());
  std::set<std::string> defined;
  rocksdb::WriteBatch wb;
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    absl::StatusOr<ArchivedRecord> checked = CheckArchivedRecord(r);
    if (!checked.ok()) {
      return absl::InvalidArgumentError(util::Cat("archive record ", i + 1, " (", r.kind(), "): ",
                                                  checked.status().message(), "; nothing was imported"));
    }
    if (!named.count(checked->device_id)) {
      return absl::InvalidArgumentError(util::Cat("archive record ", i + 1, " (", r.kind(), ") belongs to device ",
                                                  checked->device_id,
                                                  ", which the archive's header does not list; nothing was imported"));
    }
    rocksdb::ColumnFamilyHandle* cf = Family(r.kind());
    wb.Put(cf, r.key(), r.value());
    if (cf == sessions_) {
      IndexSession(wb, checked->session);
    } else if (cf == violations_) {
      IndexViolation(wb, checked->violation, r.key());
    } else if (cf == cycles_) {
      IndexCycle(wb, checked->cycle);
    } else if (cf == devices_) {
      defined.insert(checked->device_id);
    }
  }
  for (const std::string& id : named) {
    if (!defined.count(id)) {
      return absl::InvalidArgumentError(util::Cat(
          "the archive lists device ", id, " but holds no device record for it (cut short?); nothing was imported"));
    }
  }
  std::lock_guard<std::mutex> lock(write_mu_);
  for (const std::string& id : named) {
    rollertrace::v1::DeviceRecord existing;
    absl::StatusOr<bool> found = LoadDevice(id, &existing);
    if (!found.ok()) return found.status();
    if (*found) {
      return absl::AlreadyExistsError(
          util::Cat("device ", id, " is already in this store: an archive is imported into a store without it"));
    }
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  rocksdb::Status s = db_->Write(wo, &wb);
  if (!s.ok()) return absl::InternalError(util::Cat("import: ", s.ToString()));
  for (const std::string& id : named) write_cache_.erase(id);
  return absl::OkStatus();
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
