// The console's pages of rollers and patients (overview, a roller, its gaps, a
// patient); the audit pages are in audit_pages.cc. Each reads ingestd with the
// signed-in user's token.
#include "console/console_internal.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "rollerctl/format.h"
#include "util/cat.h"
#include "util/clock.h"

namespace rollertrace::console {

namespace v1 = rollertrace::v1;
using util::Cat;
using namespace internal;  // NOLINT: the console's own helpers

void Console::Overview(Call& c) {
  v1::ListDevicesResponse devices;
  auto ctx = c.Context();
  if (grpc::Status st = registry_->List(ctx.get(), v1::ListDevicesRequest(), &devices); !st.ok()) return Fail(c, st);
  std::map<std::string, size_t> counts;
  Table rollers{"rollers", {"roller", "state", "why", "patient", "sessions", "wear", "last cycle", "last seen"}, {}};
  Table sterilisers{"sterilisers", {"steriliser", "model", "events", "last seen", "record"}, {}};
  const std::string filter = c.Param("state");
  for (const auto& r : devices.devices()) {
    const auto& d = r.device();
    if (d.kind() == v1::DEVICE_KIND_STERILISER) {
      sterilisers.rows.push_back({d.device_id(), d.model(), std::to_string(r.state().events_stored()),
                                  At(r.state().last_receive_unix_ms()),
                                  Cell(r.state().open_gaps_size() ? Cat(r.state().open_gaps_size(), " open gaps") : "complete",
                                       "/gaps/" + UrlEncode(d.device_id()))});
      continue;
    }
    const std::string state = RollerState(r);
    ++counts[state];
    if (!filter.empty() && filter != state) continue;
    const auto& use = r.state().roller();
    std::string why = state == "locked" ? use.lock_reason() : state == "retired" ? d.retired_reason() : "";
    Cell cycle = use.last_cycle().steriliser_id().empty()
                     ? Cell("-")
                     : Cell(Cat(use.last_cycle().steriliser_id(), " #", use.last_cycle().cycle_number()),
                            CycleLink(use.last_cycle().steriliser_id(), use.last_cycle().cycle_number()));
    rollers.rows.push_back({Cell(d.device_id(), RollerLink(d.device_id())), state, why,
                            use.bound_patient().empty() ? Cell("-") : PatientCell(use.bound_patient(), false),
                            std::to_string(r.state().sessions_started()), Wear(r), cycle,
                            At(r.state().last_receive_unix_ms())});
  }
  if (c.Csv(rollers) || c.Csv(sterilisers)) return;
  // Sterilisers' cycles still waiting for a biological indicator (last 90 days).
  v1::ReportRequest rr;
  rr.set_from_unix_ms(util::NowUnixMs() - 90LL * 24 * 3600 * 1000);
  v1::PeriodReport report;
  auto ctx2 = c.Context();
  Table pending{"pending-indicators", {"cycle", "ended", "method", "load"}, {}};
  if (compliance_->Report(ctx2.get(), rr, &report).ok()) {
    for (const auto& cy : report.pending_indicators()) {
      pending.rows.push_back({Cell(Cat(cy.cycle().steriliser_id(), " #", cy.cycle().cycle_number()),
                                   CycleLink(cy.cycle().steriliser_id(), cy.cycle().cycle_number())),
                              At(cy.cycle().end_unix_ms()), cy.cycle().method(),
                              std::to_string(cy.cycle().load_size()) + " rollers"});
    }
  }
  if (c.Csv(pending)) return;
  std::string body = "<p id=\"states\">";
  for (const char* state : {"in use", "ready", "due for sterilisation", "locked", "worn", "retired"}) {
    body += Cat("<a href=\"/?state=", UrlEncode(state), "\">", Escape(state), ": <b>", counts[state], "</b></a> · ");
  }
  body += "<a href=\"/\">all</a></p>";
  body += LiveBox("Violations and locks since you opened this page");
  body += "<h2>Rollers" + (filter.empty() ? std::string() : " (" + Escape(filter) + ")") + "</h2>";
  body += RenderTable(rollers, c.SelfQuery(), c.PageNumber(), kPerPage);
  body += "<h2>Biological indicators pending</h2>" + RenderTable(pending, c.SelfQuery());
  body += "<h2>Sterilisers</h2>" + RenderTable(sterilisers, c.SelfQuery());
  Page(c, "Fleet", body);
}

namespace {
// A session's line on the roller's timeline; its end in the display zone on
// the page, in UTC in the CSV.
Cell SessionDetail(const v1::SessionRecord& s, const std::string& decision) {
  auto line = [&](const std::string& ended) {
    return Cat(s.session_id(), " by ", s.operator_id(), "; ended ", ended,
               s.device_start_unix_ms() > 0 && s.device_end_unix_ms() >= s.device_start_unix_ms()
                   ? Cat(" (lasted ", rollerctl::FormatDuration(s.device_end_unix_ms() - s.device_start_unix_ms()), ")")
                   : std::string(),
               s.clock_ahead_ms() > 0
                   ? Cat("; device clock ", rollerctl::FormatDuration(s.clock_ahead_ms()), " ahead: judged at receipt")
                   : std::string(),
               "; wear at start ", static_cast<int>(s.wear_at_start() * 100), " %; ", decision,
               s.at_risk() ? "; AT RISK: " + s.at_risk_reason() : "");
  };
  Cell c(line(LocalTime(s.end_unix_ms())));
  c.csv = line(rollerctl::FormatTime(s.end_unix_ms()));
  return c;
}
}  // namespace

void Console::Roller(Call& c) {
  const std::string id = c.req.matches[1];
  v1::RollerTrailRequest tr;
  tr.set_device_id(id);
  v1::RollerTrail trail;
  auto ctx = c.Context();
  if (grpc::Status st = compliance_->GetRollerTrail(ctx.get(), tr, &trail); !st.ok()) return Fail(c, st);
  const auto& r = trail.roller();
  const auto& d = r.device();
  const auto& use = r.state().roller();
  // The timeline: every kind of record of this roller, by time.
  struct Entry {
    int64_t t;
    std::vector<Cell> row;
  };
  std::vector<Entry> entries;
  for (const auto& s : trail.sessions()) {
    std::string decision = s.decision().decision_id().empty() ? "" : (s.decision().allowed() ? "allowed" : "DENIED");
    if (s.offline_decision()) decision += " (offline)";
    entries.push_back({s.start_unix_ms(),
                       {At(s.start_unix_ms()), "session",
                        PatientCell(s.patient_pseudonym()),
                        SessionDetail(s, decision),
                        s.cycle().steriliser_id().empty()
                            ? Cell("no cycle")
                            : Cell(Cat(s.cycle().steriliser_id(), " #", s.cycle().cycle_number()),
                                   CycleLink(s.cycle().steriliser_id(), s.cycle().cycle_number()))}});
  }
  for (const auto& cy : trail.cycles()) {
    entries.push_back({cy.cycle().end_unix_ms(),
                       {At(cy.cycle().end_unix_ms()), "sterilised", "",
                        Cat(cy.cycle().method(), " ", cy.cycle().exposure_temperature_c(), " °C for ",
                            cy.cycle().exposure_seconds(), " s: ",
                            cy.parameters_passed() ? "parameters passed" : "FAILED its parameters", "; chemical ",
                            rollerctl::IndicatorName(cy.cycle().chemical_indicator()), "; BI ",
                            rollerctl::IndicatorName(cy.biological_indicator())),
                        Cell(Cat(cy.cycle().steriliser_id(), " #", cy.cycle().cycle_number()),
                             CycleLink(cy.cycle().steriliser_id(), cy.cycle().cycle_number()))}});
  }
  for (const auto& v : trail.violations()) {
    entries.push_back({v.detected_unix_ms(),
                       {At(v.detected_unix_ms()), "violation " + v.rule(),
                        PatientCell(v.patient_pseudonym(), false),
                        v.detail() + (v.locked() ? " (roller locked)" : ""), Cell(v.session_id())}});
  }
  for (const auto& l : trail.log()) {
    entries.push_back({l.unix_ms(), {At(l.unix_ms()), l.kind(), "", l.reason(), Cell(l.by())}});
  }
  for (const auto& f : trail.findings()) {
    entries.push_back({f.detected_unix_ms(),
                       {At(f.detected_unix_ms()), "finding " + f.kind(), "", f.detail(),
                        Cell(Cat("sequence ", f.sequence()))}});
  }
  for (const auto& g : r.state().open_gaps()) {
    entries.push_back({g.opened_unix_ms(),
                       {At(g.opened_unix_ms()), "gap (open)", "", Cat("sequences ", g.first(), "–", g.last()),
                        ""}});
  }
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.t > b.t; });
  Table timeline{"timeline", {"time", "what", "patient", "detail", "relies on / by"}, {}};
  for (auto& e : entries) timeline.rows.push_back(std::move(e.row));
  if (c.Csv(timeline)) return;

  std::string body = Cat("<dl id=\"summary\"><dt>state</dt><dd id=\"state\">", Escape(RollerState(r)), "</dd>");
  if (d.lifecycle() == v1::LIFECYCLE_LOCKED) {
    body += "<dt>locked</dt><dd id=\"lock-reason\">" + Escape(use.lock_reason()) + " since " +
            Escape(LocalTime(use.locked_unix_ms())) + "</dd>";
  }
  body += Cat("<dt>model</dt><dd>", Escape(d.model()), ", ", d.needle_count(), " needles of ", d.needle_length_mm(),
              " mm</dd><dt>bound patient</dt><dd>", Escape(use.bound_patient().empty() ? "-" : use.bound_patient()),
              "</dd><dt>sessions</dt><dd>", r.state().sessions_started(), "</dd><dt>wear</dt><dd id=\"wear\">",
              Escape(Wear(r)), " of rated life</dd><dt>events stored</dt><dd>", r.state().events_stored(),
              "</dd></dl>");
  // Wear at each session start against the rated life.
  nlohmann::json points = nlohmann::json::array();
  std::vector<const v1::SessionRecord*> sessions;
  for (const auto& s : trail.sessions()) sessions.push_back(&s);
  std::sort(sessions.begin(), sessions.end(),
            [](const auto* a, const auto* b) { return a->start_unix_ms() < b->start_unix_ms(); });
  for (const auto* s : sessions) points.push_back({{"label", LocalDate(s->start_unix_ms())}, {"wear", s->wear_at_start() * 100}});
  points.push_back({{"label", "now"}, {"wear", WearFraction(r) * 100}});
  body += "<canvas id=\"wear-chart\"></canvas><script type=\"application/json\" id=\"wear-data\">" +
          JsonForScript(nlohmann::json{{"points", points}}.dump()) + "</script>";
  if (c.admin()) {
    const std::string base = RollerLink(id);
    if (d.lifecycle() == v1::LIFECYCLE_LOCKED) {
      body += "<form class=\"action\" id=\"unlock-form\" method=\"post\" action=\"" + Escape(base) + "/unlock\">" +
              c.CsrfField() +
              "<b>Unlock</b> (admin): <input name=\"reason\" id=\"unlock-reason\" required minlength=\"5\" "
              "placeholder=\"why it is safe to use again\" size=\"50\"> <button id=\"unlock\">Unlock</button></form>";
    }
    if (d.lifecycle() != v1::LIFECYCLE_RETIRED) {
      body += "<form class=\"action\" method=\"post\" action=\"" + Escape(base) +
              "/retire\" data-confirm=\"Retire this roller for good?\">" + c.CsrfField() +
              "<b>Retire</b> (admin): <input name=\"reason\" required minlength=\"5\" size=\"50\"> "
              "<button id=\"retire\">Retire</button></form>";
    }
  }
  body += "<h2>Timeline</h2>" + RenderTable(timeline, c.SelfQuery(), c.PageNumber(), kPerPage);
  body += "<p><a href=\"/violations?device=" + UrlEncode(id) + "\">All violations of this roller</a> · <a href=\"" +
          Escape("/gaps/" + UrlEncode(id)) + "\">Is its record complete?</a></p>";
  Page(c, "Roller " + id, body);
}

