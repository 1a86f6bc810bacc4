// rollertrace-store: the store's own maintenance, run on the machine that
// holds it with ingestd stopped (RocksDB allows one process per store).
//   format    what the store is: its format, command log, policy version
//   migrate   bring a store of an older format to this build's
//   dump-log  write the command log to a file
//   replay    apply a command-log file to a store (a fresh one rebuilds the original)
//   digest    one SHA-256 per column family over every key and value, to compare stores
//   publish   seed a cluster shard's (empty) JetStream stream from a command-log file
#include <CLI/CLI.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "cluster/jetstream_log.h"
#include "store/commands.h"
#include "util/cat.h"
#include "util/hex.h"

namespace {

using rollertrace::store::Db;
using rollertrace::store::EventStore;
using rollertrace::store::StoreOptions;

int Fail(const absl::Status& s) {
  std::cerr << "rollertrace-store: " << s.message() << "\n";
  return absl::IsFailedPrecondition(s) || absl::IsInvalidArgument(s) ? 2 : 1;
}

int Format(const std::string& dir) {
  auto store = EventStore::Open(dir);
  if (!store.ok()) return Fail(store.status());
  auto next = (*store)->log().NextIndex();
  auto complete = (*store)->log().Complete();
  if (!next.ok()) return Fail(next.status());
  if (!complete.ok()) return Fail(complete.status());
  std::cout << "format " << rollertrace::store::kStoreFormat << "\ncommands " << *next - 1
            << (*complete ? "" : " (migrated: the log starts at the migration)") << "\npolicy version "
            << (*store)->policy().first << "\n";
  return 0;
}

int Migrate(const std::string& dir) {
  auto db = Db::Open(dir, /*sync=*/true, Db::Mode::kMigrate);
  if (!db.ok()) return Fail(db.status());
  std::cout << "the store at " << dir << " is format " << rollertrace::store::kStoreFormat << "\n";
  return 0;
}

int DumpLog(const std::string& dir, const std::string& out_path, bool partial) {
  auto store = EventStore::Open(dir);
  if (!store.ok()) return Fail(store.status());
  auto complete = (*store)->log().Complete();
  if (!complete.ok()) return Fail(complete.status());
  if (!*complete && !partial) {
    return Fail(absl::FailedPreconditionError(
        "this store was migrated from format 1: its log starts at the migration and a replay would not rebuild "
        "the store; pass --partial to write it anyway"));
  }
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  if (!out) return Fail(absl::UnavailableError(rollertrace::util::Cat("cannot write ", out_path)));
  auto written = (*store)->log().WriteLogFile(out);
  if (!written.ok()) return Fail(written.status());
  std::cout << *written << " commands written to " << out_path << "\n";
  return 0;
}

int Replay(const std::string& dir, const std::string& log_path, size_t group) {
  std::ifstream in(log_path, std::ios::binary);
  if (!in) return Fail(absl::NotFoundError(rollertrace::util::Cat("cannot read ", log_path)));
  StoreOptions options;  // the log carries its own policies
  auto store = EventStore::Open(dir, options);
  if (!store.ok()) return Fail(store.status());
  std::vector<rollertrace::v1::StoreCommand> pending;
  uint64_t applied = 0;
  auto flush = [&]() -> absl::Status {
    if (pending.empty()) return absl::OkStatus();
    auto results = (*store)->ExecuteGroup(pending);
    if (!results.ok()) return results.status();
    for (size_t i = 0; i < results->size(); ++i) {
      if ((*results)[i].ok()) {
        ++applied;
        continue;
      }
      // A logged command was applied once: refusing it now means this store differs.
      return absl::FailedPreconditionError(rollertrace::util::Cat("command ", pending[i].index(), " was refused: ",
                                                                  (*results)[i].status().message()));
    }
    pending.clear();
    if (applied % 10000 < group) std::cerr << "rollertrace-store: " << applied << " commands applied\n";
    return absl::OkStatus();
  };
  absl::Status s = rollertrace::store::ReadLogFile(in, [&](const rollertrace::v1::StoreCommand& c) {
    pending.push_back(c);
    return pending.size() >= group ? flush() : absl::OkStatus();
  });
  if (s.ok()) s = flush();
  if (!s.ok()) return Fail(s);
  std::cout << applied << " commands applied to " << dir << "\n";
  return 0;
}

int Digest(const std::string& dir) {
  {
    // The store as ingestd would serve it: a store that was killed applies
    // first the logged commands whose effects had not been flushed (closing
    // it then flushes them), so that the digest covers them. Nothing is
    // printed of it: the output is only the digest, for comparisons.
    auto store = EventStore::Open(dir);
    if (!store.ok()) return Fail(store.status());
  }
  auto db = Db::Open(dir, /*sync=*/true);
  if (!db.ok()) return Fail(db.status());
  rollertrace::store::SnapshotView view(**db);
  for (const auto& f : rollertrace::store::Families()) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
    uint64_t pairs = 0;
    absl::Status s = view.Scan(f.family, {}, [&](std::string_view key, std::string_view value) -> absl::StatusOr<bool> {
      // Length-prefixed, so that no two different contents hash alike.
      for (std::string_view part : {key, value}) {
        const uint64_t n = part.size();
        EVP_DigestUpdate(ctx.get(), &n, sizeof n);
        EVP_DigestUpdate(ctx.get(), part.data(), part.size());
      }
      ++pairs;
      return true;
    });
    if (!s.ok()) return Fail(s);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_DigestFinal_ex(ctx.get(), digest, &size);
    std::printf("%-18s %8llu %s\n", std::string(f.name).c_str(), static_cast<unsigned long long>(pairs),
                rollertrace::util::Hex(std::string_view(reinterpret_cast<const char*>(digest), size)).c_str());
  }
  return 0;
}

