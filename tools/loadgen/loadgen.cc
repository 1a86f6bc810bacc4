// rollertrace-loadgen: a third-party gateway at full speed. Publishes
// D devices x M messages x E events at QoS 1 with a deep in-flight window,
// never resending, then waits for every PUBACK. Events follow the wire
// contract (rollertrace.v1.EventBatch): usage samples with a session start
// every 100th event, one patient per device. For burst tests and benchmarks.
// With --ingestd it skips the broker and the bridge and streams the same
// batches straight into ingestd's Ingest stream, as a bridge does (requests of
// up to --request-events events, --requests-inflight of them unanswered at
// most): a measure of ingestd alone (bench/ingestd_alone.sh).
#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>
#include <mqtt/async_client.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cstdio>
#include <deque>
#include <iostream>
#include <string>

#include "agent/registration.h"
#include "codec/codec.h"
#include "loadgen/batch.h"
#include "rollertrace/v1/events.pb.h"
#include "rollertrace/v1/services.grpc.pb.h"
#include "util/secret_file.h"

namespace {

std::string DeviceId(const std::string& prefix, int d) {
  char id[32];
  std::snprintf(id, sizeof id, "%05d", d);
  return prefix + id;
}

struct Load {
  std::string prefix;
  int devices, messages, events;
  uint64_t first;
};

// The batches in publishing order (message m of every device, then m + 1),
// grouped into requests of at most `request_events` events, streamed with at
// most `inflight` unanswered. Every response must store its whole request.
int StreamToIngestd(const std::string& address, const std::string& token, const Load& load, int request_events,
                    int inflight) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::cerr << "rollertrace-loadgen: cannot reach ingestd at " << address << "\n";
    return 1;
  }
  auto stub = rollertrace::v1::IngestService::NewStub(channel);
  grpc::ClientContext context;
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  auto stream = stub->Ingest(&context);
  std::mutex mu;
  std::condition_variable cv;
  uint64_t answered = 0, rejected = 0;
  std::thread reader([&] {
    rollertrace::v1::IngestResponse response;
    while (stream->Read(&response)) {
      if (response.request_id() == 0) continue;  // device commands, not an answer
      std::lock_guard<std::mutex> lock(mu);
      ++answered;
      rejected += static_cast<uint64_t>(response.rejections_size());
      cv.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu);
    answered = ~uint64_t{0};  // the stream ended
    cv.notify_all();
  });
  const auto start = std::chrono::steady_clock::now();
  uint64_t sent = 0;
  bool ok = true;
  rollertrace::v1::IngestRequest request;
  auto send = [&] {
    request.set_request_id(++sent);
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return answered == ~uint64_t{0} || sent - answered <= static_cast<uint64_t>(inflight); });
      if (answered == ~uint64_t{0}) return false;
    }
    const bool written = stream->Write(request);
    request.Clear();
    return written;
  };
  int in_request = 0;
  for (int m = 0; m < load.messages && ok; ++m) {
    for (int d = 0; d < load.devices && ok; ++d) {
      *request.add_batches() = rollertrace::loadgen::MakeBatch(DeviceId(load.prefix, d), d,
                                                               load.first + static_cast<uint64_t>(m) * load.events,
                                                               load.events);
      in_request += load.events;
      if (in_request + load.events > request_events) {
        ok = send();
        in_request = 0;
      }
    }
  }
  if (ok && request.batches_size() > 0) ok = send();
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return answered == ~uint64_t{0} || answered >= sent; });
    ok = ok && answered != ~uint64_t{0};
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stream->WritesDone();
  const grpc::Status finished = stream->Finish();
  reader.join();
  if (!ok) {
    std::cerr << "rollertrace-loadgen: the stream to ingestd ended early: " << finished.error_message() << "\n";
    return 1;
  }
  const double total = static_cast<double>(load.devices) * load.messages * load.events;
  std::printf("streamed %.0f events in %llu requests to ingestd in %.3f s: %.0f events/s, %llu rejected\n", total,
              static_cast<unsigned long long>(sent), seconds, total / seconds, static_cast<unsigned long long>(rejected));
  return rejected == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "rollertrace-loadgen - publishes a burst of device batches at QoS 1 the way a third-party gateway\n"
      "would: a deep in-flight window, no resends. Waits for every PUBACK and prints the rate."};
  std::string uri = "tcp://127.0.0.1:1883", format = "json", prefix = "R-", register_with, token_file;
  int devices = 100, messages = 200, events = 50, inflight = 1000;
  uint64_t first = 1;
  app.add_option("--mqtt", uri, "Broker URI")->capture_default_str();
  app.add_option("--devices", devices, "Devices, named <prefix>00000 ...")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--messages", messages, "Messages per device")->capture_default_str()->check(CLI::Range(1, 10000000));
  app.add_option("--events", events, "Events per message")->capture_default_str()->check(CLI::Range(1, 10000));
  app.add_option("--format", format, "json (rollers/{id}/events/json) or bin (rollers/{id}/events)")
      ->capture_default_str()
      ->check(CLI::IsMember({"json", "bin"}));
  app.add_option("--first-sequence", first, "Sequence of each device's first event")->capture_default_str();
  app.add_option("--prefix", prefix, "Device id prefix")->capture_default_str();
  app.add_option("--inflight", inflight, "QoS 1 messages in flight at most")->capture_default_str()->check(CLI::Range(1, 65535));
  app.add_option("--register-with", register_with, "ingestd address: register the devices there first");
  app.add_option("--token-file", token_file, "Admin bearer token for --register-with (mode 0600)");
  bool register_only = false;
  std::string clinic;
  app.add_option("--clinic", clinic, "With --register-with: the clinic the devices belong to (picks the shard in a cluster)");
  app.add_flag("--register-only", register_only, "With --register-with: register the devices, publish nothing");
  std::string ingestd;
  int request_events = 2048, requests_inflight = 8;
  app.add_option("--ingestd", ingestd,
                 "ingestd address: stream the batches straight into its Ingest stream instead of publishing "
                 "(no broker, no bridge; --token-file is then a device or admin token)");
  app.add_option("--request-events", request_events, "With --ingestd: events per request at most (the bridge's default)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--requests-inflight", requests_inflight,
                 "With --ingestd: requests sent and unanswered at most (the bridge's default)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  CLI11_PARSE(app, argc, argv);
  if (absl::Status s = rollertrace::codec::ValidateDeviceId(DeviceId(prefix, 0)); !s.ok()) {
    std::cerr << "rollertrace-loadgen: --prefix: " << s.message() << "\n";
    return 2;
  }
  std::string token;
  if (!token_file.empty()) {
    auto t = rollertrace::util::ReadPrivateLine(token_file, "token file");
    if (!t.ok()) {
      std::cerr << "rollertrace-loadgen: " << t.status().message() << "\n";
      return 2;
    }
    token = *t;
  }
  if (!register_with.empty()) {
    std::vector<rollertrace::v1::Device> list;
    for (int d = 0; d < devices; ++d) {
      auto& dev = list.emplace_back();
      dev.set_device_id(DeviceId(prefix, d));
      dev.set_kind(rollertrace::v1::DEVICE_KIND_ROLLER);
      dev.set_model("DRS-540");
      dev.set_clinic(clinic);
      dev.set_needle_count(540);
      dev.set_needle_length_mm(1.0);
      dev.set_rated_penetrations(4'000'000'000ULL);
    }
    auto added = rollertrace::edge::RegisterDevices(register_with, token, list);
    if (!added.ok()) {
      std::cerr << "rollertrace-loadgen: " << added.status().message() << "\n";
      return 1;
    }
    if (register_only) return 0;
  }
  if (!ingestd.empty()) {
    return StreamToIngestd(ingestd, token, Load{prefix, devices, messages, events, first}, request_events,
                           requests_inflight);
  }
  const bool json = format == "json";
  try {
    mqtt::async_client client(uri, "loadgen-" + std::to_string(getpid()),
                              mqtt::create_options_builder().mqtt_version(MQTTVERSION_3_1_1).max_buffered_messages(100000).finalize());
    client.connect(mqtt::connect_options_builder().clean_session(true).max_inflight(inflight).finalize())->wait();
    std::deque<mqtt::delivery_token_ptr> tokens;
    const auto start = std::chrono::steady_clock::now();
    for (int m = 0; m < messages; ++m) {
      for (int d = 0; d < devices; ++d) {
        const std::string id = DeviceId(prefix, d);
        const auto batch = rollertrace::loadgen::MakeBatch(id, d, first + static_cast<uint64_t>(m) * events, events);
        const std::string payload = rollertrace::codec::EncodeBatch(batch, json);
        const std::string topic = rollertrace::codec::EventsTopic(rollertrace::codec::TopicKind::kRollerEvents, id, json);
        tokens.push_back(client.publish(topic, payload.data(), payload.size(), 1, false));
        while (tokens.size() >= static_cast<size_t>(inflight) * 9 / 10) {
          tokens.front()->wait();
          tokens.pop_front();
        }
      }
    }
    for (auto& t : tokens) t->wait();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double total = static_cast<double>(devices) * messages * events;
    std::printf("published %.0f events in %d %s messages in %.3f s: %.0f events/s\n", total, devices * messages,
                format.c_str(), seconds, total / seconds);
    client.disconnect()->wait();
  } catch (const mqtt::exception& e) {
    std::cerr << "rollertrace-loadgen: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
