#include "bridge/bridge.h"

#include "bridge/ack_publisher.h"
#include "bridge/event_reader.h"
#include "process/priority.h"

#include <grpcpp/grpcpp.h>
#include <pthread.h>

#include <iostream>
#include <set>

namespace rollertrace::bridge {

using rollertrace::v1::EventBatch;
using rollertrace::v1::IngestRequest;
using rollertrace::v1::IngestResponse;

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
      ingest_rejected_(metrics.Counter("rollertrace_bridge_ingest_rejections_total",
                                       "Events ingestd refused, by reason, as reported to the bridge")),
      forwarded_(metrics.Counter("rollertrace_bridge_events_forwarded_total", "Events sent to ingestd").Add({})),
      acks_published_(
          metrics.Counter("rollertrace_bridge_acks_published_total", "Acks published to devices").Add({})),
      publish_failures_(metrics.Counter("rollertrace_bridge_publish_failures_total",
                                        "Acks, decisions and commands the MQTT client would not take, by what")),
      blocked_seconds_(metrics
                           .Counter("rollertrace_bridge_blocked_seconds_total",
                                    "Time the bridge stopped reading from the broker because its queue was full")
                           .Add({})),
      broker_stored_(metrics
                         .Gauge("rollertrace_bridge_broker_stored_messages",
                                "Messages the broker holds, from $SYS/broker/store/messages/count")
                         .Add({})),
      stream_restarts_(metrics
                           .Counter("rollertrace_bridge_ingest_stream_restarts_total",
                                    "Times the gRPC stream to ingestd was (re)opened")
                           .Add({})),
      queue_depth_(metrics.Gauge("rollertrace_bridge_queue_events", "Events waiting to be sent to ingestd").Add({})),
      inflight_depth_(
          metrics.Gauge("rollertrace_bridge_inflight_requests", "Requests sent to ingestd and not yet answered")
              .Add({})),
      mqtt_connected_(metrics.Gauge("rollertrace_bridge_mqtt_connected", "1 while connected to the broker").Add({})),
      mqtt_reconnects_(
          metrics.Counter("rollertrace_bridge_mqtt_reconnects_total", "Reconnections to the MQTT broker").Add({})),
      commands_published_(metrics.Counter("rollertrace_bridge_commands_published_total",
                                          "Commands (lock, unlock, retire) published to devices")
                              .Add({})),
      held_back_(metrics.Counter("rollertrace_bridge_ingest_held_back_total",
                                 "Requests ingestd could not store (its store took no writes), queued again unacked")
                     .Add({})),
      metrics_(metrics) {}

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
  forwarder_ = std::thread([this] { RunForwarder(); });
}

void Bridge::Stop() {
  if (stopping_.exchange(true)) return;
  {
    // Under the lock, so that no waiter misses it between its check and its wait.
    std::lock_guard<std::mutex> lock(mu_);
  }
  cv_.notify_all();
  room_cv_.notify_all();
  {
    std::lock_guard<std::mutex> lock(reader_mu_);
    if (reader_ != nullptr) reader_->Interrupt();
  }
  if (event_reader_.joinable()) event_reader_.join();
  control_.Stop();
  if (forwarder_.joinable()) forwarder_.join();
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
      {
        // Backpressure: read the next message only when there is room.
        std::unique_lock<std::mutex> lock(mu_);
        if (queued_events_ >= options_.max_queued_events) {
          const auto blocked = std::chrono::steady_clock::now();
          room_cv_.wait(lock, [this] { return stopping_ || queued_events_ < options_.max_queued_events; });
          blocked_seconds_.Increment(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - blocked).count());
        }
      }
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
  std::unique_lock<std::mutex> lock(mu_);
  // The forwarder waits for a queue that is not empty, or, lingering, for a
  // full request: woken only when this message makes one of those true (a
  // wake-up a message was a system call and a context switch, on machines
  // where both are dear).
  const bool was_empty = queue_.empty();
  const bool was_short = queued_events_ < options_.max_request_events;
  queued_events_ += batch->events_size();
  queue_.push_back(Queued{parsed->kind, std::move(*batch), received_ms});
  queue_depth_.Set(static_cast<double>(queued_events_));
  const bool wake = was_empty || (was_short && queued_events_ >= options_.max_request_events);
  lock.unlock();
  if (wake) cv_.notify_all();
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

