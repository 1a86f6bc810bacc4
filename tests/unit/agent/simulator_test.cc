#include "agent/simulator.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "codec/limits.h"
#include "rules/registration.h"

namespace rollertrace::edge {
namespace {

SimOptions Options(uint64_t seed, int rollers = 10, int sterilisers = 2, int days = 42) {
  SimOptions o;
  o.seed = seed;
  o.rollers = rollers;
  o.sterilisers = sterilisers;
  o.days = days;
  o.end_unix_ms = 1764000000000;
  return o;
}

TEST(ClinicSimulator, IsRepeatableFromItsSeed) {
  ClinicSimulator a(Options(3)), b(Options(3)), c(Options(4));
  ASSERT_EQ(a.events().size(), b.events().size());
  for (size_t i = 0; i < a.events().size(); ++i) {
    EXPECT_EQ(a.events()[i].event.SerializeAsString(), b.events()[i].event.SerializeAsString());
  }
  bool differs = a.events().size() != c.events().size();
  for (size_t i = 0; !differs && i < a.events().size(); ++i) {
    differs = a.events()[i].event.SerializeAsString() != c.events()[i].event.SerializeAsString();
  }
  EXPECT_TRUE(differs);
}

TEST(ClinicSimulator, RegistersValidDevices) {
  ClinicSimulator sim(Options(1));
  ASSERT_EQ(sim.devices().size(), 12u);
  for (const auto& d : sim.devices()) EXPECT_TRUE(rules::ValidateRegistration(d).ok()) << d.device_id();
}

TEST(ClinicSimulator, PlansCoursesOfAtMostFourSessionsOnePatientEach) {
  ClinicSimulator sim(Options(5));
  std::map<std::string, int> sessions;
  std::map<std::string, std::set<std::string>> patients;
  int64_t last = 0;
  for (const auto& e : sim.events()) {
    EXPECT_GE(e.event.device_time_unix_ms(), last);
    EXPECT_LT(e.event.device_time_unix_ms(), 1764000000000);
    last = e.event.device_time_unix_ms();
    if (e.event.has_session_started()) {
      ++sessions[e.event.device_id()];
      patients[e.event.device_id()].insert(e.event.session_started().patient_ref());
    }
  }
  EXPECT_EQ(sessions.size(), 10u);
  for (const auto& [id, n] : sessions) {
    EXPECT_GE(n, 1) << id;
    EXPECT_LE(n, 4) << id;
    EXPECT_EQ(patients[id].size(), 1u) << id;
  }
}

TEST(ClinicSimulator, SterilisesEveryRollerOnTheMorningItIsUsed) {
  ClinicSimulator sim(Options(9));
  std::map<std::string, int64_t> last_cycle_end;
  for (const auto& e : sim.events()) {
    if (e.event.has_sterilisation_cycle()) {
      EXPECT_EQ(e.kind, codec::TopicKind::kSteriliserCycles);
      for (const auto& roller : e.event.sterilisation_cycle().load()) {
        last_cycle_end[roller] = e.event.sterilisation_cycle().end_unix_ms();
      }
    }
    if (e.event.has_session_started()) {
      auto it = last_cycle_end.find(e.event.device_id());
      ASSERT_NE(it, last_cycle_end.end()) << e.event.device_id();
      EXPECT_LT(e.event.device_time_unix_ms() - it->second, 24 * 3600 * 1000) << e.event.device_id();
    }
  }
}

// A big clinic's morning is many loads: none may exceed what ingestd accepts
// (a 10,000-roller fleet once sent loads of 1,400 rollers, all refused).
TEST(ClinicSimulator, SplitsABigClinicsMorningIntoLoadsIngestdAccepts) {
  ClinicSimulator sim(Options(5, 10000, 100, 7));
  std::set<std::string> sterilised, used;
  std::set<std::string> sterilisers_used;
  for (const auto& e : sim.events()) {
    if (e.event.has_sterilisation_cycle()) {
      const auto& load = e.event.sterilisation_cycle().load();
      EXPECT_LE(load.size(), 50);
      EXPECT_LE(static_cast<size_t>(load.size()), codec::Limits::kLoadRollers);
      sterilised.insert(load.begin(), load.end());
      sterilisers_used.insert(e.event.device_id());
    }
    if (e.event.has_session_started()) used.insert(e.event.device_id());
  }
  for (const auto& r : used) EXPECT_TRUE(sterilised.count(r)) << r;
  EXPECT_GT(sterilisers_used.size(), 50u);
}

// roller-fleet --processes: a process must hold every cycle its rollers'
// sessions rely on, or a session would wait for another process's steriliser.
TEST(ClinicSimulator, SplitsOverProcessesWithEachRollerBesideItsSteriliser) {
  const SimOptions o = Options(7, 300, 7, 21);
  ClinicSimulator sim(o);
  constexpr int kProcesses = 3;
  std::map<std::string, int> process_of;
  std::vector<int> devices_in(kProcesses, 0);
  for (size_t i = 0; i < sim.devices().size(); ++i) {
    const int p = ProcessOfDevice(o, static_cast<int>(i), kProcesses);
    ASSERT_GE(p, 0);
    ASSERT_LT(p, kProcesses);
    process_of[sim.devices()[i].device_id()] = p;
    ++devices_in[p];
  }
  for (int p = 0; p < kProcesses; ++p) EXPECT_GT(devices_in[p], 60) << "process " << p << " is nearly empty";
  size_t cycles = 0;
  for (const auto& e : sim.events()) {
    if (!e.event.has_sterilisation_cycle()) continue;
    ++cycles;
    for (const auto& roller : e.event.sterilisation_cycle().load()) {
      EXPECT_EQ(process_of[roller], process_of[e.event.device_id()]) << roller << " in " << e.event.device_id();
    }
  }
  EXPECT_GT(cycles, 0u);
  for (int i = 0; i < static_cast<int>(sim.devices().size()); ++i) {
    EXPECT_EQ(ProcessOfDevice(o, i, 1), 0);
  }
}

}  // namespace
}  // namespace rollertrace::edge

namespace rollertrace::edge {
namespace {

TEST(ClinicSimulator, InjectsViolationsAtTheConfiguredRate) {
  SimOptions o = Options(2);
  o.rollers = 20;
  o.violation_rate = 1.0;
  o.days = 60;
  ClinicSimulator sim(o);
  std::map<std::string, std::set<std::string>> patients;
  std::map<std::string, int> sessions;
  for (const auto& e : sim.events()) {
    if (!e.event.has_session_started()) continue;
    patients[e.event.device_id()].insert(e.event.session_started().patient_ref());
    ++sessions[e.event.device_id()];
  }
  bool second_patient = false, fifth_session = false;
  for (const auto& [id, p] : patients) second_patient |= p.size() > 1;
  for (const auto& [id, n] : sessions) fifth_session |= n == 5;
  EXPECT_TRUE(second_patient);
  EXPECT_TRUE(fifth_session);

  o.violation_rate = 0;
  ClinicSimulator clean(o);
  for (const auto& e : clean.events()) {
    if (e.event.has_session_started()) {
      EXPECT_NE(e.event.session_started().session_id().back(), '5') << "a fifth session without injection";
    }
  }
}

}  // namespace
}  // namespace rollertrace::edge
