// Archives (export and import of whole devices) and online backups. Export
// reads one snapshot; an import is checked here and written by an import
// command (applier.h), so that it enters the command log like every write.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "rollertrace/v1/records.pb.h"
#include "rollertrace/v1/services.pb.h"
#include "store/db.h"

namespace rollertrace::store {

// ArchiveHeader.format of the archives this store writes and reads.
// /2 archives end with a trailer; /1 archives (no trailer) are refused.
inline constexpr char kArchiveFormat[] = "rollertrace-archive/2";

// An archive record once checked: its family, and what the indexes need.
struct CheckedRecord {
  size_t index;  // in the archive
  Family family;
  rollertrace::v1::SessionRecord session;
  rollertrace::v1::Violation violation;
  rollertrace::v1::CycleRecord cycle;
};

// Checks a whole archive: every record of a kind an archive may hold, its
// value parsing as that kind, its key and content naming the same device, a
// device the header lists; every listed device with its device record.
// InvalidArgument names the first record that fails ("nothing was imported").
absl::StatusOr<std::vector<CheckedRecord>> CheckArchive(
    const std::vector<std::string>& device_ids,
    const google::protobuf::RepeatedPtrField<rollertrace::v1::ArchiveRecord>& records);

inline constexpr char kSelectionByPeriod[] =
    "devices registered in the period, rollers with a session started in it, sterilisers with a cycle ended in it "
    "or relied on by those sessions (session and cycle times, as the report counts)";

class Archiver {
 public:
  explicit Archiver(const Db& db) : db_(db) {}

  // The devices to export: `device_ids` with the sterilisers their cycles
  // came from; or with no ids, by when things happened in [from, to): the
  // devices registered in it, the rollers with a session that started in it
  // (by the session's time, as the report counts it), the sterilisers with a
  // cycle that ended in it or that such a session relied on.
  // kSelectionByPeriod says so in words (the archive header carries it).
  absl::StatusOr<std::vector<std::string>> SelectForExport(const std::vector<std::string>& device_ids,
                                                           int64_t from_unix_ms, int64_t to_unix_ms) const;
  // Every stored pair of these devices, read from one snapshot, handed to
  // `sink` device by device (its device record last).
  absl::Status ExportDevices(const std::vector<std::string>& device_ids,
                             const std::function<absl::Status(const rollertrace::v1::ArchiveRecord&)>& sink) const;
  // A RocksDB checkpoint of the whole store in `directory` (which must not
  // exist), which must lie under `root` (a relative one is taken under it).
  // With no root, backups are refused.
  absl::StatusOr<rollertrace::v1::BackupResult> Backup(const std::string& directory, const std::string& root) const;

 private:
  const Db& db_;
};

}  // namespace rollertrace::store
