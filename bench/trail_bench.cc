// The compliance officer's questions against a large store: a roller's,
// patient's and cycle's trail, and a month's report, from a store of
// --events events (10 million by default), built once and kept for reruns.
//
// The store: 100 sterilisers, each loading 100 rollers per cycle; every roller
// serves one patient in four sessions a week apart, each session its start,
// usage samples and end (about 1,000 events per roller). Every event goes
// through EventStore::Append (rules, indexes, chains), with the WAL unsynced
// for speed of building.
//
//   build/bench/trail_bench [--events=10000000] [--store=DIR] [--benchmark_min_time=1]
#include <benchmark/benchmark.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include "store/commands.h"

namespace {

using rollertrace::v1::Event;
using rollertrace::v1::EventBatch;

constexpr int64_t kBase = 1'790'000'000'000;  // 2026-09-21, the first cycle
constexpr int64_t kDay = 86'400'000;
constexpr int kRollersPerSteriliser = 100;
constexpr int kSessions = 4;

int64_t g_events = 10'000'000;
std::string g_store_dir;
int g_rollers = 0;
int g_sterilisers = 0;
rollertrace::store::EventStore* g_store = nullptr;

std::string Roller(int i) { return "R-" + std::to_string(100000 + i); }
std::string Steriliser(int i) { return "S-" + std::to_string(1000 + i); }
// Shaped like ingestd's pseudonyms ("p-" and 64 hex digits), so the console and
// rollerctl take them.
std::string Patient(int i) {
  char hex[65];
  snprintf(hex, sizeof hex, "%056x%08x", 0, 7'000'000 + i);
  return std::string("p-") + hex;
}

// Usage samples per session for the store to reach g_events.
int SamplesPerSession() {
  const int64_t per_roller = g_events / g_rollers;
  return static_cast<int>(std::max<int64_t>(1, per_roller / kSessions - 2));
}

Event Base(const std::string& device, uint64_t seq, int64_t t) {
  Event e;
  e.set_device_id(device);
  e.set_sequence(seq);
  e.set_device_time_unix_ms(t);
  return e;
}

absl::Status AppendAll(std::vector<EventBatch>& batches, int64_t now) {
  std::vector<const EventBatch*> ptrs;
  for (auto& b : batches) ptrs.push_back(&b);
  auto r = rollertrace::store::Append(*g_store, ptrs, now);
  batches.clear();
  if (!r.ok()) return r.status();
  if (!r->rejections.empty()) return absl::InternalError(r->rejections[0].detail());
  return absl::OkStatus();
}

absl::Status Build() {
  for (int s = 0; s < g_sterilisers; ++s) {
    rollertrace::v1::Device d;
    d.set_device_id(Steriliser(s));
    d.set_kind(rollertrace::v1::DEVICE_KIND_STERILISER);
    if (auto r = rollertrace::store::Register(*g_store, d, kBase - kDay); !r.ok()) return r.status();
  }
  for (int i = 0; i < g_rollers; ++i) {
    rollertrace::v1::Device d;
    d.set_device_id(Roller(i));
    d.set_kind(rollertrace::v1::DEVICE_KIND_ROLLER);
    d.set_model("DRS-540-1.00");
    d.set_needle_count(540);
    d.set_needle_length_mm(1.0);
    d.set_rated_penetrations(540ULL * 1'000'000);
    if (auto r = rollertrace::store::Register(*g_store, d, kBase - kDay); !r.ok()) return r.status();
  }
  const int samples = SamplesPerSession();
  std::vector<uint64_t> roller_seq(g_rollers, 0);
  int64_t stored = 0;
  auto started = std::chrono::steady_clock::now();
  auto last_note = started;
  for (int round = 0; round < kSessions; ++round) {
    const int64_t cycle_end = kBase + round * 8 * kDay;
    std::vector<EventBatch> batches;
    for (int s = 0; s < g_sterilisers; ++s) {
      Event e = Base(Steriliser(s), static_cast<uint64_t>(round + 1), cycle_end);
      auto* c = e.mutable_sterilisation_cycle();
      c->set_cycle_number(static_cast<uint64_t>(round + 1));
      c->set_method("steam_prevacuum");
      c->set_start_unix_ms(cycle_end - 45 * 60'000);
      c->set_end_unix_ms(cycle_end);
      c->set_exposure_temperature_c(134.5);
      c->set_exposure_seconds(240);
      c->set_chemical_indicator(rollertrace::v1::INDICATOR_PASS);
      c->set_biological_indicator(rollertrace::v1::INDICATOR_PENDING);
      for (int k = 0; k < kRollersPerSteriliser; ++k) c->add_load(Roller(s * kRollersPerSteriliser + k));
      EventBatch b;
      b.set_device_id(Steriliser(s));
      *b.add_events() = std::move(e);
      batches.push_back(std::move(b));
    }
    if (auto st = AppendAll(batches, cycle_end + 60'000); !st.ok()) return st;
    stored += g_sterilisers;
    // Sessions, 20 rollers per Append.
    for (int i = 0; i < g_rollers; ++i) {
      const std::string id = Roller(i);
      const std::string session = id + "-s" + std::to_string(round + 1);
      const int64_t start = cycle_end + kDay + (i % 480) * 60'000;
      EventBatch b;
      b.set_device_id(id);
      Event e = Base(id, ++roller_seq[i], start);
      auto* st = e.mutable_session_started();
      st->set_session_id(session);
      st->set_patient_pseudonym(Patient(i));
      st->set_operator_id("op-" + std::to_string(i % 40));
      st->set_indication(rollertrace::v1::INDICATION_PIGMENTATION);
      st->set_area(rollertrace::v1::AREA_FACE);
      st->set_needle_length_mm(1.0);
      st->set_anaesthesia_applied_unix_ms(start - 35 * 60'000);
      *b.add_events() = std::move(e);
      for (int k = 0; k < samples; ++k) {
        Event u = Base(id, ++roller_seq[i], start + (k + 1) * 1000);
        u.mutable_usage_sample()->set_session_id(session);
        u.mutable_usage_sample()->set_revolutions(3);
        u.mutable_usage_sample()->set_pressure_kpa(12.5);
        *b.add_events() = std::move(u);
      }
      Event end = Base(id, ++roller_seq[i], start + (samples + 1) * 1000);
      end.mutable_session_ended()->set_session_id(session);
      end.mutable_session_ended()->set_total_revolutions(3ULL * static_cast<uint64_t>(samples));
      *b.add_events() = std::move(end);
      stored += b.events_size();
      batches.push_back(std::move(b));
      if (batches.size() == 20 || i + 1 == g_rollers) {
        if (auto s = AppendAll(batches, start + kDay / 2); !s.ok()) return s;
      }
      if (std::chrono::steady_clock::now() - last_note > std::chrono::seconds(10)) {
        last_note = std::chrono::steady_clock::now();
        const double secs = std::chrono::duration<double>(last_note - started).count();
        std::cerr << "building: " << stored << " of ~" << g_events << " events, "
                  << static_cast<int64_t>(stored / secs) << " events/s\n";
      }
    }
  }
  std::cerr << "built: " << stored << " events in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() << " s\n";
  return absl::OkStatus();
}

void RollerTrail(benchmark::State& state) {
  std::mt19937 rng(1);
  size_t events = 0;
  for (auto _ : state) {
    auto trail = g_store->audit().RollerTrail(Roller(static_cast<int>(rng() % g_rollers)), 10000);
    if (!trail.ok()) {
      state.SkipWithError(std::string(trail.status().message()).c_str());
      return;
    }
    events = trail->events_size();
    benchmark::DoNotOptimize(trail);
  }
  state.counters["events_per_trail"] = static_cast<double>(events);
}
BENCHMARK(RollerTrail)->Unit(benchmark::kMillisecond);

void PatientTrail(benchmark::State& state) {
  std::mt19937 rng(2);
  for (auto _ : state) {
    auto trail = g_store->audit().PatientTrail(Patient(static_cast<int>(rng() % g_rollers)));
    if (!trail.ok() || trail->sessions_size() != kSessions) {
      state.SkipWithError("patient trail incomplete");
      return;
    }
    benchmark::DoNotOptimize(trail);
  }
}
BENCHMARK(PatientTrail)->Unit(benchmark::kMillisecond);

void CycleTrail(benchmark::State& state) {
  std::mt19937 rng(3);
  for (auto _ : state) {
    auto trail = g_store->audit().CycleTrail(Steriliser(static_cast<int>(rng() % g_sterilisers)), 1 + rng() % kSessions);
    if (!trail.ok()) {
      state.SkipWithError(std::string(trail.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(trail);
  }
}
BENCHMARK(CycleTrail)->Unit(benchmark::kMillisecond);

void MonthReport(benchmark::State& state) {
  for (auto _ : state) {
    auto r = g_store->audit().Report(kBase, kBase + 30 * kDay, kBase + 31 * kDay);
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    state.counters["sessions"] = r->sessions();
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(MonthReport)->Unit(benchmark::kMillisecond)->Iterations(3);

// The whole store recomputed: every chain of every device, as rollerctl verify
// or ingestd --verify-interval-s does. Run alone: --benchmark_filter=VerifyAll.
void VerifyAll(benchmark::State& state) {
  for (auto _ : state) {
    auto r = g_store->verifier().Verify("");
    if (!r.ok() || !r->intact()) {
      state.SkipWithError("verification failed");
      return;
    }
    state.counters["records"] = static_cast<double>(r->records_checked());
  }
}
BENCHMARK(VerifyAll)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--events=", 0) == 0) {
      g_events = std::stoll(arg.substr(9));
    } else if (arg.rfind("--store=", 0) == 0) {
      g_store_dir = arg.substr(8);
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (g_events < 10'000) {
    std::cerr << "trail_bench: --events must be at least 10000\n";
    return 2;
  }
  g_rollers = static_cast<int>(std::max<int64_t>(kRollersPerSteriliser, g_events / 1000));
  g_rollers -= g_rollers % kRollersPerSteriliser;
  g_sterilisers = g_rollers / kRollersPerSteriliser;
  if (g_store_dir.empty()) {
    g_store_dir = (std::filesystem::temp_directory_path() / ("rollertrace-trail-bench-" + std::to_string(g_events)))
                      .string();
  }
  const std::string built_marker = g_store_dir + ".built";
  const bool exists = std::filesystem::exists(built_marker);
  if (!exists) std::filesystem::remove_all(g_store_dir);
  rollertrace::store::StoreOptions options;
  options.sync = false;
  auto store = rollertrace::store::EventStore::Open(g_store_dir, options);
  if (!store.ok()) {
    std::cerr << "trail_bench: " << store.status() << "\n";
    return 1;
  }
  g_store = store->get();
  if (exists) {
    std::cerr << "using the store built before in " << g_store_dir << "\n";
  } else {
    std::cerr << "building a store of ~" << g_events << " events (" << g_rollers << " rollers, " << g_sterilisers
              << " sterilisers, " << SamplesPerSession() << " usage samples a session) in " << g_store_dir << "\n";
    if (absl::Status s = Build(); !s.ok()) {
      std::cerr << "trail_bench: building the store failed: " << s << "\n";
      return 1;
    }
    std::ofstream(built_marker) << g_events << "\n";
  }
  int bench_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&bench_argc, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  store->reset();
  return 0;
}
