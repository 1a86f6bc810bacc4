// EventStore: the domain rules applied on ingestion, authorisation, biological
// indicators, recalls and locks. The rules themselves are rules/rules.h; this
// file only gathers their facts and stores their outcomes.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <functional>
#include <set>

#include "rules/rules.h"
#include "store/event_store.h"
#include "store/keys.h"
#include "store/read.h"
#include "util/cat.h"

namespace rollertrace::store {
namespace {

using rollertrace::v1::CycleRecord;
using rollertrace::v1::Decision;
using rollertrace::v1::DeviceRecord;
using rollertrace::v1::Event;
using rollertrace::v1::SessionRecord;

rules::RollerFacts FactsOf(const DeviceRecord& record) {
  rules::RollerFacts f;
  f.registered = true;
  f.device = record.device();
  f.use = record.state().roller();
  f.sessions_started = record.state().sessions_started();
  f.total_revolutions = record.state().total_revolutions();
  return f;
}

bool Retired(const DeviceRecord& r) { return r.device().lifecycle() == rollertrace::v1::LIFECYCLE_RETIRED; }
bool Locked(const DeviceRecord& r) { return r.device().lifecycle() == rollertrace::v1::LIFECYCLE_LOCKED; }

void SetLifecycle(DeviceRecord* r, rollertrace::v1::Lifecycle lifecycle) {
  if (!Retired(*r) && !Locked(*r)) r->mutable_device()->set_lifecycle(lifecycle);
}

rollertrace::v1::Command MakeCommand(const std::string& device, const char* command, std::string reason,
                                     int64_t now) {
  rollertrace::v1::Command c;
  c.set_device_id(device);
  c.set_command(command);
  c.set_reason(std::move(reason));
  c.set_issued_unix_ms(now);
  return c;
}

constexpr char kFindingCycleTime[] = "CYCLE_TIME";
constexpr char kFindingCycleConflict[] = "CYCLE_CONFLICT";
constexpr char kSourceSteriliser[] = "steriliser";
constexpr char kSourceLab[] = "lab";

bool IndicatorKnown(rollertrace::v1::IndicatorResult r) {
  return r == rollertrace::v1::INDICATOR_PASS || r == rollertrace::v1::INDICATOR_FAIL;
}

void TakeRecall(BiologicalIndicatorOutcome outcome, AppendResult* result) {
  if (outcome.recalled) result->recalls.push_back(std::move(outcome.recall));
  for (auto& c : outcome.commands) result->commands.push_back(std::move(c));
}

void Lock(DeviceRecord* r, const std::string& reason, int64_t now) {
  r->mutable_device()->set_lifecycle(rollertrace::v1::LIFECYCLE_LOCKED);
  r->mutable_state()->mutable_roller()->set_lock_reason(reason);
  r->mutable_state()->mutable_roller()->set_locked_unix_ms(now);
}

}  // namespace

absl::Status EventStore::ApplyDomain(const Event& event, int64_t now, Touched& self, TouchedMap& touched,
                                     rocksdb::WriteBatch& wb, AppendResult* result) {
  const rules::Policy& policy = options_.policy;
  DeviceRecord& record = self.record;
  auto* use = record.mutable_state()->mutable_roller();
  // Device clocks are trusted only up to the allowed skew ahead of ours;
  // beyond it time rules use the receive time (DOMAIN.md, CLOCK_SKEW).
  const rules::JudgedTime when = rules::JudgeTime(policy, event.device_time_unix_ms(), now);
  const int64_t at = when.at_unix_ms;

  switch (event.body_case()) {
    case Event::kSessionStarted: {
      const auto& started = event.session_started();
      rules::RollerFacts facts = FactsOf(record);
      if (absl::Status s = CycleBefore(event.device_id(), at, &facts.use); !s.ok()) return s;
      rules::SessionRequest request = rules::RequestFor(started, started.patient_pseudonym(), at);
      request.clock_ahead_ms = when.ahead_ms;
      rules::Decision verdict = rules::Decide(policy, facts, request);

      SessionRecord session;
      session.set_device_id(event.device_id());
      session.set_sequence(event.sequence());
      session.set_session_id(started.session_id());
      session.set_patient_pseudonym(started.patient_pseudonym());
      session.set_operator_id(started.operator_id());
      session.set_start_unix_ms(at);
      session.set_indication(started.indication());
      session.set_area(started.area());
      session.set_needle_length_mm(started.needle_length_mm());
      *session.mutable_cycle() = facts.use.last_cycle();
      session.set_wear_at_start(rules::Wear(facts));
      session.set_device_decision_id(started.decision_id());
      session.set_offline_decision(started.offline_decision());
      Decision* d = session.mutable_decision();
      d->set_decision_id(util::Cat(event.device_id(), "-s", event.sequence()));
      d->set_device_id(event.device_id());
      d->set_allowed(verdict.allowed);
      for (auto& h : verdict.hits) *d->add_hits() = h;
      d->set_decided_unix_ms(now);
      d->set_offline(started.offline_decision());
      d->set_patient_pseudonym(started.patient_pseudonym());
      result->decisions.push_back(*d);

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
        v.set_detected_unix_ms(now);
        v.set_patient_pseudonym(started.patient_pseudonym());
        v.set_offline_decision(started.offline_decision());
        if (rules::LocksRoller(h.rule()) && !Retired(record)) {
          v.set_locked(true);
          if (lock_reason.empty()) {
            lock_reason = util::Cat(h.rule(), " in session ", started.session_id(), ": ", h.detail());
          }
        }
        const std::string violation_key = TimeKey(now, event.device_id(), event.sequence(), h.rule());
        PutRecord(wb, &record, violations_, violation_key, v.SerializeAsString(), now);
        IndexViolation(wb, v, violation_key);
        result->violations.push_back(std::move(v));
      }
      PutRecord(wb, &record, sessions_, DeviceSequenceKey(event.device_id(), event.sequence()),
                session.SerializeAsString(), now);
      IndexSession(wb, session);
      self.sessions[event.sequence()] = session;

      if (use->bound_patient().empty()) use->set_bound_patient(started.patient_pseudonym());
      use->set_last_session_start_unix_ms(at);
      use->set_open_session_id(started.session_id());
      use->set_open_session_sequence(event.sequence());
      SetLifecycle(&record, rollertrace::v1::LIFECYCLE_IN_SESSION);
      if (!lock_reason.empty()) {
        const bool was_locked = Locked(record);
        Lock(&record, lock_reason, now);
        if (!was_locked) {
          result->commands.push_back(MakeCommand(event.device_id(), "lock", lock_reason, now));
          Log(wb, &record, now, "locked", lock_reason, "rollertrace");
        }
      }
      break;
    }
    case Event::kSessionEnded: {
      if (use->open_session_sequence() > 0) {
        // The start may be in this same batch, not yet on disk.
        SessionRecord session;
        const uint64_t start_seq = use->open_session_sequence();
        const std::string key = DeviceSequenceKey(event.device_id(), start_seq);
        bool found = false;
        if (auto pending = self.sessions.find(start_seq); pending != self.sessions.end()) {
          session = pending->second;
          found = true;
        } else {
          absl::StatusOr<bool> on_disk = Read(db_.get(), sessions_, key, &session);
          if (!on_disk.ok()) return on_disk.status();
          found = *on_disk;
        }
        if (found) {
          session.set_end_unix_ms(at);
          PutRecord(wb, &record, sessions_, key, session.SerializeAsString(), now);
          self.sessions[start_seq] = session;
        }
      }
      use->set_last_session_end_unix_ms(at);
      use->clear_open_session_id();
      use->clear_open_session_sequence();
      SetLifecycle(&record, rollertrace::v1::LIFECYCLE_USED);
      break;
    }
    case Event::kWearMeasured:
      use->set_measured_wear(std::max(use->measured_wear(), event.wear_measured().wear_fraction()));
      break;
    case Event::kSterilisationCycle: {
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
      if (std::string problem = rules::CycleTimeProblem(policy, cycle, now); !problem.empty()) {
        RecordFinding(wb, &record, finding(kFindingCycleTime, util::Cat("cycle ", number, " refused: ", problem)), now,
                      result);
        break;
      }
      const std::string cycle_key = DeviceSequenceKey(event.device_id(), number);
      CycleRecord stored;
      bool exists = false;
      if (auto pending = self.cycles.find(number); pending != self.cycles.end()) {
        stored = pending->second;
        exists = true;
      } else {
        absl::StatusOr<bool> on_disk = Read(db_.get(), cycles_, cycle_key, &stored);
        if (!on_disk.ok()) return on_disk.status();
        exists = *on_disk;
      }
      if (exists) {
        // A cycle number is written once. The same cycle again may only add
        // the steriliser's own biological-indicator report.
        rollertrace::v1::SterilisationCycle a = stored.cycle(), b = cycle;
        a.clear_biological_indicator();
        b.clear_biological_indicator();
        const auto reported = cycle.biological_indicator();
        const auto earlier = stored.device_biological_indicator();
        if (a.SerializeAsString() != b.SerializeAsString() ||
            (IndicatorKnown(reported) && IndicatorKnown(earlier) && reported != earlier)) {
          rollertrace::v1::Finding f =
              finding(kFindingCycleConflict,
                      util::Cat("cycle ", number, " sent again with other content; the stored cycle is kept"));
          f.set_stored_hash(Sha256(stored.cycle().SerializeAsString()));
          f.set_received_hash(Sha256(cycle.SerializeAsString()));
          RecordFinding(wb, &record, std::move(f), now, result);
          break;
        }
        if (!IndicatorKnown(reported) || reported == earlier) break;  // a plain resend
        rollertrace::v1::IndicatorReport report;
        report.set_source(kSourceSteriliser);
        report.set_result(reported);
        report.set_unix_ms(now);
        BiologicalIndicatorOutcome outcome;
        if (absl::Status s = ApplyIndicator(&stored, report, now, wb, touched, &outcome, &self.cycles); !s.ok()) {
          return s;
        }
        PutRecord(wb, &record, cycles_, cycle_key, stored.SerializeAsString(), now);
        self.cycles[number] = stored;
        TakeRecall(std::move(outcome), result);
        break;
      }
      rules::CycleVerdict verdict = rules::EvaluateCycle(policy, cycle);
      CycleRecord cr;
      *cr.mutable_cycle() = cycle;
      cr.set_parameters_passed(verdict.parameters_passed);
      for (auto& r : verdict.reasons) cr.add_failure_reasons(r);
      cr.set_received_unix_ms(now);
      cr.set_device_biological_indicator(cycle.biological_indicator());
      cr.set_biological_indicator(rules::CountingIndicator(cycle.biological_indicator(), rollertrace::v1::INDICATOR_UNSPECIFIED));
      if (IndicatorKnown(cycle.biological_indicator())) {
        auto* report = cr.add_bi_reports();
        report->set_source(kSourceSteriliser);
        report->set_result(cycle.biological_indicator());
        report->set_unix_ms(now);
      }
      for (const std::string& roller_id : cycle.load()) {
        absl::StatusOr<Touched*> t = roller_id == event.device_id() ? nullptr : Touch(touched, roller_id);
        if (!t.ok()) return t.status();
        if (*t == nullptr || (*t)->record.device().kind() != rollertrace::v1::DEVICE_KIND_ROLLER) {
          cr.add_unknown_load(roller_id);
          continue;
        }
        DeviceRecord& roller = (*t)->record;
        rules::ApplyCycle(cr.cycle(), verdict, cr.biological_indicator(), roller.mutable_state()->mutable_roller());
        if (verdict.parameters_passed) SetLifecycle(&roller, rollertrace::v1::LIFECYCLE_STERILE);
      }
      PutRecord(wb, &record, cycles_, cycle_key, cr.SerializeAsString(), now);
      IndexCycle(wb, cr);
      self.cycles[number] = cr;
      if (cr.biological_indicator() == rollertrace::v1::INDICATOR_FAIL) {
        // The steriliser's own FAIL is reason enough: recall at once.
        BiologicalIndicatorOutcome outcome;
        if (absl::Status s = RecallFrom(cr, now, wb, touched, &outcome, &self.cycles); !s.ok()) return s;
        TakeRecall(std::move(outcome), result);
      }
      result->cycles.push_back(std::move(cr));
      break;
    }
    default:
      break;
  }
  return absl::OkStatus();
}

