// Fleet: one or many DeviceAgents in one process, each with its own MQTT
// connection (client id = device id, last will "offline" retained on its
// status topic), all sharing one SpoolDb and one pump thread. roller-agent runs
// a fleet of one; roller-fleet runs many.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/device_agent.h"
#include "agent/simulator.h"
#include "agent/spool.h"
#include "metrics/metrics.h"
#include "mqtt/mqtt_client.h"
#include "process/shutdown.h"

namespace rollertrace::edge {

struct FleetOptions {
  std::string mqtt_uri = "tcp://127.0.0.1:1883";
  std::string mqtt_ca_file;  // TLS to the broker (ssl:// URI)
  // One broker account for every simulated device...
  std::string mqtt_username;
  std::string mqtt_password;
  // ...or each its own: user = device id, password from this map.
  std::map<std::string, std::string> mqtt_passwords;
  bool json = false;
  // TCP_NODELAY on each device's connection (mqtt::MqttOptions): for a few
  // devices (roller-agent), not a fleet of thousands.
  bool tcp_nodelay = false;
  size_t max_batch_events = 100;
  // PlaySimulation: rollers are played by this many threads side by side.
  size_t play_lanes = 16;
  // Devices connecting to the broker at once; the rest wait their turn.
  int max_connecting = 32;
  std::chrono::milliseconds ack_timeout{3000};
  std::chrono::milliseconds pump_interval{20};
  // Rollers ask before every session and wait this long for the decision
  // before deciding offline.
  std::chrono::milliseconds decision_timeout{2000};
  // false: rollers start sessions without asking (legacy devices; transport tests).
  bool authorize = true;
  // Share of refused sessions an operator carries out anyway (demo and
  // tests: each becomes a violation on ingestion). Seeded by override_seed.
  double override_rate = 0;
  uint64_t override_seed = 1;
};

struct FleetStats {
  size_t devices = 0;
  size_t connected = 0;
  uint64_t recorded = 0;
  size_t pending = 0;
  int64_t oldest_pending_unix_ms = 0;  // 0 when nothing is pending
  uint64_t published = 0;
  uint64_t acked = 0;
  uint64_t resends = 0;
  uint64_t sessions_allowed = 0;
  uint64_t sessions_refused = 0;
  uint64_t offline_decisions = 0;
  uint64_t overrides = 0;
  size_t locked = 0;
};

class Fleet {
 public:
  // Borrows `db`, which must outlive the fleet.
  Fleet(SpoolDb& db, FleetOptions options);
  // Stops the pump and disconnects every device.
  ~Fleet();
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  // REQUIRES: before Start().
  absl::Status AddDevice(const std::string& device_id, codec::TopicKind kind);
  void Start();
  void Stop();

  // Spools an event for a device added earlier. Thread-safe.
  absl::StatusOr<rollertrace::v1::Event> Record(const std::string& device_id, rollertrace::v1::Event event,
                                                uint64_t source_cursor);
  // Asks for a session start; see DeviceAgent::Authorize.
  absl::StatusOr<Authorization> Authorize(const std::string& device_id, const rollertrace::v1::SessionStarted& session,
                                          int64_t start_unix_ms);
  const FleetOptions& options() const { return options_; }
  void CountOverride() { ++overrides_; }

  // How far the device's source was consumed before this process started.
  uint64_t SourceCursor(const std::string& device_id) const;
  FleetStats Stats() const;
  // Events pending in the spools of this kind of device.
  size_t Pending(codec::TopicKind kind) const;

 private:
  struct Member {
    std::unique_ptr<Spool> spool;
    std::unique_ptr<DeviceAgent> agent;
    std::unique_ptr<mqtt::MqttClient> mqtt;
    std::string status_topic;
    codec::TopicKind kind;
  };
  void RunPump();

  static constexpr size_t kStopThreads = 32;
  SpoolDb& db_;
  FleetOptions options_;
  std::shared_ptr<mqtt::ConnectGate> connect_gate_;
  std::shared_ptr<AckTimer> ack_timer_ = std::make_shared<AckTimer>();
  std::map<std::string, Member> members_;
  std::vector<const Member*> sterilisers_, rollers_;  // members_ by kind
  std::atomic<uint64_t> recorded_{0};
  std::atomic<uint64_t> overrides_{0};
  std::atomic<bool> stopping_{false};
  std::thread pump_;
};

// Waits until every spooled event is acknowledged (true), or `stop` is set or
// `deadline` passes (false). Calls tick() about twice a second.
bool WaitUntilDrained(const Fleet& fleet, const std::atomic<bool>& stop,
                      std::chrono::steady_clock::time_point deadline, const std::function<void()>& tick);

// A progress line: "1200 recorded, 1100 acked, 100 pending, 8/8 connected".
std::string Describe(const FleetStats& stats);

class FleetMetrics;

// Watches a running fleet for the mains: refreshes its metrics four times a
// second and raises stop() on SIGINT/SIGTERM or once `deadline` passes.
// REQUIRES: process::BlockShutdownSignals() was called.
class FleetSupervisor {
 public:
  FleetSupervisor(const Fleet& fleet, FleetMetrics& metrics, std::chrono::steady_clock::time_point deadline);
  // Stops and joins.
  ~FleetSupervisor();
  FleetSupervisor(const FleetSupervisor&) = delete;
  FleetSupervisor& operator=(const FleetSupervisor&) = delete;

  const std::atomic<bool>& stop() const { return stop_; }
  void Stop() { stop_ = true; }

 private:
  std::atomic<bool> stop_{false};
  std::unique_ptr<process::ShutdownWatcher> shutdown_;
  std::thread thread_;
};

// The agent-side metrics: spool depth, age of the oldest unacked event,
// events recorded, published, acked, resends. Call Update() now and then.
class FleetMetrics {
 public:
  FleetMetrics(metrics::Metrics& m);
  void Update(const FleetStats& stats, int64_t now_unix_ms);

 private:
  prometheus::Gauge& spool_;
  prometheus::Gauge& oldest_;
  prometheus::Gauge& connected_;
  prometheus::Counter& recorded_;
  prometheus::Counter& published_;
  prometheus::Counter& acked_;
  prometheus::Counter& resends_;
  FleetStats last_;
};

// What both edge mains run on: a metrics registry, the spool, a fleet of the
// given devices and the fleet's metrics. Members go in reverse order.
struct Edge {
  std::unique_ptr<metrics::Metrics> metrics;
  std::unique_ptr<SpoolDb> spool;
  std::unique_ptr<Fleet> fleet;
  std::unique_ptr<FleetMetrics> fleet_metrics;
};
absl::StatusOr<std::unique_ptr<Edge>> OpenEdge(const std::string& metrics_listen, const std::string& spool_dir,
                                               FleetOptions options,
                                               const std::vector<std::pair<std::string, codec::TopicKind>>& devices);

}  // namespace rollertrace::edge
