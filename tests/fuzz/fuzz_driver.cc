// A deterministic mutation driver for the fuzz targets when libFuzzer is not
// available (g++ builds, ctest): starts from valid inputs of every kind and
// feeds LLVMFuzzerTestOneInput a bounded number of mutants (bit flips, byte
// changes, truncations, insertions, splices). A crash or an abort fails it.
//
//   decode_fuzz_smoke [iterations] [seed]
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "mutate_bytes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern uint64_t g_decode_fuzz_accepted;

namespace {

std::vector<std::string> Seeds() {
  using rollertrace::v1::EventBatch;
  EventBatch batch;
  batch.set_device_id("R-0001");
  auto* start = batch.add_events();
  start->set_sequence(1);
  start->set_device_time_unix_ms(1764000000000);
  start->mutable_session_started()->set_session_id("s1");
  start->mutable_session_started()->set_patient_ref("MRN-1");
  auto* usage = batch.add_events();
  usage->set_sequence(2);
  usage->mutable_usage_sample()->set_revolutions(40);
  usage->mutable_usage_sample()->set_pressure_kpa(12.5);
  EventBatch cycles;
  cycles.set_device_id("R-0001");
  auto* cycle = cycles.add_events();
  cycle->set_sequence(1);
  cycle->mutable_sterilisation_cycle()->set_cycle_number(7);
  cycle->mutable_sterilisation_cycle()->add_load("R-0002");
  rollertrace::v1::AuthorizeRequest ask;
  ask.set_correlation_id("c1");
  ask.mutable_session()->set_patient_ref("MRN-1");
  using rollertrace::codec::EncodeBatch;
  return {
      std::string(1, '\0') + "rollers/R-0001/events",
      std::string(1, '\0') + "sterilisers/S-1/cycles/json",
      std::string(1, '\0') + "rollers/R-0001/authorize",
      std::string(1, '\1') + EncodeBatch(batch, false),
      std::string(1, '\2') + EncodeBatch(batch, true),
      std::string(1, '\x11') + EncodeBatch(cycles, false),
      std::string(1, '\x12') + EncodeBatch(cycles, true),
      std::string(1, '\3') + ask.SerializeAsString(),
      std::string(1, '\3') + R"({"correlationId":"c1","session":{"patientRef":"MRN-1"}})",
  };
}

}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 200000;
  std::mt19937_64 rng(argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 20261125);
  const std::vector<std::string> seeds = Seeds();
  for (const auto& s : seeds) LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  for (long i = 0; i < iterations; ++i) {
    const std::string input = rollertrace::fuzz::MutateBytes(seeds[rng() % seeds.size()], seeds, rng);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  }
  std::cout << "decode_fuzz: " << iterations << " mutated inputs from " << seeds.size() << " seeds, "
            << g_decode_fuzz_accepted << " accepted; no crash, every invariant held\n";
  if (g_decode_fuzz_accepted < static_cast<uint64_t>(iterations) / 100) {
    std::cout << "decode_fuzz: too few mutants decode for the invariants to be exercised\n";
    return 1;
  }
  return 0;
}