absl::StatusOr<RecordedDecision> EventStore::Decide(const rollertrace::v1::AuthorizeRequest& request,
                                                    int64_t now) const {
  // From the committed state: no write lock, so a decision never waits
  // behind a group commit.
  DeviceRecord record;
  absl::StatusOr<bool> found = LoadDevice(request.device_id(), &record);
  if (!found.ok()) return found.status();
  const auto& s = request.session();
  // A request dated beyond the allowed skew is judged now, and says so.
  const rules::JudgedTime when = rules::JudgeTime(options_.policy, request.start_unix_ms(), now);
  rules::RollerFacts facts;
  if (*found && record.device().kind() == rollertrace::v1::DEVICE_KIND_ROLLER) {
    facts = FactsOf(record);
    if (absl::Status c = CycleBefore(request.device_id(), when.at_unix_ms, &facts.use); !c.ok()) return c;
  }
  rules::SessionRequest session_request = rules::RequestFor(s, s.patient_pseudonym(), when.at_unix_ms);
  session_request.clock_ahead_ms = when.ahead_ms;
  rules::Decision verdict = rules::Decide(options_.policy, facts, session_request);
  RecordedDecision out;
  out.counter = ++decision_counter_;
  out.store = *found;  // decisions about unknown ids are answered, not stored
  Decision& d = out.decision;
  d.set_decision_id(util::Cat(request.device_id(), "-d", now, "-", out.counter));
  d.set_device_id(request.device_id());
  d.set_allowed(verdict.allowed);
  for (auto& h : verdict.hits) *d.add_hits() = h;
  d.set_decided_unix_ms(now);
  d.set_correlation_id(request.correlation_id());
  d.set_patient_pseudonym(s.patient_pseudonym());
  if (facts.registered) {
    auto* snap = d.mutable_roller();
    *snap->mutable_device() = facts.device;
    *snap->mutable_use() = record.state().roller();
    snap->set_sessions_started(facts.sessions_started);
    snap->set_total_revolutions(facts.total_revolutions);
  }
  return out;
}

