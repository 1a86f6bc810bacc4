// Cluster mode (issue #16) on real processes, all on loopback: three
// nats-server nodes (JetStream, R3), two ingestd shards (one per clinic),
// rollertrace-router in front, Mosquitto, mqtt-bridges and roller-fleets.
#include <gtest/gtest.h>
#include <google/protobuf/util/message_differencer.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "agent/simulator.h"
#include "pseudonym/pseudonymizer.h"
#include "support/cluster.h"
#include "support/devices.h"
#include "support/stored.h"
#include "support/nats_cluster.h"
#include "support/process.h"

namespace rollertrace::testing {
namespace {

namespace fs = std::filesystem;
using rollertrace::v1::Event;

template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return pred();
}

// Three NATS nodes, two shards and the router; the broker, bridges and
// clients come from `front` (a Cluster pointed at the router).
class Shards {
 public:
  struct Shard {
    std::string name;
    std::string clinic;
    int port = FreePort();
    int metrics_port = FreePort();
    std::unique_ptr<Process> process;
  };

  explicit Shards(Cluster& front) : front_(front), nats_(front.dir()) {
    shards_[0].name = "north";
    shards_[0].clinic = "clinic-north";
    shards_[1].name = "south";
    shards_[1].clinic = "clinic-south";
    std::ofstream map(dir() + "/shards.yaml");
    map << "shards:\n";
    for (const auto& s : shards_) {
      map << "  - name: " << s.name << "\n    address: " << Address(s) << "\n    clinics: [" << s.clinic << "]\n";
    }
    map << "    default: true\n";
  }
  ~Shards() {
    router_.reset();
    for (auto& s : shards_) {
      if (s.process) s.process->Signal(SIGTERM);
    }
    for (auto& s : shards_) s.process.reset();
  }

  const std::string& dir() const { return front_.dir(); }
  static std::string Address(const Shard& s) { return "127.0.0.1:" + std::to_string(s.port); }
  std::string router_address() const { return "127.0.0.1:" + std::to_string(router_port_); }
  std::string NatsUrls() const { return nats_.Urls(); }
  std::string NodeDir(int i) const { return nats_.NodeDir(i); }
  std::string ShardDir(int i) const { return dir() + "/shard-" + shards_[i].name; }
  Shard& shard(int i) { return shards_[i]; }

  void StartNode(int i) { nats_.StartNode(i); }
  void KillNode(int i) { nats_.KillNode(i); }

  void StartShard(int i) {
    LaunchShard(i);
    ASSERT_TRUE(WaitForPort(shards_[i].port, std::chrono::seconds(60)))
        << ReadFile(dir() + "/shard-" + shards_[i].name + ".log");
  }
  // Starts shard i's ingestd without waiting for it to serve.
  void LaunchShard(int i) {
    Shard& s = shards_[i];
    s.process = Process::Start(
        {ROLLERTRACE_INGESTD, "--listen", Address(s), "--metrics", "127.0.0.1:" + std::to_string(s.metrics_port),
         "--data-dir", ShardDir(i), "--tokens-file", dir() + "/tokens", "--gauge-interval-ms", "200",
         "--backup-root", dir(), "--cluster-nats", NatsUrls(), "--cluster-shard", s.name},
        dir() + "/shard-" + s.name + ".log", {{"ROLLERTRACE_PSEUDONYM_SECRET", kTestSecret}});
  }
  // Another ingestd claiming shard i's name, on its own directory and port.
  std::unique_ptr<Process> StartImpostor(int i, int port) {
    auto p = Process::Start({ROLLERTRACE_INGESTD, "--listen", "127.0.0.1:" + std::to_string(port), "--metrics", "",
                             "--data-dir", dir() + "/impostor", "--tokens-file", dir() + "/tokens", "--cluster-nats",
                             NatsUrls(), "--cluster-shard", shards_[i].name},
                            dir() + "/impostor.log", {{"ROLLERTRACE_PSEUDONYM_SECRET", kTestSecret}});
    EXPECT_TRUE(WaitForPort(port, std::chrono::seconds(60))) << ReadFile(dir() + "/impostor.log");
    return p;
  }
  Process& process(int i) { return *shards_[i].process; }
  void KillShard(int i) {
    shards_[i].process->Signal(SIGKILL);
    shards_[i].process->Wait(std::chrono::seconds(10));
  }
  void StopShard(int i) { ASSERT_EQ(shards_[i].process->Stop(std::chrono::seconds(15)), 0); }