void Bridge::RunForwarder() {
  const std::shared_ptr<grpc::Channel> channel = IngestdChannel();
  auto stub = rollertrace::v1::IngestService::NewStub(channel);
  // After the channel: gRPC's own threads, which the authorisers share, are
  // not this thread's to start. The stream's reader thread inherits it.
  pthread_setname_np(pthread_self(), "bridge-forward");
  LowerThisThread("forwarder");
  std::chrono::milliseconds backoff(100);
  while (!stopping_) {
    if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::milliseconds(500))) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      continue;
    }
    stream_restarts_.Increment();
    const auto opened = std::chrono::steady_clock::now();
    ServeStream(*stub);
    if (stopping_) break;
    std::cerr << "mqtt-bridge: stream to ingestd ended, reopening" << std::endl;
    // A stream refused at once (ingestd refusing our token, say) must not spin.
    if (std::chrono::steady_clock::now() - opened < std::chrono::seconds(1)) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    } else {
      backoff = std::chrono::milliseconds(100);
    }
  }
}

void Bridge::ServeStream(rollertrace::v1::IngestService::Stub& stub) {
  grpc::ClientContext context;
  if (!options_.ingestd_token.empty()) context.AddMetadata("authorization", "Bearer " + options_.ingestd_token);
  auto stream = stub.Ingest(&context);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream_broken_ = false;
  }
  std::thread reader([&] {
    pthread_setname_np(pthread_self(), "bridge-answers");
    IngestResponse response;
    while (stream->Read(&response)) HandleResponse(response);
    {
      std::lock_guard<std::mutex> lock(mu_);
      stream_broken_ = true;
    }
    cv_.notify_all();
  });

  // What the previous stream took and did not answer goes first, in order.
  std::vector<std::shared_ptr<const IngestRequest>> resend;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, inflight] : inflight_) resend.push_back(inflight.request);
  }
  bool ok = true;
  for (const auto& request : resend) {
    if (!(ok = stream->Write(*request))) break;
  }

  auto last_write = std::chrono::steady_clock::now();
  while (ok && !stopping_) {
    std::shared_ptr<const IngestRequest> request;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(200), [this] {
        return stopping_ || stream_broken_ || !published_commands_.empty() ||
               (!unpublished_commands_.empty() && control_up_) ||
               (!queue_.empty() && inflight_.size() < options_.max_inflight_requests &&
                std::chrono::steady_clock::now() >= paused_until_);
      });
      if (stopping_ || stream_broken_) break;
      if (!unpublished_commands_.empty() && control_up_) {
        std::vector<rollertrace::v1::Command> again;
        again.swap(unpublished_commands_);
        lock.unlock();
        for (const auto& command : again) PublishCommand(command);
        lock.lock();
        const bool failed_again = !unpublished_commands_.empty();
        lock.unlock();
        if (failed_again) std::this_thread::sleep_for(std::chrono::milliseconds(100));  // no spinning
        continue;
      }
      if (!published_commands_.empty()) {
        // Commands the broker has: ingestd forgets them (an answer with
        // request id 0, which nothing waits for).
        IngestRequest confirm;
        for (uint64_t index : published_commands_) confirm.add_commands_published(index);
        lock.unlock();
        if (!(ok = stream->Write(confirm))) break;  // kept: the next stream says it
        lock.lock();
        published_commands_.erase(published_commands_.begin(),
                                  published_commands_.begin() + confirm.commands_published_size());
        last_write = std::chrono::steady_clock::now();
        continue;
      }
      if (std::chrono::steady_clock::now() < paused_until_) continue;
      if (queue_.empty() && std::chrono::steady_clock::now() - last_write > std::chrono::seconds(1)) {
        // An empty request now and then collects commands ingestd raised
        // outside ingestion (recalls, unlocks).
        lock.unlock();
        ok = stream->Write(IngestRequest());
        last_write = std::chrono::steady_clock::now();
        continue;
      }
      if (queue_.empty() || inflight_.size() >= options_.max_inflight_requests) continue;
      if (queued_events_ < options_.max_request_events && options_.linger.count() > 0) {
        cv_.wait_for(lock, options_.linger,
                     [this] { return stopping_ || queued_events_ >= options_.max_request_events; });
      }
      Inflight inflight;
      auto next = std::make_shared<IngestRequest>();
      size_t events = 0;
      while (!queue_.empty() && (events == 0 || events + queue_.front().batch.events_size() <= options_.max_request_events)) {
        Queued& q = queue_.front();
        events += q.batch.events_size();
        if (next->bridge_received_unix_ms() == 0) next->set_bridge_received_unix_ms(q.received_unix_ms);
        inflight.kinds[q.batch.device_id()] = q.kind;
        *next->add_batches() = std::move(q.batch);
        queue_.pop_front();
      }
      queued_events_ -= events;
      queue_depth_.Set(static_cast<double>(queued_events_));
      room_cv_.notify_all();
      const uint64_t id = next_request_id_++;
      next->set_request_id(id);
      request = inflight.request = std::move(next);
      inflight_.emplace(id, std::move(inflight));
      inflight_depth_.Set(static_cast<double>(inflight_.size()));
      forwarded_.Increment(static_cast<double>(events));
    }
    ok = stream->Write(*request);
    last_write = std::chrono::steady_clock::now();
  }
  context.TryCancel();
  reader.join();
  grpc::Status status = stream->Finish();
  if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED && !stopping_) {
    std::cerr << "mqtt-bridge: ingestd ended the stream: " << status.error_message() << std::endl;
  }
}

