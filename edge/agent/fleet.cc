#include "agent/fleet.h"

#include <algorithm>
#include <thread>

#include "util/cat.h"
#include "util/clock.h"

namespace rollertrace::edge {

Fleet::Fleet(SpoolDb& db, FleetOptions options)
    : db_(db),
      options_(std::move(options)),
      connect_gate_(std::make_shared<mqtt::ConnectGate>(std::max(1, options_.max_connecting))) {}

Fleet::~Fleet() { Stop(); }

absl::Status Fleet::AddDevice(const std::string& device_id, codec::TopicKind kind) {
  if (absl::Status s = codec::ValidateDeviceId(device_id); !s.ok()) return s;
  if (members_.count(device_id)) return absl::AlreadyExistsError(util::Cat("device ", device_id, " added twice"));
  absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(db_, device_id);
  if (!spool.ok()) return spool.status();
  Member m;
  m.spool = std::move(*spool);
  m.status_topic = codec::StatusTopic(kind, device_id);
  m.kind = kind;
  AgentOptions agent_options;
  agent_options.kind = kind;
  agent_options.json = options_.json;
  agent_options.max_batch_events = options_.max_batch_events;
  agent_options.ack_timeout = options_.ack_timeout;
  agent_options.ack_timer = ack_timer_;  // one server: one round trip to learn
  m.agent = std::make_unique<DeviceAgent>(*m.spool, agent_options);

  mqtt::MqttOptions mo;
  mo.server_uri = options_.mqtt_uri;
  mo.ca_file = options_.mqtt_ca_file;
  mo.client_id = device_id;
  mo.tcp_nodelay = options_.tcp_nodelay;
  mo.connect_gate = connect_gate_;
  mo.username = options_.mqtt_username;
  mo.password = options_.mqtt_password;
  if (!options_.mqtt_passwords.empty()) {
    auto password = options_.mqtt_passwords.find(device_id);
    if (password == options_.mqtt_passwords.end()) {
      return absl::NotFoundError(util::Cat("the MQTT credentials file has no password for device ", device_id));
    }
    mo.username = device_id;
    mo.password = password->second;
  }
  mo.will = mqtt::Will{codec::StatusTopic(kind, device_id), "offline", 1, true};
  m.mqtt = std::make_unique<mqtt::MqttClient>(mo);
  m.mqtt->Subscribe(codec::AckTopic(kind, device_id), 1);
  if (kind == codec::TopicKind::kRollerEvents) {
    m.mqtt->Subscribe(codec::DecisionTopic(device_id), 1);
    m.mqtt->Subscribe(codec::CommandTopic(device_id), 1);
  }
  DeviceAgent* agent = m.agent.get();
  mqtt::MqttClient* client = m.mqtt.get();
  const std::string status_topic = codec::StatusTopic(kind, device_id);
  m.mqtt->OnMessage([agent](const std::string& topic, const std::string& payload) {
    if (topic.ends_with("/ack")) {
      agent->OnAck(payload);
    } else if (topic.ends_with("/decision")) {
      agent->OnDecision(payload);
    } else if (topic.ends_with("/command")) {
      agent->OnCommand(payload);
    }
  });
  m.mqtt->OnConnected([agent, client, status_topic] {
    (void)client->Publish(status_topic, "online", 1, true);
    agent->OnConnected();
  });
  Member& added = members_.emplace(device_id, std::move(m)).first->second;
  (kind == codec::TopicKind::kSteriliserCycles ? sterilisers_ : rollers_).push_back(&added);
  return absl::OkStatus();
}

void Fleet::Start() {
  // Sterilisers first: the rollers' sessions wait for their cycles.
  for (const Member* m : sterilisers_) m->mqtt->Start();
  for (const Member* m : rollers_) m->mqtt->Start();
  pump_ = std::thread([this] { RunPump(); });
}

void Fleet::Stop() {
  if (stopping_.exchange(true)) return;
  if (pump_.joinable()) pump_.join();
  // Every connector told first, then the disconnects run side by side: one
  // after another, a fleet of 10,000 took minutes to stop.
  std::vector<Member*> members;
  for (auto& [id, m] : members_) {
    m.mqtt->RequestStop();
    members.push_back(&m);
  }
  std::atomic<size_t> next{0};
  auto stop_some = [&] {
    for (size_t i = next++; i < members.size(); i = next++) {
      Member& m = *members[i];
      // A clean disconnect sends no will, so say it ourselves.
      if (m.mqtt->connected()) (void)m.mqtt->Publish(m.status_topic, "offline", 1, true);
      m.mqtt->Stop();
    }
  };
  std::vector<std::thread> stoppers;
  for (size_t t = 1; t < std::min<size_t>(kStopThreads, members.size()); ++t) stoppers.emplace_back(stop_some);
  stop_some();
  for (auto& t : stoppers) t.join();
}

void Fleet::RunPump() {
  while (!stopping_) {
    const auto now = DeviceAgent::Clock::now();
    for (auto& [id, m] : members_) {
      if (!m.mqtt->connected()) continue;
      mqtt::MqttClient* client = m.mqtt.get();
      m.agent->Pump(
          [client](const std::string& topic, const std::string& payload, std::function<void()> delivered) {
            return client->Publish(topic, payload, 1, false, std::move(delivered));
          },
          now);
    }
    std::this_thread::sleep_for(options_.pump_interval);
  }
}

absl::StatusOr<rollertrace::v1::Event> Fleet::Record(const std::string& device_id, rollertrace::v1::Event event,
                                                     uint64_t source_cursor) {
  auto it = members_.find(device_id);
  if (it == members_.end()) return absl::NotFoundError(util::Cat("device ", device_id, " is not in this fleet"));
  absl::StatusOr<rollertrace::v1::Event> recorded = it->second.agent->Record(std::move(event), source_cursor);
  if (recorded.ok()) ++recorded_;
  return recorded;
}

absl::StatusOr<Authorization> Fleet::Authorize(const std::string& device_id,
                                               const rollertrace::v1::SessionStarted& session, int64_t start) {
  auto it = members_.find(device_id);
  if (it == members_.end()) return absl::NotFoundError(util::Cat("device ", device_id, " is not in this fleet"));
  mqtt::MqttClient* client = it->second.mqtt.get();
  return it->second.agent->Authorize(
      session, start,
      [client](const std::string& topic, const std::string& payload, std::function<void()>) {
        return client->Publish(topic, payload, 1);
      },
      options_.decision_timeout);
}

uint64_t Fleet::SourceCursor(const std::string& device_id) const {
  auto it = members_.find(device_id);
  return it == members_.end() ? 0 : it->second.spool->meta().source_cursor();
}

FleetStats Fleet::Stats() const {
  FleetStats s;
  s.devices = members_.size();
  s.recorded = recorded_;
  for (const auto& [id, m] : members_) {
    if (m.mqtt->connected()) ++s.connected;
    AgentStats a = m.agent->stats();
    s.pending += a.pending;
    if (a.oldest_pending_unix_ms > 0 && (s.oldest_pending_unix_ms == 0 || a.oldest_pending_unix_ms < s.oldest_pending_unix_ms)) {
      s.oldest_pending_unix_ms = a.oldest_pending_unix_ms;
    }
    s.published += a.published_events;
    s.acked += a.acked_events;
    s.resends += a.resends;
    s.sessions_allowed += a.sessions_allowed;
    s.sessions_refused += a.sessions_refused;
    s.offline_decisions += a.offline_decisions;
    if (a.locked) ++s.locked;
  }
  s.overrides = overrides_;
  return s;
}

size_t Fleet::Pending(codec::TopicKind kind) const {
  size_t pending = 0;
  for (const Member* m : kind == codec::TopicKind::kSteriliserCycles ? sterilisers_ : rollers_) {
    pending += m->spool->pending_count();
  }
  return pending;
}

bool WaitUntilDrained(const Fleet& fleet, const std::atomic<bool>& stop,
                      std::chrono::steady_clock::time_point deadline, const std::function<void()>& tick) {
  while (true) {
    if (tick) tick();
    if (fleet.Stats().pending == 0) return true;
    if (stop || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

std::string Describe(const FleetStats& s) {
  return util::Cat(s.recorded, " recorded, ", s.acked, " acked, ", s.pending, " pending, ", s.resends,
                   " resends, ", s.connected, "/", s.devices, " connected; sessions ", s.sessions_allowed,
                   " allowed, ", s.sessions_refused, " refused (", s.overrides, " carried out anyway), ",
                   s.offline_decisions, " decided offline, ", s.locked, " rollers locked");
}

FleetSupervisor::FleetSupervisor(const Fleet& fleet, FleetMetrics& metrics,
                                 std::chrono::steady_clock::time_point deadline)
    : shutdown_(std::make_unique<process::ShutdownWatcher>()),
      thread_([this, &fleet, &metrics, deadline] {
        while (!stop_ && !shutdown_->requested() && std::chrono::steady_clock::now() < deadline) {
          metrics.Update(fleet.Stats(), util::NowUnixMs());
          std::this_thread::sleep_for(std::chrono::milliseconds(250));
        }
        stop_ = true;
        metrics.Update(fleet.Stats(), util::NowUnixMs());
      }) {}

FleetSupervisor::~FleetSupervisor() {
  stop_ = true;
  thread_.join();
}

FleetMetrics::FleetMetrics(metrics::Metrics& m)
    : spool_(m.Gauge("rollertrace_agent_spool_events", "Events in the spool not yet acknowledged by ingestd").Add({})),
      oldest_(m.Gauge("rollertrace_agent_oldest_unacked_age_seconds",
                      "Age (by device time) of the oldest unacknowledged event; 0 when none")
                  .Add({})),
      connected_(m.Gauge("rollertrace_agent_devices_connected", "Devices of this process connected to the broker")
                     .Add({})),
      recorded_(m.Counter("rollertrace_agent_events_recorded_total", "Events written to the spool").Add({})),
      published_(m.Counter("rollertrace_agent_events_published_total", "Events published, resends included").Add({})),
      acked_(m.Counter("rollertrace_agent_events_acked_total", "Events removed from the spool by an ack").Add({})),
      resends_(m.Counter("rollertrace_agent_resends_total", "Times the backlog was sent again after an ack timeout")
                   .Add({})) {}

void FleetMetrics::Update(const FleetStats& s, int64_t now_unix_ms) {
  spool_.Set(static_cast<double>(s.pending));
  oldest_.Set(s.oldest_pending_unix_ms > 0 ? (now_unix_ms - s.oldest_pending_unix_ms) / 1000.0 : 0.0);
  connected_.Set(static_cast<double>(s.connected));
  recorded_.Increment(static_cast<double>(s.recorded - last_.recorded));
  published_.Increment(static_cast<double>(s.published - last_.published));
  acked_.Increment(static_cast<double>(s.acked - last_.acked));
  resends_.Increment(static_cast<double>(s.resends - last_.resends));
  last_ = s;
}

absl::StatusOr<std::unique_ptr<Edge>> OpenEdge(const std::string& metrics_listen, const std::string& spool_dir,
                                               FleetOptions options,
                                               const std::vector<std::pair<std::string, codec::TopicKind>>& devices) {
  auto edge = std::make_unique<Edge>();
  auto m = metrics::Metrics::Create(metrics_listen);
  if (!m.ok()) return m.status();
  edge->metrics = std::move(*m);
  auto db = SpoolDb::Open(spool_dir);
  if (!db.ok()) return db.status();
  edge->spool = std::move(*db);
  edge->fleet = std::make_unique<Fleet>(*edge->spool, std::move(options));
  for (const auto& [id, kind] : devices) {
    if (absl::Status s = edge->fleet->AddDevice(id, kind); !s.ok()) return s;
  }
  edge->fleet_metrics = std::make_unique<FleetMetrics>(*edge->metrics);
  return edge;
}

}  // namespace rollertrace::edge
