// mqtt-bridge: MQTT device topics -> ingestd, and ingestd's acks -> devices.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <unistd.h>

#include "bridge/bridge.h"
#include "bridge/ack_publisher.h"
#include "bridge/event_reader.h"
#include "metrics/metrics.h"
#include "rpc/credentials.h"
#include "process/shutdown.h"
#include "util/secret_file.h"

int main(int argc, char** argv) {
  // The bridge's own child process that holds its event connection (bridge/event_reader.h).
  if (argc == 2 && std::string(argv[1]) == "--event-reader") return rollertrace::bridge::RunEventReaderChild();
  // And the one that publishes its acks (bridge/ack_publisher.h).
  if (argc == 2 && std::string(argv[1]) == "--ack-publisher") return rollertrace::bridge::RunAckPublisherChild();
  // gRPC's default polling (epoll1) has one thread of the process wait on
  // every connection at a time; when that is a bulk thread (nice 10) as a
  // decision's answer arrives, the decision waits for a core behind the burst
  // (up to 15-25 ms measured, docs/BENCHMARKS.md, twelfth session). With
  // "poll", the thread waiting for decisions polls the decisions' connection
  // itself. Before gRPC starts; an operator's own setting wins.
  setenv("GRPC_POLL_STRATEGY", "poll", /*overwrite=*/0);
  rollertrace::process::BlockShutdownSignals();
  CLI::App app{
      "mqtt-bridge - forwards device batches from MQTT to ingestd and publishes ingestd's acks.\n"
      "Subscribes with a shared subscription to rollers/+/events, rollers/+/events/json,\n"
      "sterilisers/+/cycles and sterilisers/+/cycles/json. Stateless: run several for scale."};
  rollertrace::bridge::BridgeOptions options;
  std::string metrics_listen = "127.0.0.1:9465";
  app.add_option("--mqtt", options.mqtt_uri, "Broker URI (ssl://host:port for TLS)")->capture_default_str();
  app.add_option("--mqtt-ca-file", options.mqtt_ca_file, "TLS to the broker: trust this CA certificate (PEM)")
      ->check(CLI::ExistingFile);
  app.add_option("--client-id", options.mqtt_client_id,
                 "MQTT client id of the event connection: unique per bridge and the same across its restarts (its "
                 "persistent session keeps what the broker queued meanwhile); the control connection adds "
                 "'-control', its ack publisher '-acks'. A broker with use_username_as_clientid uses the user names "
                 "instead: give each bridge users U, U-control and U-acks")
      ->capture_default_str();
  int64_t session_expiry_s = options.session_expiry.count();
  app.add_option("--session-expiry", session_expiry_s,
                 "Seconds the broker keeps the event connection's session after the bridge is gone (MQTT 5). A "
                 "bridge back within it gets what was queued meanwhile; after it the broker drops that queue and "
                 "gives the bridge's share of the group's messages to the bridges still connected (devices resend "
                 "what they were not acked). 0: never expires, and a bridge that never returns keeps its share")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{4294967295}));
  app.add_option("--mqtt-username", options.mqtt_username, "Broker user name");
  std::string password_file, token_file;
  app.add_option("--mqtt-password-file", password_file,
                 "File holding the broker password (mode 0600; only over ssl:// or to a loopback broker)")
      ->check(CLI::ExistingFile);
  app.add_option("--token-file", token_file, "File holding the bearer token (role device) for ingestd")
      ->check(CLI::ExistingFile);
  app.add_option("--share-group", options.share_group, "Shared-subscription group")->capture_default_str();
  app.add_option("--ingestd", options.ingestd_address, "ingestd gRPC address")->capture_default_str();
  std::string ingestd_tls_ca;
  app.add_option("--ingestd-tls-ca", ingestd_tls_ca, "Reach ingestd over TLS, trusting this CA certificate (PEM)");
  app.add_option("--metrics", metrics_listen, "Prometheus /metrics address; empty disables")->capture_default_str();
  app.add_option("--max-payload-bytes", options.max_payload_bytes, "Larger MQTT payloads are rejected")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1024}, size_t{64} * 1024 * 1024));
  app.add_option("--max-request-events", options.max_request_events, "Events per request to ingestd")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{100000}));
  app.add_option("--max-inflight-requests", options.max_inflight_requests,
                 "Requests sent to ingestd and not yet answered, at most")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1024}));
  app.add_option("--max-queued-events", options.max_queued_events,
                 "Events held for ingestd, at most; when full the bridge stops reading from the broker, which "
                 "keeps the rest (nothing is dropped). With --max-inflight-requests x --max-request-events this "
                 "bounds what a killed bridge loses of a publisher that never resends")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{10000000}));
  app.add_option("--authorize-threads", options.authorize_threads,
                 "Authorisation requests answered at once: calls open to ingestd, the rest queue "
                 "(rollertrace_bridge_authorize_stage_seconds shows the wait)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{64}));
  options.bulk_nice = 10;
  app.add_option("--bulk-nice", options.bulk_nice,
                 "CPU priority of the bulk work (the event reader and ack publisher processes, the threads that "
                 "forward events to ingestd), as a nice value above the authorisations' 0, so that on a busy "
                 "machine a decision does not wait for a core behind a burst; 0 = off")
      ->capture_default_str()
      ->check(CLI::Range(0, 19));
  CLI11_PARSE(app, argc, argv);
  options.session_expiry = std::chrono::seconds(session_expiry_s);
  if (absl::Status s = rollertrace::mqtt::LoadLogin(options.mqtt_uri, options.mqtt_username, password_file,
                                                    &options.mqtt_password);
      !s.ok()) {
    std::cerr << "mqtt-bridge: " << s.message() << "\n";
    return 2;
  }
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = rollertrace::util::ReadPrivateLine(token_file, "token file");
    if (!token.ok()) {
      std::cerr << "mqtt-bridge: --token-file: " << token.status().message() << "\n";
      return 2;
    }
    options.ingestd_token = *token;
  }

  auto credentials = rollertrace::rpc::ClientCredentials(ingestd_tls_ca);
  if (!credentials.ok()) {
    std::cerr << "mqtt-bridge: --ingestd-tls-ca: " << credentials.status().message() << "\n";
    return 2;
  }
  options.ingestd_credentials = *credentials;
  auto metrics = rollertrace::metrics::Metrics::Create(metrics_listen);
  if (!metrics.ok()) {
    std::cerr << "mqtt-bridge: " << metrics.status().message() << "\n";
    return 1;
  }
  rollertrace::bridge::Bridge bridge(options, **metrics);
  bridge.Start();
  std::cerr << "mqtt-bridge: " << options.mqtt_uri << " -> " << options.ingestd_address << ", metrics on "
            << (metrics_listen.empty() ? "(off)" : metrics_listen) << std::endl;
  int sig = rollertrace::process::WaitForShutdownSignal();
  std::cerr << "mqtt-bridge: signal " << sig << ", shutting down" << std::endl;
  bridge.Stop();
  return 0;
}
