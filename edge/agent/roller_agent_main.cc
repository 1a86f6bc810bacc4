// roller-agent: the edge agent of one roller or steriliser. Reads events from
// the simulator or JSON lines (stdin or a file), spools each durably, streams
// them over MQTT and forgets them only when ingestd acknowledges them.
#include <google/protobuf/util/json_util.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iostream>

#include "agent/fleet.h"
#include "agent/playback.h"
#include "agent/simulator.h"
#include "process/shutdown.h"
#include "util/clock.h"

namespace {


// Records JSON lines (one Event each, protobuf JSON mapping, device id and
// sequence left to the agent). Lines before the spool's cursor were recorded
// by an earlier run and are skipped. Bad lines are reported and skipped.
absl::StatusOr<uint64_t> PlayJsonLines(std::istream& in, const std::string& device_id,
                                       rollertrace::edge::Fleet& fleet, const std::atomic<bool>& stop,
                                       uint64_t* bad_lines) {
  const uint64_t cursor = fleet.SourceCursor(device_id);
  uint64_t line_no = 0;
  uint64_t recorded = 0;
  std::string line;
  while (!stop && std::getline(in, line)) {
    ++line_no;
    if (line_no <= cursor || line.find_first_not_of(" \t\r") == std::string::npos) continue;
    rollertrace::v1::Event event;
    auto status = google::protobuf::util::JsonStringToMessage(line, &event);
    if (!status.ok() || event.body_case() == rollertrace::v1::Event::BODY_NOT_SET) {
      std::cerr << "roller-agent: line " << line_no << " skipped: "
                << (status.ok() ? std::string("the event has no body") : std::string(status.message()))
                << std::endl;
      ++*bad_lines;
      continue;
    }
    if (!event.device_id().empty() && event.device_id() != device_id) {
      std::cerr << "roller-agent: line " << line_no << " skipped: it is for device " << event.device_id()
                << ", this agent is " << device_id << std::endl;
      ++*bad_lines;
      continue;
    }
    if (event.device_time_unix_ms() == 0) event.set_device_time_unix_ms(rollertrace::util::NowUnixMs());
    if (absl::Status s = fleet.Record(device_id, std::move(event), line_no).status(); !s.ok()) {
      if (s.code() != absl::StatusCode::kInvalidArgument) return s;
      std::cerr << "roller-agent: line " << line_no << " skipped: " << s.message() << std::endl;
      ++*bad_lines;
      continue;
    }
    ++recorded;
  }
  return recorded;
}

}  // namespace

