// The console's audit pages (a cycle, violations, the report, verification);
// the pages of rollers and patients are in pages.cc. Each reads ingestd with
// the signed-in user's token.
#include "console/console_internal.h"

#include <map>
#include <google/protobuf/util/json_util.h>

#include "rollerctl/format.h"
#include "rollerctl/report.h"
#include "util/cat.h"
#include "util/clock.h"

namespace rollertrace::console {

namespace v1 = rollertrace::v1;
using util::Cat;
using namespace internal;  // NOLINT: the console's own helpers

void Console::Cycle(Call& c) {
  const std::string steriliser = c.req.matches[1];
  const uint64_t number = CycleNumber(c);
  v1::CycleTrail trail;
  if (grpc::Status st = ReadCycleTrail(c, steriliser, number, &trail); !st.ok()) return Fail(c, st);
  const auto& cy = trail.cycle();
  const auto& p = cy.cycle();
  std::string body = Cat(
      "<dl id=\"cycle\"><dt>method</dt><dd>", Escape(p.method()), "</dd><dt>ran</dt><dd>", Escape(LocalTime(p.start_unix_ms())),
      " – ", Escape(LocalTime(p.end_unix_ms())), "</dd><dt>exposure</dt><dd>", p.exposure_temperature_c(), " °C for ",
      p.exposure_seconds(), " s</dd><dt>the method's minimums</dt><dd id=\"minimums\">",
      Escape(cy.method_minimums().empty() ? "not recorded" : cy.method_minimums()),
      "</dd><dt>parameters</dt><dd id=\"parameters\" class=\"",
      cy.parameters_passed() ? "ok\">met the method's minimums" : "deny\">fell short: ", "");
  for (const auto& reason : cy.failure_reasons()) body += Escape(reason) + "; ";
  body += Cat("</dd><dt>chemical indicator</dt><dd>", Escape(rollerctl::IndicatorName(p.chemical_indicator())),
              "</dd><dt>biological indicator</dt><dd id=\"bi\">", Escape(rollerctl::IndicatorLine(cy)),
              "</dd><dt>loaded by / released by</dt><dd>", Escape(p.loaded_by()), " / ", Escape(p.released_by()),
              "</dd></dl>");
  Table load{"load", {"roller"}, {}};
  for (const auto& r : p.load()) load.rows.push_back({Cell(r, RollerLink(r))});
  Table sessions{"sessions", {"start", "roller", "patient", "session", "at risk"}, {}};
  for (const auto& s : trail.sessions()) {
    sessions.rows.push_back({At(s.start_unix_ms()), Cell(s.device_id(), RollerLink(s.device_id())),
                             PatientCell(s.patient_pseudonym()),
                             s.session_id(), s.at_risk() ? s.at_risk_reason() : ""});
  }
  if (c.Csv(load) || c.Csv(sessions)) return;
  if (cy.biological_indicator() == v1::INDICATOR_FAIL) {
    v1::RecallRequest rq;
    rq.set_steriliser_id(steriliser);
    rq.set_cycle_number(number);
    v1::RecallReport recall;
    auto ctx2 = c.Context();
    if (compliance_->Recall(ctx2.get(), rq, &recall).ok()) {
      body += Cat("<section id=\"recall\"><h2 class=\"deny\">Recall</h2><p>Started ", Escape(LocalTime(recall.recalled_unix_ms())),
                  ": every load since the last negative indicator (cycle #", recall.last_negative_cycle(), "). ",
                  recall.sessions_at_risk_size(), " sessions, ", recall.patients_size(), " patients at risk; rollers locked: ");
      for (const auto& r : recall.locked_rollers()) body += "<a href=\"" + Escape(RollerLink(r)) + "\">" + Escape(r) + "</a> ";
      body += "</p></section>";
    }
  }
  if (c.admin()) {
    body += "<form class=\"action\" id=\"indicator-form\" method=\"post\" action=\"" +
            Escape(CycleLink(steriliser, number)) + "/indicator\">" + c.CsrfField() +
            "<b>Record the lab's biological-indicator result</b> (admin): <select name=\"result\" id=\"bi-result\">"
            "<option value=\"pass\">pass (negative)</option><option value=\"fail\">fail (positive: starts a recall)"
            "</option></select> <button id=\"record-bi\">Continue</button></form>";
  }
  body += "<h2>Load</h2>" + RenderTable(load, c.SelfQuery());
  body += "<h2>Sessions that relied on this cycle</h2>" + RenderTable(sessions, c.SelfQuery(), c.PageNumber(), kPerPage);
  Page(c, Cat("Cycle ", steriliser, " #", number), body);
}

void Console::Violations(Call& c) {
  v1::ViolationsRequest vr;
  vr.set_from_unix_ms(ParseDateParam(c.req, "from", 0));
  const int64_t to = ParseDateParam(c.req, "to", 0);
  if (to > 0) vr.set_to_unix_ms(to + 24LL * 3600 * 1000);  // through the whole day
  vr.set_rule(c.Param("rule"));
  vr.set_device_id(c.Param("device"));
  if (c.Param("severity") == "deny") vr.set_severity(v1::SEVERITY_DENY);
  if (c.Param("severity") == "warn") vr.set_severity(v1::SEVERITY_WARN);
  // A page at a time from ingestd, oldest first; the CSV takes every page.
  const bool csv = c.Param("csv") == "violations";
  vr.set_limit(csv ? 10000 : kPerPage);
  vr.set_page_token(c.Param("after"));
  std::vector<v1::Violation> list;
  std::string next;
  do {
    v1::ViolationsResponse resp;
    auto ctx = c.Context();
    if (grpc::Status st = compliance_->ListViolations(ctx.get(), vr, &resp); !st.ok()) return Fail(c, st);
    for (auto& v : *resp.mutable_violations()) list.push_back(std::move(v));
    next = resp.next_page_token();
    vr.set_page_token(next);
  } while (csv && !next.empty());
  Table table{"violations", {"detected", "rule", "severity", "roller", "patient", "session", "detail", "locked"}, {}};
  for (const auto& vv : list) {
    const v1::Violation* v = &vv;
    table.rows.push_back({At(v->detected_unix_ms()), Cell(v->rule(), "/violations?rule=" + UrlEncode(v->rule())),
                          rollerctl::SeverityName(v->severity()), Cell(v->device_id(), RollerLink(v->device_id())),
                          v->patient_pseudonym().empty() ? Cell("-") : PatientCell(v->patient_pseudonym()),
                          v->session_id(), v->detail(), v->locked() ? "yes" : ""});
  }
  if (c.Csv(table)) return;
  auto value = [&](const char* name) { return Escape(c.Param(name)); };
  std::string body =
      "<form method=\"get\" id=\"filters\">rule <input name=\"rule\" value=\"" + value("rule") +
      "\" size=\"16\"> roller <input name=\"device\" value=\"" + value("device") +
      "\" size=\"10\"> severity <select name=\"severity\"><option value=\"\">any</option><option" +
      (c.Param("severity") == "deny" ? " selected" : "") + ">deny</option><option" +
      (c.Param("severity") == "warn" ? " selected" : "") + ">warn</option></select> from <input type=\"date\" name=\"from\" value=\"" +
      value("from") + "\"> to <input type=\"date\" name=\"to\" value=\"" + value("to") +
      "\"> <button>Filter</button></form>";
  body += LiveBox("New since you opened this page");
  std::string query;
  for (const char* name : {"rule", "device", "severity", "from", "to"}) {
    if (!c.Param(name).empty()) query += Cat(query.empty() ? "" : "&", name, "=", UrlEncode(c.Param(name)));
  }
  body += RenderTable(table, query.empty() ? "" : query);
  body += "<p class=\"pages\">";
  if (!c.Param("after").empty()) body += "<a href=\"/violations?" + Escape(query) + "\">← first page</a> ";
  if (!next.empty()) {
    body += "<a rel=\"next\" id=\"next-page\" href=\"/violations?" + Escape(query + (query.empty() ? "" : "&") +
            "after=" + UrlEncode(next)) + "\">next " + std::to_string(kPerPage) + " →</a>";
  }
  body += "</p>";
  Page(c, "Violations", body);
}

void Console::Report(Call& c) {
  const int64_t now = util::NowUnixMs();
  const int64_t from = ParseDateParam(c.req, "from", now - 30LL * 24 * 3600 * 1000);
  const int64_t to = ParseDateParam(c.req, "to", 0);
  v1::ReportRequest rr;
  rr.set_from_unix_ms(from);
  if (to > 0) rr.set_to_unix_ms(to + 24LL * 3600 * 1000);
  v1::PeriodReport report;
  auto ctx = c.Context();
  if (grpc::Status st = compliance_->Report(ctx.get(), rr, &report); !st.ok()) return Fail(c, st);
  // The same report as data: JSON (the protobuf mapping) or one of its CSV tables.
  if (c.Param("format") == "json") {
    std::string json;
    google::protobuf::util::JsonPrintOptions print;
    print.add_whitespace = true;
    (void)google::protobuf::util::MessageToJsonString(report, &json, print);
    c.res.set_header("Content-Disposition", "attachment; filename=\"report.json\"");
    c.res.set_content(json, "application/json");
    return;
  }
  const std::map<std::string, std::string> csv = rollerctl::RenderReportCsv(report);
  if (!c.Param("csv").empty()) {
    auto it = csv.find(c.Param("csv"));
    if (it == csv.end()) {
      c.res.status = 404;
      return Page(c, "Report", "<p class=\"error\" id=\"error\">No such table in the report.</p>");
    }
    c.res.set_header("Content-Disposition", "attachment; filename=\"" + it->first + "\"");
    c.res.set_content(it->second, "text/csv; charset=utf-8");
    return;
  }
  std::string period = "from=" + UrlEncode(LocalDate(from));
  if (to > 0) period += "&to=" + UrlEncode(LocalDate(to));
  std::string downloads = "<a href=\"/report?" + Escape(period) + "&amp;format=json\">JSON</a>";
  for (const auto& [name, text] : csv) {
    downloads += " · <a href=\"/report?" + Escape(period) + "&amp;csv=" + Escape(UrlEncode(name)) + "\">" + Escape(name) +
                 "</a>";
  }
  // rollerctl's printable report, whose own two scripts run under a nonce;
  // everything in it from devices is escaped, so no other script can.
  std::string html = rollerctl::RenderReportHtml(report);
  const std::string nonce = RandomToken().substr(0, 32);
  std::string out;
  for (size_t pos = 0;;) {
    const size_t at = html.find("<script>", pos);
    out += html.substr(pos, at == std::string::npos ? std::string::npos : at - pos);
    if (at == std::string::npos) break;
    out += "<script nonce=\"" + nonce + "\">";
    pos = at + 8;
  }
  const std::string bar = "<style>@media print { .noprint { display: none; } }</style><p class=\"noprint\"><a href=\"/\">← console</a> · period from " + Escape(LocalDate(from)) +
                          " · <a href=\"/report?from=" + UrlEncode(LocalDate(now - 7LL * 24 * 3600 * 1000)) +
                          "\">last 7 days</a> · print this page to PDF from the browser · download: " + downloads +
                          "</p>";
  const size_t body_at = out.find("<body>");
  if (body_at != std::string::npos) out.insert(body_at + 6, bar);
  // This page's policy instead of the console's (httplib adds a header, and
  // two policies would both apply: the report's own styles were refused).
  c.res.headers.erase("Content-Security-Policy");
  c.res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'nonce-" + nonce +
                       "'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'");
  c.res.set_content(out, "text/html; charset=utf-8");
}

