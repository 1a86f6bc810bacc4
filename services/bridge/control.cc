// The bridge's control side: authorisation requests answered by a pool of
// threads (each with its own stub, all on one channel with a connection to
// ingestd of its own), and what the bridge publishes to devices
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
  absl::StatusOr<rollertrace::v1::AuthorizeRequest> request =
      codec::DecodeAuthorize(device_id, payload, options_.max_payload_bytes);
  if (!request.ok()) {
    rejected_.Add({{"reason", std::string(codec::RejectReason(request.status()))}}).Increment();
    std::cerr << "mqtt-bridge: rejected authorisation: " << request.status().message() << std::endl;
    return;
  }
  {
    std::lock_guard<std::mutex> lock(authorize_mu_);
    if (authorize_queue_.size() >= 10000) {
      authorizations_.Add({{"result", "dropped"}}).Increment();
      return;  // the agent decides offline when no answer comes
    }
    authorize_queue_.push_back({std::chrono::steady_clock::now(), std::move(*request)});
  }
  authorize_cv_.notify_one();
}

void Bridge::RunAuthorizer() {
  pthread_setname_np(pthread_self(), "bridge-authz");
  auto stub = rollertrace::v1::ComplianceService::NewStub(decision_channel_);
  while (true) {
    rollertrace::v1::AuthorizeRequest request;
    std::chrono::steady_clock::time_point taken;
    {
      std::unique_lock<std::mutex> lock(authorize_mu_);
      authorize_cv_.wait(lock, [this] { return stopping_ || !authorize_queue_.empty(); });
      if (stopping_) return;
      taken = authorize_queue_.front().taken;
      request = std::move(authorize_queue_.front().request);
      authorize_queue_.pop_front();
    }
    const auto dequeued = std::chrono::steady_clock::now();
    authorize_queued_seconds_.Observe(std::chrono::duration<double>(dequeued - taken).count());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!options_.ingestd_token.empty()) context.AddMetadata("authorization", "Bearer " + options_.ingestd_token);
    rollertrace::v1::Decision decision;
    grpc::Status s = stub->AuthorizeUse(&context, request, &decision);
    authorize_ingestd_seconds_.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - dequeued).count());
    if (!s.ok()) {
      authorizations_.Add({{"result", "error"}}).Increment();
      std::cerr << "mqtt-bridge: authorisation for " << request.device_id() << " failed: " << s.error_message()
                << std::endl;
      continue;
    }
    authorizations_.Add({{"result", decision.allowed() ? "allow" : "deny"}}).Increment();
    // Without an answer the roller decides offline (and says so).
    if (PublishControl(codec::DecisionTopic(request.device_id()), decision.SerializeAsString(), "decision")) {
      authorize_seconds_.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - taken).count());
    }
  }
}

void Bridge::PublishCommand(const rollertrace::v1::Command& command) {
  // Confirmed to ingestd once the broker has it; until then ingestd owes it
  // (and sends it again if this bridge goes away first).
  std::function<void()> delivered;
  const uint64_t index = command.outbox_index();
  if (index != 0) {
    delivered = [this, index] {
      {
        std::lock_guard<std::mutex> lock(mu_);
        published_commands_.push_back(index);
      }
      cv_.notify_all();
    };
  }
  if (PublishControl(codec::CommandTopic(command.device_id()), command.SerializeAsString(), "command",
                     std::move(delivered))) {
    commands_published_.Increment();
  } else if (index != 0) {
    // The control connection is not up (yet): tried again once it is.
    std::lock_guard<std::mutex> lock(mu_);
    unpublished_commands_.push_back(command);
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