absl::StatusOr<Decision> EventStore::Authorize(const rollertrace::v1::AuthorizeRequest& request, int64_t now) {
  absl::StatusOr<RecordedDecision> d = Decide(request, now);
  if (!d.ok()) return d.status();
  if (d->store) {
    const RecordedDecision decisions[] = {*d};
    if (absl::StatusOr<AppendResult> r = Append({}, now, decisions); !r.ok()) return r.status();
  }
  return d->decision;
}

void EventStore::StoreDecision(rocksdb::WriteBatch& wb, DeviceRecord* owner, const RecordedDecision& d, int64_t now) {
  std::string key = DevicePrefix(d.decision.device_id());
  AppendBigEndian64(&key, static_cast<uint64_t>(d.decision.decided_unix_ms()));
  AppendBigEndian64(&key, d.counter);
  PutRecord(wb, owner, decisions_, key, d.decision.SerializeAsString(), now);
}

absl::StatusOr<BiologicalIndicatorOutcome> EventStore::RecordBiologicalIndicator(
    const rollertrace::v1::BiologicalIndicatorRequest& request, int64_t now) {
  if (request.result() != rollertrace::v1::INDICATOR_PASS && request.result() != rollertrace::v1::INDICATOR_FAIL) {
    return absl::InvalidArgumentError("a biological-indicator result is pass or fail");
  }
  std::lock_guard<std::mutex> lock(write_mu_);
  BiologicalIndicatorOutcome outcome;
  const std::string key = DeviceSequenceKey(request.steriliser_id(), request.cycle_number());
  absl::StatusOr<bool> found = Read(db_.get(), cycles_, key, &outcome.cycle);
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(
        util::Cat("no cycle ", request.cycle_number(), " of steriliser ", request.steriliser_id(), " is recorded"));
  }
  if (outcome.cycle.lab_biological_indicator() == request.result()) return outcome;  // recorded already

  rocksdb::WriteBatch wb;
  TouchedMap touched;
  absl::StatusOr<Touched*> steriliser = Touch(touched, request.steriliser_id());
  if (!steriliser.ok()) return steriliser.status();
  if (*steriliser == nullptr) {
    return absl::FailedPreconditionError(util::Cat("steriliser ", request.steriliser_id(), " is not registered"));
  }
  rollertrace::v1::IndicatorReport report;
  report.set_source(kSourceLab);
  report.set_result(request.result());
  report.set_unix_ms(now);
  report.set_by(request.recorded_by());
  if (absl::Status s = ApplyIndicator(&outcome.cycle, report, now, wb, touched, &outcome); !s.ok()) return s;
  PutRecord(wb, &(*steriliser)->record, cycles_, key, outcome.cycle.SerializeAsString(), now);
  for (auto& [id, t] : touched) StageDevice(wb, t.record, now);
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  rocksdb::Status st = db_->Write(wo, &wb);
  if (!st.ok()) return absl::InternalError(util::Cat("record biological indicator: ", st.ToString()));
  for (auto& [id, t] : touched) write_cache_[id] = std::move(t.record);
  return outcome;
}

