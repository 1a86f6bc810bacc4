// DeviceAgent: the sending side of one device. Events go into its Spool first;
// Pump() publishes what has not been sent, and everything still pending again
// after a reconnect or when no ack has made progress for ack_timeout (a bridge
// or ingestd may die while the MQTT connection stays up). Acks remove events
// from the spool. Pure of network: publishing goes through a Publisher.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <set>

#include "absl/status/statusor.h"
#include "agent/spool.h"
#include "codec/codec.h"
#include "rules/policy.h"
#include "rules/rules.h"

namespace rollertrace::edge {

// Publishes one payload at QoS 1; Unavailable when it cannot now. `delivered`
// (may be empty) is called once the broker has the message (its PUBACK).
using Publisher = std::function<absl::Status(const std::string& topic, const std::string& payload,
                                             std::function<void()> delivered)>;

// What a device (or a fleet's devices, sharing one) learnt from the acks, to
// tell a slow server from a lost batch:
// - how long to wait for an ack before sending the backlog again (RFC 6298:
//   smoothed round trip + 4 x its variation, never below the configured floor;
//   Karn: batches sent again give no sample);
// - the latest broker delivery (PUBACK) of any batch acked since, and when the
//   last ack came. The broker hands batches on in the order it took them, so
//   while acks keep coming for batches it took before ours, ours is queued
//   behind them, not lost; once a batch it took later than ours (by more than
//   a reorder window) is acked and ours is not, ours is lost (RFC 8985, RACK).
// A fleet shares one, so a slow server is learnt from the first acks instead
// of by every device timing out on its own: that is what turned a slow
// server into a resend storm. Thread-safe.
class AckTimer {
 public:
  using Clock = std::chrono::steady_clock;
  void Observe(Clock::duration round_trip);
  // The wait before a resend, at least `floor` and at most 60 s.
  std::chrono::milliseconds Timeout(std::chrono::milliseconds floor) const;
  // A batch the broker took at `delivered` was acked at `at`.
  void Acked(Clock::time_point delivered, Clock::time_point at);
  // Whether a batch the broker took at `delivered` and not yet acked is lost:
  // one it took later than that plus the reorder window has been acked. The
  // window is the wait itself (Timeout): the moments are when a fleet's MQTT
  // receive thread, shared by a thousand sockets, got to each PUBACK and ack,
  // and a narrower window (a third of the floor) resent 38,267 batches of a
  // 10,000-roller fleet that lost none.
  bool Overtaken(Clock::time_point delivered, std::chrono::milliseconds floor) const;
  // Whether an ack came within `within` before `now`.
  bool Progressing(Clock::time_point now, Clock::duration within) const;

 private:
  std::chrono::milliseconds TimeoutLocked(std::chrono::milliseconds floor) const;

  mutable std::mutex mu_;
  bool seeded_ = false;
  double srtt_ms_ = 0;
  double rttvar_ms_ = 0;
  Clock::time_point latest_acked_delivery_{};
  Clock::time_point last_ack_{};
};

struct AgentOptions {
  codec::TopicKind kind = codec::TopicKind::kRollerEvents;
  // Publish on the /json form of the topic instead of binary protobuf.
  bool json = false;
  size_t max_batch_events = 100;
  // The floor of the wait for an ack before resending (AckTimer).
  std::chrono::milliseconds ack_timeout{3000};
  // Shared by a fleet's agents; null: the agent keeps its own.
  std::shared_ptr<AckTimer> ack_timer;
};

// How a session start was decided at the edge.
struct Authorization {
  bool allowed = false;
  // No answer from the server in time: decided here from the cached state.
  bool offline = false;
  rollertrace::v1::Decision decision;
};

struct AgentStats {
  size_t pending = 0;
  int64_t oldest_pending_unix_ms = 0;
  uint64_t published_events = 0;
  uint64_t resends = 0;
  uint64_t acked_events = 0;
  uint64_t sessions_allowed = 0;
  uint64_t sessions_refused = 0;
  uint64_t offline_decisions = 0;
  uint64_t quarantined = 0;  // spooled events found corrupt and set aside
  bool locked = false;
};

class DeviceAgent {
 public:
  using Clock = std::chrono::steady_clock;

  // Borrows `spool`, which must outlive the agent. Takes up the state the
  // spool kept for offline decisions (the server's last snapshot and this
  // device's events since), so a restarted agent decides as before.
  DeviceAgent(Spool& spool, AgentOptions options);
  DeviceAgent(const DeviceAgent&) = delete;
  DeviceAgent& operator=(const DeviceAgent&) = delete;

