#include "bridge/event_reader.h"

#include <sys/socket.h>
#include <unistd.h>

#include "bridge/child.h"

namespace rollertrace::bridge {

absl::StatusOr<std::unique_ptr<EventReader>> EventReader::Spawn(const Options& options) {
  absl::StatusOr<child::Spawned> spawned =
      child::Spawn(options.executable, "--event-reader", kSocketBytes, options.mqtt, options.filters,
                   options.nice);
  if (!spawned.ok()) return spawned.status();
  return std::unique_ptr<EventReader>(new EventReader(spawned->pid, spawned->fd));
}

EventReader::~EventReader() { child::Stop(pid_, fd_); }

bool EventReader::Next(Frame* frame) {
  child::Frame f;
  if (!frames_.Next(&f)) return false;
  frame->type = static_cast<FrameType>(f.type);
  frame->topic = std::move(f.topic);
  frame->payload = std::move(f.payload);
  return true;
}

void EventReader::Interrupt() { shutdown(fd_, SHUT_RDWR); }

int RunEventReaderChild() {
  mqtt::MqttOptions mo;
  std::vector<std::string> filters;
  if (!child::StartChild(&mo, &filters)) return 2;
  mqtt::MqttClient client(mo);
  for (const auto& f : filters) client.Subscribe(f, 1);
  // Blocks while the parent has no room: this is the backpressure.
  client.OnMessage([](const std::string& topic, const std::string& payload) {
    if (!child::WriteFrame(child::kChildFd, static_cast<char>(EventReader::FrameType::kMessage), topic, payload)) {
      _exit(0);
    }
  });
  client.OnConnected(
      [] { (void)child::WriteFrame(child::kChildFd, static_cast<char>(EventReader::FrameType::kConnected), "", ""); });
  client.OnConnectionLost(
      [] { (void)child::WriteFrame(child::kChildFd, static_cast<char>(EventReader::FrameType::kLost), "", ""); });
  client.Start();
  // Until the parent closes its end.
  char byte;
  while (read(child::kChildFd, &byte, 1) > 0) {
  }
  // The parent is gone: leave at once, without a clean disconnect that could
  // still take (and acknowledge) messages nobody will forward.
  _exit(0);
}

}  // namespace rollertrace::bridge
