// What the bridge spends decoding one device batch (issue #11): 50 events as
// rollertrace-loadgen publishes them (a session start, then usage samples),
// in JSON (simdjson into protobuf, lib/codec/fast_json.h) and in binary.
// Run: build/bench/codec_bench   (per batch; divide by 50 for an event)
#include <benchmark/benchmark.h>

#include <string>

#include "codec/codec.h"
#include "codec/fast_json.h"
#include "rollertrace/v1/events.pb.h"

namespace {

constexpr int kEvents = 50;

rollertrace::v1::EventBatch LoadgenBatch() {
  rollertrace::v1::EventBatch b;
  b.set_device_id("R-00042");
  for (int k = 0; k < kEvents; ++k) {
    const uint64_t seq = 101 + static_cast<uint64_t>(k);
    auto* e = b.add_events();
    e->set_sequence(seq);
    e->set_device_time_unix_ms(1764000000000 + static_cast<int64_t>(seq) * 1000);
    std::string session = "s";  // appended: GCC 12 warns falsely (-Wrestrict) on "s" + string
    session += std::to_string((seq - 1) / 100);
    if (seq % 100 == 1) {
      auto* s = e->mutable_session_started();
      s->set_session_id(session);
      s->set_patient_ref("P-42");
      s->set_operator_id("op-1");
      s->set_needle_length_mm(1.0);
    } else {
      auto* u = e->mutable_usage_sample();
      u->set_session_id(session);
      u->set_revolutions(12);
      u->set_pressure_kpa(3.5);
    }
  }
  return b;
}

void DecodeBatch(benchmark::State& state, bool json) {
  const std::string payload = rollertrace::codec::EncodeBatch(LoadgenBatch(), json);
  auto topic = rollertrace::codec::ParseTopic(
      rollertrace::codec::EventsTopic(rollertrace::codec::TopicKind::kRollerEvents, "R-00042", json));
  if (!topic.ok()) {
    state.SkipWithError("topic");
    return;
  }
  for (auto _ : state) {
    auto batch = rollertrace::codec::DecodeBatch(*topic, payload);
    if (!batch.ok() || batch->events_size() != kEvents) {
      state.SkipWithError("decode");
      return;
    }
    benchmark::DoNotOptimize(batch);
  }
  state.SetItemsProcessed(state.iterations() * kEvents);
  state.counters["payload_bytes"] = static_cast<double>(payload.size());
}

void JsonBatch(benchmark::State& state) { DecodeBatch(state, true); }
void BinaryBatch(benchmark::State& state) { DecodeBatch(state, false); }

// The JSON decoder alone, without the validation both formats share.
void FastJsonOnly(benchmark::State& state) {
  const std::string payload = rollertrace::codec::EncodeBatch(LoadgenBatch(), true);
  rollertrace::v1::EventBatch batch;
  for (auto _ : state) {
    if (!rollertrace::codec::FastJsonToMessage(payload, &batch)) {
      state.SkipWithError("declined");
      return;
    }
    benchmark::DoNotOptimize(batch);
  }
  state.SetItemsProcessed(state.iterations() * kEvents);
}

}  // namespace

BENCHMARK(JsonBatch);
BENCHMARK(BinaryBatch);
BENCHMARK(FastJsonOnly);
BENCHMARK_MAIN();
