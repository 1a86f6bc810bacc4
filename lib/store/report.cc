// EventStore::Report: a period's compliance report, read from the time
// indexes (sessions_by_time, cycles_by_time, violations) and the small
// registries (devices, recalls).
#include <algorithm>
#include <map>
#include <set>

#include "codec/limits.h"
#include "codec/report_lists.h"
#include "store/audit_internal.h"
#include "store/keys.h"
#include "util/cat.h"

namespace rollertrace::store {
namespace {

constexpr int64_t kDayMs = 86'400'000;
// Periods longer than this are counted by week rather than by day.
constexpr int64_t kDailyUpTo = 92 * kDayMs;

using audit::IndicatorKnown;

// Calls f(parts, value) for every TimeKey of `family` in [from, to).
absl::Status ScanTime(const ReadView& view, Family family, int64_t from, int64_t to,
                      const std::function<absl::Status(const TimeKeyParts&, std::string_view)>& f) {
  return view.Scan(
      family, {},
      [&](std::string_view key, std::string_view value) -> absl::StatusOr<bool> {
        auto parts = DecodeTimeKey(key);
        if (!parts) return ReadView::Corrupt(family, key);
        if (parts->unix_ms >= to) return false;
        if (absl::Status s = f(*parts, value); !s.ok()) return s;
        return true;
      },
      TimeKeyStart(from));
}

}  // namespace

absl::StatusOr<rollertrace::v1::PeriodReport> AuditReader::Report(int64_t from, int64_t to, int64_t now) const {
  SnapshotView view(db_);
  if (to <= 0) to = now;
  if (from < 0 || from >= to) {
    return absl::InvalidArgumentError(util::Cat("the report period must start before it ends (from ", from,
                                                " ms, to ", to, " ms)"));
  }
  if (to > codec::Limits::kLatestUnixMs) {
    // Its weekly buckets are counted out in memory: a period up to year
    // 292 million took every byte of the machine (the gRPC fuzzer found it).
    return absl::InvalidArgumentError(util::Cat("the report period ends at 2100-01-01 at the latest (",
                                                codec::Limits::kLatestUnixMs, " ms), not ", to, " ms"));
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
  std::map<std::string, uint32_t> warnings;  // warn-rule hits by rule
  absl::Status s = ScanTime(view, Family::kSessionsByTime, from, to, [&](const TimeKeyParts& k, std::string_view) {
    rollertrace::v1::SessionRecord session;
    absl::StatusOr<bool> found = view.Read(Family::kSessions, DeviceSequenceKey(k.device_id, k.sequence), &session);
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
    for (const auto& h : session.decision().hits()) {
      if (h.severity() == rollertrace::v1::SEVERITY_WARN) ++warnings[h.rule()];
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  r.set_patients(static_cast<uint32_t>(patients.size()));
  for (const auto& [rule, count] : warnings) {
    auto* c = r.add_warnings_by_rule();
    c->set_rule(rule);
    c->set_count(count);
  }

  // Violations detected in the period.
  // Every list keeps what fits in its share of one answer; the counts stay whole.
  using Share = codec::ListShare;
  using Bytes = codec::ReportListBytes;
  Share violation_share(Bytes::kViolations), cycle_share(Bytes::kCycles), pending_share(Bytes::kPendingIndicators),
      locked_share(Bytes::kLockedRollers), retired_share(Bytes::kRetiredRollers), recall_share(Bytes::kRecalls),
      finding_share(Bytes::kFindings);
  std::map<std::string, uint32_t> by_rule;
  s = ScanTime(view, Family::kViolations, from, to, [&](const TimeKeyParts& k, std::string_view value) {
    rollertrace::v1::Violation v;
    if (!v.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      return absl::DataLossError("a violation record is corrupt");
    }
    r.set_violations(r.violations() + 1);
    ++by_rule[v.rule()];
    // Counted on the day of the session that broke the rule (within the period).
    const int64_t at = v.session_start_unix_ms() > 0 ? v.session_start_unix_ms() : k.unix_ms;
    auto* b = bucket_of(std::clamp(at, from, to - 1));
    b->set_violations(b->violations() + 1);
    if (violation_share.Take(v)) *r.add_violation_list() = std::move(v);
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  for (const auto& [rule, count] : by_rule) {
    auto* c = r.add_violations_by_rule();
    c->set_rule(rule);
    c->set_count(count);
  }

  // Cycles: those that ended in the period, and every earlier one still waiting for its indicator.
  std::set<std::pair<std::string, uint64_t>> seen;
  s = ScanTime(view, Family::kCyclesByTime, 0, to, [&](const TimeKeyParts& k, std::string_view) {
    if (!seen.emplace(k.device_id, k.sequence).second) return absl::OkStatus();
    rollertrace::v1::CycleRecord c;
    absl::StatusOr<bool> found = view.Read(Family::kCycles, DeviceSequenceKey(k.device_id, k.sequence), &c);
    if (!found.ok()) return found.status();
    if (!*found) return absl::OkStatus();
    const auto bi = c.biological_indicator();
    if (!IndicatorKnown(bi)) {
      r.set_indicators_pending(r.indicators_pending() + 1);
      if (pending_share.Take(c)) *r.add_pending_indicators() = c;
    }
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
    if (cycle_share.Take(c)) *r.add_cycle_list() = std::move(c);
    return absl::OkStatus();
  });
  if (!s.ok()) return s;

  // Rollers: registered by the end, locked now, retired in the period.
  absl::StatusOr<std::vector<rollertrace::v1::DeviceRecord>> devices = audit::Devices(view, rollertrace::v1::DEVICE_KIND_ROLLER);
  if (!devices.ok()) return devices.status();
  for (auto& d : *devices) {
    if (d.device().registered_unix_ms() < to) r.set_rollers_registered(r.rollers_registered() + 1);
    if (d.device().lifecycle() == rollertrace::v1::LIFECYCLE_LOCKED && locked_share.Take(d)) *r.add_locked_rollers() = d;
    if (d.device().lifecycle() == rollertrace::v1::LIFECYCLE_RETIRED && d.device().retired_unix_ms() >= from &&
        d.device().retired_unix_ms() < to && retired_share.Take(d)) {
      *r.add_retired_rollers() = d;
    }
  }

  // Recalls started in the period (a few per year at most: read them all).
  s = view.ScanRecords<rollertrace::v1::RecallReport>(
      Family::kRecalls, {}, [&](std::string_view, rollertrace::v1::RecallReport& recall) -> absl::StatusOr<bool> {
        if (recall.recalled_unix_ms() >= from && recall.recalled_unix_ms() < to && recall_share.Take(recall)) {
          *r.add_recalls() = std::move(recall);
        }
        return true;
      });
  if (!s.ok()) return s;
  // Findings detected in the period (rare: read them all).
  s = view.ScanRecords<rollertrace::v1::Finding>(
      Family::kFindings, {}, [&](std::string_view, rollertrace::v1::Finding& finding) -> absl::StatusOr<bool> {
        if (finding.detected_unix_ms() >= from && finding.detected_unix_ms() < to && finding_share.Take(finding)) {
          *r.add_findings() = std::move(finding);
        }
        return true;
      });
  if (!s.ok()) return s;
  auto* omitted = r.mutable_omitted();
  omitted->set_violations(violation_share.omitted());
  omitted->set_cycles(cycle_share.omitted());
  omitted->set_pending_indicators(pending_share.omitted());
  omitted->set_locked_rollers(locked_share.omitted());
  omitted->set_retired_rollers(retired_share.omitted());
  omitted->set_recalls(recall_share.omitted());
  omitted->set_findings(finding_share.omitted());
  return r;
}

}  // namespace rollertrace::store
