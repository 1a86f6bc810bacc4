#include "support/cluster.h"

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace rollertrace::testing {

Cluster::Cluster(const std::string& name)
    : dir_(MakeTempDir(name)),
      mqtt_port_(FreePort()),
      ingestd_port_(FreePort()),
      ingestd_metrics_port_(FreePort()),
      bridge_metrics_port_(FreePort()) {
  channel_ = grpc::CreateChannel(ingestd_address(), grpc::InsecureChannelCredentials());
  std::string tokens;
  for (const char* role : {"device", "auditor", "admin"}) {
    const std::string token = std::string(role) + "-token-" + std::to_string(getpid()) + "-0123456789";
    tokens += std::string(role) + " " + token + "\n";
    WritePrivateFile(TokenFile(role), token + "\n");
  }
  WritePrivateFile(dir_ + "/tokens", tokens);
}

void Cluster::Authenticate(grpc::ClientContext* context) const {
  context->AddMetadata("authorization", "Bearer " + std::string("admin-token-") + std::to_string(getpid()) +
                                            "-0123456789");
}

Cluster::~Cluster() {
  bridge_.reset();
  // The rest stop side by side: each takes about a second.
  if (ingestd_) ingestd_->Signal(SIGTERM);
  if (broker_) broker_->Signal(SIGTERM);
  ingestd_.reset();
  broker_.reset();
}

std::string Cluster::mqtt_uri() const {
  return (mqtt_tls_ ? "ssl://127.0.0.1:" : "tcp://127.0.0.1:") + std::to_string(mqtt_port_);
}
std::string Cluster::ingestd_address() const {
  return front_.empty() ? "127.0.0.1:" + std::to_string(ingestd_port_) : front_;
}

void Cluster::ServeThrough(const std::string& address) {
  front_ = address;
  channel_ = grpc::CreateChannel(front_, grpc::InsecureChannelCredentials());
}

void Cluster::StartBroker(const std::string& cert_file, const std::string& key_file) {
  const std::string conf = dir_ + "/mosquitto.conf";
  std::ofstream out(conf);
  out << "listener " << mqtt_port_ << " 127.0.0.1\n";
  if (!cert_file.empty()) {
    out << "certfile " << cert_file << "\nkeyfile " << key_file << "\n";
  }
  out << "allow_anonymous true\npersistence false\n"
      << "max_inflight_messages 1024\nmax_queued_messages 500000\nmax_packet_size 1048576\nset_tcp_nodelay true\n";
  out.close();
  StartBrokerWithConfig(conf, !cert_file.empty());
}

void Cluster::StartBrokerWithConfig(const std::string& conf_path, bool tls) {
  mqtt_tls_ = tls;
  broker_ = Process::Start({ROLLERTRACE_MOSQUITTO, "-c", conf_path}, dir_ + "/mosquitto.log");
  ASSERT_TRUE(WaitForPort(mqtt_port_, std::chrono::seconds(10))) << ReadFile(dir_ + "/mosquitto.log");
}

void Cluster::StartIngestd(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {ROLLERTRACE_INGESTD, "--listen", ingestd_address(), "--metrics",
                                   "127.0.0.1:" + std::to_string(ingestd_metrics_port_), "--data-dir",
                                   ingestd_data_dir(), "--gauge-interval-ms", "200", "--tokens-file",
                                   dir_ + "/tokens", "--signing-key", dir_ + "/signing.pem",
                                   "--checkpoint-interval-s", "2", "--backup-root", dir_};
  argv.insert(argv.end(), extra.begin(), extra.end());
  ingestd_ = Process::Start(argv, dir_ + "/ingestd.log", {{"ROLLERTRACE_PSEUDONYM_SECRET", kTestSecret}});
  ASSERT_TRUE(WaitForPort(ingestd_port_, std::chrono::seconds(20))) << ReadFile(dir_ + "/ingestd.log");
}

namespace {

// Waits until a bridge's metrics say it is connected, then for its SUBACKs.
void WaitBridgeConnected(int metrics_port, const std::string& log) {
  ASSERT_TRUE(WaitForPort(metrics_port, std::chrono::seconds(10))) << ReadFile(log);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (MetricValue(HttpGet(metrics_port, "/metrics"), "rollertrace_bridge_mqtt_connected") != 1) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << ReadFile(log);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the SUBACKs land
}

}  // namespace

std::vector<std::string> Cluster::BridgeArgs(int metrics_port, const std::string& client_id) const {
  return {ROLLERTRACE_BRIDGE, "--mqtt",      mqtt_uri(), "--ingestd",    ingestd_address(),
          "--metrics",        "127.0.0.1:" + std::to_string(metrics_port), "--client-id", client_id,
          "--token-file",     TokenFile("device")};
}

void Cluster::StartBridge(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = BridgeArgs(bridge_metrics_port_, "bridge-" + std::to_string(bridge_metrics_port_));
  argv.insert(argv.end(), extra.begin(), extra.end());
  bridge_ = Process::Start(argv, dir_ + "/bridge.log");
  WaitBridgeConnected(bridge_metrics_port_, dir_ + "/bridge.log");
}

Cluster::OtherBridge Cluster::StartAnotherBridge(const std::string& client_id, const std::vector<std::string>& extra) {
  OtherBridge other;
  other.metrics_port = FreePort();
  std::vector<std::string> argv = BridgeArgs(other.metrics_port, client_id);
  argv.insert(argv.end(), extra.begin(), extra.end());
  other.log = dir_ + "/" + client_id + ".log";
  other.process = Process::Start(argv, other.log);
  WaitBridgeConnected(other.metrics_port, other.log);
  return other;
}

pid_t Cluster::bridge_child_pid(const std::string& flag) const {
  if (!bridge_) return -1;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    // pid (comm) state ppid ...; comm may hold spaces, so read after the last ')'.
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid != bridge_->pid()) continue;
    // argv, NUL-separated: the bridge binary, then the child's flag.
    std::ifstream cmdline(entry.path() / "cmdline");
    std::string arg0, arg1;
    std::getline(cmdline, arg0, '\0');
    std::getline(cmdline, arg1, '\0');
    if (arg1 == flag) return static_cast<pid_t>(std::stol(name));
  }
  return -1;
}