  void StartRouter() {
    router_ = Process::Start({ROLLERTRACE_ROUTER, "--listen", router_address(), "--metrics", "", "--shard-map",
                              dir() + "/shards.yaml", "--lookup-token-file", front_.TokenFile("auditor")},
                             dir() + "/router.log");
    ASSERT_TRUE(WaitForPort(router_port_, std::chrono::seconds(10))) << ReadFile(dir() + "/router.log");
  }

  void StartAll() {
    for (int i = 0; i < 3; ++i) StartNode(i);
    for (int i = 0; i < 2; ++i) StartShard(i);
    StartRouter();
    front_.ServeThrough(router_address());
  }

  // What the shard's metrics say: its log end has reached the stream.
  double Metric(int i, const std::string& series) {
    return MetricValue(HttpGet(shards_[i].metrics_port, "/metrics"), series);
  }
  bool Replicated(int i) {
    const std::string m = HttpGet(shards_[i].metrics_port, "/metrics");
    return !m.empty() && MetricValue(m, "rollertrace_cluster_replication_lag_commands") == 0 &&
           MetricValue(m, "rollertrace_cluster_replicated_index") > 0;
  }

  // One SHA-256 per column family of a stopped shard's store.
  std::string Digest(int i) {
    const std::string log = dir() + "/digest.txt";
    std::remove(log.c_str());
    auto p = Process::Start({ROLLERTRACE_STORE_TOOL, "digest", "--data-dir", ShardDir(i)}, log);
    EXPECT_EQ(p->Wait(std::chrono::seconds(60)), 0) << ReadFile(log);
    return ReadFile(log);
  }

  // rollerctl against one shard directly.
  int RollerctlAt(int i, const std::vector<std::string>& args, std::string* out) {
    const std::string log = dir() + "/rollerctl-shard.txt";
    std::remove(log.c_str());
    std::vector<std::string> argv = {ROLLERTRACE_ROLLERCTL, "--server", Address(shards_[i]), "--token-file",
                                     front_.TokenFile("admin")};
    argv.insert(argv.end(), args.begin(), args.end());
    const int code = Process::Start(argv, log)->Wait(std::chrono::seconds(60));
    *out = ReadFile(log);
    return code;
  }

