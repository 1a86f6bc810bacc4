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
  // Device clocks are trusted only up to the allowed skew ahead of ours.
  const int64_t at = std::min(event.device_time_unix_ms() > 0 ? event.device_time_unix_ms() : now,
                              now + policy.max_clock_skew_ms);

  switch (event.body_case()) {
    case Event::kSessionStarted: {
      const auto& started = event.session_started();
      rules::RollerFacts facts = FactsOf(record);
      rules::Decision verdict = rules::Decide(policy, facts, rules::RequestFor(started, started.patient_pseudonym(), at));

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
      *session.mutable_cycle() = use->last_cycle();
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
      const auto& cycle = event.sterilisation_cycle();
      rules::CycleVerdict verdict = rules::EvaluateCycle(policy, cycle);
      CycleRecord cr;
      *cr.mutable_cycle() = cycle;
      cr.mutable_cycle()->set_steriliser_id(event.device_id());
      cr.set_parameters_passed(verdict.parameters_passed);
      for (auto& r : verdict.reasons) cr.add_failure_reasons(r);
      cr.set_received_unix_ms(now);
      for (const std::string& roller_id : cycle.load()) {
        absl::StatusOr<Touched*> t = roller_id == event.device_id() ? nullptr : Touch(touched, roller_id);
        if (!t.ok()) return t.status();
        if (*t == nullptr || (*t)->record.device().kind() != rollertrace::v1::DEVICE_KIND_ROLLER) {
          cr.add_unknown_load(roller_id);
          continue;
        }
        DeviceRecord& roller = (*t)->record;
        rules::ApplyCycle(cr.cycle(), verdict, roller.mutable_state()->mutable_roller());
        if (verdict.parameters_passed) SetLifecycle(&roller, rollertrace::v1::LIFECYCLE_STERILE);
      }
      PutRecord(wb, &record, cycles_, DeviceSequenceKey(event.device_id(), cycle.cycle_number()),
                cr.SerializeAsString(), now);
      IndexCycle(wb, cr);
      result->cycles.push_back(std::move(cr));
      break;
    }
    default:
      break;
  }
  return absl::OkStatus();
}

