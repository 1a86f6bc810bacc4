#include "bridge/ack_publisher.h"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <iostream>

#include "bridge/child.h"

namespace rollertrace::bridge {
namespace {

constexpr char kPublish = 'P';
constexpr char kFailed = 'F';
// docs/ARCHITECTURE.md, "Acks go out at QoS 0".
constexpr int kAckQos = 0;
// How long the child waits for room in Paho's queue, or for its connection.
constexpr auto kPublishWait = std::chrono::seconds(5);

}  // namespace

struct AckPublisher::Child {
  child::Spawned process;
  std::thread failures;  // reads the child's failure frames
};

AckPublisher::AckPublisher(Options options) : options_(std::move(options)) {
  // At once, so that its connection is up before the first ack; a child that
  // cannot start now is started by the first Publish.
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = StartLocked(); !s.ok()) std::cerr << "mqtt-bridge: " << s.message() << std::endl;
}

AckPublisher::~AckPublisher() {
  std::lock_guard<std::mutex> lock(mu_);
  StopLocked();
}

absl::Status AckPublisher::StartLocked() {
  absl::StatusOr<child::Spawned> spawned =
      child::Spawn(options_.executable, "--ack-publisher", kSocketBytes, options_.mqtt, {}, options_.nice);
  if (!spawned.ok()) return spawned.status();
  child_ = std::make_unique<Child>();
  child_->process = *spawned;
  const int fd = spawned->fd;
  child_->failures = std::thread([this, fd] {
    child::FrameReader reader(fd);
    child::Frame frame;
    while (reader.Next(&frame)) {
      if (frame.type == kFailed && options_.on_failure) options_.on_failure();
    }
  });
  return absl::OkStatus();
}

void AckPublisher::StopLocked() {
  if (!child_) return;
  shutdown(child_->process.fd, SHUT_RDWR);
  child_->failures.join();
  child::Stop(child_->process.pid, child_->process.fd);
  child_.reset();
}

absl::Status AckPublisher::Publish(const std::vector<Ack>& acks) {
  if (acks.empty()) return absl::OkStatus();
  // One write for them all: a system call an answer, not one an ack.
  std::string frames;
  for (const Ack& ack : acks) child::AppendFrame(&frames, kPublish, ack.topic, ack.payload);
  std::lock_guard<std::mutex> lock(mu_);
  // A child that died is replaced once; what it had taken and not sent is
  // lost like any unpublished ack (the devices send those batches again).
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!child_) {
      if (absl::Status s = StartLocked(); !s.ok()) return absl::UnavailableError(s.message());
    }
    if (child::WriteFrames(child_->process.fd, frames)) return absl::OkStatus();
    std::cerr << "mqtt-bridge: the ack publisher (pid " << child_->process.pid << ") stopped; starting another"
              << std::endl;
    StopLocked();
  }
  return absl::UnavailableError("the ack publisher could not be started");
}

int RunAckPublisherChild() {
  mqtt::MqttOptions mo;
  std::vector<std::string> filters;
  if (!child::StartChild(&mo, &filters)) return 2;
  mqtt::MqttClient client(mo);
  client.Start();
  child::FrameReader reader(child::kChildFd);
  child::Frame frame;
  while (reader.Next(&frame)) {
    if (frame.type != kPublish) continue;
    const auto deadline = std::chrono::steady_clock::now() + kPublishWait;
    absl::Status s;
    while (true) {
      s = client.Publish(frame.topic, frame.payload, kAckQos);
      if (s.ok() || std::chrono::steady_clock::now() >= deadline) break;
      if (absl::IsResourceExhausted(s)) {
        // Paho's queue is full: wait here, and the parent's writes wait too.
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      } else if (!client.WaitConnected(std::chrono::duration_cast<std::chrono::milliseconds>(
                     deadline - std::chrono::steady_clock::now()))) {
        break;
      }
    }
    if (!s.ok()) (void)child::WriteFrame(child::kChildFd, kFailed, frame.topic, "");
  }
  // The parent is gone: acks still queued in Paho go with this process.
  _exit(0);
}

}  // namespace rollertrace::bridge
