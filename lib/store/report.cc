// EventStore::Report: a period's compliance report, read from the time
// indexes (sessions_by_time, cycles_by_time, violations) and the small
// registries (devices, recalls).
#include <rocksdb/db.h>

#include <algorithm>
#include <map>
#include <set>

#include "store/event_store.h"
#include "store/keys.h"
#include "store/read.h"
#include "util/cat.h"

namespace rollertrace::store {
namespace {

constexpr int64_t kDayMs = 86'400'000;
// Periods longer than this are counted by week rather than by day.
constexpr int64_t kDailyUpTo = 92 * kDayMs;

bool IndicatorKnown(rollertrace::v1::IndicatorResult r) {
  return r == rollertrace::v1::INDICATOR_PASS || r == rollertrace::v1::INDICATOR_FAIL;
}

// Calls f(parts) for every TimeKey of `cf` in [from, to).
template <typename F>
absl::Status ScanTime(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, int64_t from, int64_t to, F f) {
  std::string start;
  AppendBigEndian64(&start, static_cast<uint64_t>(std::max<int64_t>(from, 0)));
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf));
  for (it->Seek(start); it->Valid(); it->Next()) {
    auto parts = DecodeTimeKey(std::string_view(it->key().data(), it->key().size()));
    if (!parts) return absl::DataLossError(util::Cat("a ", cf->GetName(), " index entry is corrupt"));
    if (parts->unix_ms >= to) break;
    if (absl::Status s = f(*parts, std::string_view(it->value().data(), it->value().size())); !s.ok()) return s;
  }
  return it->status().ok() ? absl::OkStatus() : absl::InternalError(it->status().ToString());
}

}  // namespace