absl::StatusOr<Decision> EventStore::Authorize(const rollertrace::v1::AuthorizeRequest& request, int64_t now) {
  std::lock_guard<std::mutex> lock(write_mu_);
  DeviceRecord record;
  absl::StatusOr<bool> found = LoadDeviceForWrite(request.device_id(), &record);
  if (!found.ok()) return found.status();
  rules::RollerFacts facts;
  if (*found && record.device().kind() == rollertrace::v1::DEVICE_KIND_ROLLER) facts = FactsOf(record);
  const auto& s = request.session();
  const int64_t start = request.start_unix_ms() > 0
                            ? std::min(request.start_unix_ms(), now + options_.policy.max_clock_skew_ms)
                            : now;
  rules::Decision verdict = rules::Decide(options_.policy, facts, rules::RequestFor(s, s.patient_pseudonym(), start));
  Decision d;
  d.set_decision_id(util::Cat(request.device_id(), "-d", now, "-", ++decision_counter_));
  d.set_device_id(request.device_id());
  d.set_allowed(verdict.allowed);
  for (auto& h : verdict.hits) *d.add_hits() = h;
  d.set_decided_unix_ms(now);
  d.set_correlation_id(request.correlation_id());
  d.set_patient_pseudonym(s.patient_pseudonym());
  if (facts.registered) {
    auto* snap = d.mutable_roller();
    *snap->mutable_device() = facts.device;
    *snap->mutable_use() = facts.use;
    snap->set_sessions_started(facts.sessions_started);
    snap->set_total_revolutions(facts.total_revolutions);
  }
  if (*found) {  // decisions about unknown ids are answered, not stored
    std::string key = DevicePrefix(request.device_id());
    AppendBigEndian64(&key, static_cast<uint64_t>(now));
    AppendBigEndian64(&key, decision_counter_);
    rocksdb::WriteBatch wb;
    PutRecord(wb, &record, decisions_, key, d.SerializeAsString(), now);
    StageDevice(wb, record, now);
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    rocksdb::Status st = db_->Write(wo, &wb);
    if (!st.ok()) return absl::InternalError(util::Cat("store decision: ", st.ToString()));
    write_cache_[request.device_id()] = std::move(record);
  }
  return d;
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
  const auto previous = outcome.cycle.cycle().biological_indicator();
  if (previous == rollertrace::v1::INDICATOR_PASS || previous == rollertrace::v1::INDICATOR_FAIL) {
    if (previous == request.result()) return outcome;  // recorded already
    return absl::FailedPreconditionError(util::Cat("cycle ", request.steriliser_id(), "#", request.cycle_number(),
                                                   " already has a biological-indicator result"));
  }
  outcome.cycle.mutable_cycle()->set_biological_indicator(request.result());
  outcome.cycle.set_bi_recorded_unix_ms(now);
  outcome.cycle.set_bi_recorded_by(request.recorded_by());

  rocksdb::WriteBatch wb;
  TouchedMap touched;
  absl::StatusOr<Touched*> steriliser = Touch(touched, request.steriliser_id());
  if (!steriliser.ok()) return steriliser.status();
  if (*steriliser == nullptr) {
    return absl::FailedPreconditionError(util::Cat("steriliser ", request.steriliser_id(), " is not registered"));
  }
  PutRecord(wb, &(*steriliser)->record, cycles_, key, outcome.cycle.SerializeAsString(), now);
  for (const std::string& roller_id : outcome.cycle.cycle().load()) {
    absl::StatusOr<Touched*> t = Touch(touched, roller_id);
    if (!t.ok()) return t.status();
    if (*t == nullptr) continue;
    auto* last = (*t)->record.mutable_state()->mutable_roller()->mutable_last_cycle();
    if (last->steriliser_id() == request.steriliser_id() && last->cycle_number() == request.cycle_number()) {
      last->set_biological_indicator(request.result());
    }
  }
  if (request.result() == rollertrace::v1::INDICATOR_FAIL) {
    if (absl::Status s = RecallFrom(outcome.cycle, now, wb, touched, &outcome); !s.ok()) return s;
  }
  for (auto& [id, t] : touched) StageDevice(wb, t.record, now);
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  rocksdb::Status st = db_->Write(wo, &wb);
  if (!st.ok()) return absl::InternalError(util::Cat("record biological indicator: ", st.ToString()));
  for (auto& [id, t] : touched) write_cache_[id] = std::move(t.record);
  return outcome;
}

absl::Status EventStore::RecallFrom(const CycleRecord& failed, int64_t now, rocksdb::WriteBatch& wb,
                                    TouchedMap& touched, BiologicalIndicatorOutcome* outcome) {
  const std::string& steriliser = failed.cycle().steriliser_id();
  const uint64_t failed_number = failed.cycle().cycle_number();
  rollertrace::v1::RecallReport& report = outcome->recall;
  outcome->recalled = true;
  report.set_steriliser_id(steriliser);
  report.set_failed_cycle(failed_number);
  report.set_recalled_unix_ms(now);

  // Back to the last negative (passing) biological indicator before the failure.
  const std::string prefix = DevicePrefix(steriliser);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cycles_));
  for (it->SeekForPrev(DeviceSequenceKey(steriliser, failed_number - 1));
       failed_number > 1 && it->Valid() && it->key().starts_with(prefix); it->Prev()) {
    CycleRecord c;
    if (!c.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) continue;
    if (c.cycle().biological_indicator() == rollertrace::v1::INDICATOR_PASS) {
      report.set_last_negative_cycle(c.cycle().cycle_number());
      break;
    }
  }
  // Every load since then is suspect, the failed one and any later ones included.
  std::set<uint64_t> suspect;
  for (it->Seek(DeviceSequenceKey(steriliser, report.last_negative_cycle() + 1));
       it->Valid() && it->key().starts_with(prefix); it->Next()) {
    CycleRecord c;
    if (!c.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) continue;
    if (c.cycle().cycle_number() == failed_number) c = failed;
    suspect.insert(c.cycle().cycle_number());
    *report.add_suspect_cycles() = c;
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
    const auto bi = c.cycle().biological_indicator();
    if (bi != rollertrace::v1::INDICATOR_PASS && bi != rollertrace::v1::INDICATOR_FAIL) ++pending;
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