// A log file into a shard's stream, which must be empty: a shard started on an
// empty store then rebuilds the store the log came from (docs/CLUSTER.md).
int Publish(const std::string& log_path, const std::string& nats, const std::string& shard, int replicas) {
  std::ifstream in(log_path, std::ios::binary);
  if (!in) return Fail(absl::NotFoundError(rollertrace::util::Cat("cannot read ", log_path)));
  rollertrace::cluster::LogOptions options;
  for (size_t start = 0; start <= nats.size();) {
    const size_t comma = std::min(nats.find(',', start), nats.size());
    if (comma > start) options.servers.push_back(nats.substr(start, comma - start));
    start = comma + 1;
  }
  options.shard = shard;
  options.replicas = replicas;
  auto log = rollertrace::cluster::JetStreamLog::Connect(options);
  if (!log.ok()) return Fail(log.status());
  auto bounds = (*log)->Bounds();
  if (!bounds.ok()) return Fail(bounds.status());
  if (bounds->last != 0) {
    return Fail(absl::FailedPreconditionError(rollertrace::util::Cat(
        "stream ", (*log)->stream(), " holds commands already (through ", bounds->last, "); publish seeds an empty one")));
  }
  std::vector<std::string> window;
  uint64_t first = 1, published = 0;
  auto flush = [&]() -> absl::Status {
    if (window.empty()) return absl::OkStatus();
    rollertrace::cluster::PublishOutcome out = (*log)->Publish(first, window);
    if (!out.error.ok()) return out.error;
    published += window.size();
    first += window.size();
    window.clear();
    if (published % 10240 == 0) std::cerr << "rollertrace-store: " << published << " commands published\n";
    return absl::OkStatus();
  };
  absl::Status s = rollertrace::store::ReadLogFile(in, [&](const rollertrace::v1::StoreCommand& c) -> absl::Status {
    if (c.index() != first + window.size()) {
      return absl::InvalidArgumentError(rollertrace::util::Cat("the log's command ", first + window.size(),
                                                               " carries index ", c.index()));
    }
    window.push_back(c.SerializeAsString());
    return window.size() >= 512 ? flush() : absl::OkStatus();
  });
  if (s.ok()) s = flush();
  if (!s.ok()) return Fail(s);
  std::cout << "published " << published << " commands to stream " << (*log)->stream() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "rollertrace-store - maintenance of an ingestd store (stop ingestd first).\n"
      "docs/ARCHITECTURE.md, \"The store\", describes the format and the command log."};
  app.require_subcommand(1);
  std::string dir;
  auto* format = app.add_subcommand("format", "Show the store's format, command count and policy version");
  format->add_option("--data-dir", dir, "The store (ingestd --data-dir)")->required();
  auto* migrate = app.add_subcommand("migrate", "Bring a store of an older format to this build's (back it up first)");
  migrate->add_option("--data-dir", dir, "The store (ingestd --data-dir)")->required();
  std::string file;
  bool partial = false;
  auto* dump = app.add_subcommand("dump-log", "Write the store's command log to a file");
  dump->add_option("--data-dir", dir, "The store (ingestd --data-dir)")->required();
  dump->add_option("--out", file, "The log file to write")->required();
  dump->add_flag("--partial", partial, "Write the log of a migrated store too (it starts at the migration)");
  size_t group = 1;
  auto* replay = app.add_subcommand("replay", "Apply a command-log file to a store; into a fresh one it rebuilds the original");
  replay->add_option("--data-dir", dir, "The store to apply to (created if missing)")->required();
  replay->add_option("--log", file, "The log file (dump-log)")->required()->check(CLI::ExistingFile);
  replay->add_option("--group", group, "Commands per write (the record is the same for any grouping)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  auto* digest = app.add_subcommand("digest", "One SHA-256 per column family over every key and value");
  digest->add_option("--data-dir", dir, "The store (ingestd --data-dir)")->required()->check(CLI::ExistingDirectory);
  std::string nats, shard;
  int replicas = 3;
  auto* publish = app.add_subcommand(
      "publish", "Seed a cluster shard's empty JetStream stream from a command-log file (dump-log)");
  publish->add_option("--log", file, "The log file (dump-log)")->required()->check(CLI::ExistingFile);
  publish->add_option("--cluster-nats", nats, "NATS nodes, comma-separated nats://host:port")->required();
  publish->add_option("--cluster-shard", shard, "The shard whose stream (RT_<shard>) to seed")->required();
  publish->add_option("--cluster-replicas", replicas, "Replicas of the stream, if it is made")
      ->capture_default_str()
      ->check(CLI::Range(1, 5));
  CLI11_PARSE(app, argc, argv);
  if (*publish) return Publish(file, nats, shard, replicas);
  if (*format) return Format(dir);
  if (*migrate) return Migrate(dir);
  if (*dump) return DumpLog(dir, file, partial);
  if (*replay) return Replay(dir, file, group);
  return Digest(dir);
}
