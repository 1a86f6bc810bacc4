// Biological indicators and recalls (DOMAIN.md, "Whose word counts"). A
// report (the steriliser's or the lab's) is recorded on its cycle, the result
// that counts recomputed, the load's rollers updated; any FAIL, when the cycle
// has no recall yet, recalls every load since the last lab-confirmed
// negative indicator.
#include <set>

#include "codec/codec.h"
#include "rules/rules.h"
#include "store/apply_internal.h"
#include "util/cat.h"

namespace rollertrace::store::apply {

using rollertrace::v1::CycleRecord;
using rollertrace::v1::DeviceRecord;
using rollertrace::v1::SessionRecord;

absl::Status ApplyIndicator(Context& c, CycleRecord* cycle, const rollertrace::v1::IndicatorReport& report) {
  *cycle->add_bi_reports() = report;
  if (report.source() == kSourceLab) {
    cycle->set_lab_biological_indicator(report.result());
    cycle->set_bi_recorded_unix_ms(report.unix_ms());
    cycle->set_bi_recorded_by(report.by());
  } else {
    cycle->set_device_biological_indicator(report.result());
  }
  cycle->set_biological_indicator(
      rules::CountingIndicator(cycle->device_biological_indicator(), cycle->lab_biological_indicator()));
  const std::string& steriliser = cycle->cycle().steriliser_id();
  const uint64_t number = cycle->cycle().cycle_number();
  for (const std::string& roller_id : cycle->cycle().load()) {
    absl::StatusOr<DeviceRecord*> roller = roller_id == steriliser ? nullptr : c.txn.Device(roller_id);
    if (!roller.ok()) return roller.status();
    if (*roller == nullptr) continue;
    auto* last = (*roller)->mutable_state()->mutable_roller()->mutable_last_cycle();
    if (last->steriliser_id() == steriliser && last->cycle_number() == number) {
      last->set_biological_indicator(cycle->biological_indicator());
    }
  }
  // A failed indicator from any source is reason enough to recall, even where
  // the lab's PASS is what counts for the rules.
  if (report.result() != rollertrace::v1::INDICATOR_FAIL) return absl::OkStatus();
  // One recall per cycle: a second failed report adds nothing to reach.
  std::string existing;
  absl::StatusOr<bool> recalled = c.txn.Get(Family::kRecalls, DeviceSequenceKey(steriliser, number), &existing);
  if (!recalled.ok()) return recalled.status();
  if (*recalled) return absl::OkStatus();
  return RecallFrom(c, *cycle);
}

absl::Status RecallFrom(Context& c, const CycleRecord& failed) {
  const std::string& steriliser = failed.cycle().steriliser_id();
  const uint64_t failed_number = failed.cycle().cycle_number();
  rollertrace::v1::RecallReport report;
  report.set_steriliser_id(steriliser);
  report.set_failed_cycle(failed_number);
  report.set_recalled_unix_ms(c.now);

  // The steriliser's cycles as this write sees them (its own pending ones included).
  std::map<uint64_t, CycleRecord> cycles;
  absl::Status s = c.txn.ScanRecords<CycleRecord>(Family::kCycles, DevicePrefix(steriliser),
                                                  [&](std::string_view, CycleRecord& cycle) -> absl::StatusOr<bool> {
                                                    cycles[cycle.cycle().cycle_number()] = std::move(cycle);
                                                    return true;
                                                  });
  if (!s.ok()) return s;
  cycles[failed_number] = failed;

  // Back to the last negative biological indicator before the failure: only
  // the lab's PASS counts (a steriliser cannot vouch for its own cycle).
  for (auto it = cycles.lower_bound(failed_number); it != cycles.begin();) {
    --it;
    if (it->second.biological_indicator() == rollertrace::v1::INDICATOR_PASS) {
      report.set_last_negative_cycle(it->first);
      break;
    }
  }
  // Every load since then is suspect, the failed one and any later ones included.
  std::set<uint64_t> suspect;
  for (auto it = cycles.upper_bound(report.last_negative_cycle()); it != cycles.end(); ++it) {
    suspect.insert(it->first);
    *report.add_suspect_cycles() = it->second;
  }
  std::set<std::string> patients;
  std::set<std::string> locked;
  const std::string reason =
      util::Cat("recall: cycle ", steriliser, "#", failed_number, " failed its biological indicator");
  for (const CycleRecord& cycle : report.suspect_cycles()) {
    const std::string cycle_prefix = DeviceSequenceKey(steriliser, cycle.cycle().cycle_number());
    std::vector<DeviceSequence> session_keys;
    s = c.txn.Scan(Family::kCycleSessions, cycle_prefix, [&](std::string_view key, std::string_view) {
      if (auto k = DecodeIndexedSession(key, cycle_prefix)) session_keys.push_back(std::move(*k));
      return absl::StatusOr<bool>(true);
    });
    if (!s.ok()) return s;
    for (const DeviceSequence& session_key : session_keys) {
      SessionRecord session;
      const std::string key = DeviceSequenceKey(session_key.device_id, session_key.sequence);
      absl::StatusOr<bool> found = c.txn.Read(Family::kSessions, key, &session);
      if (!found.ok()) return found.status();
      if (!*found) continue;
      session.set_at_risk(true);
      session.set_at_risk_reason(reason);
      absl::StatusOr<DeviceRecord*> owner = c.txn.Device(session_key.device_id);
      if (!owner.ok()) return owner.status();
      if (*owner == nullptr) return absl::DataLossError(util::Cat("session of unregistered ", session_key.device_id));
      c.txn.PutRecord(*owner, Family::kSessions, key, session.SerializeAsString(), c.now);
      patients.insert(session.patient_pseudonym());
      *report.add_sessions_at_risk() = std::move(session);
    }
    // Rollers of this load not sterilised again since are locked.
    for (const std::string& roller_id : cycle.cycle().load()) {
      absl::StatusOr<DeviceRecord*> roller = c.txn.Device(roller_id);
      if (!roller.ok()) return roller.status();
      if (*roller == nullptr) continue;
      const auto& last = (*roller)->state().roller().last_cycle();
      if (last.steriliser_id() != steriliser || !suspect.count(last.cycle_number())) continue;
      if (Retired(**roller) || locked.count(roller_id)) continue;
      if (!Locked(**roller)) {
        c.result->commands.push_back(MakeCommand(roller_id, "lock", reason, c.now));
        Log(c, *roller, "locked", reason, "rollertrace");
      }
      Lock(*roller, reason, c.now);
      locked.insert(roller_id);
    }
  }
  for (const auto& p : patients) report.add_patients(p);
  for (const auto& r : locked) report.add_locked_rollers(r);
  absl::StatusOr<DeviceRecord*> owner = c.txn.Device(steriliser);
  if (!owner.ok()) return owner.status();
  if (*owner == nullptr) return absl::FailedPreconditionError(util::Cat("steriliser ", steriliser, " is not registered"));
  c.txn.PutRecord(*owner, Family::kRecalls, DeviceSequenceKey(steriliser, failed_number), report.SerializeAsString(),
                  c.now);
  c.result->recalls.push_back(std::move(report));
  return absl::OkStatus();
}

absl::Status LabIndicator(Context& c, const rollertrace::v1::BiologicalIndicatorRequest& request) {
  if (request.result() != rollertrace::v1::INDICATOR_PASS && request.result() != rollertrace::v1::INDICATOR_FAIL) {
    return absl::InvalidArgumentError("a biological-indicator result is pass or fail");
  }
  if (request.recorded_by().size() > codec::Limits::kWhoBytes) {
    return absl::OutOfRangeError(util::Cat("who recorded the result is ", request.recorded_by().size(),
                                           " bytes, the limit is ", codec::Limits::kWhoBytes));
  }
  const std::string key = DeviceSequenceKey(request.steriliser_id(), request.cycle_number());
  CycleRecord& cycle = c.result->cycle;
  absl::StatusOr<bool> found = c.txn.Read(Family::kCycles, key, &cycle);
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(
        util::Cat("no cycle ", request.cycle_number(), " of steriliser ", request.steriliser_id(), " is recorded"));
  }
  if (cycle.lab_biological_indicator() == request.result()) return absl::OkStatus();  // recorded already
  absl::StatusOr<DeviceRecord*> steriliser = c.txn.Device(request.steriliser_id());
  if (!steriliser.ok()) return steriliser.status();
  if (*steriliser == nullptr) {
    return absl::FailedPreconditionError(util::Cat("steriliser ", request.steriliser_id(), " is not registered"));
  }
  rollertrace::v1::IndicatorReport report;
  report.set_source(kSourceLab);
  report.set_result(request.result());
  report.set_unix_ms(c.now);
  report.set_by(request.recorded_by());
  if (absl::Status s = ApplyIndicator(c, &cycle, report); !s.ok()) return s;
  c.txn.PutRecord(*steriliser, Family::kCycles, key, cycle.SerializeAsString(), c.now);
  return absl::OkStatus();
}

}  // namespace rollertrace::store::apply
