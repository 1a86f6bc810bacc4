// What the bridge's child processes share: the bridge binary run again with a
// flag (`--event-reader`, `--ack-publisher`), a socket pair as descriptor 3 in
// the child, frames over it, and the child's MQTT options as the first frame.
// Each child holds one MQTT connection of its own, because Paho C serves every
// client of a process with one send thread, one receive thread and one mutex
// (event_reader.h, ack_publisher.h say why each needs that).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "mqtt/mqtt_client.h"

namespace rollertrace::bridge::child {

// The child's end of the socket pair.
constexpr int kChildFd = 3;

struct Frame {
  char type = 0;
  std::string topic;
  std::string payload;
};
// type, be32(topic size), be32(payload size), topic, payload: one send.
bool WriteFrame(int fd, char type, const std::string& topic, const std::string& payload);
// Appends one frame to `frames`, to be written with others in one send.
void AppendFrame(std::string* frames, char type, std::string_view topic, std::string_view payload);
// Writes frames built with AppendFrame; false when the other side is gone.
bool WriteFrames(int fd, const std::string& frames);

// Reads frames from one descriptor, up to kReadAhead bytes at a time (a
// frame costs one read, not three, on machines where system calls are dear;
// 64 KiB, the event reader's socket buffer, takes what a JSON burst has
// queued there in one read: 8 KiB took about one read per 6 KiB JSON message).
// What it reads ahead is held in memory: a killed bridge loses it with the
// rest of what it held (docs/ARCHITECTURE.md).
class FrameReader {
 public:
  static constexpr size_t kReadAhead = 64 * 1024;
  // With read_ahead 0, reads no byte past the frame (for a descriptor that
  // another reader goes on with).
  explicit FrameReader(int fd, size_t read_ahead = kReadAhead) : fd_(fd), read_ahead_(read_ahead) {}
  // False at the end of the stream, on an error or an oversized frame.
  bool Next(Frame* frame);

 private:
  // Makes `n` bytes available at buffer_[start_]; false when the stream ends first.
  bool Fill(size_t n);
  int fd_;
  size_t read_ahead_;
  std::string buffer_;
  size_t start_ = 0;
};

struct Spawned {
  pid_t pid;
  int fd;  // the parent's end
};
// Runs `executable flag` with the socket pair (each direction buffered
// `socket_bytes`) and hands it `mqtt` and `filters` as its first frame. With
// `nice` above 0 the child runs at that nice value (process/priority.h): set
// before the first frame, which the child waits for before it starts a
// thread, so all of its threads have it.
absl::StatusOr<Spawned> Spawn(std::string executable, const std::string& flag, int socket_bytes,
                              const mqtt::MqttOptions& mqtt, const std::vector<std::string>& filters, int nice = 0);
// SIGTERM, then SIGKILL after a second; reaps the child and closes `fd`.
void Stop(pid_t pid, int fd);

// In the child: dies with the parent, ignores SIGPIPE, and reads its options.
// False when the parent is gone already or sent no options.
bool StartChild(mqtt::MqttOptions* mqtt, std::vector<std::string>* filters);

}  // namespace rollertrace::bridge::child