absl::Status EventStore::ApplyIndicator(CycleRecord* cycle, const rollertrace::v1::IndicatorReport& report,
                                        int64_t now, rocksdb::WriteBatch& wb, TouchedMap& touched,
                                        BiologicalIndicatorOutcome* outcome, const PendingCycles* pending) {
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
    absl::StatusOr<Touched*> t = roller_id == steriliser ? nullptr : Touch(touched, roller_id);
    if (!t.ok()) return t.status();
    if (*t == nullptr) continue;
    auto* last = (*t)->record.mutable_state()->mutable_roller()->mutable_last_cycle();
    if (last->steriliser_id() == steriliser && last->cycle_number() == number) {
      last->set_biological_indicator(cycle->biological_indicator());
    }
  }
  // A failed indicator from any source is reason enough to recall, even where
  // the lab's PASS is what counts for the rules.
  if (report.result() != rollertrace::v1::INDICATOR_FAIL) return absl::OkStatus();
  // One recall per cycle: a second failed report adds nothing to reach.
  rollertrace::v1::RecallReport existing;
  absl::StatusOr<bool> recalled = Read(db_.get(), recalls_, DeviceSequenceKey(steriliser, number), &existing);
  if (!recalled.ok()) return recalled.status();
  if (*recalled) return absl::OkStatus();
  return RecallFrom(*cycle, now, wb, touched, outcome, pending);
}

