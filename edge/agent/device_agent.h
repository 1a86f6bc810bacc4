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
#include <string>

#include "absl/status/statusor.h"
#include "agent/spool.h"
#include "codec/codec.h"

namespace rollertrace::edge {

// Publishes one payload at QoS 1; Unavailable when it cannot now.
using Publisher = std::function<absl::Status(const std::string& topic, const std::string& payload)>;

struct AgentOptions {
  codec::TopicKind kind = codec::TopicKind::kRollerEvents;
  // Publish on the /json form of the topic instead of binary protobuf.
  bool json = false;
  size_t max_batch_events = 100;
  std::chrono::milliseconds ack_timeout{3000};
};

struct AgentStats {
  size_t pending = 0;
  int64_t oldest_pending_unix_ms = 0;
  uint64_t published_events = 0;
  uint64_t resends = 0;
  uint64_t acked_events = 0;
};

class DeviceAgent {
 public:
  using Clock = std::chrono::steady_clock;

  // Borrows `spool`, which must outlive the agent.
  DeviceAgent(Spool& spool, AgentOptions options);
  DeviceAgent(const DeviceAgent&) = delete;
  DeviceAgent& operator=(const DeviceAgent&) = delete;

  // Spools an event (stamped with device id and sequence) before it is sent.
  absl::StatusOr<rollertrace::v1::Event> Record(rollertrace::v1::Event event, uint64_t source_cursor);
  // Handles a payload from the device's ack topic; malformed ones are ignored.
  void OnAck(const std::string& payload);
  // After a (re)connect everything pending goes out again.
  void OnConnected();
  // Publishes what is due. Thread-safe with the calls above.
  void Pump(const Publisher& publish, Clock::time_point now);

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

  std::atomic<bool> resend_all_{true};
  std::atomic<int64_t> last_ack_ns_{0};  // steady clock of the last ack that freed events
  std::atomic<uint64_t> acked_events_{0};
};

}  // namespace rollertrace::edge
