// rollerctl: the compliance officer's and administrator's command line.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "rollerctl/commands.h"
#include "rpc/credentials.h"
#include "rollerctl/format.h"
#include "rollerctl/report.h"
#include "util/secret_file.h"

int main(int argc, char** argv) {
  CLI::App app{
      "rollerctl - RollerTrace's command line for compliance officers and administrators.\n"
      "Talks to ingestd over gRPC. Tables by default; --json for the API's JSON."};
  app.require_subcommand(1);
  std::string server = "127.0.0.1:50051";
  bool json = false;
  int timeout_s = 10;
  app.add_option("--server", server, "ingestd gRPC address")->capture_default_str();
  app.add_flag("--json", json, "Print JSON (protobuf JSON mapping) instead of tables");
  std::string token_file;
  app.add_option("--token-file", token_file,
                 "File holding your bearer token (auditor or admin); default: $ROLLERTRACE_TOKEN_FILE");
  std::string tls_ca;
  app.add_option("--tls-ca", tls_ca,
                 "Reach ingestd over TLS, trusting this CA certificate (PEM); default: $ROLLERTRACE_TLS_CA, "
                 "else plaintext");
  app.add_option("--timeout", timeout_s, "Seconds to wait for each call")->capture_default_str()->check(CLI::Range(1, 3600));

  rollertrace::v1::Device device;
  std::string kind = "roller";
  std::string id, model, clinic, reason;
  uint32_t needles = 0;
  double needle_mm = 0;
  uint64_t rated = 0;
  auto* reg = app.add_subcommand("register", "Register a roller or steriliser");
  reg->add_option("device", id, "Device serial")->required();
  reg->add_option("--kind", kind, "roller or steriliser")->capture_default_str()->check(CLI::IsMember({"roller", "steriliser"}));
  reg->add_option("--model", model, "Model name");
  reg->add_option("--clinic", clinic, "Clinic the device belongs to");
  reg->add_option("--needles", needles, "Needle count (rollers: at least 192)");
  reg->add_option("--needle-mm", needle_mm, "Needle length in mm (rollers: 0.25-2.5)");
  reg->add_option("--rated-penetrations", rated, "Rated life in needle penetrations (revolutions x needles)");

  std::string list_kind = "all";
  auto* list = app.add_subcommand("list", "List devices with their ingest state");
  list->add_option("--kind", list_kind, "roller, steriliser or all")->capture_default_str()->check(CLI::IsMember({"roller", "steriliser", "all"}));

  auto* show = app.add_subcommand("show", "Show one device");
  show->add_option("device", id, "Device serial")->required();

  uint64_t from = 1, limit = 0;
  auto* history = app.add_subcommand("history", "A device's events in sequence order");
  history->add_option("device", id, "Device serial")->required();
  history->add_option("--from", from, "First sequence")->capture_default_str();
  history->add_option("--limit", limit, "At most this many events; 0 = all")->capture_default_str();

  auto* gaps = app.add_subcommand("gaps", "Sequence gaps of a device: when each opened, whether it closed");
  gaps->add_option("device", id, "Device serial")->required();

  auto* retire = app.add_subcommand("retire", "Retire a device for good");
  retire->add_option("device", id, "Device serial")->required();
  retire->add_option("--reason", reason, "Why (course finished, worn, recalled, ...)")->required();

  std::string by, cycle_text, result;
  auto* unlock = app.add_subcommand("unlock", "Release a locked roller (administrator); stores who and why");
  unlock->add_option("device", id, "Device serial")->required();
  unlock->add_option("--reason", reason, "Why the lock is released")->required();
  unlock->add_option("--by", by, "Who releases it")->required();

  auto cycle_check = CLI::Validator(
      [](std::string& text) {
        rollertrace::rollerctl::CycleName c;
        return rollertrace::rollerctl::ParseCycleName(text, &c) ? std::string()
                                                                : "expected <steriliser>:<cycle number>, e.g. S-01:7";
      },
      "STERILISER:N");
  auto* cycle = app.add_subcommand("cycle", "A sterilisation cycle: parameters, verdict, load");
  cycle->add_option("cycle", cycle_text, "<steriliser>:<cycle number>")->required()->check(cycle_check);

  auto* bi = app.add_subcommand("bi", "Record a cycle's biological-indicator result; a failure starts a recall");
  bi->add_option("cycle", cycle_text, "<steriliser>:<cycle number>")->required()->check(cycle_check);
  bi->add_option("result", result, "pass or fail")->required()->check(CLI::IsMember({"pass", "fail"}));
  bi->add_option("--by", by, "Who read the indicator")->capture_default_str();

  auto* recall = app.add_subcommand("recall", "The recall list of a cycle whose biological indicator failed");
  recall->add_option("cycle", cycle_text, "<steriliser>:<cycle number>")->required()->check(cycle_check);

  rollertrace::v1::ViolationsRequest vfilter;
  std::string from_text, to_text, severity = "all";
  auto* violations = app.add_subcommand("violations", "Sessions that started while a deny rule held");
  violations->add_option("--from", from_text, "From this time (YYYY-MM-DD or unix ms)");
  violations->add_option("--to", to_text, "Before this time (YYYY-MM-DD or unix ms)");
  violations->add_option("--rule", *vfilter.mutable_rule(), "Only this rule id, e.g. WORN");
  violations->add_option("--device", *vfilter.mutable_device_id(), "Only this roller");
  violations->add_option("--severity", severity, "deny, warn or all")->capture_default_str()->check(CLI::IsMember({"deny", "warn", "all"}));

  rollertrace::v1::AuthorizeRequest auth;
  std::string patient, indication = "unspecified", area = "face";
  double auth_needle = 0;
  int anaesthesia_min = -1;
  auto* authorize = app.add_subcommand("authorize", "Ask whether a roller may start a session now (exit 4 on deny)");
  authorize->add_option("device", id, "Roller serial")->required();
  authorize->add_option("--patient", patient, "The clinic's patient reference (pseudonymised by ingestd)")->required();
  authorize->add_option("--indication", indication, "rejuvenation, acne, pigmentation, hair_loss, scar, stretch_marks")->capture_default_str();
  authorize->add_option("--area", area, "face, scalp or body")->capture_default_str()->check(CLI::IsMember({"face", "scalp", "body"}));
  authorize->add_option("--needle-mm", auth_needle, "Needle length in mm (default: the roller's)");
  authorize->add_option("--anaesthesia-minutes-ago", anaesthesia_min, "When topical anaesthetic was applied");

  auto* trail = app.add_subcommand("trail", "A compliance trail: everything about a roller, a patient or a cycle");
  trail->require_subcommand(1);
  bool with_events = false;
  std::string pseudonym, ref;
  auto* trail_roller = trail->add_subcommand("roller", "Registration, cycles, sessions, violations, locks, in order");
  trail_roller->add_option("device", id, "Roller serial")->required();
  trail_roller->add_flag("--events", with_events, "Also list every event the roller sent");
  auto* trail_patient = trail->add_subcommand("patient", "Every session of a patient, with roller and cycle");
  auto* by_pseudonym = trail_patient->add_option("--pseudonym", pseudonym, "The patient's pseudonym (p-...)");
  auto* by_ref = trail_patient->add_option("--ref", ref, "The clinic's patient reference (pseudonymised by ingestd)");
  by_pseudonym->excludes(by_ref);
  trail_patient->require_option(1);
  auto* trail_cycle = trail->add_subcommand("cycle", "A cycle's load and every session that relied on it");
  trail_cycle->add_option("cycle", cycle_text, "<steriliser>:<cycle number>")->required()->check(cycle_check);

  auto* verify = app.add_subcommand("verify", "Recompute every device's event chain and record chain (sessions, violations, decisions, log, cycles, recalls) and the signed checkpoint; name the first broken record (exit 5)");
  verify->add_option("--device", id, "Only this device");

  std::string report_from, report_to, report_format = "table", report_output;
  auto* report = app.add_subcommand(
      "report",
      "A period's compliance report: summary, sessions and violations over time, cycles by result, pending "
      "biological indicators, locked and retired rollers, recall lists");
  report->add_option("--from", report_from,
                     "First day (YYYY-MM-DD), a time (YYYY-MM-DDTHH:MM:SSZ) or unix ms; default: 30 days before --to");
  report->add_option("--to", report_to, "Last day included (YYYY-MM-DD), or an exclusive end time; default: now");
  report->add_option("--format", report_format, "table, html (printable, with charts), csv or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "html", "csv", "json"}));
  report->add_option("--output,-o", report_output,
                     "html: the file; csv: a directory of CSV files (default for both: rollertrace-report-FROM-TO"
                     "[.html]); table and json: a file (default: standard output)");

  rollertrace::v1::ExportRequest export_request;
  std::vector<std::string> export_devices;
  std::string export_from, export_to, archive_path, backup_dir;
  auto* export_cmd = app.add_subcommand(
      "export",
      "Write a complete archive of devices (events, chains, sessions, violations, decisions, cycles, recalls, "
      "log) that a fresh ingestd can import and verify");
  export_cmd->add_option("--output,-o", archive_path, "The archive file to write")->required();
  export_cmd->add_option("--device", export_devices,
                         "These devices (repeatable); a roller brings the sterilisers of its cycles");
  export_cmd->add_option("--from", export_from,
                         "Without --device: the devices registered or sending from this day (YYYY-MM-DD or unix ms)");
  export_cmd->add_option("--to", export_to, "... up to this day, included (default: now)");
  auto* import_cmd = app.add_subcommand("import", "Load an archive into an ingestd that does not hold its devices (admin)");
  import_cmd->add_option("archive", archive_path, "The archive file (from rollerctl export)")->required();
  auto* backup = app.add_subcommand(
      "backup", "Have ingestd write a consistent online copy of its whole store (RocksDB checkpoint) (admin)");
  backup->add_option("directory", backup_dir, "A new directory on ingestd's machine")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // A mistyped command would only hear "A subcommand is required": name it.
    if (std::string(e.what()).find("subcommand is required") != std::string::npos) {
      const auto commands = app.get_subcommands([](const CLI::App*) { return true; });
      auto is_command = [&](const std::string& word) {
        for (const CLI::App* c : commands) {
          if (c->get_name() == word) return true;
        }
        return false;
      };
      for (int i = 1; i < argc; ++i) {
        const std::string word = argv[i];
        if (word.empty() || word[0] == '-') {
          // A global option and, unless it is a flag, its value.
          if (word != "--json" && word.find('=') == std::string::npos) ++i;
          continue;
        }
        if (is_command(word)) break;  // its own arguments are what is wrong: CLI11 says so below
        std::string names;
        for (const CLI::App* c : commands) names += (names.empty() ? "" : ", ") + c->get_name();
        std::cerr << "rollerctl: unknown command '" << word << "'; the commands are: " << names
                  << " (rollerctl --help)" << std::endl;
        return 2;
      }
    }
    return app.exit(e);
  }

  rollertrace::rollerctl::Context ctx;
  if (tls_ca.empty()) {
    if (const char* env = std::getenv("ROLLERTRACE_TLS_CA"); env != nullptr) tls_ca = env;
  }
  auto credentials = rollertrace::rpc::ClientCredentials(tls_ca);
  if (!credentials.ok()) {
    std::cerr << "rollerctl: --tls-ca: " << credentials.status().message() << "\n";
    return 2;
  }
  ctx.channel = grpc::CreateChannel(server, *credentials);
  ctx.json = json;
  ctx.timeout = std::chrono::seconds(timeout_s);
  if (token_file.empty()) {
    if (const char* env = std::getenv("ROLLERTRACE_TOKEN_FILE"); env != nullptr) token_file = env;
  }
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = rollertrace::util::ReadPrivateLine(token_file, "token file");
    if (!token.ok()) {
      std::cerr << "rollerctl: --token-file: " << token.status().message() << "\n";
      return 2;
    }
    ctx.token = *token;
  }
  ctx.out = &std::cout;
  ctx.err = &std::cerr;

  if (*reg) {
    device.set_device_id(id);
    device.set_kind(kind == "steriliser" ? rollertrace::v1::DEVICE_KIND_STERILISER : rollertrace::v1::DEVICE_KIND_ROLLER);
    device.set_model(model);
    device.set_clinic(clinic);
    device.set_needle_count(needles);
    device.set_needle_length_mm(needle_mm);
    device.set_rated_penetrations(rated);
    return rollertrace::rollerctl::Register(ctx, device);
  }
  if (*list) {
    auto k = list_kind == "roller"       ? rollertrace::v1::DEVICE_KIND_ROLLER
             : list_kind == "steriliser" ? rollertrace::v1::DEVICE_KIND_STERILISER
                                         : rollertrace::v1::DEVICE_KIND_UNSPECIFIED;
    return rollertrace::rollerctl::List(ctx, k);
  }
  if (*show) return rollertrace::rollerctl::Show(ctx, id);
  if (*history) return rollertrace::rollerctl::History(ctx, id, from, limit);
  if (*gaps) return rollertrace::rollerctl::Gaps(ctx, id);
  if (*retire) return rollertrace::rollerctl::Retire(ctx, id, reason);
  if (*verify) return rollertrace::rollerctl::Verify(ctx, id);
  if (*unlock) return rollertrace::rollerctl::Unlock(ctx, id, reason, by);
  rollertrace::rollerctl::CycleName cycle_name;
  rollertrace::rollerctl::ParseCycleName(cycle_text, &cycle_name);
  if (*cycle) return rollertrace::rollerctl::Cycle(ctx, cycle_name);
  if (*trail_roller) return rollertrace::rollerctl::RollerTrail(ctx, id, with_events);
  if (*trail_patient) return rollertrace::rollerctl::PatientTrail(ctx, pseudonym, ref);
  if (*trail_cycle) return rollertrace::rollerctl::CycleTrail(ctx, cycle_name);
  if (*bi) return rollertrace::rollerctl::BiologicalIndicator(ctx, cycle_name, result == "pass", by.empty() ? "rollerctl" : by);
  if (*recall) return rollertrace::rollerctl::Recall(ctx, cycle_name);
  if (*violations) {
    for (auto [text, field] : {std::pair{&from_text, 0}, std::pair{&to_text, 1}}) {
      if (text->empty()) continue;
      int64_t ms = rollertrace::rollerctl::ParseTime(*text);
      if (ms < 0) {
        std::cerr << "rollerctl: --" << (field == 0 ? "from" : "to") << ": '" << *text
                  << "' is not YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or unix milliseconds\n";
        return 2;
      }
      if (field == 0) vfilter.set_from_unix_ms(ms); else vfilter.set_to_unix_ms(ms);
    }
    vfilter.set_severity(severity == "deny"   ? rollertrace::v1::SEVERITY_DENY
                         : severity == "warn" ? rollertrace::v1::SEVERITY_WARN
                                              : rollertrace::v1::SEVERITY_UNSPECIFIED);
    return rollertrace::rollerctl::Violations(ctx, vfilter);
  }
  if (*report) {
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    int64_t to = now, from = 0;
    if (!report_to.empty()) to = rollertrace::rollerctl::ParseEndTime(report_to);
    from = report_from.empty() ? to - 30LL * 86'400'000 : rollertrace::rollerctl::ParseTime(report_from);
    if (to < 0 || from < 0) {
      std::cerr << "rollerctl: report: --" << (to < 0 ? "to" : "from") << ": '" << (to < 0 ? report_to : report_from)
                << "' is not YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or unix milliseconds\n";
      return 2;
    }
    if (from >= to) {
      std::cerr << "rollerctl: report: --from must be before --to\n";
      return 2;
    }
    using rollertrace::rollerctl::ReportFormat;
    ReportFormat format = json || report_format == "json" ? ReportFormat::kJson
                          : report_format == "html"       ? ReportFormat::kHtml
                          : report_format == "csv"        ? ReportFormat::kCsv
                                                          : ReportFormat::kTable;
    if (report_output.empty() && (format == ReportFormat::kHtml || format == ReportFormat::kCsv)) {
      auto day = [](int64_t ms) { return rollertrace::rollerctl::FormatTime(ms).substr(0, 10); };
      report_output = "rollertrace-report-" + day(from) + "-to-" + day(to - 1) +
                      (format == ReportFormat::kHtml ? ".html" : "");
    }
    return rollertrace::rollerctl::Report(ctx, from, to, format, report_output);
  }
  if (*export_cmd) {
    for (const auto& d : export_devices) export_request.add_device_ids(d);
    if (!export_from.empty()) export_request.set_from_unix_ms(rollertrace::rollerctl::ParseTime(export_from));
    if (!export_to.empty()) export_request.set_to_unix_ms(rollertrace::rollerctl::ParseEndTime(export_to));
    if (export_request.from_unix_ms() < 0 || export_request.to_unix_ms() < 0) {
      std::cerr << "rollerctl: export: --from/--to: not YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or unix milliseconds\n";
      return 2;
    }
    return rollertrace::rollerctl::Export(ctx, export_request, archive_path);
  }
  if (*import_cmd) return rollertrace::rollerctl::Import(ctx, archive_path);
  if (*backup) return rollertrace::rollerctl::Backup(ctx, backup_dir);
  if (*authorize) {
    auth.set_device_id(id);
    auth.set_correlation_id("rollerctl");
    auto* s = auth.mutable_session();
    s->set_patient_ref(patient);
    std::string upper = "INDICATION_";
    for (char c : indication) upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    rollertrace::v1::Indication ind;
    if (!rollertrace::v1::Indication_Parse(upper, &ind)) {
      std::cerr << "rollerctl: --indication: unknown indication '" << indication << "'\n";
      return 2;
    }
    s->set_indication(ind);
    s->set_area(area == "scalp" ? rollertrace::v1::AREA_SCALP : area == "body" ? rollertrace::v1::AREA_BODY : rollertrace::v1::AREA_FACE);
    s->set_needle_length_mm(auth_needle);
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    if (anaesthesia_min >= 0) s->set_anaesthesia_applied_unix_ms(now - int64_t{anaesthesia_min} * 60000);
    auth.set_start_unix_ms(now);
    return rollertrace::rollerctl::Authorize(ctx, auth);
  }
  return 2;
}
