#include "mqtt/mqtt_client.h"

#include <iostream>

#include <mqtt/async_client.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "mqtt/paho_waits.h"
#include "util/address.h"
#include "util/cat.h"
#include "util/secret_file.h"

namespace rollertrace::mqtt {

absl::Status CheckCredentialsTransport(const MqttOptions& options) {
  if (options.username.empty() && options.password.empty()) return absl::OkStatus();
  const std::string& uri = options.server_uri;
  if (uri.rfind("ssl://", 0) == 0 || uri.rfind("mqtts://", 0) == 0) return absl::OkStatus();
  if (util::IsLoopbackAddress(uri)) return absl::OkStatus();
  return absl::InvalidArgumentError(util::Cat("a broker password would cross the network in clear to ", uri,
                                              ": use ssl:// (with --mqtt-ca-file), or a loopback broker"));
}

absl::Status LoadLogin(const std::string& uri, const std::string& username, const std::string& password_file,
                       std::string* password) {
  if (password_file.empty() != username.empty()) {
    return absl::InvalidArgumentError("give --mqtt-username and --mqtt-password-file together");
  }
  if (password_file.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> line = util::ReadPrivateLine(password_file, "MQTT password file");
  if (!line.ok()) return line.status();
  *password = *line;
  MqttOptions check;
  check.server_uri = uri;
  check.username = username;
  return CheckCredentialsTransport(check);
}

absl::StatusOr<std::map<std::string, std::string>> LoadCredentialsFile(const std::string& path) {
  absl::StatusOr<std::vector<util::PrivatePair>> lines =
      util::ReadPrivatePairs(path, "MQTT credentials file", "<user> <password>");
  if (!lines.ok()) return lines.status();
  std::map<std::string, std::string> out;
  for (const auto& [n, user, password] : *lines) {
    if (!out.emplace(user, password).second) {
      return absl::InvalidArgumentError(util::Cat(path, " line ", n, ": user ", user, " is given twice"));
    }
  }
  if (out.empty()) return absl::InvalidArgumentError(util::Cat(path, ": no credentials"));
  return out;
}

namespace {

// The port of a broker URI ("tcp://host:1883"); 0 when it has none.
int UriPort(const std::string& uri) {
  const auto colon = uri.rfind(':');
  if (colon == std::string::npos) return 0;
  try {
    return std::stoi(uri.substr(colon + 1));
  } catch (const std::exception&) {
    return 0;
  }
}

// Paho C offers no hook on its socket, so the connected TCP sockets of this
// process whose peer port is the broker's get TCP_NODELAY (harmless for any
// other of our MQTT connections to the same broker).
void SetNoDelayTowards(int port) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = -1;
    try {
      fd = std::stoi(entry.path().filename().string());
    } catch (const std::exception&) {
      continue;
    }
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) continue;
    int peer_port = 0;
    if (peer.ss_family == AF_INET) peer_port = ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port);
    if (peer.ss_family == AF_INET6) peer_port = ntohs(reinterpret_cast<sockaddr_in6*>(&peer)->sin6_port);
    if (peer_port != port) continue;
    const int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

}  // namespace

bool ConnectGate::Acquire(const std::atomic<bool>& stop) {
  std::unique_lock<std::mutex> lock(mu_);
  if (free_ > 0 && waiters_.empty()) {
    --free_;
    return true;
  }
  // Each waiter sleeps on its own condition: a release wakes one thread, not
  // the thousands in line (a shared one made 10,000 clients connect at 12/s).
  Waiter self;
  waiters_.push_back(&self);
  while (!self.admitted && !stop) self.cv.wait_for(lock, std::chrono::seconds(10));
  if (self.admitted) {
    if (!stop) return true;
    ReleaseLocked();  // admitted just as it gave up: pass the turn on
    return false;
  }
  waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &self));
  return false;
}

void ConnectGate::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  ReleaseLocked();
}

void ConnectGate::ReleaseLocked() {
  if (waiters_.empty()) {
    ++free_;
    return;
  }
  Waiter* next = waiters_.front();
  waiters_.pop_front();
  next->admitted = true;
  next->cv.notify_one();
}

void ConnectGate::Interrupt() {
  std::lock_guard<std::mutex> lock(mu_);
  for (Waiter* w : waiters_) w->cv.notify_one();
}

namespace {

// A persistent session that expires needs MQTT 5 (3.1.1 has no expiry).
bool UsesMqtt5(const MqttOptions& o) { return !o.clean_session && o.session_expiry.count() > 0; }

}  // namespace

