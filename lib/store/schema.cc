#include "store/schema.h"

namespace rollertrace::store {

const std::array<FamilyInfo, kFamilyCount>& Families() {
  static const std::array<FamilyInfo, kFamilyCount> kTable = {{
      {Family::kDefault, "default", "", false},
      {Family::kEvents, "events", "events", true},
      {Family::kDevices, "devices", "devices", true},
      {Family::kGaps, "gaps", "gaps", true},
      {Family::kCycles, "cycles", "cycles", true},
      {Family::kSessions, "sessions", "sessions", true},
      {Family::kViolations, "violations", "violations", true},
      {Family::kDecisions, "decisions", "decisions", true},
      {Family::kRecalls, "recalls", "recalls", true},
      {Family::kDeviceLog, "device_log", "device_log", true},
      {Family::kFindings, "findings", "findings", true},
      {Family::kLedger, "ledger", "ledger", true},
      {Family::kCheckpoints, "checkpoints", "", false},
      {Family::kCycleSessions, "cycle_sessions", "", false},
      {Family::kPatientSessions, "patient_sessions", "", false},
      {Family::kRollerCycles, "roller_cycles", "", false},
      {Family::kDeviceViolations, "device_violations", "", false},
      {Family::kSessionsByTime, "sessions_by_time", "", false},
      {Family::kCyclesByTime, "cycles_by_time", "", false},
      {Family::kMeta, "meta", "", false},
      {Family::kCommands, "commands", "", false},
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
