// rollerctl's trails: a roller's, a patient's and a cycle's (commands.h).
#include "rollerctl/commands.h"

#include <algorithm>
#include <iomanip>
#include <tuple>
#include <sstream>

#include "rollerctl/format.h"
#include "util/cat.h"

namespace rollertrace::rollerctl {

using rollertrace::v1::ComplianceService;

namespace {

std::string Percent1(double fraction) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << fraction * 100 << " %";
  return out.str();
}

std::string DecisionLine(const rollertrace::v1::Decision& d) {
  std::string line = d.allowed() ? "allowed" : "DENIED";
  std::string rules;
  for (const auto& h : d.hits()) rules += util::Cat(rules.empty() ? "" : ", ", h.rule(), h.severity() == rollertrace::v1::SEVERITY_WARN ? " (warn)" : "");
  if (!rules.empty()) line += " [" + rules + "]";
  if (d.offline()) line += ", decided offline";
  return line;
}

std::string SessionLine(const rollertrace::v1::SessionRecord& s) {
  return util::Cat("session ", s.session_id(), " of ", s.device_id(), ": patient ", ShortPseudonym(s.patient_pseudonym()),
                   ", operator ", s.operator_id(), ", ", s.needle_length_mm(), " mm, wear at start ",
                   Percent1(s.wear_at_start()), ", relied on cycle ",
                   s.cycle().steriliser_id().empty() ? std::string("none")
                                                      : util::Cat(s.cycle().steriliser_id(), ":", s.cycle().cycle_number()),
                   "; server check: ", DecisionLine(s.decision()),
                   s.end_unix_ms() ? util::Cat("; ended ", FormatTime(s.end_unix_ms())) : std::string("; not ended"),
                   s.device_start_unix_ms() > 0 && s.device_end_unix_ms() >= s.device_start_unix_ms()
                       ? util::Cat("; lasted ", FormatDuration(s.device_end_unix_ms() - s.device_start_unix_ms()),
                                   " by the device's clock")
                       : std::string(),
                   s.clock_ahead_ms() > 0
                       ? util::Cat("; the device's clock was ", FormatDuration(s.clock_ahead_ms()),
                                   " ahead (started ", FormatTime(s.device_start_unix_ms()),
                                   " by it): judged at its receive time")
                       : std::string(),
                   s.at_risk() ? util::Cat("; AT RISK (", s.at_risk_reason(), ")") : std::string());
}

// What a trail left out to stay one gRPC answer, and where to read it; empty
// when it left out nothing.
std::string OmittedLine(const rollertrace::v1::TrailOmitted& o, const std::string& violations_of) {
  std::string parts;
  auto add = [&](uint32_t n, const char* what) {
    if (n > 0) parts += util::Cat(parts.empty() ? "" : ", ", n, " ", what);
  };
  add(o.sessions(), "sessions");
  add(o.violations(), "violations");
  add(o.cycles(), "cycles");
  add(o.log(), "log entries");
  add(o.findings(), "findings");
  if (parts.empty()) return {};
  return util::Cat("This trail leaves out ", parts, " (a trail keeps to one answer)",
                   o.violations() > 0 && !violations_of.empty()
                       ? util::Cat("; rollerctl violations --device ", violations_of, " pages every violation")
                       : std::string(),
                   ".\n");
}

}  // namespace

