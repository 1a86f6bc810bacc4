#include "agent/fleet.h"

#include <algorithm>
#include <random>
#include <set>
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
          [client, agent = m.agent.get()](const std::string& topic, const std::string& payload) {
            return client->Publish(topic, payload, 1, false, [agent] { agent->OnDelivered(); });
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
      [client](const std::string& topic, const std::string& payload) { return client->Publish(topic, payload, 1); },
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

namespace {

// Whether the operator carries out a refused session anyway: a pure function
// of the seed and the session, so lanes and restarts decide alike.
bool OperatorOverrides(uint64_t seed, const std::string& session_id, double rate) {
  if (rate <= 0) return false;
  uint64_t h = seed ^ 0x9e3779b97f4a7c15ULL;
  for (unsigned char c : session_id) h = (h ^ c) * 0x100000001b3ULL;
  std::mt19937_64 rng(h);
  return std::uniform_real_distribution<double>(0, 1)(rng) < rate;
}

// What the lanes of one PlaySimulation share.
struct Playback {
  Playback(Fleet& f, const std::vector<SimEvent>& e, double r, const std::atomic<bool>& s,
           const std::function<void(const std::string&)>& l)
      : fleet(f), events(e), rate(r), stop(s), log(l) {}
  Fleet& fleet;
  const std::vector<SimEvent>& events;
  double rate;
  const std::atomic<bool>& stop;
  const std::function<void(const std::string&)>& log;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  std::atomic<bool> failed{false};
  std::atomic<size_t> done{0};        // source events handled (recorded or skipped)
  std::atomic<uint64_t> recorded{0};
  // Device time through which every steriliser event has been recorded;
  // INT64_MAX once the sterilisers' lane is through.
  std::atomic<int64_t> cycles_through_ms{INT64_MIN};
  std::mutex mu;  // guards error, log and the two below
  absl::Status error;
  // No steriliser event was acknowledged for a while: sessions stop waiting
  // for acks until the sterilisers' pending count falls below this.
  bool unreachable = false;
  size_t pending_when_unreachable = 0;

  bool stopped() const { return stop || failed; }
  void Fail(absl::Status s) {
    std::lock_guard<std::mutex> lock(mu);
    if (error.ok()) error = std::move(s);
    failed = true;
  }
  void Log(const std::string& line) {
    if (!log) return;
    std::lock_guard<std::mutex> lock(mu);
    log(line);
  }
};

// Before a session start, as in a clinic where cycles end hours before
// sessions: every steriliser event dated before it is recorded (by the
// sterilisers' lane) and acknowledged, so the server judges the session
// knowing its cycles, as a replay in source order would. The wait for acks
// lasts while they come (through a server outage of up to 20 s, 120 s in
// all); once no ack came for 20 s the server is taken as unreachable and
// sessions go ahead (offline, from what each roller last heard) without
// waiting again until an ack arrives.
void AwaitCyclesBefore(Playback& p, int64_t start_unix_ms) {
  while (!p.stopped() && p.cycles_through_ms <= start_unix_ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  using Clock = std::chrono::steady_clock;
  size_t pending = p.fleet.Pending(codec::TopicKind::kSteriliserCycles);
  if (pending == 0) return;
  {
    std::lock_guard<std::mutex> lock(p.mu);
    if (p.unreachable && pending >= p.pending_when_unreachable) return;  // no ack since
    p.unreachable = false;
  }
  const auto limit = Clock::now() + std::chrono::seconds(120);
  auto progress = Clock::now();
  uint64_t acked = p.fleet.Stats().acked;  // any device's: the server answers
  for (int round = 1; !p.stopped() && pending > 0 && Clock::now() < limit; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    pending = p.fleet.Pending(codec::TopicKind::kSteriliserCycles);
    if (round % 20 != 0) continue;
    if (const uint64_t now_acked = p.fleet.Stats().acked; now_acked > acked) {
      acked = now_acked;
      progress = Clock::now();
    }
    if (Clock::now() - progress > std::chrono::seconds(20)) {
      std::lock_guard<std::mutex> lock(p.mu);
      p.unreachable = true;
      p.pending_when_unreachable = pending;
      return;
    }
  }
}

// Plays one lane's events (indexes into p.events, in source order).
void PlayLane(Playback& p, const std::vector<size_t>& lane, bool sterilisers) {
  std::map<std::string, uint64_t> seen;  // per device: its events met so far
  std::map<std::string, uint64_t> cursor;
  std::set<std::string> refused_sessions;
  Fleet& fleet = p.fleet;
  for (size_t index : lane) {
    if (p.stopped()) return;
    const SimEvent& e = p.events[index];
    const std::string& id = e.event.device_id();
    auto [c, inserted] = cursor.try_emplace(id, 0);
    if (inserted) c->second = fleet.SourceCursor(id);
    const uint64_t k = ++seen[id];
    ++p.done;
    if (k <= c->second) {  // recorded by an earlier run
      if (sterilisers) p.cycles_through_ms = e.event.device_time_unix_ms();
      continue;
    }
    rollertrace::v1::Event event = e.event;
    if (e.needs_cycles_committed && fleet.options().authorize) {
      AwaitCyclesBefore(p, event.device_time_unix_ms());
      if (p.stopped()) return;
      absl::StatusOr<Authorization> auth = fleet.Authorize(id, event.session_started(), event.device_time_unix_ms());
      if (!auth.ok()) return p.Fail(auth.status());
      const std::string& session_id = event.session_started().session_id();
      const bool override =
          !auth->allowed && OperatorOverrides(fleet.options().override_seed, session_id, fleet.options().override_rate);
      if (!auth->allowed) {
        std::string reasons;
        for (const auto& h : auth->decision.hits()) {
          if (h.severity() == rollertrace::v1::SEVERITY_DENY) {
            reasons += util::Cat(reasons.empty() ? "" : "; ", h.rule(), " (", h.detail(), ")");
          }
        }
        p.Log(util::Cat(id, " session ", session_id, " refused", auth->offline ? " offline" : "", ": ", reasons,
                        override ? " -- the operator carried on anyway" : ""));
      }
      if (!auth->allowed && !override) {
        refused_sessions.insert(session_id);
        continue;
      }
      if (override) fleet.CountOverride();
      event.mutable_session_started()->set_decision_id(auth->decision.decision_id());
      event.mutable_session_started()->set_offline_decision(auth->offline);
    } else if (!refused_sessions.empty()) {
      const std::string* session = event.has_usage_sample()   ? &event.usage_sample().session_id()
                                   : event.has_session_ended() ? &event.session_ended().session_id()
                                                               : nullptr;
      if (session != nullptr && refused_sessions.count(*session)) continue;  // it never took place
    }
    if (absl::Status s = fleet.Record(id, std::move(event), k).status(); !s.ok()) return p.Fail(s);
    // Only once it is spooled may a session that relies on it go ahead.
    if (sterilisers) p.cycles_through_ms = e.event.device_time_unix_ms();
    const uint64_t n = ++p.recorded;
    if (p.rate > 0) {
      std::this_thread::sleep_until(p.start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                  std::chrono::duration<double>(n / p.rate)));
    }
  }
}

}  // namespace

absl::StatusOr<uint64_t> PlaySimulation(Fleet& fleet, const std::vector<SimEvent>& events, double rate,
                                        const std::atomic<bool>& stop,
                                        const std::function<void(size_t, size_t)>& progress,
                                        const std::function<void(const std::string&)>& log) {
  // Lane 0 plays every steriliser in source order (its cycles and indicator
  // results are what session decisions rely on); each roller belongs to one
  // of the other lanes, which play side by side. A roller's events stay in
  // order and a session start waits until lane 0 has passed its time, so the
  // decisions are those of a replay in source order. Side by side, the
  // rollers' spool writes also share the WAL syncs (RocksDB commits
  // concurrent writers as one group).
  const size_t roller_lanes = std::max<size_t>(1, fleet.options().play_lanes);
  std::vector<std::vector<size_t>> lanes(1 + roller_lanes);
  std::map<std::string, size_t> lane_of;
  for (size_t i = 0; i < events.size(); ++i) {
    const std::string& id = events[i].event.device_id();
    auto [it, inserted] = lane_of.try_emplace(id, 0);
    if (inserted && events[i].kind != codec::TopicKind::kSteriliserCycles) {
      it->second = 1 + (lane_of.size() - 1) % roller_lanes;
    }
    lanes[it->second].push_back(i);
  }
  Playback p(fleet, events, rate, stop, log);
  std::vector<std::thread> threads;
  for (size_t l = 0; l < lanes.size(); ++l) {
    if (lanes[l].empty() && l != 0) continue;
    threads.emplace_back([&p, &lanes, l] {
      PlayLane(p, lanes[l], l == 0);
      if (l == 0) p.cycles_through_ms = INT64_MAX;
    });
  }
  auto last_progress = std::chrono::steady_clock::now();
  while (p.done < events.size() && !p.stopped()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto now = std::chrono::steady_clock::now();
    if (progress && now - last_progress > std::chrono::seconds(2)) {
      progress(p.done, events.size());
      last_progress = now;
    }
  }
  for (auto& t : threads) t.join();
  if (!p.error.ok()) return p.error;
  if (progress) progress(p.done, events.size());
  return p.recorded.load();
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
