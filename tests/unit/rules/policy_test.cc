#include "rules/policy.h"

#include <gtest/gtest.h>

namespace rollertrace::rules {
namespace {

TEST(Policy, DefaultsAreDomainMd) {
  Policy p;
  EXPECT_EQ(p.session_limit, 4u);
  EXPECT_EQ(p.sterile_shelf_life_ms, 30 * kDayMs);
  EXPECT_EQ(p.min_session_interval_ms, 7 * kDayMs);
  EXPECT_EQ(p.course_gap_ms, 14 * kDayMs);
  EXPECT_DOUBLE_EQ(p.worn_fraction, 1.0);
  EXPECT_DOUBLE_EQ(p.worn_soon_fraction, 0.8);
  EXPECT_EQ(p.anaesthesia_min_ms, 30 * kMinuteMs);
  EXPECT_EQ(p.anaesthesia_max_ms, 45 * kMinuteMs);
  EXPECT_EQ(p.max_clock_skew_ms, 5 * kMinuteMs);
  EXPECT_EQ(p.max_sequence_jump, 100000u);
}

TEST(Policy, ReadsEveryField) {
  auto p = ParsePolicy(R"(
session_limit: 5
session_limit_by_model: {MTS-192: 3}
sterile_shelf_life_days: 20
min_session_interval_days: 6
course_gap_days: 21
worn_fraction: 0.95
worn_soon_fraction: 0.75
anaesthesia_minutes: {min: 25, max: 50}
max_clock_skew_minutes: 2
max_sequence_jump: 5000
sterilisation_methods:
  steam_gravity: [{temperature_c: 121, hold_minutes: 30}]
needle_for_indication:
  stretch_marks: {min_mm: 1.0, max_mm: 2.0}
)");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->session_limit, 5u);
  EXPECT_EQ(p->max_sequence_jump, 5000u);
  EXPECT_EQ(p->SessionLimitFor("MTS-192"), 3u);
  EXPECT_EQ(p->SessionLimitFor("other"), 5u);
  EXPECT_EQ(p->sterile_shelf_life_ms, 20 * kDayMs);
  EXPECT_EQ(p->anaesthesia_max_ms, 50 * kMinuteMs);
  ASSERT_EQ(p->methods.size(), 1u);
  EXPECT_EQ(p->methods.at("steam_gravity")[0].hold_seconds, 1800u);
  EXPECT_EQ(p->needle_for_indication.at(rollertrace::v1::INDICATION_STRETCH_MARKS).max_mm, 2.0);
}

TEST(Policy, EmptyFileKeepsDefaults) {
  auto p = ParsePolicy("");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->session_limit, 4u);
}

struct Bad {
  const char* yaml;
  const char* message;
};

class BadPolicyTest : public ::testing::TestWithParam<Bad> {};

TEST_P(BadPolicyTest, NamesTheBadField) {
  auto p = ParsePolicy(GetParam().yaml);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(std::string(p.status().message()).find(GetParam().message), std::string::npos) << p.status();
}

INSTANTIATE_TEST_SUITE_P(
    Fields, BadPolicyTest,
    ::testing::Values(Bad{"sterile_shelf_life_days: -3", "policy field sterile_shelf_life_days: must be a positive"},
                      Bad{"session_limit: 2.5", "policy field session_limit: must be a whole number"},
                      Bad{"session_limt: 4", "policy field session_limt: unknown field"},
                      Bad{"worn_soon_fraction: 1.2", "policy field worn_soon_fraction: must be below worn_fraction"},
                      Bad{"anaesthesia_minutes: {min: 50, max: 40}", "policy field anaesthesia_minutes"},
                      Bad{"sterilisation_methods: {steam_gravity: [{temperature_c: hot, hold_minutes: 30}]}",
                          "sterilisation_methods.steam_gravity[0].temperature_c: must be a number"},
                      Bad{"needle_for_indication: {warts: {min_mm: 1, max_mm: 2}}", "needle_for_indication.warts"},
                      Bad{"session_limit: [", "not valid YAML"},
                      // Issue #14: these were cast to integers (undefined behaviour).
                      Bad{"course_gap_days: .inf", "policy field course_gap_days: must be a positive number up to"},
                      Bad{"session_limit: 1e300", "policy field session_limit: must be a positive number up to"},
                      Bad{"max_clock_skew_minutes: .nan", "policy field max_clock_skew_minutes: must be a positive"},
                      Bad{"max_sequence_jump: 0", "policy field max_sequence_jump: must be a positive number"},
                      Bad{"max_sequence_jump: 2000000", "policy field max_sequence_jump: must be a positive number up to"},
                      Bad{"max_sequence_jump: 10.5", "policy field max_sequence_jump: must be a whole number"}));

TEST(Policy, MissingFileIsNotFound) {
  EXPECT_EQ(LoadPolicyFile("/nonexistent/policy.yaml").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace rollertrace::rules

namespace rollertrace::rules {
namespace {

TEST(Policy, TheShippedExampleParsesToTheDefaults) {
  auto p = LoadPolicyFile(std::string(ROLLERTRACE_SOURCE_DIR) + "/deploy/policy/policy.yaml");
  ASSERT_TRUE(p.ok()) << p.status();
  Policy defaults;
  EXPECT_EQ(p->session_limit, defaults.session_limit);
  EXPECT_EQ(p->sterile_shelf_life_ms, defaults.sterile_shelf_life_ms);
  EXPECT_EQ(p->min_session_interval_ms, defaults.min_session_interval_ms);
  EXPECT_EQ(p->anaesthesia_max_ms, defaults.anaesthesia_max_ms);
  EXPECT_EQ(p->methods.at("steam_prevacuum").size(), 2u);
  EXPECT_EQ(p->needle_for_indication.size(), defaults.needle_for_indication.size());
}

}  // namespace
}  // namespace rollertrace::rules
