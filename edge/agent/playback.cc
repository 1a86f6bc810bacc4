#include "agent/playback.h"

#include <random>
#include <set>
#include <thread>

#include "util/cat.h"

namespace rollertrace::edge {

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

}  // namespace rollertrace::edge
