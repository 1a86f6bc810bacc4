#include "store/schema.h"

namespace rollertrace::store {

const std::array<FamilyInfo, kFamilyCount>& Families() {
  static const std::array<FamilyInfo, kFamilyCount> kTable = {{
      {Family::kDefault, "default", "", false, false},
      {Family::kEvents, "events", "events", true, false},
      {Family::kDevices, "devices", "devices", true, true},
      {Family::kGaps, "gaps", "gaps", true, false},
      {Family::kCycles, "cycles", "cycles", true, true},
      {Family::kSessions, "sessions", "sessions", true, true},
      {Family::kViolations, "violations", "violations", true, false},
      {Family::kDecisions, "decisions", "decisions", true, false},
      {Family::kRecalls, "recalls", "recalls", true, true},
      {Family::kDeviceLog, "device_log", "device_log", true, false},
      {Family::kFindings, "findings", "findings", true, false},
      {Family::kLedger, "ledger", "ledger", true, false},
      {Family::kCheckpoints, "checkpoints", "", false, false},
      {Family::kCycleSessions, "cycle_sessions", "", false, true},
      {Family::kPatientSessions, "patient_sessions", "", false, false},
      {Family::kRollerCycles, "roller_cycles", "", false, true},
      {Family::kDeviceViolations, "device_violations", "", false, false},
      {Family::kSessionsByTime, "sessions_by_time", "", false, false},
      {Family::kCyclesByTime, "cycles_by_time", "", false, false},
      {Family::kMeta, "meta", "", false, true},
      {Family::kOutbox, "outbox", "", false, false},
      {Family::kCommands, "commands", "", false, false},
  }};
  return kTable;
}

const FamilyInfo& Info(Family family) { return Families()[static_cast<size_t>(family)]; }

std::optional<Family> FamilyOfKind(std::string_view kind) {
  if (kind.empty()) return std::nullopt;
  for (const FamilyInfo& f : Families()) {
    if (f.record_kind == kind) return f.family;
  }
  return std::nullopt;
}

}  // namespace rollertrace::store