 private:
  Cluster& front_;
  NatsCluster nats_;
  Shard shards_[2];
  int router_port_ = FreePort();
  std::unique_ptr<Process> router_;
};

edge::SimOptions Clinic(const std::string& clinic, const std::string& tag, uint64_t seed, int rollers = 3,
                        int days = 3) {
  edge::SimOptions o;
  o.failing_cycle_rate = 0;
  o.rollers = rollers;
  o.sterilisers = 1;
  o.days = days;
  o.seed = seed;
  o.clinic = clinic;
  o.roller_prefix = "R-" + tag;
  o.steriliser_prefix = "S-" + tag;
  o.end_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  return o;
}

std::unique_ptr<Process> StartFleet(Cluster& front, const edge::SimOptions& o, const std::string& rate,
                                    const std::string& name) {
  return front.StartFleet({"--rollers", std::to_string(o.rollers), "--sterilisers", std::to_string(o.sterilisers),
                           "--days", std::to_string(o.days), "--seed", std::to_string(o.seed), "--clinic", o.clinic,
                           "--roller-prefix", o.roller_prefix, "--steriliser-prefix", o.steriliser_prefix,
                           "--end-time-ms", std::to_string(o.end_unix_ms), "--register-with",
                           front.ingestd_address(), "--spool-dir", front.dir() + "/spool-" + name, "--rate", rate,
                           "--ack-timeout-ms", "1000", "--failing-cycle-rate", "0"},
                          "fleet-" + name + ".log");
}

TEST(ClusterMode, AFleetOutlivesKilledNatsNodesABridgeAndAShardsDiskWithNothingLostOrDoubled) {
  Cluster front("cluster-fleet");
  Shards shards(front);
  shards.StartAll();
  front.StartBroker();
  // Two bridges in one shared-subscription group. The one killed below never
  // returns: once its session expires (5 s here, 60 by default) the broker
  // stops giving it a share, and the devices resend what it held.
  const std::vector<std::string> expiry = {"--session-expiry", "5"};
  front.StartBridge(expiry);
  const Cluster::OtherBridge second = front.StartAnotherBridge("bridge-second", expiry);

  // About 20 s of traffic at this rate, so every kill below lands mid-stream.
  const edge::SimOptions north = Clinic("clinic-north", "N", 11, 8, 21);
  const edge::SimOptions south = Clinic("clinic-south", "S", 12, 8, 21);
  auto fleet_north = StartFleet(front, north, "20", "north");
  auto fleet_south = StartFleet(front, south, "20", "south");

  std::this_thread::sleep_for(std::chrono::seconds(2));
  shards.KillNode(0);  // a stream leader, likely
  std::this_thread::sleep_for(std::chrono::seconds(3));
  shards.StartNode(0);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  shards.KillNode(1);  // the next, after the first returned
  std::this_thread::sleep_for(std::chrono::seconds(3));
  shards.StartNode(1);
  front.KillBridge();  // its share goes on through the other bridge
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // Shard north loses its disk mid-stream: a replacement rebuilds from the stream
  // and the clinic's devices send again whatever was not acknowledged.
  shards.KillShard(0);
  fs::remove_all(shards.ShardDir(0));
  shards.StartShard(0);
  EXPECT_TRUE(fleet_north->Running()) << "the fleet was done before the kills: give it more to send";

  ASSERT_EQ(fleet_north->Wait(std::chrono::seconds(180)), 0) << ReadFile(fleet_north->log_path());
  ASSERT_EQ(fleet_south->Wait(std::chrono::seconds(180)), 0) << ReadFile(fleet_south->log_path());
  // A session asked while its shard was away is decided offline, and may be
  // refused (from what the roller last heard): it never took place. Every
  // other planned event is stored exactly once.
  ExpectStoredExactlyOnce(front, north, ReadFleetOutcome(ReadFile(fleet_north->log_path())));
  ExpectStoredExactlyOnce(front, south, ReadFleetOutcome(ReadFile(fleet_south->log_path())));

  // Each clinic lives on its own shard, and only there.
  std::string out;
  EXPECT_EQ(shards.RollerctlAt(0, {"show", "R-N0001"}, &out), 0) << out;
  EXPECT_NE(shards.RollerctlAt(1, {"show", "R-N0001"}, &out), 0) << out;
  EXPECT_EQ(shards.RollerctlAt(1, {"show", "R-S0001"}, &out), 0) << out;
  // The router's answers span both; every chain verifies.
  ASSERT_EQ(front.Rollerctl({"list"}, &out), 0) << out;
  EXPECT_NE(out.find("R-N0001"), std::string::npos) << out;
  EXPECT_NE(out.find("R-S0001"), std::string::npos) << out;
  ASSERT_EQ(front.Rollerctl({"verify"}, &out), 0) << out;
  // Both streams hold every command their shard committed.
  EXPECT_TRUE(Eventually([&] { return shards.Replicated(0) && shards.Replicated(1); }))
      << HttpGet(shards.shard(0).metrics_port, "/metrics");
}

TEST(ClusterMode, AShardWhoseDiskIsLostIsRebuiltFromTheStreamAndFromABackup) {
  Cluster front("cluster-rebuild");
  Shards shards(front);
  shards.StartAll();
  front.StartBroker();
  front.StartBridge();

  auto run = [&](const edge::SimOptions& o, const std::string& name) {
    auto fleet = StartFleet(front, o, "0", name);
    ASSERT_EQ(fleet->Wait(std::chrono::seconds(120)), 0) << ReadFile(fleet->log_path());
  };
  run(Clinic("clinic-north", "N", 21), "north-1");
  run(Clinic("clinic-south", "S", 22), "south-1");
  std::string out;
  // A backup of every shard (each into <dir>-<shard>), then more of the clinics' days.
  ASSERT_EQ(front.Rollerctl({"backup", front.dir() + "/backup"}, &out), 0) << out;
  ASSERT_TRUE(fs::exists(front.dir() + "/backup-north")) << out;
  run(Clinic("clinic-north", "N2-", 23), "north-2");
  run(Clinic("clinic-south", "S2-", 24), "south-2");
  ASSERT_TRUE(Eventually([&] { return shards.Replicated(0) && shards.Replicated(1); }));

  std::string north_trail, south_trail, verify;
  ASSERT_EQ(front.Rollerctl({"--json", "trail", "roller", "R-N0001"}, &north_trail), 0) << north_trail;
  ASSERT_EQ(front.Rollerctl({"--json", "trail", "roller", "R-S2-0001"}, &south_trail), 0) << south_trail;
  ASSERT_EQ(front.Rollerctl({"--json", "violations"}, &verify), 0) << verify;
  const std::string violations = verify;

  // North's disk is lost: a new shard on an empty directory rebuilds from the stream.
  shards.KillShard(0);
  const std::string north_digest = shards.Digest(0);
  fs::remove_all(shards.ShardDir(0));
  shards.StartShard(0);
  EXPECT_NE(ReadFile(front.dir() + "/shard-north.log").find("catching up with the stream"), std::string::npos);
  ASSERT_EQ(front.Rollerctl({"--json", "trail", "roller", "R-N0001"}, &out), 0) << out;
  EXPECT_EQ(out, north_trail);
  shards.StopShard(0);
  EXPECT_EQ(shards.Digest(0), north_digest) << "rebuilt from the stream";

  // South's disk is lost: restored from its backup, then the stream from there.
  shards.KillShard(1);
  const std::string south_digest = shards.Digest(1);
  fs::remove_all(shards.ShardDir(1));
  fs::rename(front.dir() + "/backup-south", shards.ShardDir(1));
  shards.StartShard(1);
  ASSERT_EQ(front.Rollerctl({"--json", "trail", "roller", "R-S2-0001"}, &out), 0) << out;
  EXPECT_EQ(out, south_trail);
  shards.StopShard(1);
  EXPECT_EQ(shards.Digest(1), south_digest) << "restored from a backup plus the stream";

  // Every NATS node killed at once, their disks lost too: the shards publish
  // their whole logs again, and a shard rebuilt from that stream is the same.
  shards.StartShard(0);
  shards.StartShard(1);
  for (int i = 0; i < 3; ++i) shards.KillNode(i);
  for (int i = 0; i < 3; ++i) fs::remove_all(shards.NodeDir(i));
  for (int i = 0; i < 3; ++i) shards.StartNode(i);
  // Each shard finds its stream gone (or short) and publishes its log again.
  ASSERT_TRUE(Eventually(
      [&] {
        return shards.Metric(0, "rollertrace_cluster_republished_commands_total") > 0 &&
               shards.Metric(1, "rollertrace_cluster_republished_commands_total") > 0 && shards.Replicated(0) &&
               shards.Replicated(1);
      },
      std::chrono::seconds(90)))
      << ReadFile(front.dir() + "/shard-north.log");
  shards.KillShard(0);
  fs::remove_all(shards.ShardDir(0));
  shards.StartShard(0);
  shards.StopShard(0);
  EXPECT_EQ(shards.Digest(0), north_digest) << "rebuilt from the republished stream";

  // What the auditor sees through the router is unchanged.
  shards.StartShard(0);
  ASSERT_EQ(front.Rollerctl({"--json", "violations"}, &out), 0) << out;
  EXPECT_EQ(out, violations);
  ASSERT_EQ(front.Rollerctl({"verify"}, &out), 0) << out;
}

// rollerctl import through the router: an archive taken from a single-machine
// ingestd lands on the shard of its clinic, goes through that shard's log (a
// rebuild from the stream holds it), and one spanning shards is refused whole.
TEST(ClusterMode, AnArchiveIsImportedThroughTheRouterIntoTheShardOfItsClinic) {
  Cluster source("cluster-import-source");
  source.StartAll();
  for (const auto& [o, name] : {std::pair{Clinic("clinic-south", "S", 31, 2, 2), "south"},
                                std::pair{Clinic("clinic-north", "N", 32, 1, 2), "north"}}) {
    auto fleet = StartFleet(source, o, "0", name);
    ASSERT_EQ(fleet->Wait(std::chrono::seconds(120)), 0) << ReadFile(fleet->log_path());
  }
  std::string out, source_trail;
  const std::string south = source.dir() + "/south.archive", both = source.dir() + "/both.archive";
  ASSERT_EQ(source.Rollerctl({"export", "--device", "R-S0001", "--device", "S-S01", "-o", south}, &out), 0) << out;
  const std::string north = source.dir() + "/north.archive";
  ASSERT_EQ(source.Rollerctl({"export", "--device", "R-N0001", "--device", "S-N01", "-o", north}, &out), 0) << out;
  ASSERT_EQ(source.Rollerctl({"export", "--from", "2000-01-01", "-o", both}, &out), 0) << out;
  ASSERT_EQ(source.Rollerctl({"--json", "trail", "roller", "R-S0001"}, &source_trail), 0) << source_trail;

  Cluster front("cluster-import");
  Shards shards(front);
  shards.StartAll();

  // Both clinics in one archive: refused, and neither shard holds any of it.
  EXPECT_NE(front.Rollerctl({"import", both}, &out), 0) << out;
  EXPECT_NE(out.find("different shards (north: clinic-north; south: clinic-south)"), std::string::npos) << out;
  EXPECT_NE(shards.RollerctlAt(0, {"show", "R-N0001"}, &out), 0) << out;
  EXPECT_NE(shards.RollerctlAt(1, {"show", "R-S0001"}, &out), 0) << out;

  ASSERT_EQ(front.Rollerctl({"import", south}, &out), 0) << out;
  EXPECT_EQ(shards.RollerctlAt(1, {"show", "R-S0001"}, &out), 0) << out;
  EXPECT_NE(shards.RollerctlAt(0, {"show", "R-S0001"}, &out), 0) << out;
  ASSERT_EQ(front.Rollerctl({"--json", "trail", "roller", "R-S0001"}, &out), 0) << out;
  EXPECT_EQ(out, source_trail);
  ASSERT_EQ(front.Rollerctl({"verify"}, &out), 0) << out;

  // The import is a command of south's log: a south rebuilt from the stream holds it.
  ASSERT_TRUE(Eventually([&] { return shards.Replicated(1); }));
  shards.KillShard(1);
  fs::remove_all(shards.ShardDir(1));
  shards.StartShard(1);
  ASSERT_EQ(front.Rollerctl({"--json", "trail", "roller", "R-S0001"}, &out), 0) << out;
  EXPECT_EQ(out, source_trail);

  // An export by period through the router spans both shards: one archive,
  // which a single-machine ingestd takes whole.
  ASSERT_EQ(front.Rollerctl({"import", north}, &out), 0) << out;
  EXPECT_EQ(shards.RollerctlAt(0, {"show", "R-N0001"}, &out), 0) << out;
  const std::string cluster_archive = front.dir() + "/cluster.archive";
  ASSERT_EQ(front.Rollerctl({"export", "--from", "2000-01-01", "-o", cluster_archive}, &out), 0) << out;
  EXPECT_NE(out.find("devices: R-N0001 R-S0001 S-N01 S-S01"), std::string::npos) << out;
  Cluster single("cluster-import-single");
  single.StartIngestd();
  ASSERT_EQ(single.Rollerctl({"import", cluster_archive}, &out), 0) << out;
  ASSERT_EQ(single.Rollerctl({"--json", "trail", "roller", "R-S0001"}, &out), 0) << out;
  EXPECT_EQ(out, source_trail);
  ASSERT_EQ(single.Rollerctl({"verify"}, &out), 0) << out;
  EXPECT_EQ(single.Rollerctl({"show", "R-N0001"}, &out), 0) << out;
}

// A shard that starts while its stream does not answer (nodes down, or a node
// just back and the stream electing a leader) waits for it rather than
// exiting: the fleet test once lost its rebuilt shard to "reading RT_north
// from 1: Timeout" two seconds after a node restart.
TEST(ClusterMode, AShardRebuiltWhileItsStreamHasNoQuorumWaitsForItAndServes) {
  Cluster front("cluster-start-wait");
  Shards shards(front);
  for (int i = 0; i < 3; ++i) shards.StartNode(i);
  shards.StartShard(0);
  std::string out;
  ASSERT_EQ(shards.RollerctlAt(0, {"register", "R-W0001", "--clinic", "clinic-north", "--needles", "540",
                                   "--needle-mm", "0.5", "--rated-penetrations", "1620000"},
                               &out),
            0)
      << out;
  ASSERT_TRUE(Eventually([&] { return shards.Replicated(0); }));
  // The disk is lost, and two of the three nodes are down while the replacement starts.
  shards.KillShard(0);
  fs::remove_all(shards.ShardDir(0));
  shards.KillNode(1);
  shards.KillNode(2);
  shards.LaunchShard(0);
  std::this_thread::sleep_for(std::chrono::seconds(5));
  ASSERT_TRUE(shards.process(0).Running()) << ReadFile(front.dir() + "/shard-north.log");
  shards.StartNode(1);
  shards.StartNode(2);
  ASSERT_TRUE(WaitForPort(shards.shard(0).port, std::chrono::seconds(90)))
      << ReadFile(front.dir() + "/shard-north.log");
  EXPECT_EQ(shards.RollerctlAt(0, {"show", "R-W0001"}, &out), 0) << out;
}

// Commands reach a roller through the router as they do from one ingestd: the
// lock raised by a session that broke a rule, and an administrator's unlock,
// pushed at once with no device traffic to ride on.
TEST(ClusterMode, ALockAndAnUnlockReachTheRollerThroughTheRouter) {
  Cluster front("cluster-commands");
  Shards shards(front);
  shards.StartAll();
  front.StartBroker();
  front.StartBridge();
  v1::Device roller = Cluster::Roller("R-C0001");
  roller.set_clinic("clinic-north");
  front.Register(roller);
  TestDevice device(front.mqtt_uri(), "R-C0001");
  // Never sterilised, used anyway while offline: NOT_STERILE, and a lock.
  device.Send({SessionStart("R-C0001-s1", "MRN-C1", Now() - kHour, /*offline=*/true)});
  auto lock = device.NextCommand();
  ASSERT_TRUE(lock.has_value()) << "no lock on rollers/R-C0001/command";
  EXPECT_EQ(lock->command(), "lock");
  std::string out;
  ASSERT_EQ(front.Rollerctl({"unlock", "R-C0001", "--reason", "sterilised and checked", "--by", "admin-jo"}, &out), 0)
      << out;
  auto unlock = device.NextCommand(std::chrono::seconds(10));
  ASSERT_TRUE(unlock.has_value()) << "the unlock never reached the roller";
  EXPECT_EQ(unlock->command(), "unlock");
  // The bridge's confirmations go back through the router to the shard that
  // raised the commands: its outbox empties (else it would send them again).
  double owed = -1;
  for (int i = 0; i < 200 && owed != 0; ++i) {
    owed = shards.Metric(0, "rollertrace_device_commands_unpublished") +
           shards.Metric(1, "rollertrace_device_commands_unpublished");
    if (owed != 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(owed, 0) << "device commands still owed by the shards";

  // The web console works against the router unchanged: an auditor signs in
  // and reads the roller's page and the violations.
  const int port = FreePort();
  auto console = Process::Start({ROLLERTRACE_CONSOLE, "--listen", "127.0.0.1:" + std::to_string(port), "--ingestd",
                                 shards.router_address(), "--metrics", ""},
                                front.dir() + "/console.log");
  ASSERT_TRUE(WaitForPort(port, std::chrono::seconds(10))) << ReadFile(front.dir() + "/console.log");
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  const std::string jar = front.dir() + "/cookies";
  auto curl = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {ROLLERTRACE_CURL, "-sS", "--max-time", "20", "-b", jar, "-c", jar};
    argv.insert(argv.end(), args.begin(), args.end());
    std::remove((front.dir() + "/curl.out").c_str());
    EXPECT_EQ(Process::Start(argv, front.dir() + "/curl.out")->Wait(std::chrono::seconds(30)), 0);
    return ReadFile(front.dir() + "/curl.out");
  };
  const std::string token = ReadFile(front.TokenFile("auditor"));
  const std::string signed_in = curl({"-i", "--data-urlencode", "token=" + token.substr(0, token.find('\n')),
                                      url + "/login"});
  ASSERT_NE(signed_in.find("HTTP/1.1 303"), std::string::npos) << signed_in;
  const std::string page = curl({url + "/roller/R-C0001"});
  EXPECT_NE(page.find("R-C0001"), std::string::npos) << page;
  EXPECT_NE(page.find("admin-jo"), std::string::npos) << page;
  const std::string violations = curl({url + "/violations"});
  EXPECT_NE(violations.find("NOT_STERILE"), std::string::npos) << violations;
}

// Two ingestds for one shard (a mistaken second start) must not fork its log:
// the one whose publish the stream fences off stops, naming why.
TEST(ClusterMode, ASecondIngestdForTheSameShardStopsRatherThanForkTheLog) {
  Cluster front("cluster-fence");
  Shards shards(front);
  shards.StartAll();
  std::string out;
  ASSERT_EQ(front.Rollerctl({"register", "R-F0001", "--clinic", "clinic-north", "--needles", "540", "--needle-mm",
                             "1.0", "--rated-penetrations", "1620000"},
                            &out),
            0)
      << out;
  const int impostor_port = FreePort();
  auto impostor = shards.StartImpostor(0, impostor_port);
  const std::string log = front.dir() + "/rollerctl-impostor.txt";
  auto rollerctl = Process::Start({ROLLERTRACE_ROLLERCTL, "--server", "127.0.0.1:" + std::to_string(impostor_port),
                                   "--token-file", front.TokenFile("admin"), "register", "R-F0002", "--clinic",
                                   "clinic-north", "--needles", "540", "--needle-mm", "1.0", "--rated-penetrations",
                                   "1620000"},
                                  log);
  ASSERT_EQ(rollerctl->Wait(std::chrono::seconds(30)), 0) << ReadFile(log);
  // The real shard's next command collides with the impostor's at the same index.
  EXPECT_NE(shards.RollerctlAt(0, {"register", "R-F0003", "--clinic", "clinic-north", "--needles", "540",
                                   "--needle-mm", "1.0", "--rated-penetrations", "1620000"},
                               &out),
            0)
      << out;
  EXPECT_EQ(shards.process(0).Wait(std::chrono::seconds(30)), 76) << ReadFile(front.dir() + "/shard-north.log");
  EXPECT_NE(ReadFile(front.dir() + "/shard-north.log").find("another ingestd writes this shard's log"),
            std::string::npos);
  EXPECT_TRUE(impostor->Running());
}

}  // namespace
}  // namespace rollertrace::testing
