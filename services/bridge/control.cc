// The bridge's control side: authorisation requests handed to the
// authorizer (authorizer.h), and what the bridge publishes to devices
// on its control connection (decisions and device commands, each command
// confirmed to ingestd once the broker has it),
// waiting while Paho's queue is full. Acks leave from the ack publisher
// process (ack_publisher.h).
#include <grpcpp/grpcpp.h>
#include <pthread.h>

#include <iostream>
#include <thread>

#include "bridge/bridge.h"

namespace rollertrace::bridge {
namespace {

// How long a decision or command waits for room in Paho's queue.
constexpr auto kControlPublishWait = std::chrono::seconds(5);

}  // namespace

void Bridge::OnAuthorize(const std::string& device_id, const std::string& payload) {
  const auto taken = std::chrono::steady_clock::now();
  absl::StatusOr<rollertrace::v1::AuthorizeRequest> request =
      codec::DecodeAuthorize(device_id, payload, options_.max_payload_bytes);
  if (!request.ok()) {
    rejected_.Add({{"reason", std::string(codec::RejectReason(request.status()))}}).Increment();
    std::cerr << "mqtt-bridge: rejected authorisation: " << request.status().message() << std::endl;
    return;
  }
  if (authorizer_ != nullptr) authorizer_->Submit(taken, std::move(*request));
}

void Bridge::PublishCommand(const rollertrace::v1::Command& command) {
  // Confirmed to ingestd once the broker has it; until then ingestd owes it
  // (and sends it again if this bridge goes away first).
  std::function<void()> delivered;
  const uint64_t index = command.outbox_index();
  if (index != 0) delivered = [this, index] { forwarder_->CommandPublished(index); };
  if (PublishControl(codec::CommandTopic(command.device_id()), command.SerializeAsString(), "command",
                     std::move(delivered))) {
    commands_published_.Increment();
  } else if (index != 0) {
    // The control connection is not up (yet): tried again once it is.
    forwarder_->CommandNotPublished(command);
  }
}

bool Bridge::PublishControl(const std::string& topic, const std::string& payload, const char* what,
                            std::function<void()> delivered) {
  const auto deadline = std::chrono::steady_clock::now() + kControlPublishWait;
  absl::Status s;
  // A full Paho queue is waited out (this thread then stops taking ingestd's
  // answers, and the backpressure reaches the broker); a lost connection is not.
  while (absl::IsResourceExhausted(s = control_.Publish(topic, payload, 1, false, delivered)) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (s.ok()) return true;
  publish_failures_.Add({{"what", what}}).Increment();
  return false;
}

}  // namespace rollertrace::bridge