MqttClient::MqttClient(MqttOptions options)
    : options_(std::move(options)),
      client_(std::make_unique<::mqtt::async_client>(
          options_.server_uri, options_.client_id,
          ::mqtt::create_options(UsesMqtt5(options_) ? MQTTVERSION_5 : MQTTVERSION_DEFAULT,
                                 options_.max_buffered_messages),
          nullptr)) {
  // Links paho_waits.cc into every program with a client (a static library's
  // object is linked only when something in it is used).
  (void)paho::Acted();
}

MqttClient::~MqttClient() {
  Stop();
  // Destroying Paho's client fails its pending tokens, whose callbacks reach
  // into this object: destroy it while every member is still alive (the
  // callbacks see stopping_ and do nothing).
  client_.reset();
}

void MqttClient::Subscribe(std::string filter, int qos) { subscriptions_.emplace_back(std::move(filter), qos); }
void MqttClient::OnMessage(MessageHandler handler) { on_message_ = std::move(handler); }
void MqttClient::OnConnected(ConnectedHandler handler) { on_connected_ = std::move(handler); }
void MqttClient::OnConnectionLost(ConnectedHandler handler) { on_lost_ = std::move(handler); }

void MqttClient::Start() {
  client_->set_message_callback([this](::mqtt::const_message_ptr msg) {
    if (on_message_ && !stopping_) on_message_(msg->get_topic(), msg->get_payload_str());
  });
  client_->set_connected_handler([this](const std::string&) { HandleConnected(); });
  client_->set_connection_lost_handler([this](const std::string&) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      connected_ = false;
      ready_ = false;
    }
    cv_.notify_all();
    if (on_lost_ && !stopping_) on_lost_();
  });
  connector_ = std::thread([this] { RunConnector(); });
}

// Counts one connection's SUBACKs; the last one completes the connection.
class MqttClient::SubscribeListener : public ::mqtt::iaction_listener {
 public:
  SubscribeListener(MqttClient* owner, size_t pending) : owner_(owner), pending_(pending) {}
  void on_success(const ::mqtt::token&) override { Done(); }
  void on_failure(const ::mqtt::token& token) override {
    // A subscription cut short by our own disconnect is no refusal.
    if (!owner_->stopping_) {
      std::cerr << "mqtt: a subscription was refused (code " << token.get_return_code() << ")" << std::endl;
    }
    Done();
  }

 private:
  void Done() {
    if (pending_.fetch_sub(1) == 1) owner_->FinishConnected();
  }
  MqttClient* owner_;
  std::atomic<size_t> pending_;
};

void MqttClient::HandleConnected() {
  if (stopping_) return;
  if (options_.tcp_nodelay) SetNoDelayTowards(UriPort(options_.server_uri));
  if (subscriptions_.empty()) {
    FinishConnected();
    return;
  }
  // Kept for the client's life: a SUBACK of an older connection may still arrive.
  listeners_.push_back(std::make_unique<SubscribeListener>(this, subscriptions_.size()));
  for (const auto& [filter, qos] : subscriptions_) {
    try {
      client_->subscribe(filter, qos, nullptr, *listeners_.back());
    } catch (const ::mqtt::exception&) {
      // The connection dropped again; the connector will retry and resubscribe.
      return;
    }
  }
}

void MqttClient::FinishConnected() {
  if (stopping_) return;
  {
    // Under mu_, so a waiter cannot miss the change between its check and its wait.
    std::lock_guard<std::mutex> lock(mu_);
    if (ever_connected_) ++reconnects_;
    ever_connected_ = true;
    connected_ = true;
    ready_ = true;
  }
  cv_.notify_all();
  if (on_connected_) on_connected_();
}

