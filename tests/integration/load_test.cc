// Bursts faster than ingestd can store them (issue #11), through the real
// path: rollertrace-loadgen publishes like a third-party gateway (QoS 1, deep
// in-flight window, never resends) to a real Mosquitto; mqtt-bridge and
// ingestd on RocksDB are real processes. The bridge's queue is kept small so
// that backpressure, not a big buffer, is what carries the burst.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <map>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "mqtt/paho_waits.h"
#include "process/priority.h"
#include "support/cluster.h"
#include "support/devices.h"

namespace rollertrace::testing {
namespace {

constexpr int kDevices = 100;
constexpr int kMessages = 40;
constexpr int kEvents = 50;
constexpr uint64_t kTotal = uint64_t{kDevices} * kMessages * kEvents;  // 200,000
// The bridge's bounds in these tests, and what they let a killed bridge lose
// of a publisher that never resends: its queue, its in-flight requests, what
// sits in the socket from its event reader (kernel buffers, ~64 KiB each way),
// and the message in the reader's callback.
constexpr uint64_t kQueue = 4000, kInflight = 2, kRequest = 1000;
const std::vector<std::string> kBridgeBounds = {"--max-queued-events", std::to_string(kQueue),
                                                "--max-inflight-requests", std::to_string(kInflight),
                                                "--max-request-events", std::to_string(kRequest)};
constexpr uint64_t kSocketEvents = 12000;  // 256 KiB of binary batches, ~22 bytes an event
constexpr uint64_t kBridgeHolds = kQueue + kInflight * kRequest + kSocketEvents + kEvents;

std::string DeviceId(int d) {
  char id[16];
  std::snprintf(id, sizeof id, "R-%05d", d);
  return id;
}

// Events stored for the loadgen's devices, from ingestd's own counters.
uint64_t Stored(Cluster& cluster) {
  return static_cast<uint64_t>(MetricValue(HttpGet(cluster.ingestd_metrics_port(), "/metrics"),
                                           "rollertrace_events_ingested_total{type=\"usage_sample\"}") +
                               MetricValue(HttpGet(cluster.ingestd_metrics_port(), "/metrics"),
                                           "rollertrace_events_ingested_total{type=\"session_started\"}"));
}

// Waits until `stored` stops growing for `quiet`, or reaches `want`.
uint64_t WaitStored(Cluster& cluster, uint64_t want, std::chrono::seconds quiet = std::chrono::seconds(5)) {
  uint64_t last = Stored(cluster);
  auto changed = std::chrono::steady_clock::now();
  const auto give_up = changed + std::chrono::seconds(120);
  while (last < want && std::chrono::steady_clock::now() - changed < quiet &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const uint64_t now = Stored(cluster);
    if (now != last) changed = std::chrono::steady_clock::now();
    last = now;
  }
  return last;
}

// Peak resident memory of a process, in KiB (VmHWM).
long PeakRssKib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Running (a zombie waiting for init to reap it is not).
bool Alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

// Events stored for the loadgen's devices, summed over their records.
uint64_t LoadgenStored(Cluster& cluster) {
  uint64_t sum = 0;
  for (int d = 0; d < kDevices; ++d) sum += cluster.Device(DeviceId(d)).state().events_stored();
  return sum;
}

std::unique_ptr<Process> StartLoadgen(Cluster& cluster, const std::string& format, const std::string& log) {
  return Process::Start({ROLLERTRACE_LOADGEN, "--mqtt", cluster.mqtt_uri(), "--devices", std::to_string(kDevices),
                         "--messages", std::to_string(kMessages), "--events", std::to_string(kEvents), "--format",
                         format, "--register-with", cluster.ingestd_address(), "--token-file",
                         cluster.TokenFile("admin")},
                        cluster.dir() + "/" + log);
}

TEST(Load, ABurstFromAPublisherThatNeverResendsIsStoredWholeWithBoundedMemory) {
  Cluster cluster("burst");
  cluster.StartBroker();
  cluster.StartIngestd();
  cluster.StartBridge(kBridgeBounds);
  auto loadgen = StartLoadgen(cluster, "bin", "loadgen.log");
  ASSERT_EQ(loadgen->Wait(std::chrono::seconds(120)), 0) << ReadFile(loadgen->log_path());
  EXPECT_EQ(WaitStored(cluster, kTotal), kTotal) << ReadFile(cluster.dir() + "/bridge.log");
  const std::string metrics = HttpGet(cluster.bridge_metrics_port(), "/metrics");
  // The publisher was faster than ingestd: the bridge held back, the broker kept the rest.
  EXPECT_GT(MetricValue(metrics, "rollertrace_bridge_blocked_seconds_total"), 0) << metrics;
  EXPECT_EQ(metrics.find("dropped"), std::string::npos) << metrics;
  // Every device's record is complete: no gap, every sequence once.
  for (int d = 0; d < kDevices; d += 33) {
    v1::DeviceRecord r = cluster.Device(DeviceId(d));
    EXPECT_EQ(r.state().events_stored(), uint64_t{kMessages} * kEvents) << DeviceId(d);
    EXPECT_EQ(r.state().contiguous_through(), uint64_t{kMessages} * kEvents) << DeviceId(d);
  }
  // Memory stayed bounded: the queue, not the burst, decides what the bridge holds.
  const long bridge_kib = PeakRssKib(cluster.bridge_pid());
  const long reader_kib = PeakRssKib(cluster.bridge_reader_pid());
  std::cout << "bridge peak RSS " << bridge_kib / 1024 << " MiB, event reader " << reader_kib / 1024 << " MiB\n";
  EXPECT_GT(bridge_kib, 0);
  EXPECT_LT(bridge_kib, 150 * 1024);
  EXPECT_GT(reader_kib, 0);
  EXPECT_LT(reader_kib, 100 * 1024);
}

TEST(Load, ABridgeKilledMidBurstLosesAtMostWhatItHeldAndTheBrokerDeliversTheRest) {
  Cluster cluster("burst-kill");
  cluster.StartBroker();
  cluster.StartIngestd();
  cluster.StartBridge(kBridgeBounds);
  auto loadgen = StartLoadgen(cluster, "bin", "loadgen.log");
  // Kill the bridge once part of the burst is stored.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (Stored(cluster) < kTotal / 5 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const pid_t reader = cluster.bridge_reader_pid();
  const pid_t ack_publisher = cluster.bridge_ack_publisher_pid();
  ASSERT_GT(reader, 0);
  ASSERT_GT(ack_publisher, 0);
  cluster.KillBridge();
  const uint64_t at_kill = Stored(cluster);
  ASSERT_LT(at_kill, kTotal) << "the burst was stored before the kill; nothing was tested";
  // The event reader dies with the bridge: nothing takes messages for nobody.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(Alive(reader)) << "the event reader outlived its bridge";
  EXPECT_FALSE(Alive(ack_publisher)) << "the ack publisher outlived its bridge";
  ASSERT_EQ(loadgen->Wait(std::chrono::seconds(120)), 0) << ReadFile(loadgen->log_path());
  // The broker kept the bridge's persistent session's share meanwhile.
  cluster.StartBridge(kBridgeBounds);
  const uint64_t stored = WaitStored(cluster, kTotal);
  std::cout << "stored " << at_kill << " before the kill, " << stored << " of " << kTotal << " in the end; lost "
            << kTotal - stored << " (bound " << kBridgeHolds << ")\n";
  EXPECT_GE(stored + kBridgeHolds, kTotal) << ReadFile(cluster.dir() + "/bridge.log");
  EXPECT_GT(stored, at_kill + (kTotal - at_kill) / 2) << "the broker did not deliver what it kept";
  // Nothing twice: every device's state counts each stored event once.
  EXPECT_EQ(LoadgenStored(cluster), stored);
  for (int d = 0; d < kDevices; d += 9) {
    EXPECT_LE(cluster.Device(DeviceId(d)).state().events_stored(), uint64_t{kMessages} * kEvents);
  }
}

// A 10,000-roller fleet resent one batch in six: one ack in five never left
// the bridge, whose control connection let Paho queue only its default 100
// publishes and dropped the rest ("No more messages can be buffered"). Here
// 2,000 devices publish one batch each at once; ingestd answers them in a
// few requests of hundreds of devices, and every device must get its ack.
// Listens to every roller's ack topic and keeps the devices acked.
class AckListener {
 public:
  explicit AckListener(const Cluster& cluster) : client_(Options(cluster)) {
    client_.Subscribe("rollers/+/ack", 1);
    client_.OnMessage([this](const std::string&, const std::string& payload) {
      v1::DeviceAck ack;
      if (!ack.ParseFromString(payload) || ack.contiguous_through() < 1) return;
      std::lock_guard<std::mutex> lock(mu_);
      acked_.insert(ack.device_id());
    });
    client_.Start();
  }
  ~AckListener() { client_.Stop(); }
  bool WaitConnected() { return client_.WaitConnected(std::chrono::seconds(10)); }
  // Waits up to 30 s for `devices` acked devices; how many there were.
  size_t WaitAcked(size_t devices) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (acked_.size() >= devices || std::chrono::steady_clock::now() >= give_up) return acked_.size();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  void Forget() {
    std::lock_guard<std::mutex> lock(mu_);
    acked_.clear();
  }

