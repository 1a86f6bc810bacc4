#include "store/audit_reader.h"

#include <algorithm>
#include <set>

#include "codec/limits.h"
#include "store/audit_internal.h"
#include "store/keys.h"
#include "util/cat.h"

namespace rollertrace::store {

using rollertrace::v1::CycleRecord;
using rollertrace::v1::DeviceRecord;
using rollertrace::v1::SessionRecord;

namespace audit {

constexpr uint32_t kDefaultPageSize = 1000;

bool IndicatorKnown(rollertrace::v1::IndicatorResult r) {
  return r == rollertrace::v1::INDICATOR_PASS || r == rollertrace::v1::INDICATOR_FAIL;
}

absl::StatusOr<DeviceRecord> Device(const ReadView& view, std::string_view device_id) {
  DeviceRecord record;
  absl::StatusOr<bool> found = view.Read(Family::kDevices, device_id, &record);
  if (!found.ok()) return found.status();
  if (!*found) return absl::NotFoundError(util::Cat("device ", device_id, " is not registered"));
  return record;
}

absl::StatusOr<std::vector<DeviceRecord>> Devices(const ReadView& view, rollertrace::v1::DeviceKind kind) {
  std::vector<DeviceRecord> out;
  absl::Status s =
      view.ScanRecords<DeviceRecord>(Family::kDevices, {}, [&](std::string_view, DeviceRecord& r) -> absl::StatusOr<bool> {
        if (kind == rollertrace::v1::DEVICE_KIND_UNSPECIFIED || r.device().kind() == kind) out.push_back(std::move(r));
        return true;
      });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<CycleRecord> Cycle(const ReadView& view, std::string_view steriliser_id, uint64_t cycle) {
  CycleRecord c;
  absl::StatusOr<bool> found = view.Read(Family::kCycles, DeviceSequenceKey(steriliser_id, cycle), &c);
  if (!found.ok()) return found.status();
  if (!*found) return absl::NotFoundError(util::Cat("no cycle ", cycle, " of steriliser ", steriliser_id));
  return c;
}

absl::StatusOr<std::vector<SessionRecord>> Sessions(const ReadView& view, std::string_view device_id) {
  std::vector<SessionRecord> out;
  absl::Status s = view.ScanRecords<SessionRecord>(Family::kSessions, DevicePrefix(device_id),
                                                   [&](std::string_view, SessionRecord& r) -> absl::StatusOr<bool> {
                                                     out.push_back(std::move(r));
                                                     return true;
                                                   });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<std::vector<rollertrace::v1::Finding>> Findings(const ReadView& view, std::string_view device_id) {
  std::vector<rollertrace::v1::Finding> out;
  absl::Status s = view.ScanRecords<rollertrace::v1::Finding>(
      Family::kFindings, DevicePrefix(device_id), [&](std::string_view, rollertrace::v1::Finding& f) -> absl::StatusOr<bool> {
        out.push_back(std::move(f));
        return true;
      });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<rollertrace::v1::HistoryResponse> History(const ReadView& view, std::string_view device_id,
                                                         uint64_t from_sequence, uint32_t limit) {
  if (limit == 0) limit = kDefaultPageSize;
  limit = std::min(limit, codec::Limits::kHistoryPage);  // a page answers within any message limit
  rollertrace::v1::HistoryResponse response;
  const std::string start = DeviceSequenceKey(device_id, std::max<uint64_t>(from_sequence, 1));
  absl::Status s = view.Scan(
      Family::kEvents, DevicePrefix(device_id),
      [&](std::string_view key, std::string_view value) -> absl::StatusOr<bool> {
        if (static_cast<uint32_t>(response.events_size()) == limit) {
          if (auto decoded = DecodeDeviceSequenceKey(key)) response.set_next_sequence(decoded->sequence);
          return false;
        }
        if (!response.add_events()->ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          return ReadView::Corrupt(Family::kEvents, key);
        }
        return true;
      },
      start);
  if (!s.ok()) return s;
  return response;
}

// Sessions named by an index whose keys are `prefix` + a session key.
absl::Status IndexedSessions(const ReadView& view, Family index, const std::string& prefix,
                             const std::function<void(SessionRecord&)>& take) {
  return view.Scan(index, prefix, [&](std::string_view key, std::string_view) -> absl::StatusOr<bool> {
    auto session_key = DecodeIndexedSession(key, prefix);
    if (!session_key) return ReadView::Corrupt(index, key);
    SessionRecord session;
    absl::StatusOr<bool> found =
        view.Read(Family::kSessions, DeviceSequenceKey(session_key->device_id, session_key->sequence), &session);
    if (!found.ok()) return found.status();
    if (*found) take(session);
    return true;
  });
}

}  // namespace audit

absl::StatusOr<DeviceRecord> AuditReader::GetDevice(std::string_view device_id) const {
  return audit::Device(LatestView(db_), device_id);
}

absl::StatusOr<std::vector<DeviceRecord>> AuditReader::ListDevices(rollertrace::v1::DeviceKind kind) const {
  return audit::Devices(LatestView(db_), kind);
}

absl::StatusOr<rollertrace::v1::HistoryResponse> AuditReader::History(std::string_view device_id,
                                                                      uint64_t from_sequence, uint32_t limit) const {
  return audit::History(LatestView(db_), device_id, from_sequence, limit);
}

absl::StatusOr<std::vector<rollertrace::v1::Gap>> AuditReader::Gaps(std::string_view device_id) const {
  SnapshotView view(db_);
  absl::StatusOr<DeviceRecord> record = audit::Device(view, device_id);
  if (!record.ok()) return record.status();
  std::vector<rollertrace::v1::Gap> gaps(record->state().open_gaps().begin(), record->state().open_gaps().end());
  absl::Status s = view.ScanRecords<rollertrace::v1::Gap>(Family::kGaps, DevicePrefix(device_id),
                                                          [&](std::string_view, rollertrace::v1::Gap& g) -> absl::StatusOr<bool> {
                                                            gaps.push_back(std::move(g));
                                                            return true;
                                                          });
  if (!s.ok()) return s;
  return gaps;
}

absl::StatusOr<std::vector<SessionRecord>> AuditReader::Sessions(std::string_view device_id) const {
  return audit::Sessions(LatestView(db_), device_id);
}

absl::StatusOr<CycleRecord> AuditReader::GetCycle(std::string_view steriliser_id, uint64_t cycle) const {
  return audit::Cycle(LatestView(db_), steriliser_id, cycle);
}

absl::StatusOr<rollertrace::v1::RecallReport> AuditReader::GetRecall(std::string_view steriliser_id,
                                                                     uint64_t cycle) const {
  rollertrace::v1::RecallReport r;
  absl::StatusOr<bool> found = LatestView(db_).Read(Family::kRecalls, DeviceSequenceKey(steriliser_id, cycle), &r);
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(util::Cat("no recall for cycle ", steriliser_id, "#", cycle,
                                         " (a recall starts when its biological indicator fails)"));
  }
  return r;
}

absl::StatusOr<ViolationPage> AuditReader::ListViolations(const ViolationFilter& f) const {
  SnapshotView view(db_);
  ViolationPage page;
  std::vector<rollertrace::v1::Violation>& out = page.violations;
  std::string last_key;
  bool more = false;
  auto keep = [&](std::string_view key, std::string_view value) -> absl::StatusOr<bool> {
    if (!f.after_key.empty() && key <= f.after_key) return true;
    auto parts = DecodeTimeKey(key);
    if (!parts) return ReadView::Corrupt(Family::kViolations, key);
    if (f.to_unix_ms > 0 && parts->unix_ms >= f.to_unix_ms) return f.device_id.empty() ? false : true;
    if (parts->unix_ms < f.from_unix_ms) return true;
    rollertrace::v1::Violation v;
    if (!v.ParseFromArray(value.data(), static_cast<int>(value.size()))) return ReadView::Corrupt(Family::kViolations, key);
    if (!f.rule.empty() && v.rule() != f.rule) return true;
    if (!f.device_id.empty() && v.device_id() != f.device_id) return true;
    if (f.severity != rollertrace::v1::SEVERITY_UNSPECIFIED && v.severity() != f.severity) return true;
    if (f.limit > 0 && out.size() == f.limit) {
      more = true;  // one more matches: the page is full
      return false;
    }
    out.push_back(std::move(v));
    last_key = std::string(key);
    return true;
  };
  if (f.device_id.empty()) {
    std::string start = TimeKeyStart(f.from_unix_ms);
    if (!f.after_key.empty() && f.after_key > start) start = f.after_key;
    absl::Status s = view.Scan(Family::kViolations, {}, keep, start);
    if (!s.ok()) return s;
  } else {
    // One roller: its index, then each violation by its key; in detection order.
    std::vector<std::string> keys;
    absl::Status s = view.Scan(Family::kDeviceViolations, DevicePrefix(f.device_id),
                               [&](std::string_view, std::string_view violation_key) -> absl::StatusOr<bool> {
                                 keys.emplace_back(violation_key);
                                 return true;
                               });
    if (!s.ok()) return s;
    std::sort(keys.begin(), keys.end());
    for (const std::string& key : keys) {
      std::string value;
      absl::StatusOr<bool> found = view.Get(Family::kViolations, key, &value);
      if (!found.ok()) return found.status();
      if (!*found) continue;
      absl::StatusOr<bool> k = keep(key, value);
      if (!k.ok()) return k.status();
      if (!*k && more) break;
    }
  }
  if (more) page.next_key = last_key;
  return page;
}

absl::StatusOr<rollertrace::v1::RollerTrail> AuditReader::RollerTrail(std::string_view device_id,
                                                                     size_t events_limit) const {
  SnapshotView view(db_);
  rollertrace::v1::RollerTrail trail;
  absl::StatusOr<DeviceRecord> record = audit::Device(view, device_id);
  if (!record.ok()) return record.status();
  *trail.mutable_roller() = *record;
  const std::string prefix = DevicePrefix(device_id);
  absl::Status s = view.ScanRecords<rollertrace::v1::DeviceLogEntry>(
      Family::kDeviceLog, prefix, [&](std::string_view, rollertrace::v1::DeviceLogEntry& e) -> absl::StatusOr<bool> {
        *trail.add_log() = std::move(e);
        return true;
      });
  if (!s.ok()) return s;
  s = view.Scan(Family::kRollerCycles, prefix, [&](std::string_view key, std::string_view) -> absl::StatusOr<bool> {
    auto k = DecodeRollerCycleKey(key, device_id);
    if (!k) return ReadView::Corrupt(Family::kRollerCycles, key);
    absl::StatusOr<CycleRecord> c = audit::Cycle(view, k->steriliser_id, k->cycle);
    if (!c.ok()) return c.status();
    *trail.add_cycles() = std::move(*c);
    return true;
  });
  if (!s.ok()) return s;
  absl::StatusOr<std::vector<SessionRecord>> sessions = audit::Sessions(view, device_id);
  if (!sessions.ok()) return sessions.status();
  for (auto& x : *sessions) *trail.add_sessions() = std::move(x);
  s = view.Scan(Family::kDeviceViolations, prefix, [&](std::string_view, std::string_view main_key) -> absl::StatusOr<bool> {
    rollertrace::v1::Violation v;
    absl::StatusOr<bool> found = view.Read(Family::kViolations, main_key, &v);
    if (!found.ok()) return found.status();
    if (*found) *trail.add_violations() = std::move(v);
    return true;
  });
  if (!s.ok()) return s;
  absl::StatusOr<std::vector<rollertrace::v1::Finding>> findings = audit::Findings(view, device_id);
  if (!findings.ok()) return findings.status();
  for (auto& f : *findings) *trail.add_findings() = std::move(f);
  if (events_limit == 0) return trail;
  s = view.ScanRecords<rollertrace::v1::StoredEvent>(
      Family::kEvents, prefix, [&](std::string_view, rollertrace::v1::StoredEvent& e) -> absl::StatusOr<bool> {
        if (static_cast<size_t>(trail.events_size()) == events_limit) {
          trail.set_next_event_sequence(e.event().sequence());
          return false;
        }
        *trail.add_events() = std::move(e);
        return true;
      });
  if (!s.ok()) return s;
  return trail;
}

absl::StatusOr<rollertrace::v1::PatientTrail> AuditReader::PatientTrail(std::string_view pseudonym) const {
  SnapshotView view(db_);
  rollertrace::v1::PatientTrail trail;
  trail.set_patient_pseudonym(std::string(pseudonym));
  std::set<std::pair<std::string, uint64_t>> cycles;
  absl::Status s = audit::IndexedSessions(view, Family::kPatientSessions, DevicePrefix(pseudonym), [&](SessionRecord& session) {
    if (!session.cycle().steriliser_id().empty()) {
      cycles.emplace(session.cycle().steriliser_id(), session.cycle().cycle_number());
    }
    *trail.add_sessions() = std::move(session);
  });
  if (!s.ok()) return s;
  std::sort(trail.mutable_sessions()->begin(), trail.mutable_sessions()->end(),
            [](const SessionRecord& a, const SessionRecord& b) { return a.start_unix_ms() < b.start_unix_ms(); });
  for (const auto& [steriliser, number] : cycles) {
    absl::StatusOr<CycleRecord> c = audit::Cycle(view, steriliser, number);
    if (c.ok()) {
      *trail.add_cycles() = std::move(*c);
    } else if (!absl::IsNotFound(c.status())) {
      return c.status();
    }
  }
  return trail;
}

absl::StatusOr<rollertrace::v1::CycleTrail> AuditReader::CycleTrail(std::string_view steriliser_id,
                                                                    uint64_t cycle) const {
  SnapshotView view(db_);
  rollertrace::v1::CycleTrail trail;
  absl::StatusOr<CycleRecord> c = audit::Cycle(view, steriliser_id, cycle);
  if (!c.ok()) return c.status();
  *trail.mutable_cycle() = std::move(*c);
  absl::Status s = audit::IndexedSessions(view, Family::kCycleSessions, DeviceSequenceKey(steriliser_id, cycle),
                                          [&](SessionRecord& session) { *trail.add_sessions() = std::move(session); });
  if (!s.ok()) return s;
  absl::StatusOr<std::vector<rollertrace::v1::Finding>> findings = audit::Findings(view, steriliser_id);
  if (!findings.ok()) return findings.status();
  for (auto& f : *findings) {
    if (f.cycle_number() == cycle) *trail.add_findings() = std::move(f);
  }
  return trail;
}

absl::StatusOr<uint64_t> AuditReader::CountPendingBiologicalIndicators() const {
  uint64_t pending = 0;
  absl::Status s = LatestView(db_).ScanRecords<CycleRecord>(Family::kCycles, {},
                                                              [&](std::string_view, CycleRecord& c) -> absl::StatusOr<bool> {
                                                                if (!audit::IndicatorKnown(c.biological_indicator())) ++pending;
                                                                return true;
                                                              });
  if (!s.ok()) return s;
  return pending;
}

}  // namespace rollertrace::store
