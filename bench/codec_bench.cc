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
#include "rollertrace/v1/services.pb.h"

namespace {

constexpr int kEvents = 50;

rollertrace::v1::EventBatch LoadgenBatch() { return rollertrace::loadgen::MakeBatch("R-00042", 42, 101, kEvents); }

absl::StatusOr<rollertrace::codec::Topic> LoadgenTopic(bool json) {
  return rollertrace::codec::ParseTopic(
      rollertrace::codec::EventsTopic(rollertrace::codec::TopicKind::kRollerEvents, "R-00042", json));
}

void DecodeBatch(benchmark::State& state, bool json) {
  const std::string payload = rollertrace::codec::EncodeBatch(LoadgenBatch(), json);
  auto topic = LoadgenTopic(json);
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

// What the bridge pays for a binary batch from the broker to gRPC's bytes:
// decoded and checked, moved into a request, serialised, freed.
void BinaryBatchToRequest(benchmark::State& state) {
  const std::string payload = rollertrace::codec::EncodeBatch(LoadgenBatch(), false);
  const rollertrace::codec::Topic topic = LoadgenTopic(false).value();  // a constant topic
  for (auto _ : state) {
    auto batch = rollertrace::codec::DecodeBatch(topic, payload);
    if (!batch.ok()) {
      state.SkipWithError("decode");
      return;
    }
    rollertrace::v1::IngestRequest request;
    *request.add_batches() = std::move(*batch);
    std::string bytes = request.SerializeAsString();
    benchmark::DoNotOptimize(bytes);
  }
  state.SetItemsProcessed(state.iterations() * kEvents);
}

// The floor of a bridge that checked each binary batch in one message kept
// between batches (protobuf reuses its cleared events) and forwarded the
// payload's own bytes: not what the bridge does (docs/BENCHMARKS.md,
// thirteenth session, says why).
void BinaryCheckReusedMessage(benchmark::State& state) {
  const std::string payload = rollertrace::codec::EncodeBatch(LoadgenBatch(), false);
  rollertrace::v1::EventBatch batch;
  for (auto _ : state) {
    if (!batch.ParseFromString(payload) || !rollertrace::codec::ValidateEvents("R-00042", &batch).ok()) {
      state.SkipWithError("decode");
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
BENCHMARK(BinaryBatchToRequest);
BENCHMARK(BinaryCheckReusedMessage);
BENCHMARK_MAIN();
