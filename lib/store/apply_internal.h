// Inside the applier: the context every apply_*.cc function works in, and
// the functions they share. Not for use outside lib/store/apply*.cc.
#pragma once

#include <string>

#include "store/applier.h"
#include "store/keys.h"

namespace rollertrace::store::apply {

struct Context {
  WriteTxn& txn;
  const rules::Policy& policy;
  uint64_t policy_version;
  int64_t now;  // the command's judged_unix_ms
  CommandResult* result;
};

inline constexpr char kSourceSteriliser[] = "steriliser";
// Findings (device input refused or flagged, DOMAIN.md "Whose word counts").
inline constexpr char kFindingCycleTime[] = "CYCLE_TIME";
inline constexpr char kFindingCycleConflict[] = "CYCLE_CONFLICT";
inline constexpr char kFindingEventConflict[] = "EVENT_CONFLICT";
inline constexpr char kFindingClockAhead[] = "CLOCK_AHEAD";
inline constexpr char kSourceLab[] = "lab";

inline bool IndicatorKnown(rollertrace::v1::IndicatorResult r) {
  return r == rollertrace::v1::INDICATOR_PASS || r == rollertrace::v1::INDICATOR_FAIL;
}
inline bool Retired(const rollertrace::v1::DeviceRecord& r) {
  return r.device().lifecycle() == rollertrace::v1::LIFECYCLE_RETIRED;
}
inline bool Locked(const rollertrace::v1::DeviceRecord& r) {
  return r.device().lifecycle() == rollertrace::v1::LIFECYCLE_LOCKED;
}

rollertrace::v1::Command MakeCommand(const std::string& device, const char* command, std::string reason, int64_t now);
void Lock(rollertrace::v1::DeviceRecord* r, const std::string& reason, int64_t now);
// A device log entry (registered, locked, unlocked, retired), chained into
// `device`'s records; keyed by its record-chain index.
void Log(Context& c, rollertrace::v1::DeviceRecord* device, const char* kind, const std::string& reason,
         const std::string& by);

// Stores a finding in `owner`'s records (chained) and lists it in the result.
void RecordFinding(Context& c, rollertrace::v1::DeviceRecord* owner, rollertrace::v1::Finding finding);

// apply_ingest.cc
absl::Status Ingest(Context& c, const rollertrace::v1::EventBatch& batch);
// apply_domain.cc: DOMAIN.md on one new event of `self` (before its counters move).
absl::Status ApplyDomain(Context& c, const rollertrace::v1::Event& event, rollertrace::v1::DeviceRecord& self);
// apply_indicator.cc
absl::Status ApplyIndicator(Context& c, rollertrace::v1::CycleRecord* cycle,
                            const rollertrace::v1::IndicatorReport& report);
absl::Status RecallFrom(Context& c, const rollertrace::v1::CycleRecord& failed);
absl::Status LabIndicator(Context& c, const rollertrace::v1::BiologicalIndicatorRequest& request);
// apply_admin.cc
absl::Status Register(Context& c, const rollertrace::v1::RegisterCommand& command);
absl::Status Retire(Context& c, const rollertrace::v1::RetireCommand& command);
absl::Status Unlock(Context& c, const rollertrace::v1::UnlockCommand& command);
absl::Status StoreDecision(Context& c, const rollertrace::v1::RecordDecisionCommand& command);
absl::Status Import(Context& c, const rollertrace::v1::ImportCommand& command);
absl::Status StoreCheckpoint(Context& c, const rollertrace::v1::CheckpointCommand& command);

// indexes.cc: the indexes of a session, a violation (stored under
// violation_key) and a cycle, written beside them and rebuilt from them on import.
void IndexSession(WriteTxn& txn, const rollertrace::v1::SessionRecord& session);
void IndexViolation(WriteTxn& txn, const rollertrace::v1::Violation& violation, const std::string& violation_key);
void IndexCycle(WriteTxn& txn, const rollertrace::v1::CycleRecord& cycle);

}  // namespace rollertrace::store::apply