void Cluster::StartAll() {
  StartBroker();
  StartIngestd();
  StartBridge();
}

void Cluster::KillBroker() {
  broker_->Signal(SIGKILL);
  broker_->Wait(std::chrono::seconds(10));
}
void Cluster::KillIngestd() {
  ingestd_->Signal(SIGKILL);
  ingestd_->Wait(std::chrono::seconds(10));
}
void Cluster::StopIngestd() { ingestd_->Stop(); }
int Cluster::WaitIngestdExit(std::chrono::milliseconds timeout) { return ingestd_->Wait(timeout); }

void Cluster::KillBridge() {
  bridge_->Signal(SIGKILL);
  bridge_->Wait(std::chrono::seconds(10));
}

std::unique_ptr<Process> Cluster::StartFleet(const std::vector<std::string>& args, const std::string& log_name) {
  std::vector<std::string> argv = {ROLLERTRACE_FLEET, "--mqtt", mqtt_uri()};
  if (std::find(args.begin(), args.end(), "--metrics") == args.end()) argv.insert(argv.end(), {"--metrics", ""});
  if (std::find(args.begin(), args.end(), "--register-with") != args.end()) {
    argv.insert(argv.end(), {"--token-file", TokenFile("admin")});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return Process::Start(argv, dir_ + "/" + log_name);
}

std::unique_ptr<Process> Cluster::StartAgent(const std::vector<std::string>& args, const std::string& log_name) {
  std::vector<std::string> argv = {ROLLERTRACE_AGENT, "--mqtt", mqtt_uri()};
  argv.insert(argv.end(), args.begin(), args.end());
  return Process::Start(argv, dir_ + "/" + log_name);
}

int Cluster::Rollerctl(const std::vector<std::string>& args, std::string* out) {
  const std::string log = dir_ + "/rollerctl-out.txt";
  std::remove(log.c_str());
  std::vector<std::string> argv = {ROLLERTRACE_ROLLERCTL, "--server", ingestd_address()};
  if (std::find(args.begin(), args.end(), "--token-file") == args.end()) {
    argv.insert(argv.end(), {"--token-file", TokenFile("admin")});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = Process::Start(argv, log);
  int code = p->Wait(std::chrono::seconds(60));
  if (out) *out = ReadFile(log);
  return code;
}

void Cluster::Publish(const std::string& topic, const std::string& payload) {
  const std::string file = dir_ + "/payload-" + std::to_string(++publish_count_);
  std::ofstream(file, std::ios::binary) << payload;
  auto p = Process::Start({ROLLERTRACE_MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", std::to_string(mqtt_port_), "-q",
                           "1", "-t", topic, "-f", file},
                          dir_ + "/mosquitto_pub.log");
  ASSERT_EQ(p->Wait(std::chrono::seconds(10)), 0) << ReadFile(dir_ + "/mosquitto_pub.log");
}

int Cluster::PublishWith(const std::string& topic, const std::string& payload, const std::vector<std::string>& extra,
                         std::string* out) {
  const std::string file = dir_ + "/payload-" + std::to_string(++publish_count_);
  std::ofstream(file, std::ios::binary) << payload;
  const std::string log = dir_ + "/mosquitto_pub-" + std::to_string(publish_count_) + ".log";
  std::vector<std::string> argv = {ROLLERTRACE_MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", std::to_string(mqtt_port_),
                                   "-q", "1", "-t", topic, "-f", file};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto p = Process::Start(argv, log);
  const int code = p->Wait(std::chrono::seconds(10));
  if (out) *out = ReadFile(log);
  return code;
}

rollertrace::v1::Device Cluster::Roller(const std::string& id, uint64_t rated_penetrations) {
  rollertrace::v1::Device d;
  d.set_device_id(id);
  d.set_kind(rollertrace::v1::DEVICE_KIND_ROLLER);
  d.set_model("DRS-540-1.00");
  d.set_needle_count(540);
  d.set_needle_length_mm(1.0);
  d.set_rated_penetrations(rated_penetrations);
  return d;
}

rollertrace::v1::Device Cluster::Steriliser(const std::string& id) {
  rollertrace::v1::Device d;
  d.set_device_id(id);
  d.set_kind(rollertrace::v1::DEVICE_KIND_STERILISER);
  d.set_model("B-class 18L");
  return d;
}

void Cluster::Register(const rollertrace::v1::Device& device) {
  auto stub = rollertrace::v1::RegistryService::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  Authenticate(&ctx);
  rollertrace::v1::RegisterRequest req;
  *req.mutable_device() = device;
  rollertrace::v1::Device resp;
  grpc::Status s = stub->Register(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
}

rollertrace::v1::DeviceRecord Cluster::Device(const std::string& device_id) {
  auto stub = rollertrace::v1::RegistryService::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  Authenticate(&ctx);
  rollertrace::v1::GetDeviceRequest req;
  req.set_device_id(device_id);
  rollertrace::v1::DeviceRecord record;
  grpc::Status s = stub->Get(&ctx, req, &record);
  EXPECT_TRUE(s.ok()) << device_id << ": " << s.error_message();
  return record;
}

std::vector<rollertrace::v1::StoredEvent> Cluster::History(const std::string& device_id) {
  auto stub = rollertrace::v1::ComplianceService::NewStub(channel_);
  std::vector<rollertrace::v1::StoredEvent> out;
  uint64_t next = 1;
  while (next != 0) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    Authenticate(&ctx);
    rollertrace::v1::HistoryRequest req;
    req.set_device_id(device_id);
    req.set_from_sequence(next);
    rollertrace::v1::HistoryResponse resp;
    grpc::Status s = stub->History(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << device_id << ": " << s.error_message();
    if (!s.ok()) break;
    for (auto& e : *resp.mutable_events()) out.push_back(std::move(e));
    next = resp.next_sequence();
  }
  return out;
}

}  // namespace rollertrace::testing