absl::Status EventStore::RecallFrom(const CycleRecord& failed, int64_t now, rocksdb::WriteBatch& wb,
                                    TouchedMap& touched, BiologicalIndicatorOutcome* outcome,
                                    const PendingCycles* pending) {
  const std::string& steriliser = failed.cycle().steriliser_id();
  const uint64_t failed_number = failed.cycle().cycle_number();
  rollertrace::v1::RecallReport& report = outcome->recall;
  outcome->recalled = true;
  report.set_steriliser_id(steriliser);
  report.set_failed_cycle(failed_number);
  report.set_recalled_unix_ms(now);

  // The steriliser's cycles as this write sees them: on disk, then this batch's.
  std::map<uint64_t, CycleRecord> cycles;
  const std::string prefix = DevicePrefix(steriliser);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cycles_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    CycleRecord c;
    if (!c.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError(util::Cat("a cycle record of ", steriliser, " is corrupt"));
    }
    cycles[c.cycle().cycle_number()] = std::move(c);
  }
  if (!it->status().ok()) return absl::InternalError(util::Cat("read cycles: ", it->status().ToString()));
  if (pending != nullptr) {
    for (const auto& [number, c] : *pending) cycles[number] = c;
  }
  cycles[failed_number] = failed;

  // Back to the last negative biological indicator before the failure: only
  // the lab's PASS counts (a steriliser cannot vouch for its own cycle).
  for (auto c = cycles.lower_bound(failed_number); c != cycles.begin();) {
    --c;
    if (c->second.biological_indicator() == rollertrace::v1::INDICATOR_PASS) {
      report.set_last_negative_cycle(c->first);
      break;
    }
  }
  // Every load since then is suspect, the failed one and any later ones included.
  std::set<uint64_t> suspect;
  for (auto c = cycles.upper_bound(report.last_negative_cycle()); c != cycles.end(); ++c) {
    suspect.insert(c->first);
    *report.add_suspect_cycles() = c->second;
  }
  std::set<std::string> patients;
  std::set<std::string> locked;
  const std::string reason = util::Cat("recall: cycle ", steriliser, "#", failed_number,
                                       " failed its biological indicator");
  for (const CycleRecord& c : report.suspect_cycles()) {
    const std::string cycle_prefix = DeviceSequenceKey(steriliser, c.cycle().cycle_number());
    std::unique_ptr<rocksdb::Iterator> idx(db_->NewIterator(rocksdb::ReadOptions(), cycle_sessions_));
    for (idx->Seek(cycle_prefix); idx->Valid() && idx->key().starts_with(cycle_prefix); idx->Next()) {
      std::string_view rest(idx->key().data() + cycle_prefix.size(), idx->key().size() - cycle_prefix.size());
      auto session_key = DecodeDeviceSequenceKey(rest);
      if (!session_key) continue;
      SessionRecord session;
      const std::string key = DeviceSequenceKey(session_key->device_id, session_key->sequence);
      absl::StatusOr<bool> found = Read(db_.get(), sessions_, key, &session);
      if (!found.ok()) return found.status();
      if (!*found) continue;
      session.set_at_risk(true);
      session.set_at_risk_reason(reason);
      absl::StatusOr<Touched*> owner = Touch(touched, session_key->device_id);
      if (!owner.ok()) return owner.status();
      if (*owner == nullptr) return absl::DataLossError(util::Cat("session of unregistered ", session_key->device_id));
      PutRecord(wb, &(*owner)->record, sessions_, key, session.SerializeAsString(), now);
      patients.insert(session.patient_pseudonym());
      *report.add_sessions_at_risk() = std::move(session);
    }
    // Rollers of this load not sterilised again since are locked.
    for (const std::string& roller_id : c.cycle().load()) {
      absl::StatusOr<Touched*> t = Touch(touched, roller_id);
      if (!t.ok()) return t.status();
      if (*t == nullptr) continue;
      DeviceRecord& roller = (*t)->record;
      const auto& last = roller.state().roller().last_cycle();
      if (last.steriliser_id() != steriliser || !suspect.count(last.cycle_number())) continue;
      if (Retired(roller) || locked.count(roller_id)) continue;
      if (!Locked(roller)) {
        outcome->commands.push_back(MakeCommand(roller_id, "lock", reason, now));
        Log(wb, &roller, now, "locked", reason, "rollertrace");
      }
      Lock(&roller, reason, now);
      locked.insert(roller_id);
    }
  }
  for (const auto& p : patients) report.add_patients(p);
  for (const auto& r : locked) report.add_locked_rollers(r);
  absl::StatusOr<Touched*> owner = Touch(touched, steriliser);
  if (!owner.ok()) return owner.status();
  if (*owner == nullptr) return absl::FailedPreconditionError(util::Cat("steriliser ", steriliser, " is not registered"));
  PutRecord(wb, &(*owner)->record, recalls_, DeviceSequenceKey(steriliser, failed_number), report.SerializeAsString(),
            now);
  return absl::OkStatus();
}

absl::StatusOr<rollertrace::v1::Device> EventStore::Unlock(std::string_view device_id, std::string_view reason,
                                                           std::string_view by, int64_t now,
                                                           rollertrace::v1::Command* command) {
  if (reason.empty() || by.empty()) return absl::InvalidArgumentError("an unlock needs a reason and who releases it");
  std::lock_guard<std::mutex> lock(write_mu_);
  DeviceRecord record;
  absl::StatusOr<bool> found = LoadDeviceForWrite(std::string(device_id), &record);
  if (!found.ok()) return found.status();
  if (!*found) return absl::NotFoundError(util::Cat("device ", device_id, " is not registered"));
  if (!Locked(record)) return absl::FailedPreconditionError(util::Cat("device ", device_id, " is not locked"));
  auto* use = record.mutable_state()->mutable_roller();
  const bool sterile = use->last_passing_cycle_end_unix_ms() >
                       std::max(use->last_session_end_unix_ms(), use->last_session_start_unix_ms());
  record.mutable_device()->set_lifecycle(sterile                                           ? rollertrace::v1::LIFECYCLE_STERILE
                                         : record.state().sessions_started() > 0 ? rollertrace::v1::LIFECYCLE_USED
                                                                                  : rollertrace::v1::LIFECYCLE_REGISTERED);
  use->set_unlocked_by(std::string(by));
  use->set_unlock_reason(std::string(reason));
  use->set_unlocked_unix_ms(now);
  use->clear_lock_reason();
  use->clear_locked_unix_ms();
  rocksdb::WriteBatch wb;
  Log(wb, &record, now, "unlocked", std::string(reason), std::string(by));
  StageDevice(wb, record, now);
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  rocksdb::Status st = db_->Write(wo, &wb);
  if (!st.ok()) return absl::InternalError(util::Cat("unlock: ", st.ToString()));
  write_cache_[std::string(device_id)] = record;
  *command = MakeCommand(std::string(device_id), "unlock", std::string(reason), now);
  return record.device();
}

