// roller-fleet: many simulated rollers and sterilisers, for the demo and for
// load. Each device has its own MQTT connection and spool. Past about a
// thousand devices the clinic is split over several processes
// (agent/fleet_processes.h); this main is then both the parent and, run again
// with --process, each child.
#include <CLI/CLI.hpp>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

#include "agent/fleet.h"
#include "agent/playback.h"
#include "agent/fleet_processes.h"
#include "agent/registration.h"
#include "agent/simulator.h"
#include "process/shutdown.h"
#include "util/clock.h"
#include "util/secret_file.h"

namespace {

// A child's state, sent to its parent twice a second (nothing without a parent).
class Reporter {
 public:
  explicit Reporter(int fd) : pipe_(fd), active_(fd >= 0) {}
  ~Reporter() { Detach(); }
  // From here on the fleet's counts go with every report.
  void Watch(const rollertrace::edge::Fleet* fleet) {
    if (!active_) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      fleet_ = fleet;
    }
    thread_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(mu_);
      while (!stop_) {
        SendLocked();
        cv_.wait_for(lock, std::chrono::milliseconds(500));
      }
    });
  }
  // Stops counting from the fleet (before it goes away).
  void Detach() {
    if (thread_.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
      }
      cv_.notify_all();
      thread_.join();
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (fleet_ != nullptr) report_.stats = fleet_->Stats();
    fleet_ = nullptr;
  }
  template <typename F>
  void Update(F change) {
    if (!active_) return;
    std::lock_guard<std::mutex> lock(mu_);
    change(report_);
    SendLocked();
  }

 private:
  void SendLocked() {
    if (fleet_ != nullptr) report_.stats = fleet_->Stats();
    pipe_.Send(report_);
  }
  rollertrace::edge::ReportPipe pipe_;
  const bool active_;
  std::mutex mu_;
  std::condition_variable cv_;
  rollertrace::edge::ProcessReport report_;
  const rollertrace::edge::Fleet* fleet_ = nullptr;
  bool stop_ = false;
  std::thread thread_;
};

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
                 "End of the simulated period, unix ms (default: now); fix it to replay the same clinic")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a parent's processes get the parent's
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
  app.add_option("--metrics", metrics_listen,
                 "Prometheus /metrics address; empty disables. With several processes, process i serves port+i")
      ->capture_default_str();
  int processes = 0, process = -1, report_fd = -1;
  app.add_option("--processes", processes,
                 "Processes to play the clinic in, each with its share of the sterilisers and the rollers they "
                 "sterilise (one MQTT client library per process carries about 1,000 devices well); 0 = one per "
                 "1,000 devices. The spool directory remembers the number")
      ->capture_default_str()
      ->check(CLI::Range(0, 100))
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // Given by the parent to each of its processes.
  app.add_option("--process", process, "")->group("")->check(CLI::Range(0, 99));
  app.add_option("--report-fd", report_fd, "")->group("")->check(CLI::Range(3, 1023));
  CLI11_PARSE(app, argc, argv);
  if (processes == 0) processes = rollertrace::edge::AutoProcesses(sim.rollers, sim.sterilisers);
  const int process_limit = sim.sterilisers > 0 ? sim.sterilisers : std::max(1, sim.rollers);
  if (processes > process_limit) {
    std::cerr << "roller-fleet: --processes " << processes << ": at most " << process_limit
              << (sim.sterilisers > 0 ? " (--sterilisers): a process holds whole sterilisers and their rollers"
                                      : " (--rollers)")
              << std::endl;
    return 2;
  }
  if (process >= processes) {
    std::cerr << "roller-fleet: --process " << process << " of --processes " << processes << std::endl;
    return 2;
  }
  const bool child = process >= 0;
  const std::string me = child ? rollertrace::util::Cat("roller-fleet[", process, "/", processes, "]: ")
                               : std::string("roller-fleet: ");
  if (!child) {
    if (absl::Status s = rollertrace::edge::PrepareSpoolLayout(spool_dir, processes); !s.ok()) {
      std::cerr << "roller-fleet: " << s.message() << std::endl;
      return 2;
    }
  }
  if (!child && processes > 1) {
    if (absl::StatusOr<std::string> last = rollertrace::edge::OffsetListenAddress(metrics_listen, processes - 1);
        !last.ok()) {
      std::cerr << "roller-fleet: --metrics " << metrics_listen << ": " << last.status().message() << std::endl;
      return 2;
    }
    std::cerr << "roller-fleet: " << sim.rollers << " rollers and " << sim.sterilisers << " sterilisers in "
              << processes << " processes (--processes)" << std::endl;
    std::vector<std::string> args(argv + 1, argv + argc);
    // One clinic: every process simulates the same period.
    args.push_back("--end-time-ms");
    args.push_back(std::to_string(sim.end_unix_ms != 0 ? sim.end_unix_ms : rollertrace::util::NowUnixMs()));
    return rollertrace::edge::RunFleetProcesses(args, processes);
  }
  Reporter reporter(report_fd);
  reporter.Update([](auto& r) { r.phase = "registering"; });
  if (!token_file.empty()) {
    absl::StatusOr<std::string> read = rollertrace::util::ReadPrivateLine(token_file, "token file");
    if (!read.ok()) {
      std::cerr << me << "--token-file: " << read.status().message() << std::endl;
      return 2;
    }
    token = *read;
  }
  if (absl::Status s = rollertrace::mqtt::LoadLogin(fleet_options.mqtt_uri, fleet_options.mqtt_username,
                                                    password_file, &fleet_options.mqtt_password);
      !s.ok()) {
    std::cerr << me << s.message() << std::endl;
    return 2;
  }
  if (!credentials_file.empty()) {
    auto credentials = rollertrace::mqtt::LoadCredentialsFile(credentials_file);
    rollertrace::mqtt::MqttOptions check;
    check.server_uri = fleet_options.mqtt_uri;
    check.password = "set";
    absl::Status s = credentials.ok() ? rollertrace::mqtt::CheckCredentialsTransport(check) : credentials.status();
    if (!s.ok()) {
      std::cerr << me << "--mqtt-credentials-file: " << s.message() << std::endl;
      return 2;
    }
    fleet_options.mqtt_passwords = std::move(*credentials);
  }
  fleet_options.ack_timeout = std::chrono::milliseconds(ack_timeout_ms);
  fleet_options.decision_timeout = std::chrono::milliseconds(decision_timeout_ms);
  fleet_options.authorize = !no_authorize;
  fleet_options.override_seed = sim.seed;
  // The parent passes the end of the period to every process: one clinic.
  if (sim.end_unix_ms == 0) sim.end_unix_ms = rollertrace::util::NowUnixMs();

  rollertrace::edge::ClinicSimulator clinic(sim);
  // This process's share: every device when it is alone.
  std::vector<rollertrace::v1::Device> mine;
  std::set<std::string> mine_ids;
  for (size_t i = 0; i < clinic.devices().size(); ++i) {
    if (rollertrace::edge::ProcessOfDevice(sim, static_cast<int>(i), processes) != std::max(process, 0)) continue;
    mine.push_back(clinic.devices()[i]);
    mine_ids.insert(clinic.devices()[i].device_id());
  }
  std::vector<rollertrace::edge::SimEvent> events;
  for (const auto& e : clinic.events()) {
    if (mine_ids.count(e.event.device_id())) events.push_back(e);
  }
  if (child) {
    spool_dir = rollertrace::edge::ProcessSpoolDir(spool_dir, process);
    metrics_listen = *rollertrace::edge::OffsetListenAddress(metrics_listen, process);
    rate /= processes;
  }
  std::cerr << me << sim.rollers << " rollers, " << sim.sterilisers << " sterilisers, " << sim.days << " days, "
            << clinic.events().size() << " events (seed " << sim.seed << ")";
  if (child) std::cerr << "; this process plays " << mine.size() << " devices, " << events.size() << " events";
  std::cerr << std::endl;
  if (!register_with.empty()) {
    auto added = rollertrace::edge::RegisterDevices(register_with, token, mine, register_tls_ca);
    if (!added.ok()) {
      std::cerr << me << added.status().message() << std::endl;
      return 1;
    }
    std::cerr << me << "registered " << *added << " new devices with " << register_with << std::endl;
  }
  std::vector<std::pair<std::string, rollertrace::codec::TopicKind>> devices;
  for (const auto& d : mine) {
    devices.emplace_back(d.device_id(), d.kind() == rollertrace::v1::DEVICE_KIND_STERILISER
                                            ? rollertrace::codec::TopicKind::kSteriliserCycles
                                            : rollertrace::codec::TopicKind::kRollerEvents);
  }
  auto edge = rollertrace::edge::OpenEdge(metrics_listen, spool_dir, fleet_options, devices);
  if (!edge.ok()) {
    std::cerr << me << edge.status().message() << std::endl;
    return 1;
  }
  rollertrace::edge::Fleet& fleet = *(*edge)->fleet;
  rollertrace::edge::FleetMetrics& fleet_metrics = *(*edge)->fleet_metrics;
  const auto deadline = duration_s > 0 ? std::chrono::steady_clock::now() + std::chrono::seconds(duration_s)
                                       : std::chrono::steady_clock::time_point::max();
  rollertrace::edge::FleetSupervisor supervisor(fleet, fleet_metrics, deadline);
  const std::atomic<bool>& stop = supervisor.stop();
  fleet.Start();
  reporter.Update([&](auto& r) {
    r.phase = "connecting";
    r.source_total = events.size();
  });
  reporter.Watch(&fleet);
  // A child's progress lines are its parent's to print, for the whole fleet.
  const bool say_progress = !child;
  // A clinic's devices are online before its day starts: play once every
  // device is connected (or --duration/SIGTERM cut the wait short).
  {
    const auto connect_start = std::chrono::steady_clock::now();
    auto last_line = connect_start;
    while (!stop && fleet.Stats().connected < devices.size()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (say_progress && std::chrono::steady_clock::now() - last_line > std::chrono::seconds(2)) {
        std::cerr << me << "connecting: " << fleet.Stats().connected << "/" << devices.size() << std::endl;
        last_line = std::chrono::steady_clock::now();
      }
    }
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - connect_start).count();
    if (say_progress) {
      std::cerr << me << fleet.Stats().connected << "/" << devices.size() << " devices connected in " << took << " s"
                << std::endl;
    }
    reporter.Update([&](auto& r) {
      r.phase = "playing";
      r.connect_seconds = took;
    });
  }
  auto played = rollertrace::edge::PlaySimulation(fleet, events, rate, stop, [&](size_t i, size_t n) {
    reporter.Update([&](auto& r) { r.source_done = i; });
    if (say_progress) std::cerr << me << "source " << i << "/" << n << "; " << Describe(fleet.Stats()) << std::endl;
  }, [&](const std::string& line) { std::cerr << me << line << std::endl; });
  if (!played.ok()) {
    std::cerr << me << played.status().message() << std::endl;
    reporter.Detach();  // before the fleet goes, which is declared after it
    reporter.Update([](auto& r) { r.phase = "failed"; });
    return 1;
  }
  reporter.Update([](auto& r) { r.phase = "draining"; });
  // Cut short by --duration or a signal, the fleet has not played its clinic:
  // never "done", whatever its spool holds.
  const bool played_all = !stop;
  auto last_line = std::chrono::steady_clock::now();
  bool drained = played_all && rollertrace::edge::WaitUntilDrained(fleet, stop, deadline, [&] {
    if (say_progress && std::chrono::steady_clock::now() - last_line > std::chrono::seconds(2)) {
      std::cerr << me << "waiting for acks; " << Describe(fleet.Stats()) << std::endl;
      last_line = std::chrono::steady_clock::now();
    }
  });
  supervisor.Stop();
  if (say_progress) std::cerr << me << (drained ? "done" : "stopped") << "; " << Describe(fleet.Stats()) << std::endl;
  reporter.Detach();  // the last counts, taken while the devices are connected
  const auto stop_start = std::chrono::steady_clock::now();
  fleet.Stop();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - stop_start).count();
  if (say_progress) std::cerr << me << "disconnected in " << took << " s" << std::endl;
  reporter.Update([&](auto& r) {
    r.phase = drained ? "done" : "stopped";
    r.disconnect_seconds = took;
  });
  return drained ? 0 : 3;
}
