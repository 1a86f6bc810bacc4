#include "store/decider.h"

#include <rocksdb/db.h>

#include "store/keys.h"
#include "util/cat.h"

namespace rollertrace::store {

rules::RollerFacts FactsOf(const rollertrace::v1::DeviceRecord& record) {
  rules::RollerFacts f;
  f.registered = true;
  f.device = record.device();
  f.use = record.state().roller();
  f.sessions_started = record.state().sessions_started();
  f.total_revolutions = record.state().total_revolutions();
  return f;
}

absl::Status CycleBefore(const ReadView& view, const std::string& roller_id, int64_t start,
                         rollertrace::v1::RollerUse* use) {
  if (use->last_cycle().end_unix_ms() <= start && use->last_passing_cycle_end_unix_ms() <= start) {
    return absl::OkStatus();
  }
  // The roller's latest cycle ends after the session started: the session
  // relied on the cycles before it, replayed in the order they ended.
  use->clear_last_cycle();
  use->set_last_passing_cycle_end_unix_ms(0);
  return view.Scan(Family::kRollerCycles, DevicePrefix(roller_id),
                   [&](std::string_view key, std::string_view) -> absl::StatusOr<bool> {
                     auto k = DecodeRollerCycleKey(key, roller_id);
                     if (!k) return ReadView::Corrupt(Family::kRollerCycles, key);
                     if (k->end_unix_ms > start) return false;
                     rollertrace::v1::CycleRecord c;
                     absl::StatusOr<bool> found =
                         view.Read(Family::kCycles, DeviceSequenceKey(k->steriliser_id, k->cycle), &c);
                     if (!found.ok()) return found.status();
                     if (!*found) return true;
                     rules::CycleVerdict verdict;
                     verdict.parameters_passed = c.parameters_passed();
                     rules::ApplyCycle(c.cycle(), verdict, c.biological_indicator(), use);
                     return true;
                   });
}

absl::StatusOr<RecordedDecision> Decide(const ReadView& view, const rules::Policy& policy, uint64_t policy_version,
                                        const rollertrace::v1::AuthorizeRequest& request, int64_t now,
                                        uint64_t counter) {
  rollertrace::v1::DeviceRecord record;
  absl::StatusOr<bool> found = view.Read(Family::kDevices, request.device_id(), &record);
  if (!found.ok()) return found.status();
  const auto& s = request.session();
  // A request dated beyond the allowed skew is judged now, and says so.
  const rules::JudgedTime when = rules::JudgeTime(policy, request.start_unix_ms(), now);
  rules::RollerFacts facts;
  if (*found && record.device().kind() == rollertrace::v1::DEVICE_KIND_ROLLER) {
    facts = FactsOf(record);
    if (absl::Status c = CycleBefore(view, request.device_id(), when.at_unix_ms, &facts.use); !c.ok()) return c;
  }
  rules::SessionRequest session_request = rules::RequestFor(s, s.patient_pseudonym(), when);
  rules::Decision verdict = rules::Decide(policy, facts, session_request);
  RecordedDecision out;
  out.counter = counter;
  out.store = *found;  // decisions about unknown ids are answered, not stored
  rollertrace::v1::Decision& d = out.decision;
  d.set_decision_id(util::Cat(request.device_id(), "-d", now, "-", counter));
  d.set_device_id(request.device_id());
  d.set_allowed(verdict.allowed);
  for (auto& h : verdict.hits) *d.add_hits() = h;
  d.set_decided_unix_ms(now);
  d.set_correlation_id(request.correlation_id());
  d.set_patient_pseudonym(s.patient_pseudonym());
  d.set_policy_version(policy_version);
  if (facts.registered) {
    auto* snap = d.mutable_roller();
    *snap->mutable_device() = facts.device;
    *snap->mutable_use() = record.state().roller();
    snap->set_sessions_started(facts.sessions_started);
    snap->set_total_revolutions(facts.total_revolutions);
  }
  return out;
}

}  // namespace rollertrace::store
