// ingestd: RollerTrace's system of record. Parses flags, wires the store, the
// group committer and the gRPC services, and runs until SIGINT/SIGTERM.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "ingest/cluster_shard.h"
#include "ingest/fleet_gauges.h"
#include "ingest/group_committer.h"
#include "ingest/grpc_services.h"
#include "ingest/ingest_metrics.h"
#include "metrics/metrics.h"
#include "rpc/credentials.h"
#include "process/shutdown.h"
#include "util/address.h"
#include "util/clock.h"
#include "pseudonym/pseudonymizer.h"
#include "rules/policy.h"
#include "store/commands.h"
#include "store/signer.h"

namespace {


}  // namespace

int main(int argc, char** argv) {
  rollertrace::process::BlockShutdownSignals();

  CLI::App app{
      "ingestd - RollerTrace's system of record.\n"
      "Receives device events over gRPC (from mqtt-bridge), stores each exactly once in RocksDB\n"
      "with the WAL synced before it acknowledges, and serves the registry and compliance APIs.\n"
      "Patient references are replaced by HMAC-SHA256 pseudonyms before anything is stored."};
  std::string listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9464";
  std::string data_dir = "./data/ingestd";
  std::string secret_file;
  std::string policy_file;
  int gauge_interval_ms = 1000;
  std::string tokens_file;
  std::string signing_key_file;
  int checkpoint_interval_s = 60;
  int verify_interval_s = 0;
  bool insecure_no_auth = false;
  int silent_minutes = 15;
  uint64_t min_free_mib = 64;
  std::string backup_root;
  app.add_option("--listen", listen, "gRPC address to serve on")->capture_default_str();
  app.add_option("--metrics", metrics_listen, "Prometheus /metrics address; empty disables")->capture_default_str();
  app.add_option("--data-dir", data_dir, "RocksDB directory (created if missing)")->capture_default_str();
  app.add_option("--pseudonym-secret-file", secret_file,
                 "File holding the deployment secret for patient pseudonyms (>= 16 bytes; mode 0600).\n"
                 "Default: the environment variable ROLLERTRACE_PSEUDONYM_SECRET");
  app.add_option("--policy", policy_file,
                 "Rules policy in YAML (deploy/policy/policy.yaml documents every field); default: DOMAIN.md's "
                 "defaults")
      ->check(CLI::ExistingFile);
  app.add_option("--gauge-interval-ms", gauge_interval_ms, "How often the fleet gauges are recomputed")
      ->capture_default_str()
      ->check(CLI::Range(100, 600000));
  app.add_option("--min-free-mib", min_free_mib,
                 "Free space to keep on the store's file system: below it ingestd takes no writes (devices are not "
                 "acked and keep their events; reads go on) until space returns")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--backup-root", backup_root,
                 "Directory online backups (rollerctl backup) go under; a backup anywhere else is refused. Unset: "
                 "backups are off");
  app.add_option("--silent-after-minutes", silent_minutes,
                 "A device not heard from for this long counts in rollertrace_devices_silent")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--tokens-file", tokens_file,
                 "Bearer tokens, one '<role> <token>' a line (mode 0600; every token different); roles: device "
                 "(mqtt-bridge: ingest and authorise), auditor (reads), admin (everything)");
  app.add_option("--signing-key", signing_key_file,
                 "Ed25519 private key (PEM; created if missing) that signs checkpoints of every device's hash "
                 "chain; rollerctl verify then checks them too");
  app.add_option("--checkpoint-interval-s", checkpoint_interval_s, "Seconds between signed checkpoints")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  app.add_option("--verify-interval-s", verify_interval_s,
                 "Seconds between verifications of the whole store (every chain and the latest checkpoint), "
                 "feeding rollertrace_verify_broken_chains; 0 = only when rollerctl verify asks")
      ->capture_default_str()
      ->check(CLI::Range(0, 7 * 86400));
  int bulk_nice = 10;
  app.add_option("--bulk-nice", bulk_nice,
                 "CPU priority of the threads that store events in bulk (the writer, RocksDB's flushes and "
                 "compactions), as a nice value above the authorisations' 0, so that on a busy machine a "
                 "decision does not wait for a core behind a burst; 0 = off")
      ->capture_default_str()
      ->check(CLI::Range(0, 19));
  std::string tls_cert, tls_key;
  app.add_option("--tls-cert", tls_cert, "Serve gRPC over TLS with this certificate chain (PEM); with --tls-key");
  app.add_option("--tls-key", tls_key, "The certificate's private key (PEM)");
  app.add_flag("--insecure-no-auth", insecure_no_auth,
               "Serve without access control (local development only, loopback --listen only; every caller may "
               "do everything)");
  rollertrace::ingest::ClusterOptions cluster;
  std::string cluster_nats;
  app.add_option("--cluster-nats", cluster_nats,
                 "Cluster mode: NATS JetStream nodes, comma-separated nats://host:port (docs/CLUSTER.md). Every "
                 "command is also replicated to this shard's stream before it is acknowledged");
  app.add_option("--cluster-shard", cluster.shard, "Cluster mode: this shard's name (its stream is RT_<name>)");
  app.add_option("--cluster-replicas", cluster.replicas, "Cluster mode: replicas of the shard's stream")
      ->capture_default_str()
      ->check(CLI::Range(1, 5));
  app.add_option("--cluster-retention-days", cluster.retention_days,
                 "Cluster mode: days the stream keeps a command (a rebuild needs a backup younger than this)")
      ->capture_default_str()
      ->check(CLI::Range(1, 36500));
  app.add_option("--cluster-start-wait-s", cluster.start_wait_s,
                 "Cluster mode: seconds a starting shard waits for JetStream to answer before it gives up")
      ->capture_default_str()
      ->check(CLI::Range(0, 86400));
  CLI11_PARSE(app, argc, argv);
  if (cluster_nats.empty() != cluster.shard.empty()) {
    std::cerr << "ingestd: cluster mode needs both --cluster-nats and --cluster-shard\n";
    return 2;
  }
  for (size_t start = 0; !cluster_nats.empty() && start <= cluster_nats.size();) {
    const size_t comma = std::min(cluster_nats.find(',', start), cluster_nats.size());
    if (comma > start) cluster.nats.push_back(cluster_nats.substr(start, comma - start));
    start = comma + 1;
  }
  if (tokens_file.empty() == !insecure_no_auth) {
    std::cerr << "ingestd: give exactly one of --tokens-file (access control) and --insecure-no-auth\n";
    return 2;
  }
  if (insecure_no_auth && !rollertrace::util::IsLoopbackAddress(listen)) {
    std::cerr << "ingestd: --insecure-no-auth serves only on a loopback address, not " << listen
              << "; give --tokens-file to serve other machines\n";
    return 2;
  }

  rollertrace::store::StoreOptions store_options;
  store_options.background_nice = bulk_nice;
  store_options.policy = rollertrace::rules::Policy{};  // DOMAIN.md's defaults unless --policy
  if (!policy_file.empty()) {
    auto policy = rollertrace::rules::LoadPolicyFile(policy_file);
    if (!policy.ok()) {
      std::cerr << "ingestd: " << policy.status().message() << "\n";
      return 2;
    }
    store_options.policy = *policy;
  }

  absl::StatusOr<rollertrace::pseudonym::Pseudonymizer> pseudonymizer = absl::InvalidArgumentError("unset");
  if (!secret_file.empty()) {
    pseudonymizer = rollertrace::pseudonym::Pseudonymizer::FromFile(secret_file);
  } else if (const char* env = std::getenv("ROLLERTRACE_PSEUDONYM_SECRET"); env != nullptr) {
    pseudonymizer = rollertrace::pseudonym::Pseudonymizer::FromSecret(env);
  } else {
    pseudonymizer = absl::InvalidArgumentError(
        "no pseudonymisation secret: pass --pseudonym-secret-file or set ROLLERTRACE_PSEUDONYM_SECRET");
  }
  if (!pseudonymizer.ok()) {
    std::cerr << "ingestd: " << pseudonymizer.status().message() << "\n";
    return 2;
  }

  auto metrics = rollertrace::metrics::Metrics::Create(metrics_listen);
  if (!metrics.ok()) {
    std::cerr << "ingestd: " << metrics.status().message() << "\n";
    return 1;
  }
  // A shard adopts its policy only after catching up with its stream.
  const rollertrace::rules::Policy policy = *store_options.policy;
  if (!cluster.nats.empty()) store_options.policy.reset();
  auto store = rollertrace::store::EventStore::Open(data_dir, store_options);
  if (!store.ok()) {
    std::cerr << "ingestd: " << store.status().message() << "\n";
    return 1;
  }
  if (const uint64_t applied = (*store)->caught_up_at_open(); applied > 0) {
    std::cerr << "ingestd: applied " << applied << " logged commands whose effects had not been flushed "
              << "when the store was last closed (a crash)" << std::endl;
  }
  rollertrace::ingest::IngestMetrics ingest_metrics(**metrics);
  absl::StatusOr<rollertrace::ingest::AccessControl> access =
      insecure_no_auth ? rollertrace::ingest::AccessControl::Open(**metrics)
                       : rollertrace::ingest::AccessControl::FromFile(tokens_file, **metrics);
  if (!access.ok()) {
    std::cerr << "ingestd: " << access.status().message() << "\n";
    return 2;
  }
  if (insecure_no_auth) std::cerr << "ingestd: WARNING: access control is off (--insecure-no-auth)" << std::endl;
  rollertrace::ingest::StoreGuard guard(**store, min_free_mib << 20, **metrics);
  rollertrace::ingest::GroupCommitOptions commit_options;
  commit_options.bulk_nice = bulk_nice;
  auto committer = std::make_unique<rollertrace::ingest::GroupCommitter>(
      **store, *pseudonymizer, ingest_metrics, rollertrace::util::NowUnixMs, commit_options, &guard);
  std::unique_ptr<rollertrace::ingest::ClusterShard> shard;
  if (!cluster.nats.empty()) {
    auto started = rollertrace::ingest::ClusterShard::Start(
        **store, cluster, policy, rollertrace::util::NowUnixMs(), **metrics, [](const absl::Status& why) {
          std::cerr << "ingestd: STOPPING: " << why.message() << std::endl;
          std::_Exit(76);
        });
    if (!started.ok()) {
      std::cerr << "ingestd: shard " << cluster.shard << ": " << started.status().message() << "\n";
      return 1;
    }
    shard = std::move(*started);
    committer->SetDurability(shard.get());
  }
  // Device commands raised before a restart and never published go out again.
  if (absl::StatusOr<std::vector<rollertrace::v1::Command>> owed = (*store)->OutboxCommands(); !owed.ok()) {
    std::cerr << "ingestd: " << owed.status().message() << "\n";
    return 1;
  } else if (!owed->empty()) {
    std::cerr << "ingestd: " << owed->size() << " device commands not yet published, sent again" << std::endl;
    committer->outbox().Resume(std::move(*owed));
  }
  rollertrace::ingest::IngestServiceImpl ingest(*committer, *access);
  rollertrace::ingest::RegistryServiceImpl registry(**store, *committer, *access, rollertrace::util::NowUnixMs);
  rollertrace::ingest::ComplianceServiceImpl compliance(**store, *committer, *pseudonymizer, ingest_metrics, *access,
                                                        rollertrace::util::NowUnixMs, backup_root);

  std::unique_ptr<rollertrace::store::Signer> signer;
  if (!signing_key_file.empty()) {
    auto loaded = rollertrace::store::Signer::LoadOrCreate(signing_key_file);
    if (!loaded.ok()) {
      std::cerr << "ingestd: " << loaded.status().message() << "\n";
      return 2;
    }
    signer = std::make_unique<rollertrace::store::Signer>(std::move(*loaded));
    compliance.TrustCheckpointsSignedBy(signer->public_key());
  }
  auto server_credentials = rollertrace::rpc::ServerCredentials(tls_cert, tls_key);
  if (!server_credentials.ok()) {
    std::cerr << "ingestd: " << server_credentials.status().message() << "\n";
    return 2;
  }
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(listen, *server_credentials, &bound_port);
  builder.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  builder.RegisterService(&ingest);
  builder.RegisterService(&registry);
  builder.RegisterService(&compliance);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    std::cerr << "ingestd: cannot serve gRPC on " << listen << " (address in use?)\n";
    return 1;
  }
  auto gauges = std::make_unique<rollertrace::ingest::FleetGauges>(**store, **metrics, *(*store)->policy().second,
                                                                     std::chrono::minutes(silent_minutes));
  gauges->Start(std::chrono::milliseconds(gauge_interval_ms));
  std::cerr << "ingestd: serving gRPC on " << listen << ", metrics on "
            << (metrics_listen.empty() ? "(off)" : metrics_listen) << ", store " << data_dir << std::endl;

  auto checkpoint = [&] {
    if (!signer) return;
    if (absl::Status w = guard.Writable(); !w.ok()) return;  // the next one, once the store takes writes
    if (absl::Status s = rollertrace::store::WriteCheckpoint(**store, *signer, rollertrace::util::NowUnixMs()); !s.ok()) {
      std::cerr << "ingestd: checkpoint failed: " << s.message() << std::endl;
    }
  };
  using Clock = std::chrono::steady_clock;
  const auto verify_every = std::chrono::seconds(verify_interval_s);
  auto next_checkpoint = Clock::now() + std::chrono::seconds(checkpoint_interval_s);
  auto next_verify = Clock::now() + verify_every;
  auto next_guard = Clock::now() + std::chrono::seconds(1);
  auto verify = [&] {
    absl::StatusOr<rollertrace::v1::VerifyReport> r =
        (*store)->verifier().Verify("", signer ? signer->public_key() : std::string());
    ingest_metrics.Audited("verify", r.ok());
    if (!r.ok()) {
      std::cerr << "ingestd: verification failed: " << r.status().message() << std::endl;
      return;
    }
    ingest_metrics.Verified(*r, rollertrace::util::NowUnixMs());
    for (const auto& b : r->breaks()) {
      std::cerr << "ingestd: VERIFY: " << b.device_id() << " " << b.chain() << " chain broken at position "
                << b.chain_index() << ": " << b.problem() << ": " << b.detail() << std::endl;
    }
  };
  int sig = 0;
  while (sig == 0) {
    auto wake = next_guard;
    if (signer) wake = std::min(wake, next_checkpoint);
    if (verify_interval_s > 0) wake = std::min(wake, next_verify);
    const auto wait = std::max(std::chrono::milliseconds(1),
                               std::chrono::duration_cast<std::chrono::milliseconds>(wake - Clock::now()));
    sig = rollertrace::process::WaitForShutdownSignal(wait);
    if (sig != 0) break;
    if (Clock::now() >= next_guard) {
      guard.Tick();
      next_guard = Clock::now() + std::chrono::seconds(1);
    }
    if (signer && Clock::now() >= next_checkpoint) {
      checkpoint();
      next_checkpoint = Clock::now() + std::chrono::seconds(checkpoint_interval_s);
    }
    if (verify_interval_s > 0 && Clock::now() >= next_verify) {
      verify();
      next_verify = Clock::now() + verify_every;
    }
  }
  std::cerr << "ingestd: signal " << sig << ", shutting down" << std::endl;
  {
    // A shard's answers wait for its stream; past the deadline they are
    // answered "not confirmed, send again" so the server can stop.
    std::thread abandon;
    std::mutex mu;
    std::condition_variable cv;
    bool down = false;
    if (shard) {
      abandon = std::thread([&] {
        std::unique_lock<std::mutex> lock(mu);
        if (!cv.wait_for(lock, std::chrono::seconds(6), [&] { return down; })) shard->Abandon();
      });
    }
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    {
      std::lock_guard<std::mutex> lock(mu);
      down = true;
    }
    cv.notify_all();
    if (abandon.joinable()) abandon.join();
  }
  committer.reset();  // answers and commits what is queued
  checkpoint();
  if (shard) {
    // What is committed and not yet replicated goes out at the next start.
    (void)shard->AwaitDurable(shard->LogEnd(), std::chrono::seconds(3));
    shard.reset();
  }
  gauges.reset();
  std::cerr << "ingestd: stopped" << std::endl;
  return 0;
}
