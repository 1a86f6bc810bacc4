// The store's column families: one enum, their RocksDB names, and the record
// kind each stands for in a device's record chain (LedgerEntry.kind). A name
// written into a chain is part of the record: renaming a family must keep its
// kind, or every chain that names it breaks. tests/unit/store/schema_test.cc
// pins the table.
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace rollertrace::store {

enum class Family {
  kDefault,
  // Records ingestd writes, each linked into its owner's record chain
  // (except events, chained in themselves, and checkpoints).
  kEvents,
  kDevices,
  kGaps,
  kCycles,
  kSessions,
  kViolations,
  kDecisions,
  kRecalls,
  kDeviceLog,
  kFindings,
  kLedger,
  kCheckpoints,
  // Derived indexes: rebuilt from the records, never chained.
  kCycleSessions,
  kPatientSessions,
  kRollerCycles,
  kDeviceViolations,
  kSessionsByTime,
  kCyclesByTime,
  // The store's own bookkeeping, the device commands not yet published
  // (the outbox) and its command log.
  kMeta,
  kOutbox,
  kCommands,
};

inline constexpr size_t kFamilyCount = static_cast<size_t>(Family::kCommands) + 1;

struct FamilyInfo {
  Family family;
  std::string_view name;         // the RocksDB column family
  std::string_view record_kind;  // its name in LedgerEntry.kind and ArchiveRecord.kind; empty: never named there
  bool archived;                 // carried by an archive (a device's own records)
  // Read back by the applier during a write (write_txn.h): only these
  // families' writes go through the batch's index, which costs an
  // assertion-checked skip-list insert a key in Debian's RocksDB.
  bool read_in_write;
};

// Every family, in enum order.
const std::array<FamilyInfo, kFamilyCount>& Families();
const FamilyInfo& Info(Family family);
// The family whose record kind is `kind`; nullopt for none.
std::optional<Family> FamilyOfKind(std::string_view kind);
inline std::string_view KindOf(Family family) { return Info(family).record_kind; }

}  // namespace rollertrace::store