void EventStore::RecordFinding(rocksdb::WriteBatch& wb, DeviceRecord* owner, rollertrace::v1::Finding finding,
                               int64_t now, AppendResult* result) {
  finding.set_detected_unix_ms(now);
  std::string key = DeviceSequenceKey(finding.device_id(), finding.sequence());
  key += finding.kind();
  PutRecord(wb, owner, findings_, key, finding.SerializeAsString(), now);
  result->findings.push_back(std::move(finding));
}

absl::Status EventStore::CycleBefore(const std::string& roller_id, int64_t start, rollertrace::v1::RollerUse* use) const {
  if (use->last_cycle().end_unix_ms() <= start && use->last_passing_cycle_end_unix_ms() <= start) {
    return absl::OkStatus();
  }
  // The roller's latest cycle ends after the session started: the session
  // relied on the cycles before it, replayed in the order they ended.
  use->clear_last_cycle();
  use->set_last_passing_cycle_end_unix_ms(0);
  const std::string prefix = DevicePrefix(roller_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), roller_cycles_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    if (key.size() < prefix.size() + 8) return absl::DataLossError("a roller-cycle index entry is corrupt");
    if (static_cast<int64_t>(ReadBigEndian64(key.substr(prefix.size()))) > start) break;
    auto cycle = DecodeDeviceSequenceKey(key.substr(prefix.size() + 8));
    if (!cycle) return absl::DataLossError("a roller-cycle index entry is corrupt");
    CycleRecord c;
    absl::StatusOr<bool> found = Read(db_.get(), cycles_, DeviceSequenceKey(cycle->device_id, cycle->sequence), &c);
    if (!found.ok()) return found.status();
    if (!*found) continue;
    rules::CycleVerdict verdict;
    verdict.parameters_passed = c.parameters_passed();
    rules::ApplyCycle(c.cycle(), verdict, c.biological_indicator(), use);
  }
  if (!it->status().ok()) return absl::InternalError(util::Cat("read roller cycles: ", it->status().ToString()));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<rollertrace::v1::Finding>> EventStore::Findings(std::string_view device_id) const {
  std::vector<rollertrace::v1::Finding> out;
  const std::string prefix = DevicePrefix(device_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), findings_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (!out.emplace_back().ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError(util::Cat("a finding of ", device_id, " is corrupt"));
    }
  }
  if (!it->status().ok()) return absl::InternalError(util::Cat("read findings: ", it->status().ToString()));
  return out;
}

void EventStore::IndexSession(rocksdb::WriteBatch& wb, const SessionRecord& s) {
  const std::string key = DeviceSequenceKey(s.device_id(), s.sequence());
  if (!s.cycle().steriliser_id().empty()) {
    wb.Put(cycle_sessions_, CycleSessionKey(s.cycle().steriliser_id(), s.cycle().cycle_number(), s.device_id(),
                                            s.sequence()),
           "");
  }
  wb.Put(sessions_by_time_, TimeKey(s.start_unix_ms(), s.device_id(), s.sequence()), "");
  wb.Put(patient_sessions_, DevicePrefix(s.patient_pseudonym()) + key, "");
}

void EventStore::IndexViolation(rocksdb::WriteBatch& wb, const rollertrace::v1::Violation& v,
                                const std::string& violation_key) {
  wb.Put(device_violations_, DeviceSequenceKey(v.device_id(), v.sequence()) + v.rule(), violation_key);
}

void EventStore::IndexCycle(rocksdb::WriteBatch& wb, const CycleRecord& c) {
  const auto& cycle = c.cycle();
  const std::string cycle_key = DeviceSequenceKey(cycle.steriliser_id(), cycle.cycle_number());
  for (const std::string& roller_id : cycle.load()) {
    if (std::find(c.unknown_load().begin(), c.unknown_load().end(), roller_id) != c.unknown_load().end()) continue;
    wb.Put(roller_cycles_, DeviceSequenceKey(roller_id, static_cast<uint64_t>(cycle.end_unix_ms())) + cycle_key, "");
  }
  wb.Put(cycles_by_time_,
         TimeKey(cycle.end_unix_ms() > 0 ? cycle.end_unix_ms() : c.received_unix_ms(), cycle.steriliser_id(),
                 cycle.cycle_number()),
         "");
}

absl::StatusOr<EventStore::Touched*> EventStore::Touch(TouchedMap& touched, const std::string& device_id) {
  if (auto it = touched.find(device_id); it != touched.end()) return &it->second;
  Touched t;
  absl::StatusOr<bool> found = LoadDeviceForWrite(device_id, &t.record);
  if (!found.ok()) return found.status();
  if (!*found) return nullptr;
  return &touched.emplace(device_id, std::move(t)).first->second;
}