// Whether a device's record is complete: every sequence gap, when it opened,
// and whether late events closed it.
void Console::Gaps(Call& c) {
  const std::string id = c.req.matches[1];
  v1::GapsRequest gr;
  gr.set_device_id(id);
  v1::GapsResponse gaps;
  auto ctx = c.Context();
  if (grpc::Status st = compliance_->Gaps(ctx.get(), gr, &gaps); !st.ok()) return Fail(c, st);
  v1::GetDeviceRequest dr;
  dr.set_device_id(id);
  v1::DeviceRecord device;
  auto ctx2 = c.Context();
  if (grpc::Status st = registry_->Get(ctx2.get(), dr, &device); !st.ok()) return Fail(c, st);
  Table table{"gaps", {"missing sequences", "opened", "closed"}, {}};
  size_t open = 0;
  for (const auto& g : gaps.gaps()) {
    if (g.closed_unix_ms() == 0) ++open;
    table.rows.push_back({Cat(g.first(), "–", g.last()), At(g.opened_unix_ms()),
                          g.closed_unix_ms() == 0 ? Cell("STILL OPEN") : At(g.closed_unix_ms())});
  }
  if (c.Csv(table)) return;
  std::string body = Cat("<p id=\"completeness\" class=\"", open == 0 ? "ok" : "deny", "\">",
                         open == 0 ? "Complete" : Cat(open, " gaps still open"), "</p><p>",
                         device.state().events_stored(), " events stored, contiguous through sequence ",
                         device.state().contiguous_through(), " of ", device.state().highest_sequence(), "; ",
                         gaps.gaps_size(), " gaps ever opened.</p>");
  body += RenderTable(table, c.SelfQuery(), c.PageNumber(), kPerPage);
  if (device.device().kind() == v1::DEVICE_KIND_ROLLER) {
    body += "<p><a href=\"" + Escape(RollerLink(id)) + "\">← the roller's page</a></p>";
  }
  Page(c, "Record of " + id, body);
}