  // Spools an event (stamped with device id and sequence) before it is sent.
  absl::StatusOr<rollertrace::v1::Event> Record(rollertrace::v1::Event event, uint64_t source_cursor);
  // Handles a payload from the device's ack topic; malformed ones are ignored.
  void OnAck(const std::string& payload);
  // After a (re)connect everything pending goes out again.
  void OnConnected();
  // The broker acknowledged the batch this agent published ending at
  // `through` (its PUBACK). The wait for ingestd's ack counts from the latest
  // such moment, not from the publish call: a batch still in the MQTT
  // client's own send queue is not lost (a fleet's thousand clients share one
  // send thread, and counting that queue resent thousands of batches not yet
  // sent). Pump's publisher calls it; tests call it with their own clock.
  void OnDelivered(uint64_t through, Clock::time_point when);
  // Publishes what is due, and everything pending again when a batch is
  // lost: after a reconnect, when a batch the broker took later was acked
  // (AckTimer::Overtaken), or when no ack came for the wait AckTimer learnt
  // while the whole fleet heard nothing either (a fleet still hearing acks
  // is working through a backlog; up to kMaxWait). Thread-safe with the
  // calls above.
  void Pump(const Publisher& publish, Clock::time_point now);
  static constexpr std::chrono::milliseconds kMaxWait{60000};

  // Asks the server (rollers/{id}/authorize) whether this session may start
  // and waits up to `timeout` for the decision. Without one it decides
  // locally with the same rules from the last state the server sent, updated
  // by this device's own events, and marks the decision offline. A locked
  // roller is refused without asking. Blocks; not on the MQTT callback thread.
  Authorization Authorize(const rollertrace::v1::SessionStarted& session, int64_t start_unix_ms,
                          const Publisher& publish, std::chrono::milliseconds timeout);
  // Payloads of rollers/{id}/decision and rollers/{id}/command.
  void OnDecision(const std::string& payload);
  void OnCommand(const std::string& payload);
  bool locked() const;

  AgentStats stats() const;
  const std::string& device_id() const { return spool_.device_id(); }

 private:
  Spool& spool_;
  const AgentOptions options_;
  const std::string topic_;
  // Pump's state. Pump may block inside the MQTT client, so OnAck and
  // OnConnected, which run on the client's callback thread, never take mu_:
  // they only touch the spool and the atomics below.
  mutable std::mutex mu_;
  uint64_t sent_through_ = 0;  // highest sequence published on this connection
  Clock::time_point last_progress_ = Clock::now();
  std::chrono::milliseconds current_timeout_;
  uint64_t published_events_ = 0;
  uint64_t resends_ = 0;

  // Authorisation state, guarded by auth_mu_ (never held while publishing).
  mutable std::mutex auth_mu_;
  std::condition_variable auth_cv_;
  std::map<std::string, rollertrace::v1::Decision> answers_;  // by correlation id, only while awaited
  std::set<std::string> awaited_;  // correlation ids an Authorize call still waits for
  uint64_t next_correlation_ = 1;
  rules::RollerFacts cache_;  // the server's last snapshot plus our own events since
  std::string bound_patient_ref_;
  std::string open_session_patient_ref_;  // of the session this device has open; empty when unknown
  bool cache_patient_bound_ = false;  // from the server's last snapshot
  bool locked_ = false;
  std::string lock_reason_;
  uint64_t sessions_allowed_ = 0;
  uint64_t sessions_refused_ = 0;
  uint64_t offline_decisions_ = 0;
  rules::Policy policy_;
  // Folds one of the device's own events into the cache. REQUIRES: auth_mu_.
  void NoteLocked(const rollertrace::v1::Event& event);
  void NoteRecorded(const rollertrace::v1::Event& event);
  // The cache as the spool keeps it. REQUIRES: auth_mu_.
  rollertrace::v1::AgentState StateLocked() const;
  void SaveStateLocked(bool sync);
  uint64_t through_sequence_ = 0;  // own events folded into cache_

  // Batches published on this connection and not yet acked, oldest first:
  // for round-trip samples (first sends only: Karn) and to tell when one is
  // lost (AckTimer). Cleared by a resend. Own lock: OnAck and OnDelivered
  // take it, and it is never held while publishing.
  struct InFlight {
    uint64_t first = 0;
    uint64_t through = 0;
    Clock::time_point sent;
    std::optional<Clock::time_point> delivered;  // the broker's PUBACK
    bool first_send = false;
  };
  // Settled once the spool holds none of its events (an ack may cover a
  // batch in pieces: its contiguous part and committed ranges).
  bool Settled(const InFlight& batch) const;
  std::shared_ptr<AckTimer> ack_timer_;
  std::mutex rtt_mu_;
  std::deque<InFlight> in_flight_;
  uint64_t highest_published_ = 0;  // guarded by mu_

  std::atomic<bool> resend_all_{true};
  std::atomic<int64_t> last_ack_ns_{0};  // steady clock of the last ack that freed events
  std::atomic<uint64_t> acked_events_{0};
};

}  // namespace rollertrace::edge
