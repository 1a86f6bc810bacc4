// Cluster: a whole RollerTrace on loopback for integration tests — a real
// Mosquitto, ingestd on a real RocksDB in a temp dir, and mqtt-bridge, each a
// process on free ports — plus gRPC clients to ingestd.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "rollertrace/v1/services.grpc.pb.h"
#include "support/process.h"

namespace rollertrace::testing {

inline constexpr char kTestSecret[] = "integration-test-secret-0123456789";

class Cluster {
 public:
  explicit Cluster(const std::string& name);
  ~Cluster();

  // Each Start waits until the part answers (fails the test if it does not).
  // With cert_file and key_file, the broker listens for MQTT over TLS only
  // (mqtt_uri() is then ssl://).
  void StartBroker(const std::string& cert_file = {}, const std::string& key_file = {});
  // The broker with a configuration file of the test's own; `tls`: it listens
  // for MQTT over TLS (mqtt_uri() is then ssl://).
  void StartBrokerWithConfig(const std::string& conf_path, bool tls);
  // `extra` flags are added to ingestd's.
  void StartIngestd(const std::vector<std::string>& extra = {});
  void StartBridge(const std::vector<std::string>& extra = {});
  // A bridge beside this cluster's own, in the same shared-subscription
  // group, with its own client id; waits until it is connected.
  struct OtherBridge {
    std::unique_ptr<Process> process;
    int metrics_port = 0;
    std::string log;
  };
  OtherBridge StartAnotherBridge(const std::string& client_id, const std::vector<std::string>& extra = {});
  void StartAll();
  // SIGKILL: no clean shutdown, the way a crash looks.
  void KillBroker();
  void KillIngestd();
  void KillBridge();
  // SIGTERM: a clean shutdown.
  void StopIngestd();
  // Waits for ingestd to exit by itself; its exit code, or -1 after `timeout`.
  int WaitIngestdExit(std::chrono::milliseconds timeout);

  // From now on bridges, fleets, rollerctl and channel() talk to `address`
  // (a cluster's router) instead of this object's own ingestd.
  void ServeThrough(const std::string& address);

  std::string mqtt_uri() const;
  std::string ingestd_address() const;
  int mqtt_port() const { return mqtt_port_; }
  int ingestd_metrics_port() const { return ingestd_metrics_port_; }
  int bridge_metrics_port() const { return bridge_metrics_port_; }
  pid_t ingestd_pid() const { return ingestd_ ? ingestd_->pid() : -1; }
  pid_t bridge_pid() const { return bridge_ ? bridge_->pid() : -1; }
  // The bridge's child process run with `flag`; -1 when there is none.
  pid_t bridge_child_pid(const std::string& flag) const;
  // Its event reader and its ack publisher.
  pid_t bridge_reader_pid() const { return bridge_child_pid("--event-reader"); }
  pid_t bridge_ack_publisher_pid() const { return bridge_child_pid("--ack-publisher"); }
  const std::string& dir() const { return dir_; }
  std::string ingestd_data_dir() const { return dir_ + "/ingestd-db"; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  // A roller with sensible defaults; rated_penetrations as given.
  static rollertrace::v1::Device Roller(const std::string& id, uint64_t rated_penetrations = 540 * 3000);
  static rollertrace::v1::Device Steriliser(const std::string& id);

  // roller-fleet against this cluster; `args` are added to the address flags.
  std::unique_ptr<Process> StartFleet(const std::vector<std::string>& args, const std::string& log_name);
  // roller-agent against this cluster's broker; `args` are added to --mqtt.
  std::unique_ptr<Process> StartAgent(const std::vector<std::string>& args, const std::string& log_name);
  // mosquitto_pub one message with extra arguments (credentials, TLS, client
  // id); returns its exit code and fills out with what it printed.
  int PublishWith(const std::string& topic, const std::string& payload, const std::vector<std::string>& extra,
                  std::string* out);
  // Runs rollerctl against this cluster; returns its exit code and fills out.
  int Rollerctl(const std::vector<std::string>& args, std::string* out);
  // mosquitto_pub one message (from a file, so binary payloads pass intact).
  void Publish(const std::string& topic, const std::string& payload);

  // Adds the admin bearer token to a call.
  void Authenticate(grpc::ClientContext* context) const;
  // Files holding each role's token (one token a file), and ingestd's tokens file.
  std::string TokenFile(const std::string& role) const { return dir_ + "/token-" + role; }

  void Register(const rollertrace::v1::Device& device);
  rollertrace::v1::DeviceRecord Device(const std::string& device_id);
  // Every stored event of a device, in sequence order (all pages).
  std::vector<rollertrace::v1::StoredEvent> History(const std::string& device_id);

 private:
  std::vector<std::string> BridgeArgs(int metrics_port, const std::string& client_id) const;
  std::string dir_;
  std::string front_;  // ServeThrough
  int mqtt_port_;
  int ingestd_port_;
  int ingestd_metrics_port_;
  int bridge_metrics_port_;
  int publish_count_ = 0;
  bool mqtt_tls_ = false;
  std::unique_ptr<Process> broker_;
  std::unique_ptr<Process> ingestd_;
  std::unique_ptr<Process> bridge_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace rollertrace::testing