void Console::Verify(Call& c) {
  v1::VerifyReport report;
  auto ctx = c.Context();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  if (grpc::Status st = compliance_->Verify(ctx.get(), v1::VerifyRequest(), &report); !st.ok()) return Fail(c, st);
  Table breaks{"breaks", {"device", "first broken sequence", "record", "what"}, {}};
  for (const auto& b : report.breaks()) {
    breaks.rows.push_back({Cell(b.device_id(), RollerLink(b.device_id())), std::to_string(b.sequence()),
                           std::to_string(b.chain_index()), b.ShortDebugString()});
  }
  if (c.Csv(breaks)) return;
  std::string body = Cat("<p id=\"verify\" class=\"", report.intact() ? "ok\">Intact" : "deny\">BROKEN",
                         "</p><p>", report.devices_checked(), " devices and ", report.records_checked(),
                         " records checked just now against their hash chains.</p>");
  if (!report.intact()) body += RenderTable(breaks, c.SelfQuery());
  Page(c, "Ledger verification", body);
}

uint64_t Console::CycleNumber(const Call& c) {
  try {
    return std::stoull(std::string(c.req.matches[2]));
  } catch (const std::exception&) {
    return 0;  // no such cycle: ingestd says so
  }
}

grpc::Status Console::ReadCycleTrail(const Call& c, const std::string& steriliser, uint64_t number,
                                     v1::CycleTrail* trail) {
  v1::CycleRequest cr;
  cr.set_steriliser_id(steriliser);
  cr.set_cycle_number(number);
  auto ctx = c.Context();
  return compliance_->GetCycleTrail(ctx.get(), cr, trail);
}

}  // namespace rollertrace::console
