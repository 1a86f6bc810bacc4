// Events/s into the store: ingestd's write path (GroupCommitter -> EventStore,
// with validation, pseudonymisation, dedupe, gap tracking and device state)
// beside raw RocksDB WriteBatch writes of the same events, with the same WAL
// sync setting and batch size, in one run. Prints the ratio at the end: the
// write path of a unary IngestBatch call (committed on the caller's thread
// when nothing else is being committed), and beside it the same request handed
// to the committer's writer thread.
//
//   build/bench/store_bench [--benchmark_min_time=2]
#include <benchmark/benchmark.h>
#include <openssl/sha.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>

#include "ingest/group_committer.h"
#include "store/chain.h"
#include "store/commands.h"
#include "store/keys.h"

namespace {

using rollertrace::v1::Event;

std::filesystem::path FreshDir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("rollertrace-bench-" + name + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  return dir;
}

Event SampleEvent(const std::string& device, uint64_t seq) {
  Event e;
  e.set_device_id(device);
  e.set_sequence(seq);
  e.set_device_time_unix_ms(1764000000000 + static_cast<int64_t>(seq) * 1000);
  auto* u = e.mutable_usage_sample();
  u->set_session_id(device + "-s1");
  u->set_revolutions(40);
  u->set_pressure_kpa(12.5);
  return e;
}

constexpr int kDevices = 50;

std::string Device(int i) { return "R-" + std::to_string(1000 + i); }

void RegisterDevices(rollertrace::store::EventStore& store) {
  for (int i = 0; i < kDevices; ++i) {
    rollertrace::v1::Device d;
    d.set_device_id(Device(i));
    d.set_kind(rollertrace::v1::DEVICE_KIND_ROLLER);
    d.set_needle_count(540);
    d.set_needle_length_mm(1.0);
    d.set_rated_penetrations(1620000);
    (void)rollertrace::store::Register(store, d, 1);
  }
}

void RawRocksDbWriteBatch(benchmark::State& state) {
  const int batch_size = static_cast<int>(state.range(0));
  auto dir = FreshDir("raw");
  rocksdb::Options options;
  options.create_if_missing = true;
  options.IncreaseParallelism(2);
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::Open(options, dir.string(), &raw).ok()) {
    state.SkipWithError("cannot open RocksDB");
    return;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  uint64_t seq = 0;
  for (auto _ : state) {
    rocksdb::WriteBatch wb;
    ++seq;
    for (int i = 0; i < batch_size; ++i) {
      const std::string device = Device(i % kDevices);
      rollertrace::v1::StoredEvent stored;
      *stored.mutable_event() = SampleEvent(device, seq * batch_size + i);
      stored.set_receive_unix_ms(1764000000000);
      wb.Put(rollertrace::store::DeviceSequenceKey(device, seq * batch_size + i), stored.SerializeAsString());
    }
    db->Write(wo, &wb);
  }
  state.SetItemsProcessed(state.iterations() * batch_size);
  db->Close();
  db.reset();
  std::filesystem::remove_all(dir);
}

// What ingestd runs per request: GroupCommitter (validation,
// pseudonymisation, metrics) and the store. `queued` = false is a unary
// IngestBatch caller (SubmitAndWait: committed on its own thread when nothing
// else is); true, a request handed to the writer thread and waited for, as a
// stream's requests are (without the stream's overlap of requests).
void WritePath(benchmark::State& state, bool queued) {
  const int batch_size = static_cast<int>(state.range(0));
  auto dir = FreshDir(queued ? "queued" : "ingest");
  auto store = rollertrace::store::EventStore::Open(dir.string());
  auto metrics = rollertrace::metrics::Metrics::Create("");
  auto pseudonymizer = rollertrace::pseudonym::Pseudonymizer::FromSecret("benchmark-secret-0123456789");
  if (!store.ok() || !metrics.ok() || !pseudonymizer.ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  RegisterDevices(**store);
  rollertrace::ingest::IngestMetrics ingest_metrics(**metrics);
  rollertrace::ingest::GroupCommitter committer(**store, *pseudonymizer, ingest_metrics,
                                                [] { return int64_t{1764000000000}; });
  std::map<std::string, uint64_t> next_seq;
  uint64_t request_id = 0;
  for (auto _ : state) {
    rollertrace::v1::IngestRequest request;
    request.set_request_id(++request_id);
    std::map<std::string, rollertrace::v1::EventBatch*> batches;
    for (int i = 0; i < batch_size; ++i) {
      const std::string device = Device(i % kDevices);
      auto*& b = batches[device];
      if (b == nullptr) {
        b = request.add_batches();
        b->set_device_id(device);
      }
      *b->add_events() = SampleEvent(device, ++next_seq[device]);
    }
    auto response = queued ? committer.Submit(std::move(request)).get() : committer.SubmitAndWait(std::move(request));
    if (response.rejections_size() > 0) state.SkipWithError(response.rejections(0).detail().c_str());
  }
  state.SetItemsProcessed(state.iterations() * batch_size);
  store->reset();
  std::filesystem::remove_all(dir);
}
void IngestWritePath(benchmark::State& state) { WritePath(state, false); }
void IngestWritePathQueued(benchmark::State& state) { WritePath(state, true); }

// The store alone, without the committer thread hand-off: one ingest command
// per device batch, all in one write (EventStore::ExecuteGroup).
void StoreAppend(benchmark::State& state) {
  const int batch_size = static_cast<int>(state.range(0));
  auto dir = FreshDir("append");
  auto store = rollertrace::store::EventStore::Open(dir.string());
  RegisterDevices(**store);
  std::map<std::string, uint64_t> next_seq;
  for (auto _ : state) {
    std::map<std::string, rollertrace::v1::StoreCommand> by_device;
    for (int i = 0; i < batch_size; ++i) {
      const std::string device = Device(i % kDevices);
      auto [it, fresh] = by_device.try_emplace(device);
      if (fresh) it->second = rollertrace::store::NewCommand(**store, 1764000000000);
      auto* b = it->second.mutable_ingest();
      b->set_device_id(device);
      *b->add_events() = SampleEvent(device, ++next_seq[device]);
    }
    std::vector<rollertrace::v1::StoreCommand> commands;
    for (auto& [d, c] : by_device) commands.push_back(std::move(c));
    auto r = (*store)->ExecuteGroup(commands);
    if (!r.ok()) state.SkipWithError("append failed");
  }
  state.SetItemsProcessed(state.iterations() * batch_size);
  store->reset();
  std::filesystem::remove_all(dir);
}

// One link of an event chain: SHA-256 over an event's bytes and its chain
// head, as the store hashes it, beside OpenSSL 3's one-shot SHA256(), which
// looks the algorithm up on every call (the store used it until 2026-12-05).
void ChainHash(benchmark::State& state) {
  std::string bytes(90, 'x');
  for (auto _ : state) {
    ++bytes[0];
    benchmark::DoNotOptimize(rollertrace::store::Sha256(bytes));
  }
}
void OpenSslOneShotSha256(benchmark::State& state) {
  std::string bytes(90, 'x');
  unsigned char digest[SHA256_DIGEST_LENGTH];
  for (auto _ : state) {
    ++bytes[0];
    SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
    benchmark::DoNotOptimize(digest);
  }
}
BENCHMARK(ChainHash);
BENCHMARK(OpenSslOneShotSha256);

BENCHMARK(RawRocksDbWriteBatch)->Arg(100)->Arg(1000)->Arg(10000)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(StoreAppend)->Arg(100)->Arg(1000)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(IngestWritePath)->Arg(100)->Arg(1000)->Arg(10000)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(IngestWritePathQueued)->Arg(100)->Arg(1000)->UseRealTime()->Unit(benchmark::kMillisecond);

// Console output plus the ingest/raw ratio for each batch size.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& run : runs) {
      if (!run.aggregate_name.empty() && run.aggregate_name != "mean") continue;
      auto it = run.counters.find("items_per_second");
      if (it != run.counters.end()) rates_[run.run_name.str()] = it->second.value;
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    for (const char* arg : {"100", "1000"}) {
      const std::string raw = std::string("RawRocksDbWriteBatch/") + arg + "/real_time";
      const std::string append = std::string("StoreAppend/") + arg + "/real_time";
      const std::string ingest = std::string("IngestWritePath/") + arg + "/real_time";
      const std::string queued = std::string("IngestWritePathQueued/") + arg + "/real_time";
      if (!rates_.count(raw) || !rates_.count(ingest) || !rates_.count(append)) continue;
      std::cout << std::fixed << "batch " << std::setw(4) << arg << ": raw RocksDB " << std::setprecision(0)
                << rates_[raw] << " events/s; EventStore::Append " << rates_[append] << " (" << std::setprecision(2)
                << rates_[append] / rates_[raw] << "x); ingestd write path " << std::setprecision(0)
                << rates_[ingest] << " (" << std::setprecision(2) << rates_[ingest] / rates_[raw]
                << "x, target >= 0.60x)";
      if (rates_.count(queued)) {
        std::cout << "; through the writer thread " << std::setprecision(0) << rates_[queued] << " ("
                  << std::setprecision(2) << rates_[queued] / rates_[raw] << "x)";
      }
      std::cout << "\n";
    }
  }

 private:
  std::map<std::string, double> rates_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
