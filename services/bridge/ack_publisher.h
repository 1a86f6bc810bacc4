// AckPublisher: the bridge's acks to devices, published by a child process
// with an MQTT connection of its own (client id and user name: the bridge's
// + "-acks").
//
// Acks go out at QoS 0 (docs/ARCHITECTURE.md, "Acks go out at QoS 0"): a lost
// ack costs the device a resend, never an event, and at QoS 1 reading each
// ack's PUBACK was a third of the bridge's CPU in a burst.
//
// Why a process: Paho C serves every client of a process with one send and
// one receive thread. During a burst the bridge publishes an ack per device
// per answered request (about 20,000 for a million events); at QoS 1, with
// their PUBACKs, on the control connection they queued in front of the
// decisions a clinician waits for (p99 57 ms during a 1M burst, 23 ms with no
// acks at all; docs/BENCHMARKS.md). Not through the event reader child: its
// message callback blocks while the bridge has no room (the backpressure),
// holding Paho's process-wide mutex, and an ack published there would wait
// for the room that only acked requests make.
//
// Publish never drops: when the child's Paho queue is full it stops reading
// the socket, the socket fills and Publish waits (backpressure onto the
// thread that reads ingestd's answers). The child reports each ack it could
// not publish (connection down for more than a moment) as a frame back;
// such an ack is lost like any unpublished ack, and the device sends the
// batch again.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "mqtt/mqtt_client.h"

namespace rollertrace::bridge {

class AckPublisher {
 public:
  struct Options {
    mqtt::MqttOptions mqtt;
    // The bridge binary; the child runs it as `<executable> --ack-publisher`.
    std::string executable = "/proc/self/exe";
    int nice = 0;  // the child's nice value (child::Spawn); acks are bulk work
    // Called (on a thread of this object) for each ack the child could not publish.
    std::function<void()> on_failure;
  };
  static constexpr int kSocketBytes = 256 * 1024;

  // Starts the child.
  explicit AckPublisher(Options options);
  // Stops the child.
  ~AckPublisher();
  AckPublisher(const AckPublisher&) = delete;
  AckPublisher& operator=(const AckPublisher&) = delete;

  struct Ack {
    std::string topic;
    std::string payload;
  };
  // Hands acks to the child in one write, starting it (again) when it is not
  // running; waits while the child is behind. Unavailable when no child could
  // take them. Thread-safe.
  absl::Status Publish(const std::vector<Ack>& acks);

 private:
  struct Child;
  absl::Status StartLocked();
  void StopLocked();

  Options options_;
  std::mutex mu_;
  std::unique_ptr<Child> child_;  // guarded by mu_
};

// The child's main (`mqtt-bridge --ack-publisher`): reads its options from
// descriptor 3, connects, and publishes each frame at QoS 0 until the parent
// goes away. Returns the exit code.
int RunAckPublisherChild();

}  // namespace rollertrace::bridge
