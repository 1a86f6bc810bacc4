// Bridge: MQTT -> ingestd -> MQTT. Takes device batches from a shared
// subscription, validates them (codec::DecodeBatch), forwards them to ingestd
// over one long-lived gRPC stream in requests of many batches (forwarder.h),
// and publishes ingestd's acks to each device's ack topic.
//
// Never discards what it took: when ingestd cannot keep up, its queue fills
// and it stops reading from the broker (backpressure), which holds the rest
// for its persistent session. Events live on one connection (clean session
// off, fixed client id); authorisations, decisions, acks and commands on a
// second one, so they never wait behind held-back events. What a bridge that
// dies loses is bounded by its queue and in-flight requests (docs/ARCHITECTURE.md).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <grpcpp/security/credentials.h>

#include "bridge/ack_publisher.h"
#include "bridge/authorizer.h"
#include "bridge/forwarder.h"
#include "codec/codec.h"
#include "metrics/metrics.h"
#include "mqtt/mqtt_client.h"
#include "rollertrace/v1/services.grpc.pb.h"

namespace rollertrace::bridge {

class EventReader;

struct BridgeOptions {
  std::string mqtt_uri = "tcp://127.0.0.1:1883";
  std::string mqtt_ca_file;  // TLS to the broker (ssl:// URI)
  // The event connection's client id: fixed, so its persistent session (and
  // what the broker queued for it) survives a restart. The control
  // connection uses this + "-control" (and the user name + "-control"), the
  // ack publisher this + "-acks" (and the user name + "-acks").
  std::string mqtt_client_id = "mqtt-bridge";
  // How long the broker keeps the event connection's session after it is
  // lost (MQTT 5 session expiry). A bridge back within it finds what was
  // queued meanwhile; one that never returns (its machine lost, its pod
  // replaced under a new name) stops taking a share of the group's messages
  // once it ends: Mosquitto goes on giving a share to a persistent session
  // whose client is away. Zero: the session never expires (MQTT 3.1.1).
  std::chrono::seconds session_expiry{60};
  std::string mqtt_username;
  std::string mqtt_password;
  // Shared-subscription group; bridges in one group split the devices' messages.
  std::string share_group = "ingest";
  std::string ingestd_address = "127.0.0.1:50051";
  // TLS to ingestd (rpc::ClientCredentials); null means plaintext.
  std::shared_ptr<grpc::ChannelCredentials> ingestd_credentials;
  // Bearer token of role "device" for ingestd; empty when it runs without access control.
  std::string ingestd_token;
  size_t max_payload_bytes = codec::kDefaultMaxPayloadBytes;
  // Events per gRPC request, and how long to wait to fill one.
  size_t max_request_events = 2048;
  std::chrono::milliseconds linger{2};
  // Requests sent and not yet answered; beyond this the bridge waits.
  size_t max_inflight_requests = 8;
  // Events decoded and waiting for ingestd; at this many the bridge stops
  // reading from the broker until there is room.
  size_t max_queued_events = 8192;
  // Authorisation requests answered at once: calls open to ingestd
  // (authorizer.h; threads until the twelfth session, hence the name). With 4,
  // a 10,000-roller fleet waited 72 ms on average in the bridge for a decision
  // and a quarter of the requests over 100 ms, nearly all of it queued here;
  // with 16, 20 ms and 2 % (docs/BENCHMARKS.md).
  size_t authorize_threads = 16;
  // Nice value (process/priority.h) of the bulk work: the event reader and
  // ack publisher processes, and the threads that forward events to ingestd
  // and read its answers. Authorisations, decisions and commands keep 0, so on
  // a busy machine they do not wait for a core behind a burst. 0 = off.
  int bulk_nice = 0;
  // The bridge binary, which the event reader and ack publisher processes run.
  std::string executable = "/proc/self/exe";
};

class Bridge {
 public:
  Bridge(BridgeOptions options, metrics::Metrics& metrics);
  // Stops and joins.
  ~Bridge();
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  void Start();
  void Stop();

  // Handles one message of the event connection (the caller waits for room
  // first). Public so tests can drive it without a broker.
  void OnMessage(const std::string& topic, const std::string& payload);
  // Handles one message of the control connection (authorisations, $SYS).
  void OnControlMessage(const std::string& topic, const std::string& payload);

 private:
  // Hands an authorisation request to the authorizer.
  void OnAuthorize(const std::string& device_id, const std::string& payload);
  // Publishes a device command; tells the forwarder once the broker has it.
  void PublishCommand(const rollertrace::v1::Command& command);
  // Publishes an answer's acks through the ack publisher.
  void PublishAcks(const std::vector<AckPublisher::Ack>& acks);

  // Reads the event connection (an EventReader child process) while the
  // queue has room; restarts the child if it dies.
  void RunEventReader();

  BridgeOptions options_;
  mqtt::MqttClient control_;  // authorisations, decisions, commands
  // Acks, from a child process with a connection of its own (ack_publisher.h);
  // set in Start.
  std::unique_ptr<AckPublisher> acks_;

  // Publishes a decision or command on the control connection at QoS 1,
  // waiting while Paho's queue is full (up to kControlPublishWait); false, counted in
  // rollertrace_bridge_publish_failures_total{what}, when it could not.
  // `delivered` (may be empty) runs once the broker acknowledged it.
  bool PublishControl(const std::string& topic, const std::string& payload, const char* what,
                      std::function<void()> delivered = {});
  // A new channel to ingestd (TLS when options_.ingestd_credentials is set).
  // With own_connection, its connection is its own: gRPC otherwise shares one
  // connection to a target among a process's channels, and decisions would
  // wait behind the event stream's requests on it (docs/ARCHITECTURE.md,
  // "Authorisations do not queue behind bulk events").
  std::shared_ptr<grpc::Channel> IngestdChannel(bool own_connection = false) const;
  // Gives the calling thread options_.bulk_nice (a failure is logged).
  void LowerThisThread(std::string_view what) const;

  prometheus::Family<prometheus::Counter>& received_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Counter& acks_published_;
  prometheus::Family<prometheus::Counter>& publish_failures_;
  prometheus::Gauge& broker_stored_;
  prometheus::Gauge& mqtt_connected_;
  prometheus::Counter& mqtt_reconnects_;
  prometheus::Counter& commands_published_;

  // The queue of decoded batches and the stream to ingestd (forwarder.h).
  std::unique_ptr<Forwarder> forwarder_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> events_up_{false};   // subscriptions acknowledged
  std::atomic<bool> control_up_{false};
  std::thread event_reader_;
  std::mutex reader_mu_;
  EventReader* reader_ = nullptr;  // guarded by reader_mu_; owned by RunEventReader
  // Authorisations, on a gRPC connection to ingestd of their own; made by
  // Start, ended by Stop.
  std::unique_ptr<Authorizer> authorizer_;
  metrics::Metrics& metrics_;
};

}  // namespace rollertrace::bridge
