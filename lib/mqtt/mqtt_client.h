// The one MQTT wrapper of RollerTrace, around the Eclipse Paho C++ async
// client. It owns the reconnection: a background thread connects, and after a
// lost connection connects again with backoff, re-making every subscription.
// Paho's exceptions stop here; callers see absl::Status.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <deque>
#include <map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mqtt {
class async_client;
}

namespace rollertrace::mqtt {

struct Will {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retained = true;
};

// Bounds how many clients of a process are connecting at once: Paho C runs
// every client of a process on one send and one receive thread, so thousands
// of simultaneous CONNECTs time out and retry over each other (a fleet of
// 10,000 never settled). Shared by the clients that should wait their turn;
// turns are given in the order they were asked for.
class ConnectGate {
 public:
  explicit ConnectGate(int slots) : free_(slots) {}
  // Waits for a slot; false when `stop` was raised first.
  bool Acquire(const std::atomic<bool>& stop);
  void Release();
  // Wakes every waiter to look at its stop flag.
  void Interrupt();

 private:
  struct Waiter {
    std::condition_variable cv;
    bool admitted = false;
  };
  void ReleaseLocked();
  std::mutex mu_;
  int free_;
  std::deque<Waiter*> waiters_;
};

struct MqttOptions {
  // e.g. "tcp://127.0.0.1:1883", or "ssl://broker:8883" with ca_file.
  std::string server_uri;
  // TLS: trust this CA certificate (PEM) and check the broker's certificate and
  // host name against it.
  std::string ca_file;
  std::string client_id;
  std::string username;
  std::string password;
  std::optional<Will> will;
  // false: a persistent session; the broker keeps this client id's
  // subscriptions and queues its QoS 1 messages while it is away.
  bool clean_session = true;
  // How long a persistent session outlives its connection. Zero: until the
  // client returns (MQTT 3.1.1, whose sessions never expire). Otherwise the
  // client connects with MQTT 5 and asks for this session expiry interval,
  // after which the broker ends the session and drops what it queued for it.
  std::chrono::seconds session_expiry{0};
  // Set TCP_NODELAY on the connection (small packets are not held back by
  // Nagle's algorithm waiting for a delayed ACK). Costs a scan of the
  // process's descriptors per connect: for the few clients of a service, not
  // for a fleet of thousands.
  bool tcp_nodelay = false;
  std::chrono::seconds keep_alive{10};
  // Connect only while holding a slot of this gate (none: no limit).
  std::shared_ptr<ConnectGate> connect_gate;
  // How long one connection attempt (TCP, TLS and CONNACK) may take.
  std::chrono::seconds connect_timeout{5};
  // Longest wait between two connection attempts.
  std::chrono::milliseconds max_backoff{2000};
  // Publishes Paho may queue before its send thread has taken them, while
  // connected too (paho.mqtt.c #1193): beyond this Publish is
  // ResourceExhausted. Paho's default, 100, is enough for a device; a
  // service that answers thousands of devices needs more.
  int max_buffered_messages = 100;
};

// Refuses (InvalidArgument) a password sent in clear: a username or password
// over plain tcp:// is allowed only to a loopback broker; use ssl:// otherwise.
absl::Status CheckCredentialsTransport(const MqttOptions& options);

// The broker login of --mqtt-username and --mqtt-password-file (the first
// line of a file only its owner may read), checked against the transport of
// `uri` (CheckCredentialsTransport). Both empty: anonymous.
absl::Status LoadLogin(const std::string& uri, const std::string& username, const std::string& password_file,
                       std::string* password);

// "<user> <password>" lines ('#' starts a comment) from a file only its owner
// may read: per-device broker credentials (user = device id).
absl::StatusOr<std::map<std::string, std::string>> LoadCredentialsFile(const std::string& path);

class MqttClient {
 public:
  // Called on Paho's callback thread; must not block for long.
  using MessageHandler = std::function<void(const std::string& topic, const std::string& payload)>;
  using ConnectedHandler = std::function<void()>;

  explicit MqttClient(MqttOptions options);
  // Disconnects and joins the connector thread.
  ~MqttClient();
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  // REQUIRES: called before Start().
  void Subscribe(std::string filter, int qos);
  void OnMessage(MessageHandler handler);
  // After every successful (re)connect and its subscriptions.
  void OnConnected(ConnectedHandler handler);
  void OnConnectionLost(ConnectedHandler handler);

  // Starts connecting in the background; returns at once.
  void Start();
  bool WaitConnected(std::chrono::milliseconds timeout);
  // Connected, with every subscription acknowledged.
  bool connected() const { return ready_.load(); }

  // Queues a publish; Unavailable while disconnected or before the
  // subscriptions are acknowledged, ResourceExhausted while Paho already
  // holds max_buffered_messages not yet sent (try again in a moment). Does
  // not wait for the broker's acknowledgement.
  absl::Status Publish(const std::string& topic, const std::string& payload, int qos, bool retained = false);
  // The same; `delivered` then runs on Paho's callback thread once the broker
  // has acknowledged the message (at QoS 1 its PUBACK), and never after a
  // failure. Its target must outlive this client.
  absl::Status Publish(const std::string& topic, const std::string& payload, int qos, bool retained,
                       std::function<void()> delivered);

  // Disconnects cleanly (the will is not sent). Idempotent.
  void Stop();
  // Tells the connector to give up at once without waiting for it: a fleet
  // calls this on every client before it Stop()s them.
  void RequestStop();

  uint64_t reconnects() const { return reconnects_.load(); }

 private:
  class SubscribeListener;
  void RunConnector();
  void HandleConnected();
  // After the subscriptions of a connection are acknowledged.
  void FinishConnected();

  MqttOptions options_;
  // Before client_, so they outlive it. Only touched on Paho's callback thread.
  std::vector<std::unique_ptr<SubscribeListener>> listeners_;
  std::unique_ptr<::mqtt::async_client> client_;
  std::vector<std::pair<std::string, int>> subscriptions_;
  MessageHandler on_message_;
  ConnectedHandler on_connected_;
  ConnectedHandler on_lost_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> connected_{false};  // the MQTT session is up
  std::atomic<bool> ready_{false};      // ...and its subscriptions acknowledged
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> reconnects_{0};
  bool ever_connected_ = false;
  bool stopped_ = false;  // Stop() ran; guarded by mu_
  std::thread connector_;
};

}  // namespace rollertrace::mqtt