void Console::Patient(Call& c) {
  const std::string ref = c.req.method == "POST" ? c.Param("ref") : "";
  const std::string pseudonym = c.Param("pseudonym");
  std::string body =
      "<form method=\"post\" action=\"/patient\">" + c.CsrfField() +
      "<label>Clinic patient reference <input name=\"ref\" id=\"patient-ref\" autocomplete=\"off\" required></label> "
      "<button id=\"find-patient\">Find</button><p class=\"meta\">The reference is sent to ingestd, which turns it "
      "into the patient's pseudonym; the console neither stores nor logs it, and it never appears in a URL.</p></form>";
  if (ref.empty() && pseudonym.empty()) return Page(c, "Patient", body);
  v1::PatientTrailRequest pr;
  if (!ref.empty()) {
    pr.set_patient_ref(ref);
  } else {
    pr.set_patient_pseudonym(pseudonym);
  }
  v1::PatientTrail trail;
  auto ctx = c.Context();
  if (grpc::Status st = compliance_->GetPatientTrail(ctx.get(), pr, &trail); !st.ok()) return Fail(c, st);
  Table sessions{"sessions", {"start", "roller", "session", "operator", "cycle relied on", "decision", "at risk"}, {}};
  for (const auto& s : trail.sessions()) {
    sessions.rows.push_back(
        {At(s.start_unix_ms()), Cell(s.device_id(), RollerLink(s.device_id())), s.session_id(), s.operator_id(),
         s.cycle().steriliser_id().empty() ? Cell("none")
                                           : Cell(Cat(s.cycle().steriliser_id(), " #", s.cycle().cycle_number()),
                                                  CycleLink(s.cycle().steriliser_id(), s.cycle().cycle_number())),
         s.decision().decision_id().empty() ? "-" : (s.decision().allowed() ? "allowed" : "DENIED"),
         s.at_risk() ? s.at_risk_reason() : ""});
  }
  if (c.Csv(sessions)) return;
  body += "<p>Pseudonym <code id=\"pseudonym\">" + Escape(trail.patient_pseudonym()) + "</code></p>";
  if (trail.omitted().sessions() > 0 || trail.omitted().cycles() > 0) {
    body += Cat("<p class=\"deny\" id=\"omitted\">", trail.omitted().sessions(), " more sessions and ",
                trail.omitted().cycles(), " more cycles are not shown: a trail keeps to one answer of ingestd.</p>");
  }
  body += "<h2>Sessions</h2>" + RenderTable(sessions, "pseudonym=" + UrlEncode(trail.patient_pseudonym()),
                                            c.PageNumber(), kPerPage);
  Page(c, "Patient " + Short(trail.patient_pseudonym()), body);
}

}  // namespace rollertrace::console