void MqttClient::RunConnector() {
  ::mqtt::connect_options_builder builder;
  if (UsesMqtt5(options_)) {
    // Clean start off resumes the session. The interval is a four-byte
    // count of seconds (0xFFFFFFFF: never), which Paho takes as an int.
    const auto seconds = static_cast<uint32_t>(std::min<int64_t>(options_.session_expiry.count(), 0xFFFFFFFF));
    builder.mqtt_version(MQTTVERSION_5)
        .clean_session(false)
        .clean_start(false)
        .properties({::mqtt::property(::mqtt::property::SESSION_EXPIRY_INTERVAL, static_cast<int>(seconds))});
  } else {
    builder.clean_session(options_.clean_session);
  }
  builder.keep_alive_interval(options_.keep_alive)
      .connect_timeout(options_.connect_timeout)
      .max_inflight(1024)
      .automatic_reconnect(false);
  if (!options_.username.empty()) builder.user_name(options_.username).password(options_.password);
  if (!options_.ca_file.empty()) {
    builder.ssl(::mqtt::ssl_options_builder()
                    .trust_store(options_.ca_file)
                    .enable_server_cert_auth(true)
                    .verify(true)
                    .finalize());
  }
  if (options_.will) {
    builder.will(::mqtt::message(options_.will->topic, options_.will->payload, options_.will->qos,
                                 options_.will->retained));
  }
  const ::mqtt::connect_options opts = builder.finalize();
  std::chrono::milliseconds backoff(100);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (!connected_) {
      lock.unlock();
      const bool gated = options_.connect_gate != nullptr;
      if (gated && !options_.connect_gate->Acquire(stopping_)) {
        lock.lock();
        break;
      }
      bool ok = false;
      try {
        ::mqtt::token_ptr attempt = client_->connect(opts);
        // Never connect again over an attempt still under way: Paho C++
        // would drop the token Paho C still calls back on (heap corruption
        // seen with 10,000 clients). Paho C ends every attempt itself after
        // connect_timeout, so this wait ends.
        while (!attempt->wait_for(std::chrono::milliseconds(250))) {
        }
        ok = attempt->get_return_code() == 0 && client_->is_connected();
      } catch (const ::mqtt::exception&) {
        ok = false;
      }
      if (gated) options_.connect_gate->Release();
      lock.lock();
      if (!ok) {
        cv_.wait_for(lock, backoff, [this] { return stopping_.load(); });
        backoff = std::min(backoff * 2, options_.max_backoff);
        continue;
      }
      backoff = std::chrono::milliseconds(100);
      // The connected callback may still be on its way; without this the loop
      // would take the connection for lost and connect again over it.
      connected_ = true;
      cv_.notify_all();
    }
    // Woken by a lost connection or Stop(); the timeout is only a safety net.
    cv_.wait_for(lock, std::chrono::seconds(30), [this] { return stopping_.load() || !connected_.load(); });
  }
}

bool MqttClient::WaitConnected(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return ready_.load(); });
}

namespace {

// Tells of one publish the broker acknowledged; deletes itself when Paho is
// done with it (success or failure).
class DeliveryListener : public ::mqtt::iaction_listener {
 public:
  explicit DeliveryListener(std::function<void()> delivered) : delivered_(std::move(delivered)) {}
  void on_success(const ::mqtt::token&) override {
    delivered_();
    delete this;
  }
  void on_failure(const ::mqtt::token&) override { delete this; }

 private:
  std::function<void()> delivered_;
};

}  // namespace

absl::Status MqttClient::Publish(const std::string& topic, const std::string& payload, int qos, bool retained) {
  return Publish(topic, payload, qos, retained, nullptr);
}

absl::Status MqttClient::Publish(const std::string& topic, const std::string& payload, int qos, bool retained,
                                 std::function<void()> delivered) {
  // Not before the subscriptions are acknowledged: an answer to what is sent
  // now (an ack, a decision) would otherwise find nobody subscribed.
  if (!ready_) return absl::UnavailableError("MQTT broker not connected");
  auto* listener = delivered ? new DeliveryListener(std::move(delivered)) : nullptr;
  try {
    if (listener != nullptr) {
      client_->publish(topic, payload.data(), payload.size(), qos, retained, nullptr, *listener);
    } else {
      client_->publish(topic, payload.data(), payload.size(), qos, retained);
    }
  } catch (const ::mqtt::exception& e) {
    delete listener;  // Paho did not take it
    const std::string what = std::string("MQTT publish to ") + topic + " failed: " + e.what();
    if (e.get_return_code() == MQTTASYNC_MAX_BUFFERED_MESSAGES) return absl::ResourceExhaustedError(what);
    return absl::UnavailableError(what);
  }
  return absl::OkStatus();
}

void MqttClient::RequestStop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (options_.connect_gate) options_.connect_gate->Interrupt();
}

void MqttClient::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
  }
  cv_.notify_all();
  if (options_.connect_gate) options_.connect_gate->Interrupt();
  if (connector_.joinable()) connector_.join();
  try {
    if (client_->is_connected()) client_->disconnect()->wait_for(std::chrono::seconds(2));
  } catch (const ::mqtt::exception&) {
  }
  connected_ = false;
  ready_ = false;
}

}  // namespace rollertrace::mqtt
