#include "bridge/bridge.h"

#include "bridge/event_reader.h"
#include "process/priority.h"

#include <grpcpp/grpcpp.h>
#include <pthread.h>

#include <iostream>

namespace rollertrace::bridge {

namespace {

constexpr int kControlBufferedMessages = 10000;

// The connection `suffix` names: "" the event connection (persistent
// session), "-control" and "-acks" the others (clean sessions).
mqtt::MqttOptions MqttOptionsFor(const BridgeOptions& options, const std::string& suffix) {
  mqtt::MqttOptions m;
  m.server_uri = options.mqtt_uri;
  m.ca_file = options.mqtt_ca_file;
  m.client_id = options.mqtt_client_id + suffix;
  m.username = options.mqtt_username.empty() ? "" : options.mqtt_username + suffix;
  m.password = options.mqtt_password;
  m.clean_session = !suffix.empty();
  if (suffix.empty()) m.session_expiry = options.session_expiry;
  m.tcp_nodelay = true;
  // These connections answer every device: Paho's default of 100 queued
  // publishes dropped about one ack in five under a 10,000-roller fleet.
  // Beyond this bound the bridge waits (PublishControl, AckPublisher).
  if (!suffix.empty()) m.max_buffered_messages = kControlBufferedMessages;
  return m;
}

// Mosquitto's count of messages it holds (queued and in flight, all clients).
constexpr char kBrokerStoredTopic[] = "$SYS/broker/store/messages/count";

}  // namespace

Bridge::Bridge(BridgeOptions options, metrics::Metrics& metrics)
    : options_(std::move(options)),
      control_(MqttOptionsFor(options_, "-control")),
      received_(metrics.Counter("rollertrace_bridge_messages_received_total",
                                "MQTT messages taken from device topics, by topic kind")),
      rejected_(metrics.Counter("rollertrace_bridge_messages_rejected_total",
                                "MQTT messages refused before forwarding, by reason")),
      acks_published_(
          metrics.Counter("rollertrace_bridge_acks_published_total", "Acks published to devices").Add({})),
      publish_failures_(metrics.Counter("rollertrace_bridge_publish_failures_total",
                                        "Acks, decisions and commands the MQTT client would not take, by what")),
      broker_stored_(metrics
                         .Gauge("rollertrace_bridge_broker_stored_messages",
                                "Messages the broker holds, from $SYS/broker/store/messages/count")
                         .Add({})),
      mqtt_connected_(metrics.Gauge("rollertrace_bridge_mqtt_connected", "1 while connected to the broker").Add({})),
      mqtt_reconnects_(
          metrics.Counter("rollertrace_bridge_mqtt_reconnects_total", "Reconnections to the MQTT broker").Add({})),
      commands_published_(metrics.Counter("rollertrace_bridge_commands_published_total",
                                          "Commands (lock, unlock, retire) published to devices")
                              .Add({})),
      metrics_(metrics) {
  Forwarder::Options fo;
  // Made here, on the constructing thread (nice 0): gRPC starts its own
  // threads, which the decisions share, from the thread that first needs them.
  fo.channel = IngestdChannel();
  fo.token = options_.ingestd_token;
  fo.max_request_events = options_.max_request_events;
  fo.linger = options_.linger;
  fo.max_inflight_requests = options_.max_inflight_requests;
  fo.max_queued_events = options_.max_queued_events;
  fo.publish_acks = [this](const std::vector<AckPublisher::Ack>& acks) { PublishAcks(acks); };
  fo.publish_command = [this](const rollertrace::v1::Command& command) { PublishCommand(command); };
  fo.can_publish_commands = [this] { return control_up_.load(); };
  // The stream's answers thread, started from this one, inherits its nice value.
  fo.on_thread_start = [this] { LowerThisThread("forwarder"); };
  forwarder_ = std::make_unique<Forwarder>(std::move(fo), metrics);
}

Bridge::~Bridge() { Stop(); }

void Bridge::Start() {
  // Before the threads that lower their priority start: gRPC starts its own
  // threads (which the decisions use) from the thread that first needs them,
  // and they inherit its nice value; this one's is 0.
  Authorizer::Options authorize;
  authorize.channel = IngestdChannel(/*own_connection=*/true);
  authorize.token = options_.ingestd_token;
  authorize.max_inflight = options_.authorize_threads;
  authorize.publish = [this](const std::string& device_id, const rollertrace::v1::Decision& decision) {
    return PublishControl(codec::DecisionTopic(device_id), decision.SerializeAsString(), "decision");
  };
  authorizer_ = std::make_unique<Authorizer>(std::move(authorize), metrics_);
  const std::string share = "$share/" + options_.share_group + "/";
  control_.Subscribe(share + "rollers/+/authorize", 1);
  control_.Subscribe(kBrokerStoredTopic, 0);
  control_.OnMessage(
      [this](const std::string& topic, const std::string& payload) { OnControlMessage(topic, payload); });
  control_.OnConnected([this] {
    if (control_.reconnects() > 0) mqtt_reconnects_.Increment();
    control_up_ = true;
    mqtt_connected_.Set(events_up_ && control_up_ ? 1 : 0);
    std::cerr << "mqtt-bridge: control connection up to " << options_.mqtt_uri << std::endl;
  });
  control_.OnConnectionLost([this] {
    control_up_ = false;
    mqtt_connected_.Set(0);
    std::cerr << "mqtt-bridge: control connection lost, reconnecting" << std::endl;
  });
  control_.Start();
  AckPublisher::Options ao;
  ao.mqtt = MqttOptionsFor(options_, "-acks");
  ao.executable = options_.executable;
  ao.nice = options_.bulk_nice;
  ao.on_failure = [this] { publish_failures_.Add({{"what", "ack"}}).Increment(); };
  acks_ = std::make_unique<AckPublisher>(std::move(ao));
  event_reader_ = std::thread([this] { RunEventReader(); });
  forwarder_->Start();
}

void Bridge::Stop() {
  if (stopping_.exchange(true)) return;
  forwarder_->Stop();  // wakes the event reader if it waits for room
  {
    std::lock_guard<std::mutex> lock(reader_mu_);
    if (reader_ != nullptr) reader_->Interrupt();
  }
  if (event_reader_.joinable()) event_reader_.join();
  control_.Stop();
  acks_.reset();  // after the forwarder's stream reader, which publishes them
  authorizer_.reset();  // after the control connection, which hands it requests
}

void Bridge::RunEventReader() {
  pthread_setname_np(pthread_self(), "bridge-events");
  LowerThisThread("event reader");
  const std::string share = "$share/" + options_.share_group + "/";
  EventReader::Options ro;
  ro.mqtt = MqttOptionsFor(options_, "");
  ro.filters = {share + "rollers/+/events", share + "rollers/+/events/json", share + "sterilisers/+/cycles",
                share + "sterilisers/+/cycles/json"};
  ro.executable = options_.executable;
  ro.nice = options_.bulk_nice;
  std::chrono::milliseconds backoff(100);
  bool ever_up = false;
  while (!stopping_) {
    absl::StatusOr<std::unique_ptr<EventReader>> spawned = EventReader::Spawn(ro);
    if (!spawned.ok()) {
      std::cerr << "mqtt-bridge: " << spawned.status().message() << std::endl;
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      continue;
    }
    std::unique_ptr<EventReader> reader = std::move(*spawned);
    {
      std::lock_guard<std::mutex> lock(reader_mu_);
      reader_ = reader.get();
    }
    if (stopping_) reader->Interrupt();
    EventReader::Frame frame;
    while (!stopping_) {
      // Backpressure: read the next message only when there is room.
      if (!forwarder_->WaitForRoom()) break;
      if (stopping_ || !reader->Next(&frame)) break;
      switch (frame.type) {
        case EventReader::FrameType::kMessage:
          OnMessage(frame.topic, frame.payload);
          break;
        case EventReader::FrameType::kConnected:
          if (ever_up) mqtt_reconnects_.Increment();
          ever_up = true;
          events_up_ = true;
          mqtt_connected_.Set(events_up_ && control_up_ ? 1 : 0);
          std::cerr << "mqtt-bridge: event connection up to " << options_.mqtt_uri << std::endl;
          break;
        case EventReader::FrameType::kLost:
          events_up_ = false;
          mqtt_connected_.Set(0);
          std::cerr << "mqtt-bridge: event connection lost, reconnecting" << std::endl;
          break;
      }
    }
    {
      std::lock_guard<std::mutex> lock(reader_mu_);
      reader_ = nullptr;
    }
    events_up_ = false;
    mqtt_connected_.Set(0);
    if (!stopping_) {
      std::cerr << "mqtt-bridge: the event reader (pid " << reader->pid() << ") stopped; starting another"
                << std::endl;
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }
}

void Bridge::OnControlMessage(const std::string& topic, const std::string& payload) {
  if (topic == kBrokerStoredTopic) {
    try {
      broker_stored_.Set(std::stod(payload));
    } catch (const std::exception&) {
    }
    return;
  }
  if (absl::StatusOr<std::string> roller = codec::ParseAuthorizeTopic(topic); roller.ok()) {
    OnAuthorize(*roller, payload);
    return;
  }
  rejected_.Add({{"reason", "unknown_topic"}}).Increment();
}

void Bridge::OnMessage(const std::string& topic, const std::string& payload) {
  if (absl::StatusOr<std::string> roller = codec::ParseAuthorizeTopic(topic); roller.ok()) {
    OnAuthorize(*roller, payload);
    return;
  }
  absl::StatusOr<codec::Topic> parsed = codec::ParseTopic(topic);
  if (!parsed.ok()) {
    rejected_.Add({{"reason", std::string(codec::RejectReason(parsed.status()))}}).Increment();
    std::cerr << "mqtt-bridge: rejected: " << parsed.status().message() << std::endl;
    return;
  }
  received_.Add({{"topic", std::string(codec::TopicRoot(parsed->kind))}}).Increment();
  absl::StatusOr<rollertrace::v1::EventBatch> batch = codec::DecodeBatch(*parsed, payload, options_.max_payload_bytes);
  if (!batch.ok()) {
    rejected_.Add({{"reason", std::string(codec::RejectReason(batch.status()))}}).Increment();
    std::cerr << "mqtt-bridge: rejected on " << topic << ": " << batch.status().message() << std::endl;
    return;
  }
  const int64_t received_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  forwarder_->Enqueue(parsed->kind, std::move(*batch), received_ms);
}

void Bridge::LowerThisThread(std::string_view what) const {
  if (absl::Status lowered = process::LowerThisThread(options_.bulk_nice); !lowered.ok()) {
    std::cerr << "mqtt-bridge: " << what << ": " << lowered.message() << std::endl;
  }
}

std::shared_ptr<grpc::Channel> Bridge::IngestdChannel(bool own_connection) const {
  grpc::ChannelArguments args;
  if (own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(
      options_.ingestd_address,
      options_.ingestd_credentials ? options_.ingestd_credentials : grpc::InsecureChannelCredentials(), args);
}

void Bridge::PublishAcks(const std::vector<AckPublisher::Ack>& acks) {
  // Lost only with the ack publisher's connection: the device then sends
  // the batch again, and the repeat is acked, not stored twice.
  if (acks_ != nullptr && acks_->Publish(acks).ok()) {
    acks_published_.Increment(static_cast<double>(acks.size()));
  } else {
    publish_failures_.Add({{"what", "ack"}}).Increment(static_cast<double>(acks.size()));
  }
}

}  // namespace rollertrace::bridge
