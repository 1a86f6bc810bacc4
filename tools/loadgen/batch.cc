#include "loadgen/batch.h"

namespace rollertrace::loadgen {

rollertrace::v1::EventBatch MakeBatch(const std::string& device, int device_index, uint64_t first, int events) {
  constexpr int64_t kBase = 1764000000000;
  rollertrace::v1::EventBatch b;
  b.set_device_id(device);
  for (int k = 0; k < events; ++k) {
    const uint64_t seq = first + static_cast<uint64_t>(k);
    auto* e = b.add_events();
    e->set_sequence(seq);
    e->set_device_time_unix_ms(kBase + static_cast<int64_t>(seq) * 1000);
    std::string session = "s";  // appended, not concatenated: GCC 12 warns falsely (-Wrestrict) on "s" + string
    session += std::to_string((seq - 1) / 100);
    if (seq % 100 == 1) {
      auto* s = e->mutable_session_started();
      s->set_session_id(session);
      std::string patient = "P-";
      patient += std::to_string(device_index);
      s->set_patient_ref(patient);
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

}  // namespace rollertrace::loadgen