 private:
  static mqtt::MqttOptions Options(const Cluster& cluster) {
    mqtt::MqttOptions options;
    options.server_uri = cluster.mqtt_uri();
    options.client_id = "ack-listener";
    return options;
  }
  mqtt::MqttClient client_;
  std::mutex mu_;
  std::set<std::string> acked_;
};

// `devices` loadgen devices publish one one-event batch each (the loadgen
// registers them first); true once the loadgen is done.
::testing::AssertionResult PublishOneBatchEach(Cluster& cluster, int devices, const std::string& log) {
  auto loadgen = Process::Start({ROLLERTRACE_LOADGEN, "--mqtt", cluster.mqtt_uri(), "--devices",
                                 std::to_string(devices), "--messages", "1", "--events", "1", "--format", "bin",
                                 "--register-with", cluster.ingestd_address(), "--token-file",
                                 cluster.TokenFile("admin")},
                                cluster.dir() + "/" + log);
  if (loadgen->Wait(std::chrono::seconds(120)) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << ReadFile(loadgen->log_path());
}

// A 10,000-roller fleet resent one batch in six: one ack in five never left
// the bridge, whose control connection let Paho queue only its default 100
// publishes and dropped the rest ("No more messages can be buffered"). Here
// 2,000 devices publish one batch each at once; ingestd answers them in a
// few requests of hundreds of devices, and every device must get its ack.
TEST(Load, EveryDeviceOfABurstGetsItsAck) {
  constexpr int kAckDevices = 2000;
  Cluster cluster("burst-acks");
  cluster.StartAll();
  AckListener listener(cluster);
  ASSERT_TRUE(listener.WaitConnected());
  ASSERT_TRUE(PublishOneBatchEach(cluster, kAckDevices, "loadgen.log"));
  EXPECT_EQ(WaitStored(cluster, kAckDevices), uint64_t{kAckDevices});
  const size_t got = listener.WaitAcked(kAckDevices);
  const std::string metrics = HttpGet(cluster.bridge_metrics_port(), "/metrics");
  const double failures = MetricValue(metrics, "rollertrace_bridge_publish_failures_total{what=\"ack\"}");
  EXPECT_EQ(got, size_t{kAckDevices}) << "devices that never got their ack: " << kAckDevices - got
                                      << "; rollertrace_bridge_publish_failures_total{what=\"ack\"} = " << failures;
  EXPECT_EQ(MetricValue(metrics, "rollertrace_bridge_acks_published_total"), kAckDevices);
}

// Acks leave from a process of their own (so that decisions do not queue
// behind them in Paho's one send thread). Killed, it is replaced by the
// bridge, and devices get their acks again.
TEST(Load, AKilledAckPublisherIsReplacedAndDevicesGetTheirAcksAgain) {
  constexpr int kAckDevices = 200;
  Cluster cluster("ack-publisher-kill");
  cluster.StartAll();
  AckListener listener(cluster);
  ASSERT_TRUE(listener.WaitConnected());
  ASSERT_TRUE(PublishOneBatchEach(cluster, kAckDevices, "loadgen-1.log"));
  ASSERT_EQ(listener.WaitAcked(kAckDevices), size_t{kAckDevices});
  const pid_t killed = cluster.bridge_ack_publisher_pid();
  ASSERT_GT(killed, 0) << "no ack publisher process beside the bridge";
  ASSERT_EQ(kill(killed, SIGKILL), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // The same batches again: repeats, stored once and acked again.
  listener.Forget();
  ASSERT_TRUE(PublishOneBatchEach(cluster, kAckDevices, "loadgen-2.log"));
  EXPECT_EQ(listener.WaitAcked(kAckDevices), size_t{kAckDevices}) << ReadFile(cluster.dir() + "/bridge.log");
  const pid_t replacement = cluster.bridge_ack_publisher_pid();
  EXPECT_GT(replacement, 0);
  EXPECT_NE(replacement, killed);
  EXPECT_EQ(Stored(cluster), uint64_t{kAckDevices}) << "a repeat was stored twice";
  EXPECT_TRUE(Alive(cluster.bridge_pid()));
}

// Two bridges share the broker's load; one dies and never comes back (its
// machine is gone, or its pod was replaced under a new name). Mosquitto goes
// on giving a share of every message to a persistent session whose client is
// away, so with sessions that never expire half of what devices sent after
// the death waited for a bridge that would never return. The bridge's session
// now expires (--session-expiry) and the others take the whole share.
TEST(Load, ABridgeThatNeverReturnsGivesUpItsShareToTheOtherBridge) {
  constexpr int kShareDevices = 400;
  const std::vector<std::string> expiry = {"--session-expiry", "2"};
  Cluster cluster("bridge-gone");
  cluster.StartBroker();
  cluster.StartIngestd();
  cluster.StartBridge(expiry);
  const Cluster::OtherBridge other = cluster.StartAnotherBridge("bridge-other", expiry);
  cluster.KillBridge();
  // Past the killed bridge's session expiry (and Mosquitto's check of it).
  std::this_thread::sleep_for(std::chrono::seconds(4));
  ASSERT_TRUE(PublishOneBatchEach(cluster, kShareDevices, "loadgen.log"));
  EXPECT_EQ(WaitStored(cluster, kShareDevices), uint64_t{kShareDevices})
      << "the share of the bridge that never returned was not delivered to the other\n"
      << ReadFile(other.log);
}

TEST(Load, AnAgentFleetUnderTheSameBurstIsStoredOnceWithoutAResendStorm) {
  Cluster cluster("burst-fleet");
  cluster.StartBroker();
  cluster.StartIngestd();
  cluster.StartBridge(kBridgeBounds);
  const int64_t end = Now();
  auto fleet = cluster.StartFleet({"--rollers", "20", "--sterilisers", "2", "--days", "7", "--seed", "11",
                                   "--end-time-ms", std::to_string(end), "--register-with", cluster.ingestd_address(),
                                   "--spool-dir", cluster.dir() + "/spool", "--rate", "0", "--ack-timeout-ms", "3000",
                                   "--no-authorize"},
                                  "fleet.log");
  auto loadgen = StartLoadgen(cluster, "json", "loadgen.log");
  ASSERT_EQ(loadgen->Wait(std::chrono::seconds(120)), 0) << ReadFile(loadgen->log_path());
  ASSERT_EQ(fleet->Wait(std::chrono::seconds(120)), 0) << ReadFile(fleet->log_path());
  WaitStored(cluster, kTotal);
  EXPECT_EQ(LoadgenStored(cluster), kTotal);
  // Exactly once for the fleet: every roller's events are stored once, none missing.
  const std::string log = ReadFile(fleet->log_path());
  std::smatch m;
  std::string last_stats;
  const std::regex stats(R"((\d+) recorded, (\d+) acked, (\d+) pending, (\d+) resends)");
  for (std::sregex_iterator it(log.begin(), log.end(), stats), stop; it != stop; ++it) {
    last_stats = it->str();
    m = *it;
  }
  ASSERT_FALSE(last_stats.empty()) << log;
  const uint64_t recorded = std::stoull(m[1]), acked = std::stoull(m[2]), resends = std::stoull(m[4]);
  EXPECT_EQ(acked, recorded) << last_stats;
  uint64_t fleet_stored = 0;
  for (const auto& d : {"R-0001", "R-0007", "R-0020", "S-01", "S-02"}) {
    v1::DeviceRecord r = cluster.Device(d);
    EXPECT_EQ(r.state().events_stored(), r.state().highest_sequence()) << d;
    EXPECT_EQ(r.state().open_gaps_size(), 0) << d;
    fleet_stored += r.state().events_stored();
  }
  EXPECT_GT(fleet_stored, 0u);
  // Backpressure delays acks; it must not turn into rounds of resends.
  std::cout << "fleet: " << last_stats << "\n";
  EXPECT_LE(resends, 22u) << last_stats;
}

// Point 3: a command raised outside ingestion (an administrator's unlock)
// while no bridge is connected, and ingestd SIGKILLed before any bridge took
// it. It was stored with the unlock, so it reaches the roller once ingestd is
// back and a bridge connects; the bridge's confirmation then empties the outbox.
TEST(Commands, AnUnlockRaisedWithNoBridgeSurvivesAnIngestdKillAndReachesTheRoller) {
  Cluster cluster("commands-restart");
  cluster.StartAll();
  cluster.Register(Cluster::Roller("CR-1"));
  TestDevice roller(cluster.mqtt_uri(), "CR-1");
  // Used offline, never sterilised: NOT_STERILE, and a lock.
  roller.Send({SessionStart("CR-1-s1", "MRN-CR", Now() - kHour, /*offline=*/true)});
  auto lock = roller.NextCommand();
  ASSERT_TRUE(lock.has_value()) << "no lock on rollers/CR-1/command";
  EXPECT_EQ(lock->command(), "lock");
  EXPECT_NE(lock->outbox_index(), 0u);
  auto unpublished = [&] {
    return MetricValue(HttpGet(cluster.ingestd_metrics_port(), "/metrics"), "rollertrace_device_commands_unpublished");
  };
  auto wait_unpublished = [&](double want) {
    for (int i = 0; i < 200 && unpublished() != want; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return unpublished();
  };
  ASSERT_EQ(wait_unpublished(0), 0) << "the bridge never confirmed the lock";

  cluster.KillBridge();
  std::string out;
  ASSERT_EQ(cluster.Rollerctl({"unlock", "CR-1", "--reason", "sterilised and checked", "--by", "admin-jo"}, &out), 0)
      << out;
  EXPECT_EQ(wait_unpublished(1), 1) << "the unlock waits for a bridge";
  cluster.KillIngestd();
  cluster.StartIngestd();
  EXPECT_EQ(wait_unpublished(1), 1) << "the restarted ingestd holds the unlock again";
  cluster.StartBridge();
  auto unlock = roller.NextCommand(std::chrono::seconds(20));
  ASSERT_TRUE(unlock.has_value()) << "the unlock raised before ingestd's kill never reached the roller\n"
                                  << ReadFile(cluster.dir() + "/ingestd.log") << ReadFile(cluster.dir() + "/bridge.log");
  EXPECT_EQ(unlock->command(), "unlock");
  EXPECT_EQ(wait_unpublished(0), 0) << "the bridge's confirmation never emptied the outbox";

  // Confirmed and stored: a second restart sends nothing again.
  cluster.KillIngestd();
  cluster.StartIngestd();
  EXPECT_FALSE(roller.NextCommand(std::chrono::seconds(3)).has_value()) << "a confirmed command was sent again";
}

// Point 3's "authorisations must not queue behind bulk events", down to the
// scheduler: the threads that move bulk events run at a higher nice value
// (ingestd --bulk-nice 7 here, the bridge at its default 10), and every
// thread on a decision's path at 0.
TEST(Load, BulkWorkRunsAtALowerPriorityThanTheDecisionPath) {
  Cluster cluster("bulk-nice");
  cluster.StartBroker();
  cluster.StartIngestd({"--bulk-nice", "7"});
  cluster.StartBridge();
  ASSERT_GT(cluster.bridge_reader_pid(), 0);
  ASSERT_GT(cluster.bridge_ack_publisher_pid(), 0);

  const auto ingestd = process::ThreadNiceValues(cluster.ingestd_pid());
  ASSERT_TRUE(ingestd.count("ingest-writer")) << "no writer thread found";
  EXPECT_EQ(ingestd.at("ingest-writer"), std::set<int>{7});
  ASSERT_TRUE(ingestd.count("grpcpp_sync_ser"));
  EXPECT_EQ(ingestd.at("grpcpp_sync_ser"), std::set<int>{0}) << "gRPC threads answer authorisations";

  const auto bridge = process::ThreadNiceValues(cluster.bridge_pid());
  for (const char* bulk : {"bridge-forward", "bridge-events"}) {
    ASSERT_TRUE(bridge.count(bulk)) << bulk;
    EXPECT_EQ(bridge.at(bulk), std::set<int>{10}) << bulk;
  }
  for (const char* decision : {"bridge-authz", "MQTTAsync_rcv", "MQTTAsync_send"}) {
    ASSERT_TRUE(bridge.count(decision)) << decision;
    EXPECT_EQ(bridge.at(decision), std::set<int>{0}) << decision << " is on the decision path";
  }
  for (pid_t child : {cluster.bridge_reader_pid(), cluster.bridge_ack_publisher_pid()}) {
    for (const auto& [name, values] : process::ThreadNiceValues(child)) {
      EXPECT_EQ(values, std::set<int>{10}) << "thread " << name << " of child " << child;
    }
  }

  // And the decision path answers, with the bulk threads behind it.
  std::unique_ptr<Process> burst = StartLoadgen(cluster, "bin", "loadgen.log");
  ASSERT_EQ(burst->Wait(std::chrono::seconds(120)), 0);
  EXPECT_EQ(WaitStored(cluster, kTotal), kTotal);
  TestDevice roller(cluster.mqtt_uri(), DeviceId(0));
  std::optional<rollertrace::v1::Decision> decision = roller.Authorize(AuthorizeFor(DeviceId(0), "MRN-1", Now()));
  ASSERT_TRUE(decision.has_value()) << "no decision over MQTT";
  EXPECT_EQ(decision->device_id(), DeviceId(0));
  // RocksDB's flush threads are lowered as their first job begins
  // (store_parts_test); the writer keeps its value through the burst.
  EXPECT_EQ(process::ThreadNiceValues(cluster.ingestd_pid()).at("ingest-writer"), std::set<int>{7});
}

// Established TCP connections from process `pid` to local port `port`
// (IPv4 and IPv6 sockets), from /proc: its descriptors' socket inodes matched
// against the kernel's connection tables.
int ConnectionsTo(pid_t pid, int port) {
  std::set<std::string> inodes;
  const std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  for (const auto& entry : std::filesystem::directory_iterator(fd_dir)) {
    std::error_code ec;
    const std::string target = std::filesystem::read_symlink(entry.path(), ec).string();
    static const std::regex kSocket(R"(socket:\[(\d+)\])");
    std::smatch m;
    if (!ec && std::regex_match(target, m, kSocket)) inodes.insert(m[1]);
  }
  char port_hex[8];
  std::snprintf(port_hex, sizeof port_hex, "%04X", port);
  int count = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
      const bool to_port = remote.size() > 5 && remote.substr(remote.size() - 4) == port_hex;
      if (to_port && state == "01" && inodes.count(inode)) ++count;  // 01: established
    }
  }
  return count;
}

// Point 3's "authorisations must not queue behind bulk events", on the wire:
// the bridge's authorisers shared gRPC's one connection to ingestd with the
// event stream (gRPC pools a target's connections across channels), so a
// decision's few bytes waited behind requests of hundreds of kilobytes in the
// same TCP stream and ingestd's reading of it (p99 10-25 ms in the bridge
// during a burst, docs/BENCHMARKS.md). They get a connection of their own.
TEST(Load, DecisionsReachIngestdOnAConnectionOfTheirOwn) {
  Cluster cluster("decision-connection");
  cluster.StartAll();
  TestDevice roller(cluster.mqtt_uri(), DeviceId(0));
  ASSERT_TRUE(roller.Authorize(AuthorizeFor(DeviceId(0), "MRN-1", Now())).has_value()) << "no decision over MQTT";
  const std::string address = cluster.ingestd_address();
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  EXPECT_EQ(ConnectionsTo(cluster.bridge_pid(), port), 2) << "one for the event stream, one for decisions";
}

// Paho C's receive thread sleeps 100 ms after each second without traffic,
// and its send thread can miss the wake-up for a new command and wait out a
// second: authorisations 1.05 s apart took 51 ms each over MQTT, and one
// round trip in about 2,400 took 1.1 s (docs/BENCHMARKS.md). This program's
// own MQTT client, like every program linking rt_mqtt, routes both waits
// through mqtt/paho_waits.h: after a quiet second its Paho threads took the
// short waits, and the roller still gets its decision.
TEST(Load, AfterAQuietSecondPahosThreadsTakeTheShortWaits) {
  ASSERT_TRUE(mqtt::paho::Interposed()) << "usleep and pthread_cond_timedwait are not this program's";
  Cluster cluster("paho-waits");
  cluster.StartAll();
  TestDevice roller(cluster.mqtt_uri(), DeviceId(0));
  ASSERT_TRUE(roller.Authorize(AuthorizeFor(DeviceId(0), "MRN-1", Now())).has_value()) << "no decision over MQTT";
  const mqtt::paho::Counts before = mqtt::paho::Acted();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_TRUE(roller.Authorize(AuthorizeFor(DeviceId(0), "MRN-1", Now())).has_value()) << "none after the quiet";
  const mqtt::paho::Counts after = mqtt::paho::Acted();
  EXPECT_GT(after.shortened_sleeps, before.shortened_sleeps) << "the receive thread's idle sleep was not cut";
  EXPECT_GT(after.capped_waits, before.capped_waits) << "the send thread's wait was not capped";
}

// A command's effects are written without the WAL; only the command log is
// synced (docs/ARCHITECTURE.md, "The log is the WAL"). ingestd SIGKILLed while
// a stream pours into it must come back with the effects of every logged
// command, re-applied from the log, and be the store its own log replays to.
TEST(Load, IngestdKilledMidStreamAppliesItsLogAgainAndIsWhatItsLogReplaysTo) {
  Cluster cluster("wal-kill");
  cluster.StartIngestd();
  const std::vector<std::string> who = {"--devices", std::to_string(kDevices), "--token-file",
                                        cluster.TokenFile("admin")};
  std::vector<std::string> argv = {ROLLERTRACE_LOADGEN, "--register-with", cluster.ingestd_address(),
                                   "--register-only"};
  argv.insert(argv.end(), who.begin(), who.end());
  auto registered = Process::Start(argv, cluster.dir() + "/register.log");
  ASSERT_EQ(registered->Wait(std::chrono::seconds(60)), 0) << ReadFile(registered->log_path());

  // Straight into ingestd's Ingest stream, no broker and no bridge.
  argv = {ROLLERTRACE_LOADGEN, "--ingestd", cluster.ingestd_address(), "--messages", std::to_string(kMessages),
          "--events", std::to_string(kEvents), "--request-events", "1000", "--requests-inflight", "2"};
  argv.insert(argv.end(), who.begin(), who.end());
  auto stream = Process::Start(argv, cluster.dir() + "/stream.log");
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  uint64_t at_kill = 0;
  while ((at_kill = Stored(cluster)) < kTotal / 4 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  cluster.KillIngestd();
  ASSERT_GE(at_kill, kTotal / 4) << ReadFile(stream->log_path());
  ASSERT_LT(at_kill, kTotal) << "the stream ended before the kill: nothing was in flight";
  EXPECT_NE(stream->Wait(std::chrono::seconds(30)), 0) << "the stream outlived ingestd";

  cluster.StartIngestd();
  const std::string log = ReadFile(cluster.dir() + "/ingestd.log");
  EXPECT_TRUE(std::regex_search(log, std::regex("applied [1-9][0-9]* logged commands whose effects had not been "
                                                "flushed"))) << log;
  // Every device holds a gapless prefix of its stream, and at least what the
  // killed ingestd had counted as stored (it counts after both writes).
  const uint64_t recovered = LoadgenStored(cluster);
  EXPECT_GE(recovered, at_kill);
  for (int d = 0; d < kDevices; ++d) {
    const v1::DeviceRecord r = cluster.Device(DeviceId(d));
    EXPECT_EQ(r.state().contiguous_through(), r.state().events_stored()) << DeviceId(d);
  }
  std::string out;
  EXPECT_EQ(cluster.Rollerctl({"verify"}, &out), 0) << out;
  cluster.StopIngestd();

  // The recovered store is the one its own log replays to, key for key.
  const std::string tool = ROLLERTRACE_STORE_TOOL;
  auto run = [&](const std::vector<std::string>& args, const std::string& name) {
    auto p = Process::Start(args, cluster.dir() + "/" + name);
    EXPECT_EQ(p->Wait(std::chrono::seconds(120)), 0) << ReadFile(p->log_path());
    return ReadFile(p->log_path());
  };
  run({tool, "dump-log", "--data-dir", cluster.ingestd_data_dir(), "--out", cluster.dir() + "/commands.log"},
      "dump.log");
  run({tool, "replay", "--data-dir", cluster.dir() + "/replayed", "--log", cluster.dir() + "/commands.log"},
      "replay.log");
  EXPECT_EQ(run({tool, "digest", "--data-dir", cluster.ingestd_data_dir()}, "digest-recovered.log"),
            run({tool, "digest", "--data-dir", cluster.dir() + "/replayed"}, "digest-replayed.log"));
}

}  // namespace
}  // namespace rollertrace::testing
