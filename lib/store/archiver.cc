#include "store/archiver.h"

#include <rocksdb/db.h>
#include <rocksdb/utilities/checkpoint.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>

#include "codec/codec.h"
#include "codec/limits.h"
#include "store/keys.h"
#include "util/cat.h"

namespace rollertrace::store {
namespace {

template <typename Message>
bool Parse(const std::string& value, Message* m) {
  return m->ParseFromString(value);
}

// Checks one archive record (CheckArchive); `owner` gets the device its key names.
absl::StatusOr<CheckedRecord> CheckRecord(const rollertrace::v1::ArchiveRecord& r, std::string* owner_out) {
  CheckedRecord out{};
  const std::optional<Family> family = FamilyOfKind(r.kind());
  if (!family || !Info(*family).archived) return absl::InvalidArgumentError(util::Cat("unknown kind '", r.kind(), "'"));
  out.family = *family;
  std::optional<std::string> owner;
  if (*family == Family::kDevices) {
    owner = r.key();
  } else if (*family == Family::kViolations) {
    if (auto parts = DecodeTimeKey(r.key())) owner = parts->device_id;
  } else {
    owner = KeyOwner(r.key());
  }
  if (!owner || !codec::ValidateDeviceId(*owner).ok()) return absl::InvalidArgumentError("its key names no device");
  std::string named;  // the device the content names
  bool parsed = false;
  switch (*family) {
    case Family::kDevices: {
      rollertrace::v1::DeviceRecord d;
      parsed = Parse(r.value(), &d);
      named = d.device().device_id();
      break;
    }
    case Family::kEvents: {
      rollertrace::v1::StoredEvent e;
      parsed = Parse(r.value(), &e);
      auto k = DecodeDeviceSequenceKey(r.key());
      named = e.event().device_id();
      if (parsed && (!k || k->sequence != e.event().sequence())) return absl::InvalidArgumentError("key and sequence differ");
      break;
    }
    case Family::kLedger: {
      rollertrace::v1::LedgerEntry l;
      parsed = Parse(r.value(), &l);
      auto k = DecodeDeviceSequenceKey(r.key());
      named = *owner;
      if (parsed && (!k || k->sequence != l.index())) return absl::InvalidArgumentError("key and chain index differ");
      break;
    }
    case Family::kSessions:
      parsed = Parse(r.value(), &out.session);
      named = out.session.device_id();
      break;
    case Family::kViolations:
      parsed = Parse(r.value(), &out.violation);
      named = out.violation.device_id();
      break;
    case Family::kDecisions: {
      rollertrace::v1::Decision d;
      parsed = Parse(r.value(), &d);
      named = d.device_id();
      break;
    }
    case Family::kDeviceLog: {
      rollertrace::v1::DeviceLogEntry l;
      parsed = Parse(r.value(), &l);
      named = l.device_id();
      break;
    }
    case Family::kCycles:
      parsed = Parse(r.value(), &out.cycle);
      named = out.cycle.cycle().steriliser_id();
      break;
    case Family::kRecalls: {
      rollertrace::v1::RecallReport rr;
      parsed = Parse(r.value(), &rr);
      named = rr.steriliser_id();
      break;
    }
    case Family::kGaps: {
      rollertrace::v1::Gap g;
      parsed = Parse(r.value(), &g);
      named = g.device_id();
      break;
    }
    case Family::kFindings: {
      rollertrace::v1::Finding f;
      parsed = Parse(r.value(), &f);
      named = f.device_id();
      break;
    }
    default:
      break;
  }
  if (!parsed) return absl::InvalidArgumentError("its value does not parse");
  if (named != *owner) {
    return absl::InvalidArgumentError(
        util::Cat("its key belongs to device ", *owner, " but its content names '", named, "'"));
  }
  *owner_out = *owner;
  return out;
}

}  // namespace

absl::StatusOr<std::vector<CheckedRecord>> CheckArchive(
    const std::vector<std::string>& device_ids,
    const google::protobuf::RepeatedPtrField<rollertrace::v1::ArchiveRecord>& records) {
  const std::set<std::string> named(device_ids.begin(), device_ids.end());
  std::set<std::string> defined;
  std::vector<CheckedRecord> out;
  out.reserve(static_cast<size_t>(records.size()));
  for (int i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    std::string owner;
    absl::StatusOr<CheckedRecord> checked = CheckRecord(r, &owner);
    if (!checked.ok()) {
      return absl::InvalidArgumentError(util::Cat("archive record ", i + 1, " (", r.kind(), "): ",
                                                  checked.status().message(), "; nothing was imported"));
    }
    if (!named.count(owner)) {
      return absl::InvalidArgumentError(util::Cat("archive record ", i + 1, " (", r.kind(), ") belongs to device ",
                                                  owner, ", which the archive's header does not list; nothing was imported"));
    }
    if (checked->family == Family::kDevices) defined.insert(owner);
    checked->index = static_cast<size_t>(i);
    out.push_back(std::move(*checked));
  }
  for (const std::string& id : named) {
    if (!defined.count(id)) {
      return absl::InvalidArgumentError(util::Cat(
          "the archive lists device ", id, " but holds no device record for it (cut short?); nothing was imported"));
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> Archiver::SelectForExport(const std::vector<std::string>& device_ids,
                                                                   int64_t from, int64_t to) const {
  SnapshotView view(db_);
  std::set<std::string> chosen;
  if (device_ids.empty()) {
    absl::Status s = view.ScanRecords<rollertrace::v1::DeviceRecord>(
        Family::kDevices, {}, [&](std::string_view, rollertrace::v1::DeviceRecord& d) -> absl::StatusOr<bool> {
          const int64_t registered = d.device().registered_unix_ms();
          if (registered >= from && registered < to) chosen.insert(d.device().device_id());
          return true;
        });
    if (!s.ok()) return s;
    // What happened in the period, by its own time: sessions that started, cycles that ended.
    auto in_period = [&](Family index, bool sessions) {
      return view.Scan(
          index, {},
          [&](std::string_view key, std::string_view) -> absl::StatusOr<bool> {
            auto k = DecodeTimeKey(key);
            if (!k) return ReadView::Corrupt(index, key);
            if (k->unix_ms >= to) return false;
            chosen.insert(k->device_id);
            if (sessions) {
              rollertrace::v1::SessionRecord session;
              absl::StatusOr<bool> found =
                  view.Read(Family::kSessions, DeviceSequenceKey(k->device_id, k->sequence), &session);
              if (!found.ok()) return found.status();
              if (*found && !session.cycle().steriliser_id().empty()) chosen.insert(session.cycle().steriliser_id());
            }
            return true;
          },
          TimeKeyStart(from));
    };
    if (absl::Status p = in_period(Family::kSessionsByTime, true); !p.ok()) return p;
    if (absl::Status p = in_period(Family::kCyclesByTime, false); !p.ok()) return p;
    return std::vector<std::string>(chosen.begin(), chosen.end());
  }
  for (const std::string& id : device_ids) {
    std::string record;
    absl::StatusOr<bool> found = view.Get(Family::kDevices, id, &record);
    if (!found.ok()) return found.status();
    if (!*found) return absl::NotFoundError(util::Cat("device ", id, " is not registered"));
    chosen.insert(id);
    // A roller's cycles come with it: the sterilisers it relied on.
    absl::Status s = view.Scan(Family::kRollerCycles, DevicePrefix(id),
                               [&](std::string_view key, std::string_view) -> absl::StatusOr<bool> {
                                 if (auto k = DecodeRollerCycleKey(key, id)) chosen.insert(k->steriliser_id);
                                 return true;
                               });
    if (!s.ok()) return s;
  }
  return std::vector<std::string>(chosen.begin(), chosen.end());
}

absl::Status Archiver::ExportDevices(
    const std::vector<std::string>& chosen,
    const std::function<absl::Status(const rollertrace::v1::ArchiveRecord&)>& sink) const {
  // One snapshot for the whole archive: it is consistent while ingestion goes on.
  SnapshotView view(db_);
  rollertrace::v1::ArchiveRecord record;
  auto emit = [&](Family family, std::string_view key, std::string_view value) {
    record.set_kind(std::string(KindOf(family)));
    record.set_key(std::string(key));
    record.set_value(std::string(value));
    return sink(record);
  };
  for (const std::string& id : chosen) {
    const std::string prefix = DevicePrefix(id);
    for (Family family : {Family::kEvents, Family::kLedger}) {
      absl::Status s = view.Scan(family, prefix, [&](std::string_view key, std::string_view value) -> absl::StatusOr<bool> {
        if (absl::Status e = emit(family, key, value); !e.ok()) return e;
        return true;
      });
      if (!s.ok()) return s;
    }
    // Every record the device's record chain vouches for, once each.
    std::set<std::pair<std::string, std::string>> owned;  // (kind, key), in that order
    absl::Status s = view.ScanRecords<rollertrace::v1::LedgerEntry>(
        Family::kLedger, prefix, [&](std::string_view, rollertrace::v1::LedgerEntry& entry) -> absl::StatusOr<bool> {
          std::optional<Family> family = FamilyOfKind(entry.kind());
          if (family && *family != Family::kDevices && Info(*family).archived) owned.emplace(entry.kind(), entry.key());
          return true;
        });
    if (!s.ok()) return s;
    for (const auto& [kind, key] : owned) {
      const Family family = *FamilyOfKind(kind);
      std::string value;
      absl::StatusOr<bool> found = view.Get(family, key, &value);
      if (!found.ok()) return found.status();
      if (!*found) continue;  // verify names it; the archive holds what is there
      if (absl::Status e = emit(family, key, value); !e.ok()) return e;
    }
    std::string device;
    absl::StatusOr<bool> found = view.Get(Family::kDevices, id, &device);
    if (!found.ok()) return found.status();
    if (!*found) return absl::NotFoundError(util::Cat("device ", id, " is not registered"));
    if (absl::Status e = emit(Family::kDevices, id, device); !e.ok()) return e;
  }
  return absl::OkStatus();
}

absl::StatusOr<rollertrace::v1::BackupResult> Archiver::Backup(const std::string& requested,
                                                              const std::string& root) const {
  if (requested.empty()) return absl::InvalidArgumentError("a backup needs a directory");
  if (requested.size() > codec::Limits::kPath) {
    return absl::InvalidArgumentError(
        util::Cat("a backup directory is at most ", codec::Limits::kPath, " bytes, not ", requested.size()));
  }
  if (std::any_of(requested.begin(), requested.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
    // A NUL would cut the path short where the file system reads it.
    return absl::InvalidArgumentError("a backup directory's name has a control character (NUL, newline, ...)");
  }
  for (const auto& part : std::filesystem::path(requested)) {
    // RocksDB writes the checkpoint as <name>.tmp first; file systems take 255 bytes a name.
    if (part.native().size() > codec::Limits::kPathPart) {
      return absl::InvalidArgumentError(util::Cat("a backup directory's path has a part of ", part.native().size(),
                                                  " bytes; at most ", codec::Limits::kPathPart, " a part"));
    }
  }
  if (root.empty()) {
    return absl::FailedPreconditionError("backups are off: start ingestd with --backup-root DIR (backups go under it)");
  }
  std::error_code ec;
  const std::filesystem::path base = std::filesystem::weakly_canonical(std::filesystem::absolute(root), ec);
  std::filesystem::path target = std::filesystem::path(requested).is_absolute()
                                     ? std::filesystem::path(requested)
                                     : base / requested;
  target = std::filesystem::weakly_canonical(target, ec);  // resolves "..", and symlinks that exist
  const auto [b, t] = std::mismatch(base.begin(), base.end(), target.begin(), target.end());
  if (ec || b != base.end() || target == base) {
    return absl::PermissionDeniedError(util::Cat("a backup goes under ", base.string(), " (ingestd --backup-root); ",
                                                 requested, " is not there"));
  }
  const std::string directory = target.string();
  if (std::filesystem::exists(directory, ec)) {
    return absl::AlreadyExistsError(util::Cat(directory, " exists: a backup goes into a new directory"));
  }
  const auto parent = std::filesystem::absolute(directory).parent_path();
  std::filesystem::create_directories(parent, ec);
  if (ec) return absl::FailedPreconditionError(util::Cat("cannot create ", parent.string(), ": ", ec.message()));
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(db_.raw(), &raw);
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