void EventStore::Log(rocksdb::WriteBatch& wb, DeviceRecord* device, int64_t now, const char* kind,
                     const std::string& reason, const std::string& by) {
  const std::string& device_id = device->device().device_id();
  rollertrace::v1::DeviceLogEntry entry;
  entry.set_device_id(device_id);
  entry.set_unix_ms(now);
  entry.set_kind(kind);
  entry.set_reason(reason);
  entry.set_by(by);
  std::string key = DevicePrefix(device_id);
  AppendBigEndian64(&key, static_cast<uint64_t>(now));
  AppendBigEndian64(&key, ++decision_counter_);
  PutRecord(wb, device, device_log_, key, entry.SerializeAsString(), now);
}

absl::StatusOr<rollertrace::v1::RollerTrail> EventStore::RollerTrail(std::string_view device_id) const {
  rollertrace::v1::RollerTrail trail;
  absl::StatusOr<DeviceRecord> record = GetDevice(device_id);
  if (!record.ok()) return record.status();
  *trail.mutable_roller() = *record;
  const std::string prefix = DevicePrefix(device_id);
  auto scan = [&](rocksdb::ColumnFamilyHandle* cf, const std::function<absl::Status(std::string_view key,
                                                                                     std::string_view value)>& f) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      absl::Status s = f(std::string_view(it->key().data(), it->key().size()),
                         std::string_view(it->value().data(), it->value().size()));
      if (!s.ok()) return s;
    }
    return it->status().ok() ? absl::OkStatus() : absl::InternalError(it->status().ToString());
  };
  absl::Status s = scan(device_log_, [&](std::string_view, std::string_view v) {
    return trail.add_log()->ParseFromArray(v.data(), static_cast<int>(v.size()))
               ? absl::OkStatus()
               : absl::DataLossError("a device log entry is corrupt");
  });
  if (!s.ok()) return s;
  s = scan(roller_cycles_, [&](std::string_view key, std::string_view) {
    auto cycle = DecodeDeviceSequenceKey(key.substr(prefix.size() + 8));
    if (!cycle) return absl::DataLossError("a roller-cycle index entry is corrupt");
    absl::StatusOr<CycleRecord> c = GetCycle(cycle->device_id, cycle->sequence);
    if (!c.ok()) return c.status();
    *trail.add_cycles() = std::move(*c);
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  absl::StatusOr<std::vector<SessionRecord>> sessions = Sessions(device_id);
  if (!sessions.ok()) return sessions.status();
  for (auto& x : *sessions) *trail.add_sessions() = std::move(x);
  s = scan(device_violations_, [&](std::string_view, std::string_view main_key) {
    rollertrace::v1::Violation v;
    absl::StatusOr<bool> found = Read(db_.get(), violations_, std::string(main_key), &v);
    if (!found.ok()) return found.status();
    if (*found) *trail.add_violations() = std::move(v);
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  absl::StatusOr<std::vector<rollertrace::v1::Finding>> findings = Findings(device_id);
  if (!findings.ok()) return findings.status();
  for (auto& f : *findings) *trail.add_findings() = std::move(f);
  for (uint64_t next = 1; next != 0;) {
    absl::StatusOr<rollertrace::v1::HistoryResponse> page = History(device_id, next, 1000);
    if (!page.ok()) return page.status();
    for (auto& e : *page->mutable_events()) *trail.add_events() = std::move(e);
    next = page->next_sequence();
  }
  return trail;
}

absl::StatusOr<rollertrace::v1::PatientTrail> EventStore::PatientTrail(std::string_view pseudonym) const {
  rollertrace::v1::PatientTrail trail;
  trail.set_patient_pseudonym(std::string(pseudonym));
  const std::string prefix = DevicePrefix(pseudonym);
  std::set<std::pair<std::string, uint64_t>> cycles;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), patient_sessions_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    auto session_key = DecodeDeviceSequenceKey(std::string_view(it->key().data() + prefix.size(),
                                                                it->key().size() - prefix.size()));
    if (!session_key) return absl::DataLossError("a patient index entry is corrupt");
    SessionRecord session;
    absl::StatusOr<bool> found = Read(db_.get(), sessions_,
                                      DeviceSequenceKey(session_key->device_id, session_key->sequence), &session);
    if (!found.ok()) return found.status();
    if (!*found) continue;
    if (!session.cycle().steriliser_id().empty()) {
      cycles.emplace(session.cycle().steriliser_id(), session.cycle().cycle_number());
    }
    *trail.add_sessions() = std::move(session);
  }
  std::sort(trail.mutable_sessions()->begin(), trail.mutable_sessions()->end(),
            [](const SessionRecord& a, const SessionRecord& b) { return a.start_unix_ms() < b.start_unix_ms(); });
  for (const auto& [steriliser, number] : cycles) {
    absl::StatusOr<CycleRecord> c = GetCycle(steriliser, number);
    if (c.ok()) *trail.add_cycles() = std::move(*c);
  }
  return trail;
}

absl::StatusOr<rollertrace::v1::CycleTrail> EventStore::CycleTrail(std::string_view steriliser_id,
                                                                   uint64_t cycle) const {
  rollertrace::v1::CycleTrail trail;
  absl::StatusOr<CycleRecord> c = GetCycle(steriliser_id, cycle);
  if (!c.ok()) return c.status();
  *trail.mutable_cycle() = std::move(*c);
  const std::string prefix = DeviceSequenceKey(steriliser_id, cycle);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cycle_sessions_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    auto session_key = DecodeDeviceSequenceKey(std::string_view(it->key().data() + prefix.size(),
                                                                it->key().size() - prefix.size()));
    if (!session_key) return absl::DataLossError("a cycle index entry is corrupt");
    SessionRecord session;
    absl::StatusOr<bool> found = Read(db_.get(), sessions_,
                                      DeviceSequenceKey(session_key->device_id, session_key->sequence), &session);
    if (!found.ok()) return found.status();
    if (*found) *trail.add_sessions() = std::move(session);
  }
  absl::StatusOr<std::vector<rollertrace::v1::Finding>> findings = Findings(steriliser_id);
  if (!findings.ok()) return findings.status();
  for (auto& f : *findings) {
    if (f.cycle_number() == cycle) *trail.add_findings() = std::move(f);
  }
  return trail;
}

