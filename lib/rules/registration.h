// Domain checks on a device registration (DOMAIN.md, "The things"). Pure.
#pragma once

#include "absl/status/status.h"
#include "rollertrace/v1/records.pb.h"

namespace rollertrace::rules {

inline constexpr uint32_t kMinNeedleCount = 192;
inline constexpr double kMinNeedleLengthMm = 0.25;
inline constexpr double kMaxNeedleLengthMm = 2.5;

// OK, or InvalidArgument naming the device and the bad field, e.g.
// "roller R-17: needle length 3.1 mm is outside 0.25-2.5 mm".
absl::Status ValidateRegistration(const rollertrace::v1::Device& device);

}  // namespace rollertrace::rules
