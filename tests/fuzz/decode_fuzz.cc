// Fuzz target for everything a device or gateway can send: a topic and a
// payload, decoded as ingestd and mqtt-bridge decode them. Whatever the bytes,
// decoding returns a value or an error, never crashes, and what it accepts
// holds the invariants the store relies on.
//
// Built two ways (tests/CMakeLists.txt): with clang's libFuzzer
// (-DROLLERTRACE_FUZZ=ON, CXX=clang++) for open-ended fuzzing, and with the
// deterministic mutation driver in fuzz_driver.cc as a ctest.
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

#include "codec/codec.h"

namespace {

void Check(bool ok, const char* what) {
  if (ok) return;
  std::cerr << "decode_fuzz: invariant broken: " << what << "\n";
  std::abort();
}

}  // namespace

// Inputs the decoders accepted (the driver reports it: mutants must get through too).
uint64_t g_decode_fuzz_accepted = 0;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rollertrace;
  if (size == 0) return 0;
  // The first byte picks the topic; the rest is the payload (or the topic text).
  const uint8_t selector = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (selector % 4) {
    case 0: {  // a topic string as it arrives from the broker
      auto topic = codec::ParseTopic(rest);
      if (topic.ok()) Check(codec::ValidateDeviceId(topic->device_id).ok(), "parsed topic with a bad device id");
      auto authorize = codec::ParseAuthorizeTopic(rest);
      if (authorize.ok()) Check(codec::ValidateDeviceId(*authorize).ok(), "authorize topic with a bad device id");
      break;
    }
    case 1:
    case 2: {  // an event batch, binary or JSON, on a roller's or a steriliser's topic
      codec::Topic topic{(selector & 0x10) ? codec::TopicKind::kSteriliserCycles : codec::TopicKind::kRollerEvents,
                         "R-0001", selector % 4 == 2};
      auto batch = codec::DecodeBatch(topic, rest, 4096);
      if (!batch.ok()) {
        const std::string_view reason = codec::RejectReason(batch.status());
        Check(reason == "oversized" || reason == "malformed" || reason == "device_mismatch" || reason == "invalid" ||
                  reason == "out_of_range",
              "a rejection without a known reason");
        break;
      }
      ++g_decode_fuzz_accepted;
      Check(rest.size() <= 4096, "an oversized payload accepted");
      Check(batch->events_size() > 0, "an empty batch accepted");
      for (const auto& e : batch->events()) {
        Check(e.device_id() == "R-0001", "an event of another device accepted");
        Check(e.sequence() >= 1, "sequence 0 accepted");
        Check(e.device_time_unix_ms() >= codec::Limits::kEarliestUnixMs &&
                  e.device_time_unix_ms() <= codec::Limits::kLatestUnixMs,
              "a device time that is no clock accepted");
        Check(e.body_case() != rollertrace::v1::Event::BODY_NOT_SET, "an event without a body accepted");
        Check(e.has_sterilisation_cycle() == (topic.kind == codec::TopicKind::kSteriliserCycles),
              "a body accepted on the wrong topic");
      }
      // What was accepted encodes and decodes to the same batch.
      auto again = codec::DecodeBatch(topic, codec::EncodeBatch(*batch, topic.json), 1 << 20);
      Check(again.ok() && again->SerializeAsString() == batch->SerializeAsString(), "round trip changed the batch");
      break;
    }
    case 3: {  // an authorisation request, binary or JSON
      auto request = codec::DecodeAuthorize("R-0001", rest, 4096);
      if (request.ok()) {
        ++g_decode_fuzz_accepted;
        Check(request->device_id() == "R-0001", "an authorisation for another device accepted");
      }
      break;
    }
  }
  return 0;
}