absl::StatusOr<CycleRecord> EventStore::GetCycle(std::string_view steriliser_id, uint64_t cycle) const {
  CycleRecord c;
  absl::StatusOr<bool> found = Read(db_.get(), cycles_, DeviceSequenceKey(steriliser_id, cycle), &c);
  if (!found.ok()) return found.status();
  if (!*found) return absl::NotFoundError(util::Cat("no cycle ", cycle, " of steriliser ", steriliser_id));
  return c;
}

absl::StatusOr<rollertrace::v1::RecallReport> EventStore::GetRecall(std::string_view steriliser_id,
                                                                    uint64_t cycle) const {
  rollertrace::v1::RecallReport r;
  absl::StatusOr<bool> found = Read(db_.get(), recalls_, DeviceSequenceKey(steriliser_id, cycle), &r);
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(util::Cat("no recall for cycle ", steriliser_id, "#", cycle,
                                         " (a recall starts when its biological indicator fails)"));
  }
  return r;
}

absl::StatusOr<std::vector<rollertrace::v1::Violation>> EventStore::ListViolations(const ViolationFilter& f) const {
  std::vector<rollertrace::v1::Violation> out;
  auto keep = [&](std::string_view key, std::string_view value) -> absl::Status {
    auto parts = DecodeTimeKey(key);
    if (!parts) return absl::DataLossError("a violation key is corrupt");
    if (parts->unix_ms < f.from_unix_ms || (f.to_unix_ms > 0 && parts->unix_ms >= f.to_unix_ms)) {
      return absl::OkStatus();
    }
    rollertrace::v1::Violation v;
    if (!v.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      return absl::DataLossError("a violation record is corrupt");
    }
    if (!f.rule.empty() && v.rule() != f.rule) return absl::OkStatus();
    if (!f.device_id.empty() && v.device_id() != f.device_id) return absl::OkStatus();
    if (f.severity != rollertrace::v1::SEVERITY_UNSPECIFIED && v.severity() != f.severity) return absl::OkStatus();
    out.push_back(std::move(v));
    return absl::OkStatus();
  };
  if (!f.device_id.empty()) {
    // One roller: its index, then each violation by its key; in detection order.
    const std::string prefix = DevicePrefix(f.device_id);
    std::unique_ptr<rocksdb::Iterator> idx(db_->NewIterator(rocksdb::ReadOptions(), device_violations_));
    std::vector<std::string> keys;
    for (idx->Seek(prefix); idx->Valid() && idx->key().starts_with(prefix); idx->Next()) {
      keys.push_back(idx->value().ToString());
    }
    std::sort(keys.begin(), keys.end());
    for (const std::string& key : keys) {
      std::string value;
      rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), violations_, key, &value);
      if (s.IsNotFound()) continue;
      if (!s.ok()) return absl::InternalError(util::Cat("read violation: ", s.ToString()));
      if (absl::Status k = keep(key, value); !k.ok()) return k;
    }
    return out;
  }
  std::string start;
  AppendBigEndian64(&start, static_cast<uint64_t>(std::max<int64_t>(f.from_unix_ms, 0)));
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), violations_));
  for (it->Seek(start); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    if (f.to_unix_ms > 0 && static_cast<int64_t>(ReadBigEndian64(key)) >= f.to_unix_ms) break;
    if (absl::Status k = keep(key, std::string_view(it->value().data(), it->value().size())); !k.ok()) return k;
  }
  return out;
}

absl::StatusOr<uint64_t> EventStore::CountPendingBiologicalIndicators() const {
  uint64_t pending = 0;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cycles_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    CycleRecord c;
    if (!c.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) continue;
    if (!IndicatorKnown(c.biological_indicator())) ++pending;
  }
  return pending;
}

absl::StatusOr<std::vector<SessionRecord>> EventStore::Sessions(std::string_view device_id) const {
  std::vector<SessionRecord> out;
  const std::string prefix = DevicePrefix(device_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), sessions_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (!out.emplace_back().ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError("a session record is corrupt");
    }
  }
  return out;
}

}  // namespace rollertrace::store