int main(int argc, char** argv) {
  rollertrace::process::BlockShutdownSignals();
  CLI::App app{
      "roller-agent - edge agent for one roller or steriliser.\n"
      "Sources: 'sim' (a simulated clinic, repeatable from --seed), 'stdin', or a file path, the last two\n"
      "holding one event per line in protobuf's JSON mapping, e.g.\n"
      "  {\"deviceTimeUnixMs\":\"1764000000000\",\"usageSample\":{\"sessionId\":\"s1\",\"revolutions\":40}}\n"
      "Events are spooled durably before sending and kept until ingestd acknowledges them."};
  std::string device_id;
  std::string kind_name = "roller";
  std::string source = "sim";
  std::string spool_dir;
  std::string metrics_listen;
  rollertrace::edge::SimOptions sim;
  rollertrace::edge::FleetOptions options;
  double rate = 50;
  int duration_s = 0;
  int ack_timeout_ms = 3000;
  bool exit_when_drained = false;
  app.add_option("--device-id", device_id, "This device's serial (its MQTT client id and topic id)")->required();
  app.add_option("--kind", kind_name, "roller or steriliser")
      ->capture_default_str()
      ->check(CLI::IsMember({"roller", "steriliser"}));
  app.add_option("--source", source, "sim, stdin, or a file of JSON lines")->capture_default_str();
  app.add_option("--mqtt", options.mqtt_uri, "Broker URI (ssl://host:port for TLS)")->capture_default_str();
  app.add_option("--mqtt-ca-file", options.mqtt_ca_file, "TLS to the broker: trust this CA certificate (PEM)")
      ->check(CLI::ExistingFile);
  std::string password_file;
  app.add_option("--mqtt-username", options.mqtt_username, "Broker user name (the device id, with the shipped ACL)");
  app.add_option("--mqtt-password-file", password_file,
                 "File holding the broker password (mode 0600; only over ssl:// or to a loopback broker)");
  app.add_flag("--json", options.json, "Publish on the /json topic (protobuf JSON mapping)");
  app.add_option("--spool-dir", spool_dir, "Durable spool directory (default ./data/agent-<device-id>)");
  app.add_option("--seed", sim.seed, "Simulator seed")->capture_default_str();
  app.add_option("--days", sim.days, "Simulated clinic days")->capture_default_str()->check(CLI::Range(1, 3650));
  app.add_option("--rate", rate, "Simulator events per second; 0 = as fast as possible")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e7));
  app.add_option("--ack-timeout-ms", ack_timeout_ms, "Resend unacknowledged events after this long")
      ->capture_default_str()
      ->check(CLI::Range(100, 600000));
  app.add_flag("--exit-when-drained", exit_when_drained,
               "Exit once the source is done and every event is acknowledged");
  app.add_option("--duration", duration_s, "Stop after this many seconds; 0 = no limit")
      ->capture_default_str()
      ->check(CLI::Range(0, 864000));
  app.add_option("--metrics", metrics_listen, "Prometheus /metrics address, e.g. 127.0.0.1:9466; empty disables");
  CLI11_PARSE(app, argc, argv);
  if (absl::Status s = rollertrace::codec::ValidateDeviceId(device_id); !s.ok()) {
    std::cerr << "roller-agent: --device-id: " << s.message() << std::endl;
    return 2;
  }
  if (absl::Status s = rollertrace::mqtt::LoadLogin(options.mqtt_uri, options.mqtt_username, password_file,
                                                    &options.mqtt_password);
      !s.ok()) {
    std::cerr << "roller-agent: " << s.message() << std::endl;
    return 2;
  }
  if (spool_dir.empty()) spool_dir = "./data/agent-" + device_id;
  options.ack_timeout = std::chrono::milliseconds(ack_timeout_ms);
  options.tcp_nodelay = true;  // one device: its authorisations should not wait on Nagle
  const bool steriliser = kind_name == "steriliser";
  const auto kind =
      steriliser ? rollertrace::codec::TopicKind::kSteriliserCycles : rollertrace::codec::TopicKind::kRollerEvents;

  std::ifstream file;
  if (source != "sim" && source != "stdin") {
    file.open(source);
    if (!file) {
      std::cerr << "roller-agent: --source: cannot read " << source << std::endl;
      return 2;
    }
  }
  auto edge = rollertrace::edge::OpenEdge(metrics_listen, spool_dir, options, {{device_id, kind}});
  if (!edge.ok()) {
    std::cerr << "roller-agent: " << edge.status().message() << std::endl;
    return 1;
  }
  rollertrace::edge::Fleet& fleet = *(*edge)->fleet;
  rollertrace::edge::FleetMetrics& fleet_metrics = *(*edge)->fleet_metrics;
  const auto deadline = duration_s > 0 ? std::chrono::steady_clock::now() + std::chrono::seconds(duration_s)
                                       : std::chrono::steady_clock::time_point::max();
  rollertrace::edge::FleetSupervisor supervisor(fleet, fleet_metrics, deadline);
  const std::atomic<bool>& stop = supervisor.stop();
  fleet.Start();
  std::cerr << "roller-agent: " << device_id << " (" << kind_name << ") -> " << options.mqtt_uri << ", source "
            << source << ", spool " << spool_dir << std::endl;

  absl::StatusOr<uint64_t> played = uint64_t{0};
  uint64_t bad_lines = 0;
  if (source == "sim") {
    // One roller's course, or one steriliser's cycles for a small clinic, under this device's id.
    sim.rollers = steriliser ? 4 : 1;
    sim.sterilisers = steriliser ? 1 : 0;
    sim.end_unix_ms = rollertrace::util::NowUnixMs();
    rollertrace::edge::ClinicSimulator clinic(sim);
    std::vector<rollertrace::edge::SimEvent> mine;
    for (const auto& e : clinic.events()) {
      if ((e.kind == kind)) {
        mine.push_back(e);
        mine.back().event.set_device_id(device_id);
        if (steriliser) mine.back().event.mutable_sterilisation_cycle()->set_steriliser_id(device_id);
      }
    }
    played = rollertrace::edge::PlaySimulation(fleet, mine, rate, stop, nullptr);
  } else if (source == "stdin") {
    played = PlayJsonLines(std::cin, device_id, fleet, stop, &bad_lines);
  } else {
    played = PlayJsonLines(file, device_id, fleet, stop, &bad_lines);
  }
  if (!played.ok()) {
    std::cerr << "roller-agent: " << played.status().message() << std::endl;
    return 1;
  }
  std::cerr << "roller-agent: source done, " << *played << " events recorded"
            << (bad_lines ? ", " + std::to_string(bad_lines) + " bad lines skipped" : "") << std::endl;
  bool drained = false;
  if (exit_when_drained) {
    drained = rollertrace::edge::WaitUntilDrained(fleet, stop, deadline, nullptr);
  } else {
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  supervisor.Stop();
  std::cerr << "roller-agent: " << Describe(fleet.Stats()) << std::endl;
  fleet.Stop();
  return (!exit_when_drained || drained) ? 0 : 3;
}
