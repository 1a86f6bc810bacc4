// rollertrace-router: the cluster's one gRPC address (docs/CLUSTER.md).
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "cluster/shard_map.h"
#include "metrics/metrics.h"
#include "process/shutdown.h"
#include "router/router.h"
#include "rpc/credentials.h"
#include "util/secret_file.h"

int main(int argc, char** argv) {
  rollertrace::process::BlockShutdownSignals();
  CLI::App app{
      "rollertrace-router - the one gRPC address of a RollerTrace cluster.\n"
      "Serves ingestd's API (ingest, registry, compliance) and forwards every call, with the caller's\n"
      "token, to the ingestd shard that owns it: a device's clinic decides its shard (the shard map);\n"
      "cross-clinic reads (device lists, violations, verify, reports, patient trails, backups) ask every\n"
      "shard and merge. Holds no state but a cache of which shard holds which device."};
  std::string listen = "127.0.0.1:50050";
  std::string metrics_listen = "127.0.0.1:9469";
  std::string shard_map_file;
  std::string lookup_token_file;
  std::string shard_ca, tls_cert, tls_key;
  app.add_option("--listen", listen, "gRPC address to serve on")->capture_default_str();
  app.add_option("--metrics", metrics_listen, "Prometheus /metrics address; empty disables")->capture_default_str();
  app.add_option("--shard-map", shard_map_file, "The shard map (deploy/cluster/shards.yaml documents it)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--lookup-token-file", lookup_token_file,
                 "File (mode 0600) holding an auditor token the router asks the shards with where a device is; "
                 "unset only when the shards run --insecure-no-auth");
  app.add_option("--shard-tls-ca", shard_ca, "Talk TLS to the shards, trusting this CA (PEM)");
  app.add_option("--tls-cert", tls_cert, "Serve gRPC over TLS with this certificate chain (PEM); with --tls-key");
  app.add_option("--tls-key", tls_key, "The certificate's private key (PEM)");
  CLI11_PARSE(app, argc, argv);

  auto map = rollertrace::cluster::ShardMap::Load(shard_map_file);
  if (!map.ok()) {
    std::cerr << "rollertrace-router: " << map.status().message() << "\n";
    return 2;
  }
  std::string lookup_token;
  if (!lookup_token_file.empty()) {
    auto token = rollertrace::util::ReadPrivateLine(lookup_token_file, "lookup token");
    if (!token.ok()) {
      std::cerr << "rollertrace-router: " << token.status().message() << "\n";
      return 2;
    }
    lookup_token = *token;
  }
  auto client_credentials = rollertrace::rpc::ClientCredentials(shard_ca);
  auto server_credentials = rollertrace::rpc::ServerCredentials(tls_cert, tls_key);
  if (!client_credentials.ok() || !server_credentials.ok()) {
    std::cerr << "rollertrace-router: "
              << (!client_credentials.ok() ? client_credentials.status() : server_credentials.status()).message()
              << "\n";
    return 2;
  }
  auto metrics = rollertrace::metrics::Metrics::Create(metrics_listen);
  if (!metrics.ok()) {
    std::cerr << "rollertrace-router: " << metrics.status().message() << "\n";
    return 1;
  }
  const size_t shard_count = map->shards().size();
  rollertrace::router::Shards shards(std::move(*map), *client_credentials, lookup_token, **metrics);
  rollertrace::router::IngestRouter ingest(shards);
  rollertrace::router::RegistryRouter registry(shards);
  rollertrace::router::ComplianceRouter compliance(shards);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(listen, *server_credentials, &bound_port);
  builder.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  builder.RegisterService(&ingest);
  builder.RegisterService(&registry);
  builder.RegisterService(&compliance);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    std::cerr << "rollertrace-router: cannot serve gRPC on " << listen << " (address in use?)\n";
    return 1;
  }
  std::cerr << "rollertrace-router: serving gRPC on " << listen << " for " << shard_count << " shards" << std::endl;
  int sig = 0;
  while (sig == 0) sig = rollertrace::process::WaitForShutdownSignal(std::chrono::milliseconds(1000));
  std::cerr << "rollertrace-router: signal " << sig << ", shutting down" << std::endl;
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}
