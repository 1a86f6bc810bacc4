#include "rollerctl/report.h"

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "rollerctl/format.h"
#include "util/cat.h"
#include "util/html.h"

namespace rollertrace::rollerctl {

extern const char kChartJs[];  // Chart.js from libjs-chart.js, embedded at build time (chartjs.cc)

namespace {

using rollertrace::v1::PeriodReport;

// One table of the report, the same in every format.
struct Section {
  Section(std::string title_, std::string file_, std::vector<std::string> header_,
          std::vector<std::vector<std::string>> rows_, std::string when_empty_)
      : title(std::move(title_)),
        file(std::move(file_)),
        header(std::move(header_)),
        rows(std::move(rows_)),
        when_empty(std::move(when_empty_)) {}
  std::string title;
  std::string file;  // CSV file name
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::string when_empty;
  std::string note;  // what the list leaves out, and where to read it
};

// The line under a list that the report cut to stay one answer.
std::string Omitted(uint32_t n, const std::string& what, const std::string& where) {
  if (n == 0) return {};
  return util::Cat(n, " more ", what, " not listed here (a report keeps to one answer): ", where);
}

std::string Fixed(double v, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << v;
  return out.str();
}

std::string Short(const std::string& pseudonym) { return ShortPseudonym(pseudonym); }

std::string CycleLabel(const rollertrace::v1::SterilisationCycle& c) {
  return util::Cat(c.steriliser_id(), "#", c.cycle_number());
}

std::string Join(const google::protobuf::RepeatedPtrField<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& i : items) {
    if (!out.empty()) out += sep;
    out += i;
  }
  return out;
}

std::string CycleResult(const rollertrace::v1::CycleRecord& c) {
  if (!c.parameters_passed()) return "FAILED parameters";
  switch (c.cycle().biological_indicator()) {
    case rollertrace::v1::INDICATOR_FAIL:
      return "FAILED biological indicator";
    case rollertrace::v1::INDICATOR_PASS:
      return "passed";
    default:
      return "passed, indicator pending";
  }
}

std::vector<Section> Sections(const PeriodReport& r) {
  std::vector<Section> out;
  const bool weekly = r.bucket_ms() > 86'400'000;

  Section summary{"Summary", "summary.csv", {"Figure", "Value"}, {}, ""};
  auto add = [&](std::string figure, std::string value) { summary.rows.push_back({std::move(figure), std::move(value)}); };
  add("Period", util::Cat(FormatTime(r.from_unix_ms()), " to ", FormatTime(r.to_unix_ms())));
  add("Length of the period", FormatDuration(r.to_unix_ms() - r.from_unix_ms()));
  add("Rollers registered by the end", util::Cat(r.rollers_registered()));
  add("Sessions started", util::Cat(r.sessions()));
  add("Sessions against a deny rule", util::Cat(r.sessions_denied()));
  add("Sessions decided offline by the roller", util::Cat(r.sessions_offline()));
  add("Sessions at risk (recalled)", util::Cat(r.sessions_at_risk()));
  add("Patients treated", util::Cat(r.patients()));
  add("Violations", util::Cat(r.violations()));
  add("Sterilisation cycles", util::Cat(r.cycles()));
  add("Cycles failing their parameters", util::Cat(r.cycles_failed()));
  add("Biological indicators passed", util::Cat(r.indicators_passed()));
  add("Biological indicators failed", util::Cat(r.indicators_failed()));
  add("Biological indicators pending (all cycles up to the end)", util::Cat(r.indicators_pending()));
  const auto& cut = r.omitted();
  add("Rollers locked now", util::Cat(r.locked_rollers_size() + cut.locked_rollers()));
  add("Rollers retired in the period", util::Cat(r.retired_rollers_size() + cut.retired_rollers()));
  add("Recalls", util::Cat(r.recalls_size() + cut.recalls()));
  add("Findings (device input refused or flagged)", util::Cat(r.findings_size() + cut.findings()));
  out.push_back(std::move(summary));

  Section time{weekly ? "By week" : "By day", "over_time.csv",
               {weekly ? "Week starting" : "Day", "Sessions started", "Against a deny rule", "Violations", "Cycles ended",
                "Cycles failed"},
               {}, ""};
  for (const auto& b : r.buckets()) {
    time.rows.push_back({FormatDate(b.start_unix_ms()), util::Cat(b.sessions()), util::Cat(b.sessions_denied()),
                         util::Cat(b.violations()), util::Cat(b.cycles()), util::Cat(b.cycles_failed())});
  }
  out.push_back(std::move(time));

  Section rules{"Violations by rule", "violations_by_rule.csv", {"Rule", "Violations"}, {}, "No violations."};
  for (const auto& c : r.violations_by_rule()) rules.rows.push_back({c.rule(), util::Cat(c.count())});
  out.push_back(std::move(rules));

  Section warnings{"Warnings by rule (advice in the period's sessions, not violations)", "warnings_by_rule.csv",
                   {"Rule", "Sessions warned"}, {}, "No warnings."};
  for (const auto& c : r.warnings_by_rule()) warnings.rows.push_back({c.rule(), util::Cat(c.count())});
  out.push_back(std::move(warnings));

  Section violations{"Violations",
                     "violations.csv",
                     {"Detected", "Roller", "Session", "Rule", "Severity", "Patient", "Decided offline",
                      "Roller locked", "Detail"},
                     {},
                     "No violations."};
  for (const auto& v : r.violation_list()) {
    violations.rows.push_back({FormatTime(v.detected_unix_ms()), v.device_id(), v.session_id(), v.rule(),
                               SeverityName(v.severity()), Short(v.patient_pseudonym()),
                               v.offline_decision() ? "yes" : "no", v.locked() ? "yes" : "no", v.detail()});
  }
  const std::string period =
      util::Cat("--from ", r.from_unix_ms(), " --to ", r.to_unix_ms() > 0 ? r.to_unix_ms() - 1 : 0);
  violations.note = Omitted(cut.violations(), "violations", "rollerctl violations " + period);
  out.push_back(std::move(violations));

  Section cycles{"Sterilisation cycles",
                 "cycles.csv",
                 {"Cycle", "Ended", "Method", "Temperature", "Exposure", "Load", "Chemical indicator",
                  "Biological indicator", "Result", "Why it failed"},
                 {},
                 "No cycles ended in the period."};
  for (const auto& c : r.cycle_list()) {
    const auto& k = c.cycle();
    cycles.rows.push_back({CycleLabel(k), FormatTime(k.end_unix_ms()), k.method(),
                           Fixed(k.exposure_temperature_c(), 1) + " °C", FormatDuration(k.exposure_seconds() * 1000LL),
                           util::Cat(k.load_size(), k.load_size() == 1 ? " roller" : " rollers"),
                           IndicatorName(k.chemical_indicator()), IndicatorName(k.biological_indicator()),
                           CycleResult(c), Join(c.failure_reasons(), "; ")});
  }
  cycles.note = Omitted(cut.cycles(), "cycles", "rollerctl trail cycle STERILISER:NUMBER, or a steriliser's trail");
  out.push_back(std::move(cycles));

  Section pending{"Biological indicators pending",
                  "pending_indicators.csv",
                  {"Cycle", "Ended", "Waiting for", "Method", "Load"},
                  {},
                  "No biological indicator is pending."};
  for (const auto& c : r.pending_indicators()) {
    pending.rows.push_back({CycleLabel(c.cycle()), FormatTime(c.cycle().end_unix_ms()),
                            FormatDuration(r.to_unix_ms() - c.cycle().end_unix_ms()), c.cycle().method(),
                            Join(c.cycle().load())});
  }
  pending.note = Omitted(cut.pending_indicators(), "cycles waiting for their indicator", "rollerctl list --kind steriliser");
  out.push_back(std::move(pending));

  Section locked{"Locked rollers", "locked_rollers.csv", {"Roller", "Model", "Clinic", "Locked since", "Why"}, {},
                 "No roller is locked."};
  for (const auto& d : r.locked_rollers()) {
    locked.rows.push_back({d.device().device_id(), d.device().model(), d.device().clinic(),
                           FormatTime(d.state().roller().locked_unix_ms()), d.state().roller().lock_reason()});
  }
  locked.note = Omitted(cut.locked_rollers(), "locked rollers", "rollerctl list --kind roller");
  out.push_back(std::move(locked));

  Section retired{"Rollers retired in the period", "retired_rollers.csv", {"Roller", "Model", "Clinic", "Retired", "Why"},
                  {}, "No roller was retired in the period."};
  for (const auto& d : r.retired_rollers()) {
    retired.rows.push_back({d.device().device_id(), d.device().model(), d.device().clinic(),
                            FormatTime(d.device().retired_unix_ms()), d.device().retired_reason()});
  }
  retired.note = Omitted(cut.retired_rollers(), "retired rollers", "rollerctl list --kind roller");
  out.push_back(std::move(retired));

  Section recalls{"Recalls",
                  "recalls.csv",
                  {"Failed cycle", "Recalled", "Back to (last negative indicator)", "Suspect cycles",
                   "Sessions at risk", "Patients", "Rollers locked"},
                  {},
                  "No recall in the period."};
  Section at_risk{"Recall lists: sessions at risk and patients to contact",
                  "recall_sessions.csv",
                  {"Failed cycle", "Roller", "Session", "Started", "Relied on cycle", "Patient"},
                  {},
                  "No session is at risk."};
  for (const auto& rc : r.recalls()) {
    std::string suspect;
    for (const auto& c : rc.suspect_cycles()) {
      if (!suspect.empty()) suspect += ", ";
      suspect += CycleLabel(c.cycle());
    }
    const std::string failed = util::Cat(rc.steriliser_id(), "#", rc.failed_cycle());
    recalls.rows.push_back({failed, FormatTime(rc.recalled_unix_ms()),
                            rc.last_negative_cycle() ? util::Cat(rc.steriliser_id(), "#", rc.last_negative_cycle())
                                                     : "none (the steriliser's first cycle)",
                            suspect, util::Cat(rc.sessions_at_risk_size()), util::Cat(rc.patients_size()),
                            Join(rc.locked_rollers())});
    for (const auto& s : rc.sessions_at_risk()) {
      at_risk.rows.push_back({failed, s.device_id(), s.session_id(), FormatTime(s.start_unix_ms()),
                              util::Cat(s.cycle().steriliser_id(), "#", s.cycle().cycle_number()),
                              s.patient_pseudonym()});
    }
  }
  recalls.note = Omitted(cut.recalls(), "recalls", "rollerctl recall STERILISER:NUMBER");
  out.push_back(std::move(recalls));
  out.push_back(std::move(at_risk));

  Section findings{"Findings: device input refused or flagged",
                   "findings.csv",
                   {"Detected", "Device", "Sequence", "Kind", "Detail"},
                   {},
                   "No finding in the period."};
  for (const auto& f : r.findings()) {
    findings.rows.push_back({FormatTime(f.detected_unix_ms()), f.device_id(), util::Cat(f.sequence()), f.kind(),
                             f.detail()});
  }
  findings.note = Omitted(cut.findings(), "findings", "each device's trail (rollerctl trail roller ID)");
  out.push_back(std::move(findings));
  return out;
}

std::string Html(std::string_view text) { return util::HtmlEscape(text); }

std::string Csv(const std::string& field) {
  if (field.find_first_of(",\"\n\r") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  return out + "\"";
}

// The chart data as a JSON literal that is safe inside <script>.
std::string ChartData(const PeriodReport& r) {
  nlohmann::json j;
  for (const auto& b : r.buckets()) {
    j["labels"].push_back(FormatDate(b.start_unix_ms()));
    j["sessions"].push_back(b.sessions() - b.sessions_denied());
    j["denied"].push_back(b.sessions_denied());
    j["violations"].push_back(b.violations());
  }
  uint32_t passed = 0, pending = 0, bi_failed = 0, failed = 0;
  for (const auto& c : r.cycle_list()) {
    const std::string result = CycleResult(c);
    if (result == "passed") ++passed;
    else if (result == "passed, indicator pending") ++pending;
    else if (result == "FAILED biological indicator") ++bi_failed;
    else ++failed;
  }
  j["cycles"] = {passed, pending, bi_failed, failed};
  for (const auto& c : r.violations_by_rule()) {
    j["rules"].push_back(c.rule());
    j["rule_counts"].push_back(c.count());
  }
  std::string text = j.dump();
  for (size_t at = 0; (at = text.find("</", at)) != std::string::npos; at += 3) text.replace(at, 2, "<\\/");
  return text;
}

constexpr const char* kStyle = R"css(
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 2em; color: #222; }
h1 { margin-bottom: 0.2em; }
.period { color: #555; margin-top: 0; }
.figures { display: grid; grid-template-columns: repeat(4, 1fr); gap: 0.8em; margin: 1.5em 0; }
.figure { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 0.8em; }
.figure .n { font-size: 1.8em; font-weight: bold; }
.figure.alert .n { color: #b00020; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5em; }
.chart { position: relative; height: 260px; }
table { border-collapse: collapse; width: 100%; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
section { page-break-inside: avoid; }
.empty { color: #555; font-style: italic; }
@media print { body { margin: 1cm; } .chart { height: 220px; } a { color: inherit; } }
)css";

constexpr const char* kChartScript = R"js(
(function () {
  const data = JSON.parse(document.getElementById('report-data').textContent);
  const common = { responsive: true, maintainAspectRatio: false, animation: false };
  new Chart(document.getElementById('chart-sessions'), {
    type: 'bar',
    data: { labels: data.labels || [], datasets: [
      { label: 'Sessions started within the rules', data: data.sessions || [], backgroundColor: '#2e7d32', stack: 's' },
      { label: 'Sessions against a deny rule', data: data.denied || [], backgroundColor: '#c62828', stack: 's' } ] },
    options: Object.assign({ scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }, common) });
  new Chart(document.getElementById('chart-violations'), {
    type: 'line',
    data: { labels: data.labels || [], datasets: [
      { label: 'Violations, by the day of the session', data: data.violations || [], borderColor: '#c62828', backgroundColor: '#c62828' } ] },
    options: Object.assign({ scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }, common) });
  new Chart(document.getElementById('chart-cycles'), {
    type: 'doughnut',
    data: { labels: ['Passed', 'Passed, indicator pending', 'Failed biological indicator', 'Failed parameters'],
            datasets: [{ data: data.cycles, backgroundColor: ['#2e7d32', '#f9a825', '#6a1b9a', '#c62828'] }] },
    options: common });
  new Chart(document.getElementById('chart-rules'), {
    type: 'bar',
    data: { labels: data.rules || [], datasets: [
      { label: 'Violations by rule', data: data.rule_counts || [], backgroundColor: '#c62828' } ] },
    options: Object.assign({ indexAxis: 'y', scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } }, common) });
  document.body.dataset.charts = 'rendered';
})();
)js";

void HtmlTable(const Section& s, std::ostream& out) {
  out << "<section><h2>" << Html(s.title) << "</h2>\n";
  if (s.rows.empty()) {
    out << "<p class=\"empty\">" << Html(s.when_empty) << "</p>";
    if (!s.note.empty()) out << "<p class=\"omitted\">" << Html(s.note) << "</p>";
    out << "</section>\n";
    return;
  }
  out << "<table><thead><tr>";
  for (const auto& h : s.header) out << "<th>" << Html(h) << "</th>";
  out << "</tr></thead><tbody>\n";
  for (const auto& row : s.rows) {
    out << "<tr>";
    for (const auto& cell : row) out << "<td>" << Html(cell) << "</td>";
    out << "</tr>\n";
  }
  out << "</tbody></table>";
  if (!s.note.empty()) out << "<p class=\"omitted\">" << Html(s.note) << "</p>";
  out << "</section>\n";
}

}  // namespace

void RenderReportTables(const PeriodReport& r, std::ostream& out) {
  out << "RollerTrace compliance report\n";
  for (const Section& s : Sections(r)) {
    out << "\n" << s.title << "\n";
    if (s.rows.empty()) {
      out << "  " << s.when_empty << "\n";
    } else {
      Table table(s.header);
      for (const auto& row : s.rows) table.Add(row);
      table.Print(out);
    }
    if (!s.note.empty()) out << "  " << s.note << "\n";
  }
}

std::string RenderReportHtml(const PeriodReport& r) {
  std::ostringstream out;
  const std::vector<Section> sections = Sections(r);
  out << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>RollerTrace compliance report "
      << Html(FormatDate(r.from_unix_ms())) << " to " << Html(FormatDate(r.to_unix_ms())) << "</title>\n<style>"
      << kStyle << "</style>\n</head><body>\n";
  out << "<h1>RollerTrace compliance report</h1>\n<p class=\"period\">" << Html(FormatTime(r.from_unix_ms()))
      << " to " << Html(FormatTime(r.to_unix_ms())) << " (" << Html(FormatDuration(r.to_unix_ms() - r.from_unix_ms()))
      << "). Generated " << Html(FormatTime(r.generated_unix_ms()))
      << ". Times are UTC; patients appear only as pseudonyms.</p>\n";
  struct Figure {
    const char* label;
    uint32_t n;
    bool alert;
  };
  const Figure figures[] = {
      {"Sessions started", r.sessions(), false},
      {"Sessions against a deny rule", r.sessions_denied(), r.sessions_denied() > 0},
      {"Violations", r.violations(), r.violations() > 0},
      {"Patients treated", r.patients(), false},
      {"Sterilisation cycles", r.cycles(), false},
      {"Cycles failing parameters", r.cycles_failed(), r.cycles_failed() > 0},
      {"Biological indicators pending", r.indicators_pending(), false},
      {"Biological indicators failed", r.indicators_failed(), r.indicators_failed() > 0},
      {"Rollers locked now", static_cast<uint32_t>(r.locked_rollers_size()) + r.omitted().locked_rollers(),
       r.locked_rollers_size() > 0},
      {"Rollers retired", static_cast<uint32_t>(r.retired_rollers_size()) + r.omitted().retired_rollers(), false},
      {"Recalls", static_cast<uint32_t>(r.recalls_size()), r.recalls_size() > 0},
      {"Sessions at risk", r.sessions_at_risk(), r.sessions_at_risk() > 0},
      {"Findings", static_cast<uint32_t>(r.findings_size()), r.findings_size() > 0},
  };
  out << "<div class=\"figures\">\n";
  for (const auto& f : figures) {
    out << "<div class=\"figure" << (f.alert ? " alert" : "") << "\"><div class=\"n\">" << f.n << "</div>"
        << Html(f.label) << "</div>\n";
  }
  out << "</div>\n";
  out << "<section><h2>Over time</h2><div class=\"charts\">\n"
         "<div class=\"chart\"><canvas id=\"chart-sessions\" aria-label=\"Sessions over time\"></canvas></div>\n"
         "<div class=\"chart\"><canvas id=\"chart-violations\" aria-label=\"Violations over time\"></canvas></div>\n"
         "<div class=\"chart\"><canvas id=\"chart-cycles\" aria-label=\"Cycles by result\"></canvas></div>\n"
         "<div class=\"chart\"><canvas id=\"chart-rules\" aria-label=\"Violations by rule\"></canvas></div>\n"
         "</div></section>\n";
  for (const Section& s : sections) HtmlTable(s, out);
  out << "<script id=\"report-data\" type=\"application/json\">" << ChartData(r) << "</script>\n";
  out << "<script>" << kChartJs << "</script>\n<script>" << kChartScript << "</script>\n</body></html>\n";
  return out.str();
}

std::map<std::string, std::string> RenderReportCsv(const PeriodReport& r) {
  std::map<std::string, std::string> files;
  for (const Section& s : Sections(r)) {
    std::string text;
    auto line = [&](const std::vector<std::string>& row) {
      for (size_t i = 0; i < row.size(); ++i) {
        if (i > 0) text.push_back(',');
        text += Csv(row[i]);
      }
      text += "\r\n";
    };
    line(s.header);
    for (const auto& row : s.rows) line(row);
    files[s.file] = std::move(text);
  }
  return files;
}

int Report(const Context& ctx, int64_t from, int64_t to, ReportFormat format, const std::string& output) {
  auto stub = rollertrace::v1::ComplianceService::NewStub(ctx.channel);
  rollertrace::v1::ReportRequest request;
  request.set_from_unix_ms(from);
  request.set_to_unix_ms(to);
  PeriodReport report;
  auto call = Call(ctx);
  call->set_deadline(std::chrono::system_clock::now() + std::max(ctx.timeout, std::chrono::seconds(120)));
  grpc::Status s = stub->Report(call.get(), request, &report);
  if (!s.ok()) return Fail(ctx, s);

  auto write = [&](const std::filesystem::path& path, const std::string& text) {
    std::ofstream file(path, std::ios::binary);
    file << text;
    file.close();
    if (!file) {
      *ctx.err << "rollerctl: cannot write " << path.string() << "\n";
      return false;
    }
    return true;
  };
  switch (format) {
    case ReportFormat::kTable:
    case ReportFormat::kJson: {
      std::ostringstream text;
      if (format == ReportFormat::kTable) {
        RenderReportTables(report, text);
      } else {
        Context to_text = ctx;
        to_text.out = &text;
        PrintJson(to_text, report);
      }
      if (output.empty() || output == "-") {
        *ctx.out << text.str();
        return 0;
      }
      if (!write(output, text.str())) return 1;
      *ctx.out << "report written to " << output << "\n";
      return 0;
    }
    case ReportFormat::kHtml: {
      if (!write(output, RenderReportHtml(report))) return 1;
      *ctx.out << "report written to " << output << ": " << report.sessions() << " sessions, " << report.violations()
               << " violations, " << report.cycles() << " cycles, " << report.recalls_size()
               << " recalls; open it in a browser and print from there\n";
      return 0;
    }
    case ReportFormat::kCsv: {
      std::error_code ec;
      std::filesystem::create_directories(output, ec);
      if (ec) {
        *ctx.err << "rollerctl: cannot create " << output << ": " << ec.message() << "\n";
        return 1;
      }
      const auto files = RenderReportCsv(report);
      for (const auto& [name, text] : files) {
        if (!write(std::filesystem::path(output) / name, text)) return 1;
      }
      *ctx.out << files.size() << " CSV files written to " << output << "\n";
      return 0;
    }
  }
  return 1;
}

}  // namespace rollertrace::rollerctl
