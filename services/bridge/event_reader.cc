#include "bridge/event_reader.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>

#include "util/cat.h"

extern char** environ;

namespace rollertrace::bridge {
namespace {

constexpr int kChildFd = 3;

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool ReadAll(int fd, char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

void PutU32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// type, be32(topic size), be32(payload size), topic, payload.
bool WriteFrame(int fd, EventReader::FrameType type, const std::string& topic, const std::string& payload) {
  std::string header(1, static_cast<char>(type));
  PutU32(&header, static_cast<uint32_t>(topic.size()));
  PutU32(&header, static_cast<uint32_t>(payload.size()));
  return WriteAll(fd, header.data(), header.size()) && WriteAll(fd, topic.data(), topic.size()) &&
         WriteAll(fd, payload.data(), payload.size());
}

bool ReadFrame(int fd, EventReader::Frame* frame) {
  char header[9];
  if (!ReadAll(fd, header, sizeof header)) return false;
  frame->type = static_cast<EventReader::FrameType>(header[0]);
  const uint32_t topic = GetU32(header + 1), payload = GetU32(header + 5);
  if (topic > (1u << 16) || payload > (1u << 28)) return false;
  frame->topic.resize(topic);
  frame->payload.resize(payload);
  return ReadAll(fd, frame->topic.data(), topic) && ReadAll(fd, frame->payload.data(), payload);
}

// The child's options as one message frame: "key\tvalue" lines.
std::string EncodeOptions(const EventReader::Options& o) {
  std::string text;
  auto add = [&](const char* key, const std::string& value) { text += util::Cat(key, "\t", value, "\n"); };
  add("uri", o.mqtt.server_uri);
  add("ca_file", o.mqtt.ca_file);
  add("client_id", o.mqtt.client_id);
  add("username", o.mqtt.username);
  add("password", o.mqtt.password);
  add("clean_session", o.mqtt.clean_session ? "1" : "0");
  for (const auto& f : o.filters) add("filter", f);
  return text;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EventReader>> EventReader::Spawn(const Options& options) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return absl::InternalError(util::Cat("socketpair: ", std::strerror(errno)));
  }
  for (int fd : fds) {
    const int bytes = kSocketBytes;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], kChildFd);  // dup2 clears CLOEXEC on the copy
  std::string exe = options.executable, flag = "--event-reader";
  if (exe == "/proc/self/exe") {
    // The real path, so that ps names the child for what it is.
    char path[4096];
    const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n > 0) exe.assign(path, static_cast<size_t>(n));
  }
  char* argv[] = {exe.data(), flag.data(), nullptr};
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return absl::InternalError(util::Cat("cannot start the event reader ", exe, ": ", std::strerror(rc)));
  }
  std::unique_ptr<EventReader> reader(new EventReader(pid, fds[0]));
  if (!WriteFrame(fds[0], FrameType::kMessage, "options", EncodeOptions(options))) {
    return absl::InternalError("cannot hand the event reader its options");
  }
  return reader;
}

EventReader::~EventReader() {
  Interrupt();
  kill(pid_, SIGTERM);
  for (int i = 0; i < 50; ++i) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      close(fd_);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  close(fd_);
}

bool EventReader::Next(Frame* frame) { return ReadFrame(fd_, frame); }

void EventReader::Interrupt() { shutdown(fd_, SHUT_RDWR); }

int RunEventReaderChild() {
  // Gone with the bridge: a killed parent must not leave a reader taking
  // (and acknowledging) messages that nobody forwards.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 1;
  signal(SIGPIPE, SIG_IGN);
  EventReader::Frame options_frame;
  if (!ReadFrame(kChildFd, &options_frame)) return 2;
  mqtt::MqttOptions mo;
  std::vector<std::string> filters;
  size_t start = 0;
  const std::string& text = options_frame.payload;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    const std::string line = text.substr(start, end - start);
    start = end == std::string::npos ? text.size() : end + 1;
    const size_t tab = line.find('\t');
    if (tab == std::string::npos) continue;
    const std::string key = line.substr(0, tab), value = line.substr(tab + 1);
    if (key == "uri") mo.server_uri = value;
    if (key == "ca_file") mo.ca_file = value;
    if (key == "client_id") mo.client_id = value;
    if (key == "username") mo.username = value;
    if (key == "password") mo.password = value;
    if (key == "clean_session") mo.clean_session = value == "1";
    if (key == "filter") filters.push_back(value);
  }
  mqtt::MqttClient client(mo);
  for (const auto& f : filters) client.Subscribe(f, 1);
  // Blocks while the parent has no room: this is the backpressure.
  client.OnMessage([](const std::string& topic, const std::string& payload) {
    if (!WriteFrame(kChildFd, EventReader::FrameType::kMessage, topic, payload)) _exit(0);
  });
  client.OnConnected([] { (void)WriteFrame(kChildFd, EventReader::FrameType::kConnected, "", ""); });
  client.OnConnectionLost([] { (void)WriteFrame(kChildFd, EventReader::FrameType::kLost, "", ""); });
  client.Start();
  // Until the parent closes its end.
  char byte;
  while (read(kChildFd, &byte, 1) > 0) {
  }
  // The parent is gone: leave at once, without a clean disconnect that could
  // still take (and acknowledge) messages nobody will forward.
  _exit(0);
}

}  // namespace rollertrace::bridge
