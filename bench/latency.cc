// Decision and command latency as a roller sees it, against running services
// (bench/latency.sh starts them):
//   authorize: N sequential rollers/{id}/authorize -> rollers/{id}/decision
//              round trips over MQTT, and the same N as AuthorizeUse over gRPC;
//   echo:      (--echo) before each authorisation, one publish to
//              bench/echo/{id} and its delivery back to the same client: the
//              broker's own round trip under the same load, the floor;
//   command:   Unlock over gRPC -> the "unlock" command on rollers/{id}/command
//              (a command raised outside ingestion), N times: each round first
//              locks the roller with a session it may not start (NOT_STERILE).
// Prints p50, p99 and max in milliseconds.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "codec/codec.h"
#include "mqtt/mqtt_client.h"
#include "rollertrace/v1/services.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<rollertrace::v1::Decision> decisions;
  std::vector<rollertrace::v1::Command> commands;
  uint64_t acked = 0;
  size_t echoes = 0;
};

void Print(const char* what, std::vector<double> ms) {
  if (ms.empty()) {
    std::printf("%-34s no samples\n", what);
    return;
  }
  // Which round was slowest (from 1): a start-up stall comes first, a stall in
  // the middle of the run does not.
  const size_t slowest = static_cast<size_t>(std::max_element(ms.begin(), ms.end()) - ms.begin()) + 1;
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<size_t>(q * (ms.size() - 1) + 0.5))]; };
  std::printf("%-34s n=%zu  p50 %.2f ms  p99 %.2f ms  max %.2f ms (round %zu)\n", what, ms.size(), at(0.5), at(0.99),
              ms.back(), slowest);
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"latency - authorisation and command round trips as a roller sees them (bench/latency.sh)"};
  std::string mqtt_uri = "tcp://127.0.0.1:1883", ingestd = "127.0.0.1:50051", roller = "LAT-1", steriliser = "LAT-S";
  int n = 400;
  bool commands = true;
  app.add_option("--mqtt", mqtt_uri, "Broker URI")->capture_default_str();
  app.add_option("--ingestd", ingestd, "ingestd address (no access control: --insecure-no-auth)")->capture_default_str();
  app.add_option("-n", n, "Round trips of each kind")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--roller", roller, "Roller id (registered here)")->capture_default_str();
  app.add_flag("!--no-commands", commands, "Skip the command round trips");
  bool acks_only = false;
  app.add_flag("--acks-only", acks_only,
               "Only event -> ack round trips: N events one at a time on rollers/{id}/events, each waited for on "
               "rollers/{id}/ack (what a device waits for before it drops the event from its spool)");
  bool echo = false;
  app.add_flag("--echo", echo,
               "Before each authorisation, time one round trip through the broker alone (publish to bench/echo/{id}, "
               "received back by this client): the floor under the same load");
  int interval_ms = 0;
  app.add_option("--interval-ms", interval_ms,
                 "Pause this long before each MQTT authorisation: a clinic's requests come seconds apart, and "
                 "back-to-back rounds hide what an idle client or bridge adds (its threads asleep)")
      ->capture_default_str()
      ->check(CLI::Range(0, 60000));
  CLI11_PARSE(app, argc, argv);

  auto channel = grpc::CreateChannel(ingestd, grpc::InsecureChannelCredentials());
  auto registry = rollertrace::v1::RegistryService::NewStub(channel);
  auto compliance = rollertrace::v1::ComplianceService::NewStub(channel);
  auto ingest = rollertrace::v1::IngestService::NewStub(channel);
  for (const auto& [id, kind] : {std::pair{roller, rollertrace::v1::DEVICE_KIND_ROLLER},
                                 std::pair{steriliser, rollertrace::v1::DEVICE_KIND_STERILISER}}) {
    grpc::ClientContext ctx;
    rollertrace::v1::RegisterRequest req;
    auto* d = req.mutable_device();
    d->set_device_id(id);
    d->set_kind(kind);
    d->set_model(kind == rollertrace::v1::DEVICE_KIND_ROLLER ? "DRS-540" : "autoclave");
    d->set_needle_count(540);
    d->set_needle_length_mm(1.0);
    d->set_rated_penetrations(4'000'000'000ULL);
    rollertrace::v1::Device out;
    grpc::Status s = registry->Register(&ctx, req, &out);
    if (!s.ok() && s.error_code() != grpc::StatusCode::ALREADY_EXISTS) {
      std::cerr << "latency: register " << id << ": " << s.error_message() << "\n";
      return 1;
    }
  }

  Inbox inbox;
  rollertrace::mqtt::MqttOptions mo;
  mo.server_uri = mqtt_uri;
  mo.client_id = "latency-" + roller;
  mo.tcp_nodelay = true;
  rollertrace::mqtt::MqttClient client(mo);
  client.Subscribe(rollertrace::codec::DecisionTopic(roller), 1);
  client.Subscribe(rollertrace::codec::CommandTopic(roller), 1);
  client.Subscribe(rollertrace::codec::AckTopic(rollertrace::codec::TopicKind::kRollerEvents, roller), 1);
  const std::string echo_topic = "bench/echo/" + roller;
  if (echo) client.Subscribe(echo_topic, 1);
  client.OnMessage([&](const std::string& topic, const std::string& payload) {
    std::lock_guard<std::mutex> lock(inbox.mu);
    if (topic.ends_with("/decision")) inbox.decisions.emplace_back().ParseFromString(payload);
    if (topic.ends_with("/command")) inbox.commands.emplace_back().ParseFromString(payload);
    if (topic.starts_with("bench/echo/")) ++inbox.echoes;
    if (topic.ends_with("/ack")) {
      rollertrace::v1::DeviceAck ack;
      if (ack.ParseFromString(payload)) inbox.acked = std::max(inbox.acked, ack.contiguous_through());
    }
    inbox.cv.notify_all();
  });
  client.Start();
  if (!client.WaitConnected(std::chrono::seconds(10))) {
    std::cerr << "latency: cannot reach the broker at " << mqtt_uri << "\n";
    return 1;
  }

  // Events continue after whatever this roller has stored already.
  auto highest_sequence = [&]() -> uint64_t {
    grpc::ClientContext ctx;
    rollertrace::v1::GetDeviceRequest req;
    req.set_device_id(roller);
    rollertrace::v1::DeviceRecord r;
    return registry->Get(&ctx, req, &r).ok() ? r.state().highest_sequence() : 0;
  };
  std::vector<double> over_mqtt, over_grpc, command_ms, echo_ms;
  if (acks_only) {
    uint64_t sequence = highest_sequence();
    std::vector<double> ack_ms;
    for (int i = 0; i < n; ++i) {
      rollertrace::v1::EventBatch batch;
      batch.set_device_id(roller);
      auto* e = batch.add_events();
      e->set_device_id(roller);
      e->set_sequence(++sequence);
      e->set_device_time_unix_ms(NowMs());
      e->mutable_heartbeat()->set_battery_fraction(0.5);
      const auto t0 = Clock::now();
      if (!client.Publish(rollertrace::codec::EventsTopic(rollertrace::codec::TopicKind::kRollerEvents, roller, false), batch.SerializeAsString(), 1).ok()) continue;
      std::unique_lock<std::mutex> lock(inbox.mu);
      if (inbox.cv.wait_for(lock, std::chrono::seconds(10), [&] { return inbox.acked >= sequence; })) {
        ack_ms.push_back(Ms(Clock::now() - t0));
      }
    }
    Print("event -> ack at the roller", ack_ms);
    return 0;
  }
  for (int i = 0; i < n; ++i) {
    if (echo) {
      const size_t before = [&] {
        std::lock_guard<std::mutex> lock(inbox.mu);
        return inbox.echoes;
      }();
      const auto t0 = Clock::now();
      if (client.Publish(echo_topic, "echo", 1).ok()) {
        std::unique_lock<std::mutex> lock(inbox.mu);
        if (inbox.cv.wait_for(lock, std::chrono::seconds(5), [&] { return inbox.echoes > before; })) {
          echo_ms.push_back(Ms(Clock::now() - t0));
        }
      }
    }
    if (interval_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
    rollertrace::v1::AuthorizeRequest req;
    req.set_device_id(roller);
    req.set_correlation_id("lat-" + std::to_string(i));
    req.mutable_session()->set_patient_ref("MRN-LAT");
    req.set_start_unix_ms(NowMs());
    const size_t before = [&] {
      std::lock_guard<std::mutex> lock(inbox.mu);
      return inbox.decisions.size();
    }();
    const auto t0 = Clock::now();
    if (!client.Publish(rollertrace::codec::AuthorizeTopic(roller), req.SerializeAsString(), 1).ok()) continue;
    std::unique_lock<std::mutex> lock(inbox.mu);
    if (inbox.cv.wait_for(lock, std::chrono::seconds(5), [&] { return inbox.decisions.size() > before; })) {
      over_mqtt.push_back(Ms(Clock::now() - t0));
    }
  }
  for (int i = 0; i < n; ++i) {
    rollertrace::v1::AuthorizeRequest req;
    req.set_device_id(roller);
    req.mutable_session()->set_patient_ref("MRN-LAT");
    grpc::ClientContext ctx;
    rollertrace::v1::Decision d;
    const auto t0 = Clock::now();
    if (compliance->AuthorizeUse(&ctx, req, &d).ok()) over_grpc.push_back(Ms(Clock::now() - t0));
  }
  if (echo) Print("echo through the broker alone", echo_ms);
  Print("authorize over MQTT (round trip)", over_mqtt);
  Print("AuthorizeUse over gRPC", over_grpc);

  if (commands) {
    uint64_t sequence = highest_sequence();
    for (int i = 0; i < n; ++i) {
      // Lock it: a session it may not start (never sterilised: NOT_STERILE).
      rollertrace::v1::IngestRequest req;
      auto* batch = req.add_batches();
      batch->set_device_id(roller);
      auto* e = batch->add_events();
      e->set_device_id(roller);
      e->set_sequence(++sequence);
      e->set_device_time_unix_ms(NowMs());
      e->mutable_session_started()->set_session_id("lat-s" + std::to_string(sequence));
      e->mutable_session_started()->set_patient_ref("MRN-LAT");
      {
        grpc::ClientContext ctx;
        rollertrace::v1::IngestResponse resp;
        if (!ingest->IngestBatch(&ctx, req, &resp).ok()) break;
      }
      {
        std::unique_lock<std::mutex> lock(inbox.mu);
        inbox.cv.wait_for(lock, std::chrono::seconds(5), [&] {
          return std::any_of(inbox.commands.begin(), inbox.commands.end(),
                             [](const auto& c) { return c.command() == "lock"; });
        });
        inbox.commands.clear();
      }
      grpc::ClientContext ctx;
      rollertrace::v1::UnlockRequest unlock;
      unlock.set_device_id(roller);
      unlock.set_reason("latency benchmark");
      unlock.set_by("bench");
      rollertrace::v1::Device out;
      const auto t0 = Clock::now();
      if (!registry->Unlock(&ctx, unlock, &out).ok()) continue;
      std::unique_lock<std::mutex> lock(inbox.mu);
      if (inbox.cv.wait_for(lock, std::chrono::seconds(5), [&] {
            return std::any_of(inbox.commands.begin(), inbox.commands.end(),
                               [](const auto& c) { return c.command() == "unlock"; });
          })) {
        command_ms.push_back(Ms(Clock::now() - t0));
      }
      inbox.commands.clear();
    }
    Print("unlock -> command at the roller", command_ms);
  }
  client.Stop();
  return 0;
}
