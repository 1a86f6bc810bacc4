#include "support/stored.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <map>

#include "pseudonym/pseudonymizer.h"

namespace rollertrace::testing {

using rollertrace::v1::Event;

// Every event the simulator planned is in the store once, in sequence order,
// with the patient reference replaced by its pseudonym; no gap is open.
void ExpectStoredExactlyOnce(Cluster& cluster, const edge::SimOptions& options, bool authorized) {
  edge::ClinicSimulator clinic(options);
  auto pseudonymizer = pseudonym::Pseudonymizer::FromSecret(kTestSecret);
  ASSERT_TRUE(pseudonymizer.ok());
  std::map<std::string, std::vector<Event>> expected;
  for (const auto& e : clinic.events()) expected[e.event.device_id()].push_back(e.event);
  ASSERT_LE(expected.size(), clinic.devices().size());  // a steriliser may have run no load
  ASSERT_GE(expected.size(), static_cast<size_t>(options.rollers));
  for (const auto& [id, events] : expected) {
    std::vector<v1::StoredEvent> stored = cluster.History(id);
    ASSERT_EQ(stored.size(), events.size()) << "device " << id;
    for (size_t i = 0; i < events.size(); ++i) {
      Event got = stored[i].event();
      if (got.has_session_started() && authorized) {
        // Asked before it started: the decision it started under is recorded.
        EXPECT_FALSE(got.session_started().decision_id().empty()) << id << " position " << i;
        EXPECT_FALSE(got.session_started().offline_decision()) << id << " position " << i;
      }
      if (got.has_session_started()) {
        got.mutable_session_started()->clear_decision_id();
        got.mutable_session_started()->clear_offline_decision();
      }
      Event want = events[i];
      want.set_sequence(i + 1);
      if (want.has_session_started()) {
        auto* s = want.mutable_session_started();
        s->set_patient_pseudonym(pseudonymizer->Pseudonym(s->patient_ref()));
        s->clear_patient_ref();
      }
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(got, want))
          << "device " << id << " position " << i << "\nstored: " << stored[i].event().ShortDebugString()
          << "\nwanted: " << want.ShortDebugString();
    }
    v1::DeviceRecord record = cluster.Device(id);
    EXPECT_EQ(record.state().events_stored(), events.size()) << id;
    EXPECT_EQ(record.state().contiguous_through(), events.size()) << id;
    EXPECT_EQ(record.state().open_gaps_size(), 0) << id;
  }
}


}  // namespace rollertrace::testing
