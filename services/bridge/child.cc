#include "bridge/child.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <algorithm>
#include <cstring>
#include <iostream>
#include <thread>

#include "process/priority.h"
#include "util/cat.h"

extern char** environ;

namespace rollertrace::bridge::child {
namespace {

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    // A socket always; no SIGPIPE when the other side is gone.
    const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
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

// The options as "key\tvalue" lines.
std::string EncodeOptions(const mqtt::MqttOptions& o, const std::vector<std::string>& filters) {
  std::string text;
  auto add = [&](const char* key, const std::string& value) { text += util::Cat(key, "\t", value, "\n"); };
  add("uri", o.server_uri);
  add("ca_file", o.ca_file);
  add("client_id", o.client_id);
  add("username", o.username);
  add("password", o.password);
  add("clean_session", o.clean_session ? "1" : "0");
  add("session_expiry", std::to_string(o.session_expiry.count()));
  add("tcp_nodelay", o.tcp_nodelay ? "1" : "0");
  add("max_buffered_messages", std::to_string(o.max_buffered_messages));
  for (const auto& f : filters) add("filter", f);
  return text;
}

void DecodeOptions(const std::string& text, mqtt::MqttOptions* o, std::vector<std::string>* filters) {
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    const std::string line = text.substr(start, end - start);
    start = end == std::string::npos ? text.size() : end + 1;
    const size_t tab = line.find('\t');
    if (tab == std::string::npos) continue;
    const std::string key = line.substr(0, tab), value = line.substr(tab + 1);
    if (key == "uri") o->server_uri = value;
    if (key == "ca_file") o->ca_file = value;
    if (key == "client_id") o->client_id = value;
    if (key == "username") o->username = value;
    if (key == "password") o->password = value;
    if (key == "clean_session") o->clean_session = value == "1";
    if (key == "session_expiry") o->session_expiry = std::chrono::seconds(std::atoll(value.c_str()));
    if (key == "tcp_nodelay") o->tcp_nodelay = value == "1";
    if (key == "max_buffered_messages") o->max_buffered_messages = std::atoi(value.c_str());
    if (key == "filter") filters->push_back(value);
  }
}

}  // namespace

void AppendFrame(std::string* frames, char type, std::string_view topic, std::string_view payload) {
  frames->reserve(frames->size() + 9 + topic.size() + payload.size());
  frames->push_back(type);
  PutU32(frames, static_cast<uint32_t>(topic.size()));
  PutU32(frames, static_cast<uint32_t>(payload.size()));
  frames->append(topic);
  frames->append(payload);
}

bool WriteFrames(int fd, const std::string& frames) { return WriteAll(fd, frames.data(), frames.size()); }

bool WriteFrame(int fd, char type, const std::string& topic, const std::string& payload) {
  std::string frame;
  AppendFrame(&frame, type, topic, payload);
  return WriteFrames(fd, frame);
}

bool FrameReader::Fill(size_t n) {
  while (buffer_.size() - start_ < n) {
    if (start_ > 0) {
      buffer_.erase(0, start_);
      start_ = 0;
    }
    const size_t have = buffer_.size();
    buffer_.resize(have + std::max(n - have, read_ahead_));
    const ssize_t got = read(fd_, buffer_.data() + have, buffer_.size() - have);
    buffer_.resize(have + static_cast<size_t>(std::max<ssize_t>(got, 0)));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
  }
  return true;
}

bool FrameReader::Next(Frame* frame) {
  if (!Fill(9)) return false;
  const char* header = buffer_.data() + start_;
  const char type = header[0];
  const uint32_t topic = GetU32(header + 1), payload = GetU32(header + 5);
  if (topic > (1u << 16) || payload > (1u << 28)) return false;
  if (!Fill(9 + size_t{topic} + payload)) return false;
  const char* body = buffer_.data() + start_ + 9;
  frame->type = type;
  frame->topic.assign(body, topic);
  frame->payload.assign(body + topic, payload);
  start_ += 9 + size_t{topic} + payload;
  return true;
}

absl::StatusOr<Spawned> Spawn(std::string executable, const std::string& flag, int socket_bytes,
                              const mqtt::MqttOptions& mqtt, const std::vector<std::string>& filters, int nice) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return absl::InternalError(util::Cat("socketpair: ", std::strerror(errno)));
  }
  for (int fd : fds) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &socket_bytes, sizeof socket_bytes);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &socket_bytes, sizeof socket_bytes);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], kChildFd);  // dup2 clears CLOEXEC on the copy
  if (executable == "/proc/self/exe") {
    // The real path, so that ps names the child for what it is.
    char path[4096];
    const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n > 0) executable.assign(path, static_cast<size_t>(n));
  }
  std::string arg = flag;
  char* argv[] = {executable.data(), arg.data(), nullptr};
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, executable.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return absl::InternalError(util::Cat("cannot start ", executable, " ", flag, ": ", std::strerror(rc)));
  }
  if (absl::Status lowered = process::LowerThread(pid, nice); !lowered.ok()) {
    std::cerr << "mqtt-bridge: " << flag << ": " << lowered.message() << std::endl;
  }
  if (!WriteFrame(fds[0], 'M', "options", EncodeOptions(mqtt, filters))) {
    Stop(pid, fds[0]);
    return absl::InternalError(util::Cat("cannot hand ", executable, " ", flag, " its options"));
  }
  return Spawned{pid, fds[0]};
}

void Stop(pid_t pid, int fd) {
  shutdown(fd, SHUT_RDWR);
  kill(pid, SIGTERM);
  for (int i = 0; i < 50; ++i) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) {
      close(fd);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  close(fd);
}

bool StartChild(mqtt::MqttOptions* mqtt, std::vector<std::string>* filters) {
  // Gone with the bridge: a killed parent must not leave a child behind (an
  // event reader would take, and acknowledge, messages nobody forwards).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return false;
  signal(SIGPIPE, SIG_IGN);
  // Nothing past the options may be read ahead: the child's own reader goes on.
  FrameReader reader(kChildFd, 0);
  Frame options;
  if (!reader.Next(&options)) return false;
  DecodeOptions(options.payload, mqtt, filters);
  return true;
}

}  // namespace rollertrace::bridge::child