absl::StatusOr<rollertrace::v1::PeriodReport> EventStore::Report(int64_t from, int64_t to, int64_t now) const {
  if (to <= 0) to = now;
  if (from < 0 || from >= to) {
    return absl::InvalidArgumentError(util::Cat("the report period must start before it ends (from ", from,
                                                " ms, to ", to, " ms)"));
  }
  rollertrace::v1::PeriodReport r;
  r.set_from_unix_ms(from);
  r.set_to_unix_ms(to);
  r.set_generated_unix_ms(now);
  const int64_t bucket = to - from > kDailyUpTo ? 7 * kDayMs : kDayMs;
  r.set_bucket_ms(bucket);
  const int64_t first_bucket = from / kDayMs * kDayMs;
  std::vector<rollertrace::v1::ReportBucket*> buckets;
  for (int64_t t = first_bucket; t < to; t += bucket) {
    auto* b = r.add_buckets();
    b->set_start_unix_ms(t);
    buckets.push_back(b);
  }
  auto bucket_of = [&](int64_t t) { return buckets[static_cast<size_t>((t - first_bucket) / bucket)]; };

  // Sessions that started in the period.
  std::set<std::string> patients;
  absl::Status s = ScanTime(db_.get(), sessions_by_time_, from, to, [&](const TimeKeyParts& k, std::string_view) {
    rollertrace::v1::SessionRecord session;
    absl::StatusOr<bool> found = Read(db_.get(), sessions_, DeviceSequenceKey(k.device_id, k.sequence), &session);
    if (!found.ok()) return found.status();
    if (!*found) return absl::OkStatus();
    r.set_sessions(r.sessions() + 1);
    auto* b = bucket_of(k.unix_ms);
    b->set_sessions(b->sessions() + 1);
    if (!session.decision().allowed()) {
      r.set_sessions_denied(r.sessions_denied() + 1);
      b->set_sessions_denied(b->sessions_denied() + 1);
    }
    if (session.offline_decision()) r.set_sessions_offline(r.sessions_offline() + 1);
    if (session.at_risk()) r.set_sessions_at_risk(r.sessions_at_risk() + 1);
    patients.insert(session.patient_pseudonym());
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  r.set_patients(static_cast<uint32_t>(patients.size()));

  // Violations detected in the period.
  std::map<std::string, uint32_t> by_rule;
  s = ScanTime(db_.get(), violations_, from, to, [&](const TimeKeyParts& k, std::string_view value) {
    auto* v = r.add_violation_list();
    if (!v->ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      return absl::DataLossError("a violation record is corrupt");
    }
    ++by_rule[v->rule()];
    // Counted on the day of the session that broke the rule (within the period).
    const int64_t at = v->session_start_unix_ms() > 0 ? v->session_start_unix_ms() : k.unix_ms;
    auto* b = bucket_of(std::clamp(at, from, to - 1));
    b->set_violations(b->violations() + 1);
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  r.set_violations(static_cast<uint32_t>(r.violation_list_size()));
  for (const auto& [rule, count] : by_rule) {
    auto* c = r.add_violations_by_rule();
    c->set_rule(rule);
    c->set_count(count);
  }

  // Cycles: those that ended in the period, and every earlier one still waiting for its indicator.
  std::set<std::pair<std::string, uint64_t>> seen;
  s = ScanTime(db_.get(), cycles_by_time_, 0, to, [&](const TimeKeyParts& k, std::string_view) {
    if (!seen.emplace(k.device_id, k.sequence).second) return absl::OkStatus();
    rollertrace::v1::CycleRecord c;
    absl::StatusOr<bool> found = Read(db_.get(), cycles_, DeviceSequenceKey(k.device_id, k.sequence), &c);
    if (!found.ok()) return found.status();
    if (!*found) return absl::OkStatus();
    const auto bi = c.biological_indicator();
    if (!IndicatorKnown(bi)) *r.add_pending_indicators() = c;
    if (k.unix_ms < from) return absl::OkStatus();
    r.set_cycles(r.cycles() + 1);
    auto* b = bucket_of(k.unix_ms);
    b->set_cycles(b->cycles() + 1);
    if (!c.parameters_passed()) {
      r.set_cycles_failed(r.cycles_failed() + 1);
      b->set_cycles_failed(b->cycles_failed() + 1);
    }
    if (bi == rollertrace::v1::INDICATOR_PASS) r.set_indicators_passed(r.indicators_passed() + 1);
    if (bi == rollertrace::v1::INDICATOR_FAIL) r.set_indicators_failed(r.indicators_failed() + 1);
    *r.add_cycle_list() = std::move(c);
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  r.set_indicators_pending(static_cast<uint32_t>(r.pending_indicators_size()));

  // Rollers: registered by the end, locked now, retired in the period.
  absl::StatusOr<std::vector<rollertrace::v1::DeviceRecord>> devices = ListDevices(rollertrace::v1::DEVICE_KIND_ROLLER);
  if (!devices.ok()) return devices.status();
  for (auto& d : *devices) {
    if (d.device().registered_unix_ms() < to) r.set_rollers_registered(r.rollers_registered() + 1);
    if (d.device().lifecycle() == rollertrace::v1::LIFECYCLE_LOCKED) *r.add_locked_rollers() = d;
    if (d.device().lifecycle() == rollertrace::v1::LIFECYCLE_RETIRED && d.device().retired_unix_ms() >= from &&
        d.device().retired_unix_ms() < to) {
      *r.add_retired_rollers() = d;
    }
  }

  // Recalls started in the period (a few per year at most: read them all).
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), recalls_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    rollertrace::v1::RecallReport recall;
    if (!recall.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError("a recall record is corrupt");
    }
    if (recall.recalled_unix_ms() >= from && recall.recalled_unix_ms() < to) *r.add_recalls() = std::move(recall);
  }
  // Findings detected in the period (rare: read them all).
  std::unique_ptr<rocksdb::Iterator> f(db_->NewIterator(rocksdb::ReadOptions(), findings_));
  for (f->SeekToFirst(); f->Valid(); f->Next()) {
    rollertrace::v1::Finding finding;
    if (!finding.ParseFromArray(f->value().data(), static_cast<int>(f->value().size()))) {
      return absl::DataLossError("a finding record is corrupt");
    }
    if (finding.detected_unix_ms() >= from && finding.detected_unix_ms() < to) *r.add_findings() = std::move(finding);
  }
  return r;
}

}  // namespace rollertrace::store
