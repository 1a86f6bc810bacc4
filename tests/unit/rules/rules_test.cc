#include "rules/rules.h"

#include <gtest/gtest.h>

#include <functional>

namespace rollertrace::rules {
namespace {

constexpr int64_t kNow = 1764000000000;  // the session's start in every case
constexpr int64_t kHour = 60 * kMinuteMs;

// A roller that may be used right now: registered, sterilised yesterday by a
// passing cycle with its BI passed, two sessions on one patient, the last one
// ended ten days ago, wear well below 80 %.
RollerFacts Healthy() {
  RollerFacts r;
  r.registered = true;
  r.device.set_device_id("R-1");
  r.device.set_kind(rollertrace::v1::DEVICE_KIND_ROLLER);
  r.device.set_model("DRS-540");
  r.device.set_needle_count(540);
  r.device.set_needle_length_mm(1.0);
  r.device.set_rated_penetrations(540 * 3000);
  r.device.set_lifecycle(rollertrace::v1::LIFECYCLE_STERILE);
  r.sessions_started = 2;
  r.total_revolutions = 600;  // 20 %
  auto* use = &r.use;
  use->set_bound_patient("p-alice");
  use->set_last_session_start_unix_ms(kNow - 10 * kDayMs - kHour);
  use->set_last_session_end_unix_ms(kNow - 10 * kDayMs);
  use->set_last_passing_cycle_end_unix_ms(kNow - kDayMs);
  auto* c = use->mutable_last_cycle();
  c->set_steriliser_id("S-1");
  c->set_cycle_number(7);
  c->set_end_unix_ms(kNow - kDayMs);
  c->set_parameters_passed(true);
  c->set_chemical_indicator(rollertrace::v1::INDICATOR_PASS);
  c->set_biological_indicator(rollertrace::v1::INDICATOR_PASS);
  return r;
}

SessionRequest Request() {
  SessionRequest s;
  s.patient_pseudonym = "p-alice";
  s.indication = rollertrace::v1::INDICATION_REJUVENATION;
  s.area = rollertrace::v1::AREA_FACE;
  s.needle_length_mm = 1.0;
  s.anaesthesia_applied_unix_ms = kNow - 35 * kMinuteMs;
  s.start_unix_ms = kNow;
  return s;
}

struct Case {
  const char* name;
  std::function<void(RollerFacts&, SessionRequest&)> change;
  const char* rule;  // the rule that must fire, or nullptr for "none"
  bool allowed;
};

class RuleTest : public ::testing::TestWithParam<Case> {};

TEST_P(RuleTest, FiresExactlyWhereItsLimitIsCrossed) {
  const Case& c = GetParam();
  RollerFacts roller = Healthy();
  SessionRequest request = Request();
  c.change(roller, request);
  Decision d = Decide(Policy{}, roller, request);
  std::string fired;
  for (const auto& h : d.hits) fired += h.rule() + " ";
  EXPECT_EQ(d.allowed, c.allowed) << fired;
  if (c.rule != nullptr) {
    EXPECT_TRUE(d.Fired(c.rule)) << "fired: " << fired;
    // Exactly one rule: the case changes one fact only.
    EXPECT_EQ(d.hits.size(), 1u) << "fired: " << fired;
  } else {
    EXPECT_TRUE(d.hits.empty()) << "fired: " << fired;
  }
}

using R = RollerFacts;
using S = SessionRequest;

INSTANTIATE_TEST_SUITE_P(
    Rules, RuleTest,
    ::testing::Values(
        Case{"HealthyRollerIsAllowed", [](R&, S&) {}, nullptr, true},
        Case{"UnknownDevice", [](R& r, S&) { r.registered = false; }, kUnknownDevice, false},
        Case{"Retired", [](R& r, S&) { r.device.set_lifecycle(rollertrace::v1::LIFECYCLE_RETIRED); }, kDeviceRetired,
             false},
        Case{"Locked", [](R& r, S&) { r.device.set_lifecycle(rollertrace::v1::LIFECYCLE_LOCKED); }, kDeviceLocked,
             false},
        Case{"SamePatientAllowed", [](R&, S& s) { s.patient_pseudonym = "p-alice"; }, nullptr, true},
        Case{"SecondPatientRefused", [](R&, S& s) { s.patient_pseudonym = "p-bob"; }, kSinglePatient, false},
        Case{"FirstPatientBindsAnyone",
             [](R& r, S& s) {
               r.use.clear_bound_patient();
               s.patient_pseudonym = "p-bob";
             },
             nullptr, true},
        Case{"FourthSessionAllowed", [](R& r, S&) { r.sessions_started = 3; }, nullptr, true},
        Case{"FifthSessionRefused", [](R& r, S&) { r.sessions_started = 4; }, kSessionLimit, false},
        Case{"NeverSterilised",
             [](R& r, S&) {
               r.use.set_last_passing_cycle_end_unix_ms(0);
               r.use.clear_last_cycle();
             },
             kNotSterile, false},
        Case{"SterilisedBeforeThePreviousSessionOnly",
             [](R& r, S&) { r.use.set_last_passing_cycle_end_unix_ms(kNow - 11 * kDayMs); }, kNotSterile,
             false},
        Case{"SterilisedJustInsideShelfLife",
             [](R& r, S&) {
               r.use.set_last_session_end_unix_ms(kNow - 40 * kDayMs);
               r.use.set_last_session_start_unix_ms(kNow - 40 * kDayMs - kHour);
               r.use.set_last_passing_cycle_end_unix_ms(kNow - 30 * kDayMs);
               r.sessions_started = 0;
               r.use.clear_bound_patient();
             },
             kCourseGap, true},
        Case{"SterilisedJustOutsideShelfLife",
             [](R& r, S&) {
               r.use.set_last_session_end_unix_ms(0);
               r.use.set_last_session_start_unix_ms(0);
               r.use.set_last_passing_cycle_end_unix_ms(kNow - 30 * kDayMs - 1);
             },
             kSterilityExpired, false},
        Case{"CycleFailedItsParameters",
             [](R& r, S&) { r.use.mutable_last_cycle()->set_parameters_passed(false); }, kCycleFailed,
             false},
        Case{"CycleFailedItsBiologicalIndicator",
             [](R& r, S&) {
               r.use.mutable_last_cycle()->set_biological_indicator(rollertrace::v1::INDICATOR_FAIL);
             },
             kCycleFailed, false},
        Case{"PassingCycleEndingAfterTheStartDoesNotCount",
             [](R& r, S&) {
               r.use.set_last_passing_cycle_end_unix_ms(kNow + 1);
               r.use.mutable_last_cycle()->set_end_unix_ms(kNow + 1);
             },
             kNotSterile, false},
        Case{"PassingCycleEndingAtTheStartCounts",
             [](R& r, S&) {
               r.use.set_last_passing_cycle_end_unix_ms(kNow);
               r.use.mutable_last_cycle()->set_end_unix_ms(kNow);
             },
             nullptr, true},
        Case{"DeviceClockAheadIsFlagged", [](R&, S& s) { s.clock_ahead_ms = 6 * kMinuteMs; }, kClockSkew, true},
        Case{"AnaesthesiaAfterTheStartIsNamed",
             [](R&, S& s) { s.anaesthesia_applied_unix_ms = kNow + 10 * kMinuteMs; }, kAnaesthesiaTime, true},
        Case{"WearJustBelowWorn", [](R& r, S&) { r.total_revolutions = 2999; }, kWornSoon, true},
        Case{"WearAtWorn", [](R& r, S&) { r.total_revolutions = 3000; }, kWorn, false},
        Case{"MeasuredWearCountsWhenHigher", [](R& r, S&) { r.use.set_measured_wear(1.02); }, kWorn,
             false},
        Case{"WearAtWornSoon", [](R& r, S&) { r.total_revolutions = 2400; }, kWornSoon, true},
        Case{"WearJustBelowWornSoon", [](R& r, S&) { r.total_revolutions = 2399; }, nullptr, true},
        Case{"SevenDaysAfterPreviousSession",
             [](R& r, S&) {
               r.use.set_last_session_end_unix_ms(kNow - 7 * kDayMs);
               r.use.set_last_session_start_unix_ms(kNow - 7 * kDayMs - kHour);
             },
             nullptr, true},
        Case{"JustUnderSevenDaysAfterPreviousSession",
             [](R& r, S&) {
               r.use.set_last_session_end_unix_ms(kNow - 7 * kDayMs + 1);
               r.use.set_last_session_start_unix_ms(kNow - 7 * kDayMs);
             },
             kSessionTooSoon, false},
        // Issue #14: after a session on another patient (a SINGLE_PATIENT violation),
        // the bound patient was refused as "too soon" because of that session.
        Case{"AnotherPatientsRecentSessionIsNotThePatientsPrevious",
             [](R& r, S&) {
               r.use.set_bound_patient_last_session_end_unix_ms(kNow - 10 * kDayMs);
               r.use.set_last_session_start_unix_ms(kNow - 2 * kDayMs - kHour);
               r.use.set_last_session_end_unix_ms(kNow - 2 * kDayMs);
             },
             nullptr, true},
        Case{"ThePatientsOwnRecentSessionIsTooSoon",
             [](R& r, S&) {
               r.use.set_bound_patient_last_session_end_unix_ms(kNow - 2 * kDayMs);
               r.use.set_last_session_end_unix_ms(kNow - 2 * kDayMs);
             },
             kSessionTooSoon, false},
        Case{"NeedleLongerThanAnyRoller",
             [](R&, S& s) {
               s.indication = rollertrace::v1::INDICATION_ACNE;
               s.needle_length_mm = 2.6;
             },
             kNeedleOutOfRange, false},
        Case{"NeedleUnusualForRejuvenation", [](R&, S& s) { s.needle_length_mm = 1.5; }, kNeedleForIndication, true},
        Case{"AnaesthesiaThirtyMinutes", [](R&, S& s) { s.anaesthesia_applied_unix_ms = kNow - 30 * kMinuteMs; },
             nullptr, true},
        Case{"AnaesthesiaTooShort",
             [](R&, S& s) { s.anaesthesia_applied_unix_ms = kNow - 30 * kMinuteMs + 1; }, kAnaesthesiaTime, true},
        Case{"AnaesthesiaTooLong",
             [](R&, S& s) { s.anaesthesia_applied_unix_ms = kNow - 45 * kMinuteMs - 1; }, kAnaesthesiaTime, true},
        Case{"AnaesthesiaNotRecorded", [](R&, S& s) { s.anaesthesia_applied_unix_ms = 0; }, kAnaesthesiaTime, true},
        Case{"ScalpNeedsNoAnaesthesia",
             [](R&, S& s) {
               s.area = rollertrace::v1::AREA_SCALP;
               s.anaesthesia_applied_unix_ms = 0;
             },
             nullptr, true},
        Case{"FourteenDaysGap",
             [](R& r, S&) {
               r.use.set_last_session_end_unix_ms(kNow - 14 * kDayMs);
               r.use.set_last_session_start_unix_ms(kNow - 14 * kDayMs - kHour);
             },
             nullptr, true},
        Case{"MoreThanFourteenDaysGap",
             [](R& r, S&) {
               r.use.set_last_session_end_unix_ms(kNow - 14 * kDayMs - 1);
               r.use.set_last_session_start_unix_ms(kNow - 14 * kDayMs - kHour);
             },
             kCourseGap, true},
        Case{"BiologicalIndicatorPending",
             [](R& r, S&) {
               r.use.mutable_last_cycle()->set_biological_indicator(rollertrace::v1::INDICATOR_PENDING);
             },
             kBiPending, true}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

TEST(Rules, ReportsEveryDenyRuleThatHolds) {
  RollerFacts r = Healthy();
  r.sessions_started = 4;
  r.total_revolutions = 4000;
  SessionRequest s = Request();
  s.patient_pseudonym = "p-bob";
  Decision d = Decide(Policy{}, r, s);
  EXPECT_FALSE(d.allowed);
  EXPECT_TRUE(d.Fired(kSinglePatient));
  EXPECT_TRUE(d.Fired(kSessionLimit));
  EXPECT_TRUE(d.Fired(kWorn));
}

TEST(Rules, ACycleThatFailedOnlyItsChemicalIndicatorSaysSo) {
  // Seen (issue #14): reported as "failed its parameters".
  RollerFacts r = Healthy();
  r.use.mutable_last_cycle()->set_parameters_passed(false);  // EvaluateCycle fails a cycle whose CI failed
  r.use.mutable_last_cycle()->set_chemical_indicator(rollertrace::v1::INDICATOR_FAIL);
  Decision d = Decide(Policy{}, r, Request());
  ASSERT_TRUE(d.Fired(kCycleFailed));
  for (const auto& h : d.hits) {
    if (h.rule() != kCycleFailed) continue;
    EXPECT_NE(h.detail().find("failed its chemical indicator"), std::string::npos) << h.detail();
    EXPECT_EQ(h.detail().find("parameters"), std::string::npos) << h.detail();
  }
}

TEST(Rules, LocksForTheRulesDomainNames) {
  for (const char* r : {kWorn, kSinglePatient, kNotSterile, kCycleFailed, kSessionLimit}) EXPECT_TRUE(LocksRoller(r));
  for (const char* r : {kSessionTooSoon, kSterilityExpired, kWornSoon, kDeviceLocked}) EXPECT_FALSE(LocksRoller(r));
}

TEST(Rules, UsesTheModelsSessionLimit) {
  Policy p;
  p.session_limit_by_model["DRS-540"] = 3;
  RollerFacts r = Healthy();
  r.sessions_started = 3;
  EXPECT_TRUE(Decide(p, r, Request()).Fired(kSessionLimit));
}

rollertrace::v1::SterilisationCycle Cycle(const char* method, double temp, uint32_t seconds) {
  rollertrace::v1::SterilisationCycle c;
  c.set_method(method);
  c.set_exposure_temperature_c(temp);
  c.set_exposure_seconds(seconds);
  c.set_chemical_indicator(rollertrace::v1::INDICATOR_PASS);
  return c;
}

TEST(EvaluateCycle, PassesAtTheMethodMinimumsAndFailsJustShort) {
  Policy p;
  EXPECT_TRUE(EvaluateCycle(p, Cycle("steam_prevacuum", 134, 180)).parameters_passed);
  EXPECT_TRUE(EvaluateCycle(p, Cycle("steam_prevacuum", 132, 240)).parameters_passed);
  EXPECT_FALSE(EvaluateCycle(p, Cycle("steam_prevacuum", 133.9, 200)).parameters_passed);
  EXPECT_FALSE(EvaluateCycle(p, Cycle("steam_prevacuum", 134, 179)).parameters_passed);
  EXPECT_TRUE(EvaluateCycle(p, Cycle("steam_gravity", 121, 1800)).parameters_passed);
  auto v = EvaluateCycle(p, Cycle("steam_gravity", 121, 1799));
  EXPECT_FALSE(v.parameters_passed);
  ASSERT_EQ(v.reasons.size(), 1u);
  EXPECT_NE(v.reasons[0].find("short of steam_gravity"), std::string::npos) << v.reasons[0];
}

TEST(EvaluateCycle, AHoldShortByASecondReadsShort) {
  // Seen (issue #14): "134 °C for 3.0 min is short of 134 °C for 3.0 min" for a 179 s hold.
  const CycleVerdict v = EvaluateCycle(Policy{}, Cycle("steam_prevacuum", 134, 179));
  ASSERT_FALSE(v.parameters_passed);
  ASSERT_EQ(v.reasons.size(), 1u);
  EXPECT_NE(v.reasons[0].find("134 °C for 2 min 59 s is short of"), std::string::npos) << v.reasons[0];
  EXPECT_NE(v.reasons[0].find("134 °C for 3 min"), std::string::npos) << v.reasons[0];
}

// The console shows what a cycle was judged against, passing or not (issue #15).
TEST(EvaluateCycle, NamesTheMethodsMinimumsEvenWhenItPasses) {
  const CycleVerdict v = EvaluateCycle(Policy{}, Cycle("steam_prevacuum", 135, 240));
  ASSERT_TRUE(v.parameters_passed);
  EXPECT_NE(v.minimums.find("134 °C for 3 min"), std::string::npos) << v.minimums;
  EXPECT_TRUE(EvaluateCycle(Policy{}, Cycle("microwave", 135, 240)).minimums.empty());
}

TEST(EvaluateCycle, NeedsAPassingChemicalIndicatorAndAKnownMethod) {
  Policy p;
  auto c = Cycle("steam_prevacuum", 135, 240);
  c.set_chemical_indicator(rollertrace::v1::INDICATOR_FAIL);
  EXPECT_FALSE(EvaluateCycle(p, c).parameters_passed);
  c.set_chemical_indicator(rollertrace::v1::INDICATOR_UNSPECIFIED);
  EXPECT_FALSE(EvaluateCycle(p, c).parameters_passed);
  EXPECT_FALSE(EvaluateCycle(p, Cycle("boiling", 100, 600)).parameters_passed);
}

TEST(ApplyCycle, MakesTheRollerSterileOnlyWhenTheCyclePassed) {
  rollertrace::v1::RollerUse use;
  auto bad = Cycle("steam_prevacuum", 120, 240);
  bad.set_end_unix_ms(1000);
  ApplyCycle(bad, EvaluateCycle(Policy{}, bad), rollertrace::v1::INDICATOR_PENDING, &use);
  EXPECT_EQ(use.last_passing_cycle_end_unix_ms(), 0);
  EXPECT_FALSE(use.last_cycle().parameters_passed());
  auto good = Cycle("steam_prevacuum", 134, 240);
  good.set_end_unix_ms(2000);
  ApplyCycle(good, EvaluateCycle(Policy{}, good), rollertrace::v1::INDICATOR_PENDING, &use);
  EXPECT_EQ(use.last_passing_cycle_end_unix_ms(), 2000);
}

TEST(ApplyCycle, RecordsTheCountingBiologicalIndicatorNotTheSterilisersOwn) {
  rollertrace::v1::RollerUse use;
  auto c = Cycle("steam_prevacuum", 134, 240);
  c.set_biological_indicator(rollertrace::v1::INDICATOR_PASS);  // the steriliser's word
  ApplyCycle(c, EvaluateCycle(Policy{}, c), CountingIndicator(c.biological_indicator(), rollertrace::v1::INDICATOR_UNSPECIFIED),
             &use);
  EXPECT_EQ(use.last_cycle().biological_indicator(), rollertrace::v1::INDICATOR_PENDING);
}

// DOMAIN.md "Whose word counts": steriliser none/pass/fail x lab none/pass/fail.
TEST(CountingIndicator, TheLabDecidesAndASteriliserOnlyEverAddsAFailure) {
  using rollertrace::v1::IndicatorResult;
  constexpr auto kNone = rollertrace::v1::INDICATOR_UNSPECIFIED;
  constexpr auto kPending = rollertrace::v1::INDICATOR_PENDING;
  constexpr auto kPass = rollertrace::v1::INDICATOR_PASS;
  constexpr auto kFail = rollertrace::v1::INDICATOR_FAIL;
  struct Row {
    IndicatorResult steriliser, lab, counts;
  };
  for (const Row& r : {Row{kNone, kNone, kPending}, Row{kPending, kNone, kPending}, Row{kPass, kNone, kPending},
                       Row{kFail, kNone, kFail}, Row{kNone, kPass, kPass}, Row{kPass, kPass, kPass},
                       Row{kFail, kPass, kPass}, Row{kNone, kFail, kFail}, Row{kPass, kFail, kFail},
                       Row{kFail, kFail, kFail}}) {
    EXPECT_EQ(CountingIndicator(r.steriliser, r.lab), r.counts)
        << "steriliser " << r.steriliser << ", lab " << r.lab;
  }
}

TEST(CycleTimeProblem, RefusesAnEndBeyondTheSkewAndAStartAfterTheEnd) {
  const Policy p;
  auto c = Cycle("steam_prevacuum", 134, 240);
  c.set_start_unix_ms(kNow - kHour);
  c.set_end_unix_ms(kNow + p.max_clock_skew_ms);
  EXPECT_EQ(CycleTimeProblem(p, c, kNow), "");
  c.set_end_unix_ms(kNow + p.max_clock_skew_ms + 1);
  EXPECT_NE(CycleTimeProblem(p, c, kNow).find("after it was received"), std::string::npos);
  c.set_end_unix_ms(kNow - 2 * kHour);
  EXPECT_NE(CycleTimeProblem(p, c, kNow).find("after its end"), std::string::npos);
}

TEST(JudgeTime, TrustsTheDeviceUpToTheSkewThenUsesTheReceiveTime) {
  const Policy p;
  EXPECT_EQ(JudgeTime(p, kNow + p.max_clock_skew_ms, kNow).at_unix_ms, kNow + p.max_clock_skew_ms);
  EXPECT_EQ(JudgeTime(p, kNow + p.max_clock_skew_ms, kNow).ahead_ms, 0);
  const JudgedTime ahead = JudgeTime(p, kNow + 45 * kDayMs, kNow);
  EXPECT_EQ(ahead.at_unix_ms, kNow);
  EXPECT_EQ(ahead.ahead_ms, 45 * kDayMs);
  EXPECT_EQ(JudgeTime(p, 0, kNow).at_unix_ms, kNow);
}

}  // namespace
}  // namespace rollertrace::rules
