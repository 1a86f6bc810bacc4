// roller-fleet: many simulated rollers and sterilisers in one process, for the
// demo and for load. Each device has its own MQTT connection and spool.
#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>

#include "agent/fleet.h"
#include "agent/registration.h"
#include "agent/simulator.h"
#include "process/shutdown.h"
#include "util/clock.h"
#include "util/secret_file.h"

namespace {
}  // namespace

int main(int argc, char** argv) {
  rollertrace::process::BlockShutdownSignals();
  CLI::App app{
      "roller-fleet - simulates a clinic's rollers and sterilisers and streams their events over MQTT.\n"
      "Repeatable from --seed. Every event is spooled durably before it is sent and kept until ingestd\n"
      "acknowledges it; a restarted fleet resumes where it stopped. Exits 0 once everything is acked."};
  rollertrace::edge::SimOptions sim;
  rollertrace::edge::FleetOptions fleet_options;
  std::string spool_dir = "./data/fleet-spool";
  std::string register_with;
  std::string token;
  std::string metrics_listen = "127.0.0.1:9467";
  double rate = 500;
  int duration_s = 0;
  int ack_timeout_ms = 3000;
  app.add_option("--rollers", sim.rollers, "Simulated rollers")->capture_default_str()->check(CLI::Range(0, 10000));
  app.add_option("--sterilisers", sim.sterilisers, "Simulated sterilisers")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  app.add_option("--days", sim.days, "Clinic days simulated (ending now)")->capture_default_str()->check(CLI::Range(1, 3650));
  app.add_option("--seed", sim.seed, "Random seed; the same seed gives the same clinic")->capture_default_str();
  app.add_option("--failing-cycle-rate", sim.failing_cycle_rate, "Share of sterilisation cycles that fall short")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--violation-rate", sim.violation_rate,
                 "Share of sessions planned to break a rule (other patient, unsterilised, too soon, fifth "
                 "session, heavy wear)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--clinic", sim.clinic, "Clinic the devices are registered to")->capture_default_str();
  app.add_option("--roller-prefix", sim.roller_prefix, "Roller ids are this plus a number")->capture_default_str();
  app.add_option("--steriliser-prefix", sim.steriliser_prefix, "Steriliser ids are this plus a number")
      ->capture_default_str();
  app.add_option("--end-time-ms", sim.end_unix_ms,
                 "End of the simulated period, unix ms (default: now); fix it to replay the same clinic");
  app.add_option("--rate", rate, "Events per second over the whole fleet; 0 = as fast as possible")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e7));
  app.add_option("--mqtt", fleet_options.mqtt_uri, "Broker URI (ssl://host:port for TLS)")->capture_default_str();
  app.add_option("--mqtt-ca-file", fleet_options.mqtt_ca_file,
                 "TLS to the broker: trust this CA certificate (PEM)")
      ->check(CLI::ExistingFile);
  std::string password_file, credentials_file;
  app.add_option("--mqtt-username", fleet_options.mqtt_username,
                 "One broker account for every simulated device (a gateway's)");
  app.add_option("--mqtt-password-file", password_file,
                 "File holding that account's password (mode 0600; only over ssl:// or to a loopback broker)");
  app.add_option("--mqtt-credentials-file", credentials_file,
                 "Per-device broker accounts, '<device-id> <password>' a line (mode 0600): each simulated device "
                 "logs in as itself, as the shipped ACL expects")
      ->excludes("--mqtt-username");
  app.add_flag("--json", fleet_options.json, "Publish on the /json topics (protobuf JSON mapping)");
  app.add_option("--spool-dir", spool_dir, "Durable spool directory")->capture_default_str();
  app.add_option("--register-with", register_with,
                 "ingestd address: register the simulated devices there first (existing ones are kept)");
  std::string token_file, register_tls_ca;
  app.add_option("--register-tls-ca", register_tls_ca,
                 "For --register-with an ingestd serving TLS: the CA certificate (PEM) to trust");
  app.add_option("--token-file", token_file, "File holding an admin bearer token, for --register-with")
      ->check(CLI::ExistingFile);
  app.add_option("--ack-timeout-ms", ack_timeout_ms, "Resend unacknowledged events after this long")
      ->capture_default_str()
      ->check(CLI::Range(100, 600000));
  app.add_option("--duration", duration_s, "Stop after this many seconds; 0 = when everything is acked")
      ->capture_default_str()
      ->check(CLI::Range(0, 86400));
  int decision_timeout_ms = 2000;
  bool no_authorize = false;
  app.add_option("--decision-timeout-ms", decision_timeout_ms,
                 "Wait this long for the server's decision before deciding offline")
      ->capture_default_str()
      ->check(CLI::Range(10, 60000));
  app.add_flag("--no-authorize", no_authorize, "Start sessions without asking first (legacy rollers)");
  app.add_option("--override-rate", fleet_options.override_rate,
                 "Share of refused sessions the operator carries out anyway (each becomes a violation)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--lanes", fleet_options.play_lanes,
                 "Threads that play the rollers' events side by side (sterilisers play on one more)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--max-connecting", fleet_options.max_connecting,
                 "Devices connecting to the broker at once; the others wait their turn")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--metrics", metrics_listen, "Prometheus /metrics address; empty disables")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (!token_file.empty()) {
    absl::StatusOr<std::string> read = rollertrace::util::ReadPrivateLine(token_file, "token file");
    if (!read.ok()) {
      std::cerr << "roller-fleet: --token-file: " << read.status().message() << std::endl;
      return 2;
    }
    token = *read;
  }
  if (absl::Status s = rollertrace::mqtt::LoadLogin(fleet_options.mqtt_uri, fleet_options.mqtt_username,
                                                    password_file, &fleet_options.mqtt_password);
      !s.ok()) {
    std::cerr << "roller-fleet: " << s.message() << std::endl;
    return 2;
  }
  if (!credentials_file.empty()) {
    auto credentials = rollertrace::mqtt::LoadCredentialsFile(credentials_file);
    rollertrace::mqtt::MqttOptions check;
    check.server_uri = fleet_options.mqtt_uri;
    check.password = "set";
    absl::Status s = credentials.ok() ? rollertrace::mqtt::CheckCredentialsTransport(check) : credentials.status();
    if (!s.ok()) {
      std::cerr << "roller-fleet: --mqtt-credentials-file: " << s.message() << std::endl;
      return 2;
    }
    fleet_options.mqtt_passwords = std::move(*credentials);
  }
  fleet_options.ack_timeout = std::chrono::milliseconds(ack_timeout_ms);
  fleet_options.decision_timeout = std::chrono::milliseconds(decision_timeout_ms);
  fleet_options.authorize = !no_authorize;
  fleet_options.override_seed = sim.seed;
  if (sim.end_unix_ms == 0) sim.end_unix_ms = rollertrace::util::NowUnixMs();

  rollertrace::edge::ClinicSimulator clinic(sim);
  std::cerr << "roller-fleet: " << sim.rollers << " rollers, " << sim.sterilisers << " sterilisers, " << sim.days
            << " days, " << clinic.events().size() << " events (seed " << sim.seed << ")" << std::endl;
  if (!register_with.empty()) {
    auto added = rollertrace::edge::RegisterDevices(register_with, token, clinic.devices(), register_tls_ca);
    if (!added.ok()) {
      std::cerr << "roller-fleet: " << added.status().message() << std::endl;
      return 1;
    }
    std::cerr << "roller-fleet: registered " << *added << " new devices with " << register_with << std::endl;
  }
  std::vector<std::pair<std::string, rollertrace::codec::TopicKind>> devices;
  for (const auto& d : clinic.devices()) {
    devices.emplace_back(d.device_id(), d.kind() == rollertrace::v1::DEVICE_KIND_STERILISER
                                            ? rollertrace::codec::TopicKind::kSteriliserCycles
                                            : rollertrace::codec::TopicKind::kRollerEvents);
  }
  auto edge = rollertrace::edge::OpenEdge(metrics_listen, spool_dir, fleet_options, devices);
  if (!edge.ok()) {
    std::cerr << "roller-fleet: " << edge.status().message() << std::endl;
    return 1;
  }
  rollertrace::edge::Fleet& fleet = *(*edge)->fleet;
  rollertrace::edge::FleetMetrics& fleet_metrics = *(*edge)->fleet_metrics;
  const auto deadline = duration_s > 0 ? std::chrono::steady_clock::now() + std::chrono::seconds(duration_s)
                                       : std::chrono::steady_clock::time_point::max();
  rollertrace::edge::FleetSupervisor supervisor(fleet, fleet_metrics, deadline);
  const std::atomic<bool>& stop = supervisor.stop();
  fleet.Start();
  // A clinic's devices are online before its day starts: play once every
  // device is connected (or --duration/SIGTERM cut the wait short).
  {
    const auto connect_start = std::chrono::steady_clock::now();
    auto last_line = connect_start;
    while (!stop && fleet.Stats().connected < devices.size()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (std::chrono::steady_clock::now() - last_line > std::chrono::seconds(2)) {
        std::cerr << "roller-fleet: connecting: " << fleet.Stats().connected << "/" << devices.size() << std::endl;
        last_line = std::chrono::steady_clock::now();
      }
    }
    std::cerr << "roller-fleet: " << fleet.Stats().connected << "/" << devices.size() << " devices connected in "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - connect_start).count() << " s"
              << std::endl;
  }
  auto played = rollertrace::edge::PlaySimulation(fleet, clinic.events(), rate, stop, [&](size_t i, size_t n) {
    std::cerr << "roller-fleet: source " << i << "/" << n << "; " << Describe(fleet.Stats()) << std::endl;
  }, [](const std::string& line) { std::cerr << "roller-fleet: " << line << std::endl; });
  if (!played.ok()) {
    std::cerr << "roller-fleet: " << played.status().message() << std::endl;
    return 1;
  }
  // Cut short by --duration or a signal, the fleet has not played its clinic:
  // never "done", whatever its spool holds.
  const bool played_all = !stop;
  auto last_line = std::chrono::steady_clock::now();
  bool drained = played_all && rollertrace::edge::WaitUntilDrained(fleet, stop, deadline, [&] {
    if (std::chrono::steady_clock::now() - last_line > std::chrono::seconds(2)) {
      std::cerr << "roller-fleet: waiting for acks; " << Describe(fleet.Stats()) << std::endl;
      last_line = std::chrono::steady_clock::now();
    }
  });
  supervisor.Stop();
  std::cerr << "roller-fleet: " << (drained ? "done" : "stopped") << "; " << Describe(fleet.Stats()) << std::endl;
  const auto stop_start = std::chrono::steady_clock::now();
  fleet.Stop();
  std::cerr << "roller-fleet: disconnected in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - stop_start).count() << " s"
            << std::endl;
  return drained ? 0 : 3;
}
