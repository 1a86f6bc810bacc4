// DOMAIN.md on ingestion: a session start is judged by the rules (and its
// violations stored, locking the roller where a rule says so); a session end
// closes it; wear is recorded; a steriliser's cycle is checked and applied to
// its load. The rules themselves are rules/rules.h; this file gathers their
// facts and stores their outcomes.
#include <algorithm>

#include "rules/rules.h"
#include "store/apply_internal.h"
#include "store/chain.h"
#include "store/decider.h"
#include "util/cat.h"

namespace rollertrace::store::apply {
namespace {

using rollertrace::v1::CycleRecord;
using rollertrace::v1::DeviceRecord;
using rollertrace::v1::Event;
using rollertrace::v1::SessionRecord;


void SetLifecycle(DeviceRecord* r, rollertrace::v1::Lifecycle lifecycle) {
  if (!Retired(*r) && !Locked(*r)) r->mutable_device()->set_lifecycle(lifecycle);
}

absl::Status SessionStarted(Context& c, const Event& event, int64_t at, int64_t ahead_ms, DeviceRecord& record) {
  const auto& started = event.session_started();
  auto* use = record.mutable_state()->mutable_roller();
  rules::RollerFacts facts = FactsOf(record);
  if (absl::Status s = CycleBefore(c.txn, event.device_id(), at, &facts.use); !s.ok()) return s;
  rules::SessionRequest request = rules::RequestFor(started, started.patient_pseudonym(), rules::JudgedTime{at, ahead_ms});
  rules::Decision verdict = rules::Decide(c.policy, facts, request);

  SessionRecord session;
  session.set_device_id(event.device_id());
  session.set_sequence(event.sequence());
  session.set_session_id(started.session_id());
  session.set_patient_pseudonym(started.patient_pseudonym());
  session.set_operator_id(started.operator_id());
  session.set_start_unix_ms(at);
  session.set_device_start_unix_ms(event.device_time_unix_ms());
  session.set_clock_ahead_ms(ahead_ms);
  session.set_indication(started.indication());
  session.set_area(started.area());
  session.set_needle_length_mm(started.needle_length_mm());
  *session.mutable_cycle() = facts.use.last_cycle();
  session.set_wear_at_start(rules::Wear(facts));
  session.set_device_decision_id(started.decision_id());
  session.set_offline_decision(started.offline_decision());
  rollertrace::v1::Decision* d = session.mutable_decision();
  d->set_decision_id(util::Cat(event.device_id(), "-s", event.sequence()));
  d->set_device_id(event.device_id());
  d->set_allowed(verdict.allowed);
  for (auto& h : verdict.hits) *d->add_hits() = h;
  d->set_decided_unix_ms(c.now);
  d->set_offline(started.offline_decision());
  d->set_patient_pseudonym(started.patient_pseudonym());
  d->set_policy_version(c.policy_version);
  c.result->decisions.push_back(*d);

  std::string lock_reason;
  for (const auto& h : verdict.hits) {
    if (h.severity() != rollertrace::v1::SEVERITY_DENY) continue;
    rollertrace::v1::Violation v;
    v.set_device_id(event.device_id());
    v.set_sequence(event.sequence());
    v.set_session_id(started.session_id());
    v.set_rule(h.rule());
    v.set_severity(h.severity());
    v.set_detail(h.detail());
    v.set_session_start_unix_ms(at);
    v.set_detected_unix_ms(c.now);
    v.set_patient_pseudonym(started.patient_pseudonym());
    v.set_offline_decision(started.offline_decision());
    if (rules::LocksRoller(h.rule()) && !Retired(record)) {
      v.set_locked(true);
      if (lock_reason.empty()) lock_reason = util::Cat(h.rule(), " in session ", started.session_id(), ": ", h.detail());
    }
    const std::string violation_key = TimeKey(c.now, event.device_id(), event.sequence(), h.rule());
    c.txn.PutRecord(&record, Family::kViolations, violation_key, v.SerializeAsString(), c.now);
    IndexViolation(c.txn, v, violation_key);
    c.result->violations.push_back(std::move(v));
  }
  c.txn.PutRecord(&record, Family::kSessions, DeviceSequenceKey(event.device_id(), event.sequence()),
                  session.SerializeAsString(), c.now);
  IndexSession(c.txn, session);

  if (use->bound_patient().empty()) use->set_bound_patient(started.patient_pseudonym());
  use->set_last_session_start_unix_ms(at);
  use->set_open_session_id(started.session_id());
  use->set_open_session_sequence(event.sequence());
  SetLifecycle(&record, rollertrace::v1::LIFECYCLE_IN_SESSION);
  if (!lock_reason.empty()) {
    const bool was_locked = Locked(record);
    Lock(&record, lock_reason, c.now);
    if (!was_locked) {
      c.result->commands.push_back(MakeCommand(event.device_id(), "lock", lock_reason, c.now));
      Log(c, &record, "locked", lock_reason, "rollertrace");
    }
  }
  return absl::OkStatus();
}

absl::Status SessionEnded(Context& c, const Event& event, int64_t at, DeviceRecord& record) {
  auto* use = record.mutable_state()->mutable_roller();
  if (use->open_session_sequence() > 0) {
    const std::string key = DeviceSequenceKey(event.device_id(), use->open_session_sequence());
    SessionRecord session;
    absl::StatusOr<bool> found = c.txn.Read(Family::kSessions, key, &session);  // the start may be in this write
    if (!found.ok()) return found.status();
    if (*found) {
      if (session.clock_ahead_ms() > 0) {
        // The start was on a clock running ahead: the end, on the same clock,
        // moves back as far, so the session keeps its duration. It is never
        // later than the end's own judged time nor before the start.
        at = std::min(at, event.device_time_unix_ms() - session.clock_ahead_ms());
      }
      at = std::max(at, session.start_unix_ms());
      session.set_end_unix_ms(at);
      session.set_device_end_unix_ms(event.device_time_unix_ms());
      c.txn.PutRecord(&record, Family::kSessions, key, session.SerializeAsString(), c.now);
      if (session.patient_pseudonym() == use->bound_patient()) use->set_bound_patient_last_session_end_unix_ms(at);
    }
  }
  use->set_last_session_end_unix_ms(at);
  use->clear_open_session_id();
  use->clear_open_session_sequence();
  SetLifecycle(&record, rollertrace::v1::LIFECYCLE_USED);
  return absl::OkStatus();
}

absl::Status Cycle(Context& c, const Event& event, DeviceRecord& record) {
  rollertrace::v1::SterilisationCycle cycle = event.sterilisation_cycle();
  cycle.set_steriliser_id(event.device_id());
  const uint64_t number = cycle.cycle_number();
  auto finding = [&](const char* kind, std::string detail) {
    rollertrace::v1::Finding f;
    f.set_device_id(event.device_id());
    f.set_sequence(event.sequence());
    f.set_kind(kind);
    f.set_detail(std::move(detail));
    f.set_cycle_number(number);
    return f;
  };
  // A steriliser reports its cycle; it cannot vouch for its dates.
  if (std::string problem = rules::CycleTimeProblem(c.policy, cycle, c.now); !problem.empty()) {
    RecordFinding(c, &record, finding(kFindingCycleTime, util::Cat("cycle ", number, " refused: ", problem)));
    return absl::OkStatus();
  }
  const std::string cycle_key = DeviceSequenceKey(event.device_id(), number);
  CycleRecord stored;
  absl::StatusOr<bool> exists = c.txn.Read(Family::kCycles, cycle_key, &stored);
  if (!exists.ok()) return exists.status();
  if (*exists) {
    // A cycle number is written once. The same cycle again may only add
    // the steriliser's own biological-indicator report.
    rollertrace::v1::SterilisationCycle a = stored.cycle(), b = cycle;
    a.clear_biological_indicator();
    b.clear_biological_indicator();
    const auto reported = cycle.biological_indicator();
    const auto earlier = stored.device_biological_indicator();
    if (a.SerializeAsString() != b.SerializeAsString() ||
        (IndicatorKnown(reported) && IndicatorKnown(earlier) && reported != earlier)) {
      rollertrace::v1::Finding f = finding(
          kFindingCycleConflict, util::Cat("cycle ", number, " sent again with other content; the stored cycle is kept"));
      f.set_stored_hash(Sha256(stored.cycle().SerializeAsString()));
      f.set_received_hash(Sha256(cycle.SerializeAsString()));
      RecordFinding(c, &record, std::move(f));
      return absl::OkStatus();
    }
    if (!IndicatorKnown(reported) || reported == earlier) return absl::OkStatus();  // a plain resend
    rollertrace::v1::IndicatorReport report;
    report.set_source(kSourceSteriliser);
    report.set_result(reported);
    report.set_unix_ms(c.now);
    if (absl::Status s = ApplyIndicator(c, &stored, report); !s.ok()) return s;
    c.txn.PutRecord(&record, Family::kCycles, cycle_key, stored.SerializeAsString(), c.now);
    return absl::OkStatus();
  }
  rules::CycleVerdict verdict = rules::EvaluateCycle(c.policy, cycle);
  CycleRecord cr;
  *cr.mutable_cycle() = cycle;
  cr.set_parameters_passed(verdict.parameters_passed);
  for (auto& r : verdict.reasons) cr.add_failure_reasons(r);
  cr.set_method_minimums(verdict.minimums);
  cr.set_received_unix_ms(c.now);
  cr.set_device_biological_indicator(cycle.biological_indicator());
  cr.set_biological_indicator(
      rules::CountingIndicator(cycle.biological_indicator(), rollertrace::v1::INDICATOR_UNSPECIFIED));
  if (IndicatorKnown(cycle.biological_indicator())) {
    auto* report = cr.add_bi_reports();
    report->set_source(kSourceSteriliser);
    report->set_result(cycle.biological_indicator());
    report->set_unix_ms(c.now);
  }
  for (const std::string& roller_id : cycle.load()) {
    absl::StatusOr<DeviceRecord*> roller = roller_id == event.device_id() ? nullptr : c.txn.Device(roller_id);
    if (!roller.ok()) return roller.status();
    if (*roller == nullptr || (*roller)->device().kind() != rollertrace::v1::DEVICE_KIND_ROLLER) {
      cr.add_unknown_load(roller_id);
      continue;
    }
    rules::ApplyCycle(cr.cycle(), verdict, cr.biological_indicator(), (*roller)->mutable_state()->mutable_roller());
    if (verdict.parameters_passed) SetLifecycle(*roller, rollertrace::v1::LIFECYCLE_STERILE);
  }
  c.txn.PutRecord(&record, Family::kCycles, cycle_key, cr.SerializeAsString(), c.now);
  IndexCycle(c.txn, cr);
  if (cr.biological_indicator() == rollertrace::v1::INDICATOR_FAIL) {
    // The steriliser's own FAIL is reason enough: recall at once.
    if (absl::Status s = RecallFrom(c, cr); !s.ok()) return s;
  }
  c.result->cycles.push_back(std::move(cr));
  return absl::OkStatus();
}

}  // namespace

void RecordFinding(Context& c, DeviceRecord* owner, rollertrace::v1::Finding finding) {
  finding.set_detected_unix_ms(c.now);
  c.txn.PutRecord(owner, Family::kFindings, FindingKey(finding.device_id(), finding.sequence(), finding.kind()),
                  finding.SerializeAsString(), c.now);
  c.result->findings.push_back(std::move(finding));
}

absl::Status ApplyDomain(Context& c, const Event& event, DeviceRecord& self) {
  // Device clocks are trusted only up to the allowed skew ahead of ours;
  // beyond it time rules use the receive time (DOMAIN.md, CLOCK_SKEW).
  const rules::JudgedTime when = rules::JudgeTime(c.policy, event.device_time_unix_ms(), c.now);
  if (when.ahead_ms > 0 && (event.has_session_started() || event.has_session_ended())) {
    // Kept as sent, judged at the receive time, and said so (issue #14).
    rollertrace::v1::Finding f;
    f.set_device_id(event.device_id());
    f.set_sequence(event.sequence());
    f.set_kind(kFindingClockAhead);
    f.set_detail(util::Cat(event.has_session_started() ? "session start" : "session end", " dated ",
                           when.ahead_ms / 1000, " s after it was received (allowed ",
                           c.policy.max_clock_skew_ms / 1000, " s): the event is kept as sent, time rules used the receive time"));
    RecordFinding(c, &self, std::move(f));
  }
  switch (event.body_case()) {
    case Event::kSessionStarted:
      return SessionStarted(c, event, when.at_unix_ms, when.ahead_ms, self);
    case Event::kSessionEnded:
      return SessionEnded(c, event, when.at_unix_ms, self);
    case Event::kWearMeasured: {
      auto* use = self.mutable_state()->mutable_roller();
      use->set_measured_wear(std::max(use->measured_wear(), event.wear_measured().wear_fraction()));
      return absl::OkStatus();
    }
    case Event::kSterilisationCycle:
      return Cycle(c, event, self);
    default:
      return absl::OkStatus();
  }
}

}  // namespace rollertrace::store::apply
