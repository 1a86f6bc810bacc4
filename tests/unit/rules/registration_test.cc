#include "rules/registration.h"

#include <gtest/gtest.h>

namespace rollertrace::rules {
namespace {

struct Case {
  const char* name;
  uint32_t needles;
  double mm;
  uint64_t rated;
  bool ok;
  const char* message;
};

class RegistrationTest : public ::testing::TestWithParam<Case> {};

TEST_P(RegistrationTest, AppliesTheDomainRanges) {
  const Case& c = GetParam();
  rollertrace::v1::Device d;
  d.set_device_id("R-17");
  d.set_kind(rollertrace::v1::DEVICE_KIND_ROLLER);
  d.set_needle_count(c.needles);
  d.set_needle_length_mm(c.mm);
  d.set_rated_penetrations(c.rated);
  absl::Status s = ValidateRegistration(d);
  EXPECT_EQ(s.ok(), c.ok) << s;
  if (!c.ok) {
    EXPECT_NE(std::string(s.message()).find(c.message), std::string::npos) << s;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Limits, RegistrationTest,
    ::testing::Values(Case{"AtMinimumNeedles", 192, 1.0, 1, true, ""},
                      Case{"BelowMinimumNeedles", 191, 1.0, 1, false, "needle count 191 is below the minimum of 192"},
                      Case{"ShortestNeedle", 192, 0.25, 1, true, ""},
                      Case{"TooShortNeedle", 192, 0.24, 1, false, "needle length 0.24 mm is outside 0.25-2.5 mm"},
                      Case{"LongestNeedle", 192, 2.5, 1, true, ""},
                      Case{"TooLongNeedle", 192, 2.51, 1, false, "roller R-17: needle length 2.51 mm"},
                      Case{"NoRatedLife", 192, 1.0, 0, false, "rated penetrations"}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

TEST(Registration, AcceptsSterilisersWithoutNeedles) {
  rollertrace::v1::Device d;
  d.set_device_id("S-01");
  d.set_kind(rollertrace::v1::DEVICE_KIND_STERILISER);
  EXPECT_TRUE(ValidateRegistration(d).ok());
}

TEST(Registration, RefusesBadIdsAndKinds) {
  rollertrace::v1::Device d;
  d.set_device_id("bad/id");
  d.set_kind(rollertrace::v1::DEVICE_KIND_STERILISER);
  EXPECT_FALSE(ValidateRegistration(d).ok());
  d.set_device_id("R-1");
  d.set_kind(rollertrace::v1::DEVICE_KIND_UNSPECIFIED);
  EXPECT_FALSE(ValidateRegistration(d).ok());
}

}  // namespace
}  // namespace rollertrace::rules
