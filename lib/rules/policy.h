// Policy: every number of DOMAIN.md's rules, with its default, and the YAML
// file that changes them. A bad file is refused with an error naming the field.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rollertrace/v1/events.pb.h"

namespace rollertrace::rules {

inline constexpr int64_t kMinuteMs = 60 * 1000;
inline constexpr int64_t kDayMs = 24 * 60 * kMinuteMs;

// One way a method's exposure passes: at least this hot for at least this long.
struct ExposureMinimum {
  double temperature_c;
  uint32_t hold_seconds;
};

struct NeedleRange {
  double min_mm;
  double max_mm;
};

struct Policy {
  uint32_t session_limit = 4;                              // SESSION_LIMIT
  std::map<std::string, uint32_t> session_limit_by_model;  // overrides per roller model
  int64_t sterile_shelf_life_ms = 30 * kDayMs;             // STERILITY_EXPIRED
  int64_t min_session_interval_ms = 7 * kDayMs;            // SESSION_TOO_SOON
  int64_t course_gap_ms = 14 * kDayMs;                     // COURSE_GAP
  double worn_fraction = 1.0;                              // WORN
  double worn_soon_fraction = 0.8;                         // WORN_SOON
  int64_t anaesthesia_min_ms = 30 * kMinuteMs;             // ANAESTHESIA_TIME
  int64_t anaesthesia_max_ms = 45 * kMinuteMs;
  int64_t max_clock_skew_ms = 5 * kMinuteMs;               // device clocks trusted this far ahead
  uint32_t max_sequence_jump = 100000;                     // sequences ahead of a device's highest
  std::map<std::string, std::vector<ExposureMinimum>> methods = {
      {"steam_prevacuum", {{134.0, 180}, {132.0, 240}}},
      {"steam_gravity", {{121.0, 1800}}},
  };
  std::map<rollertrace::v1::Indication, NeedleRange> needle_for_indication = {
      {rollertrace::v1::INDICATION_REJUVENATION, {0.5, 1.0}},
      {rollertrace::v1::INDICATION_SCAR, {1.5, 2.5}},
  };

  uint32_t SessionLimitFor(const std::string& model) const;
};

// Parses a policy in YAML (see deploy/policy/policy.yaml); fields left out keep
// their defaults. InvalidArgument names the bad field, e.g.
// "policy field sterile_shelf_life_days: must be a positive number, got -3".
absl::StatusOr<Policy> ParsePolicy(const std::string& yaml);
absl::StatusOr<Policy> LoadPolicyFile(const std::string& path);
// The canonical YAML of `policy`: every field, in a fixed order, numbers in
// their shortest exact form. ParsePolicy(FormatPolicy(p)) gives p back; the
// store keeps this text as a policy version (docs/ARCHITECTURE.md).
std::string FormatPolicy(const Policy& policy);

}  // namespace rollertrace::rules
