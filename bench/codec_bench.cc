// What the bridge spends decoding one device batch (issue #11): 50 events as
// rollertrace-loadgen publishes them (a session start, then usage samples),
// in JSON (simdjson into protobuf, lib/codec/fast_json.h) and in binary.
// Run: build/bench/codec_bench   (per batch; divide by 50 for an event)
#include <benchmark/benchmark.h>

#include <string>

#include "codec/codec.h"
#include "codec/fast_json.h"
#include "loadgen/batch.h"
#include "rollertrace/v1/events.pb.h"

namespace {

constexpr int kEvents = 50;

rollertrace::v1::EventBatch LoadgenBatch() { return rollertrace::loadgen::MakeBatch("R-00042", 42, 101, kEvents); }

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