void Bridge::HandleResponse(const IngestResponse& response) {
  for (const auto& command : response.commands()) PublishCommand(command);
  std::map<std::string, codec::TopicKind> kinds;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = inflight_.find(response.request_id());
    if (it == inflight_.end()) return;  // an idle request, or answered before a stream restart
    if (!response.unavailable().empty()) {
      // Nothing of it was stored (ingestd's store takes no writes): back to
      // the head of the queue, unacked, and a pause before sending again.
      // (Copied: the request is shared with the stream that sent it. Rare.)
      const auto& batches = it->second.request->batches();
      for (int i = batches.size() - 1; i >= 0; --i) {
        const EventBatch& b = batches[i];
        queued_events_ += static_cast<size_t>(b.events_size());
        const auto kind = it->second.kinds[b.device_id()];
        queue_.push_front(Queued{kind, b, it->second.request->bridge_received_unix_ms()});
      }
      queue_depth_.Set(static_cast<double>(queued_events_));
      const bool was_holding = holding_;
      holding_ = true;
      paused_until_ = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(std::max<uint32_t>(response.retry_after_ms(), 100));
      inflight_.erase(it);
      inflight_depth_.Set(static_cast<double>(inflight_.size()));
      held_back_.Increment();
      if (!was_holding) std::cerr << "mqtt-bridge: ingestd holds writes back: " << response.unavailable() << std::endl;
      cv_.notify_all();
      return;
    }
    if (holding_) std::cerr << "mqtt-bridge: ingestd takes writes again" << std::endl;
    holding_ = false;
    kinds = std::move(it->second.kinds);
    inflight_.erase(it);
    inflight_depth_.Set(static_cast<double>(inflight_.size()));
  }
  cv_.notify_all();
  for (const auto& rejection : response.rejections()) {
    ingest_rejected_.Add({{"reason", rejection.reason()}}).Increment();
  }
  std::vector<AckPublisher::Ack> acks;
  acks.reserve(static_cast<size_t>(response.acks_size()));
  for (const auto& ack : response.acks()) {
    auto kind = kinds.find(ack.device_id());
    if (kind == kinds.end()) continue;
    acks.push_back({codec::AckTopic(kind->second, ack.device_id()), ack.SerializeAsString()});
  }
  if (acks.empty()) return;
  // Lost only with the ack publisher's connection: the device then sends
  // the batch again, and the repeat is acked, not stored twice.
  const bool published = acks_ != nullptr && acks_->Publish(acks).ok();
  if (published) {
    acks_published_.Increment(static_cast<double>(acks.size()));
  } else {
    publish_failures_.Add({{"what", "ack"}}).Increment(static_cast<double>(acks.size()));
  }
}

}  // namespace rollertrace::bridge
