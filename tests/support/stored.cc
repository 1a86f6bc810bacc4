#include "support/stored.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "pseudonym/pseudonymizer.h"

namespace rollertrace::testing {

using rollertrace::v1::Event;

// Every event the simulator planned is in the store once, in sequence order,
// with the patient reference replaced by its pseudonym; no gap is open.
namespace {

// The session an event belongs to; empty for events of no session.
const std::string& SessionOf(const Event& e) {
  static const std::string none;
  if (e.has_session_started()) return e.session_started().session_id();
  if (e.has_usage_sample()) return e.usage_sample().session_id();
  if (e.has_session_ended()) return e.session_ended().session_id();
  return none;
}

void ExpectStored(Cluster& cluster, const edge::SimOptions& options, bool authorized, bool offline_ok,
                  const std::set<std::string>& refused) {
  edge::ClinicSimulator clinic(options);
  auto pseudonymizer = pseudonym::Pseudonymizer::FromSecret(kTestSecret);
  ASSERT_TRUE(pseudonymizer.ok());
  std::map<std::string, std::vector<Event>> expected;
  for (const auto& e : clinic.events()) {
    if (!refused.empty() && refused.count(SessionOf(e.event))) continue;  // it never took place
    expected[e.event.device_id()].push_back(e.event);
  }
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
        if (!offline_ok) {
          EXPECT_FALSE(got.session_started().offline_decision()) << id << " position " << i;
        }
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

}  // namespace

void ExpectStoredExactlyOnce(Cluster& cluster, const edge::SimOptions& options, bool authorized) {
  ExpectStored(cluster, options, authorized, /*offline_ok=*/false, {});
}

FleetOutcome ReadFleetOutcome(const std::string& fleet_log) {
  // "roller-fleet: R-N0007 session R-N0007-s2 refused offline: NOT_STERILE (...)"
  FleetOutcome out;
  std::istringstream lines(fleet_log);
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find(" session ");
    const auto refused = line.find(" refused");
    if (at == std::string::npos || refused == std::string::npos || refused < at) continue;
    if (line.find("carried on anyway") != std::string::npos) continue;
    out.refused_sessions.insert(line.substr(at + 9, refused - at - 9));
  }
  return out;
}

void ExpectStoredExactlyOnce(Cluster& cluster, const edge::SimOptions& options, const FleetOutcome& outcome) {
  ExpectStored(cluster, options, /*authorized=*/true, /*offline_ok=*/true, outcome.refused_sessions);
}

}  // namespace rollertrace::testing