int RollerTrail(const Context& ctx, const std::string& device_id, bool with_events) {
  auto stub = ComplianceService::NewStub(ctx.channel);
  rollertrace::v1::RollerTrailRequest request;
  request.set_device_id(device_id);
  if (with_events) request.set_events_limit(10000);
  rollertrace::v1::RollerTrail t;
  grpc::Status s = stub->GetRollerTrail(Call(ctx).get(), request, &t);
  if (!s.ok()) return Fail(ctx, s);
  // The rest of a long roller's events, a page at a time.
  for (uint64_t next = t.next_event_sequence(); with_events && next != 0;) {
    rollertrace::v1::HistoryRequest hr;
    hr.set_device_id(device_id);
    hr.set_from_sequence(next);
    rollertrace::v1::HistoryResponse page;
    grpc::Status hs = stub->History(Call(ctx).get(), hr, &page);
    if (!hs.ok()) return Fail(ctx, hs);
    for (auto& e : *page.mutable_events()) *t.add_events() = std::move(e);
    next = page.next_sequence();
  }
  t.set_next_event_sequence(0);
  if (ctx.json) {
    PrintJson(ctx, t);
    return 0;
  }
  // One timeline: log entries, cycles, sessions, violations (and events) by time.
  std::vector<std::tuple<int64_t, int, std::string, std::string>> rows;
  for (const auto& l : t.log()) {
    rows.emplace_back(l.unix_ms(), 0, l.kind(), util::Cat(l.reason(), l.by().empty() ? "" : " (by " + l.by() + ")"));
  }
  for (const auto& c : t.cycles()) {
    rollertrace::v1::Event e;
    *e.mutable_sterilisation_cycle() = c.cycle();
    std::string reasons;
    for (const auto& r : c.failure_reasons()) reasons += "; " + r;
    rows.emplace_back(c.cycle().end_unix_ms(), 1, "sterilised",
                      util::Cat(c.cycle().steriliser_id(), ":", c.cycle().cycle_number(), " ", DescribeEvent(e),
                                ", parameters ", c.parameters_passed() ? "passed" : "FAILED", reasons));
  }
  for (const auto& x : t.sessions()) rows.emplace_back(x.start_unix_ms(), 2, "session", SessionLine(x));
  for (const auto& v : t.violations()) {
    rows.emplace_back(v.session_start_unix_ms(), 3, "VIOLATION",
                      util::Cat(v.rule(), " in ", v.session_id(), ": ", v.detail(), v.locked() ? " -> locked" : ""));
  }
  for (const auto& f : t.findings()) rows.emplace_back(f.detected_unix_ms(), 3, "FINDING", FindingLine(f));
  for (const auto& e : t.events()) {
    rows.emplace_back(e.event().device_time_unix_ms(), 4, util::Cat("event #", e.event().sequence()),
                      DescribeEvent(e.event()));
  }
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return std::get<0>(a) != std::get<0>(b) ? std::get<0>(a) < std::get<0>(b) : std::get<1>(a) < std::get<1>(b);
  });
  const auto& d = t.roller().device();
  *ctx.out << "Roller " << d.device_id() << " (" << d.model() << ", " << d.needle_count() << " needles x "
           << d.needle_length_mm() << " mm), now " << LifecycleName(d.lifecycle()) << "; "
           << t.roller().state().sessions_started() << " sessions, " << t.roller().state().events_stored()
           << " events, " << t.violations_size() << " violations"
           << (t.findings_size() ? util::Cat(", ", t.findings_size(), " findings") : std::string()) << "\n";
  Table table({"WHEN", "WHAT", "DETAIL"});
  for (const auto& [when, order, what, detail] : rows) table.Add({FormatTime(when), what, detail});
  table.Print(*ctx.out);
  *ctx.out << OmittedLine(t.omitted(), device_id);
  if (!with_events) *ctx.out << "(add --events for every event the roller sent)\n";
  return 0;
}

int PatientTrail(const Context& ctx, const std::string& pseudonym, const std::string& ref) {
  auto stub = ComplianceService::NewStub(ctx.channel);
  rollertrace::v1::PatientTrailRequest request;
  request.set_patient_pseudonym(pseudonym);
  request.set_patient_ref(ref);
  rollertrace::v1::PatientTrail t;
  grpc::Status s = stub->GetPatientTrail(Call(ctx).get(), request, &t);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, t);
    return 0;
  }
  *ctx.out << "Patient " << t.patient_pseudonym() << ": " << t.sessions_size() << " sessions\n";
  Table sessions({"STARTED", "ROLLER", "SESSION", "OPERATOR", "CYCLE", "SERVER CHECK", "AT RISK"});
  for (const auto& x : t.sessions()) {
    sessions.Add({FormatTime(x.start_unix_ms()), x.device_id(), x.session_id(), x.operator_id(),
                  x.cycle().steriliser_id().empty() ? "none" : util::Cat(x.cycle().steriliser_id(), ":", x.cycle().cycle_number()),
                  DecisionLine(x.decision()), x.at_risk() ? "YES" : "no"});
  }
  sessions.Print(*ctx.out);
  *ctx.out << "\nCycles relied on:\n";
  for (const auto& c : t.cycles()) *ctx.out << "  " << CycleLine(c) << "\n";
  *ctx.out << OmittedLine(t.omitted(), "");
  return 0;
}

int CycleTrail(const Context& ctx, const CycleName& cycle) {
  auto stub = ComplianceService::NewStub(ctx.channel);
  rollertrace::v1::CycleRequest request;
  request.set_steriliser_id(cycle.steriliser_id);
  request.set_cycle_number(cycle.number);
  rollertrace::v1::CycleTrail t;
  grpc::Status s = stub->GetCycleTrail(Call(ctx).get(), request, &t);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, t);
    return 0;
  }
  *ctx.out << CycleLine(t.cycle()) << "\n";
  *ctx.out << "load: " << LoadList(t.cycle().cycle()) << "\n\nSessions that relied on it (" << t.sessions_size()
           << "):\n";
  Table table({"STARTED", "ROLLER", "SESSION", "PATIENT", "OPERATOR", "AT RISK"});
  for (const auto& x : t.sessions()) {
    table.Add({FormatTime(x.start_unix_ms()), x.device_id(), x.session_id(), ShortPseudonym(x.patient_pseudonym()),
               x.operator_id(), x.at_risk() ? "YES" : "no"});
  }
  table.Print(*ctx.out);
  if (t.findings_size() > 0) {
    *ctx.out << "\nFindings about this cycle number (" << t.findings_size() << "):\n";
    for (const auto& f : t.findings()) *ctx.out << "  " << FormatTime(f.detected_unix_ms()) << " " << FindingLine(f) << "\n";
  }
  *ctx.out << OmittedLine(t.omitted(), "");
  return 0;
}

}  // namespace rollertrace::rollerctl
