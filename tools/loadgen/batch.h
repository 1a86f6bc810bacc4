// The batches rollertrace-loadgen publishes: usage samples with a session
// start every 100th event, one patient per device. Shared with the benchmarks
// that decode them (bench/codec_bench.cc).
#pragma once

#include <cstdint>
#include <string>

#include "rollertrace/v1/events.pb.h"

namespace rollertrace::loadgen {

// `events` events of `device` (the loadgen's device number `device_index`
// names its patient) with sequences from `first`.
rollertrace::v1::EventBatch MakeBatch(const std::string& device, int device_index, uint64_t first, int events);

}  // namespace rollertrace::loadgen
