// EventReader: the bridge's event connection to the broker, in a child
// process of its own, so that it can be stopped without stopping anything else.
//
// Why a process: backpressure means not reading from the broker while the
// bridge's queue is full. Paho C sends a QoS 1 PUBACK as soon as it reads a
// message and then calls the message callback with one process-wide mutex
// held, so a callback that waits for room would stall every other MQTT
// client of the process (the control connection, the acks) — a deadlock. In
// the child the callback may wait: it writes each message to a socket that
// the parent reads only while it has room; when the socket is full the
// child's Paho stops reading and the broker keeps the rest for the
// persistent session. The socket's buffer is small (kSocketBytes, and the
// parent reads at most child::FrameReader::kReadAhead ahead), so it adds
// little to what a killed bridge can lose (docs/ARCHITECTURE.md).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bridge/child.h"
#include "mqtt/mqtt_client.h"

namespace rollertrace::bridge {

class EventReader {
 public:
  struct Options {
    mqtt::MqttOptions mqtt;
    std::vector<std::string> filters;  // subscribed at QoS 1
    // The bridge binary; the child runs it as `<executable> --event-reader`.
    std::string executable = "/proc/self/exe";
    int nice = 0;  // the child's nice value (child::Spawn); bulk work
  };
  enum class FrameType : char { kMessage = 'M', kConnected = 'C', kLost = 'L' };
  struct Frame {
    FrameType type;
    std::string topic;
    std::string payload;
  };
  // Buffer of the socket between child and parent.
  static constexpr int kSocketBytes = 64 * 1024;

  // Starts the child and hands it its options over the socket.
  static absl::StatusOr<std::unique_ptr<EventReader>> Spawn(const Options& options);
  // Stops the child (SIGTERM, then SIGKILL) and reaps it.
  ~EventReader();
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  // Waits for the child's next frame; false once the child is gone.
  bool Next(Frame* frame);
  // Ends a Next() that waits (from another thread).
  void Interrupt();
  pid_t pid() const { return pid_; }

 private:
  EventReader(pid_t pid, int fd) : pid_(pid), fd_(fd), frames_(fd) {}
  pid_t pid_;
  int fd_;
  child::FrameReader frames_;
};

// The child's main (`mqtt-bridge --event-reader`): reads its options from
// descriptor 3, connects, and writes a frame per message and per connection
// change until the parent goes away. Returns the exit code.
int RunEventReaderChild();

}  // namespace rollertrace::bridge
