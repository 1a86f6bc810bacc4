#include "rules/registration.h"

#include "util/cat.h"
#include "codec/codec.h"

namespace rollertrace::rules {

using rollertrace::v1::Device;
using rollertrace::v1::DeviceKind;

absl::Status ValidateRegistration(const Device& device) {
  if (absl::Status s = codec::ValidateDeviceId(device.device_id()); !s.ok()) return s;
  for (const auto& [field, value] : {std::pair<const char*, const std::string*>{"model", &device.model()},
                                     {"clinic", &device.clinic()}}) {
    if (value->size() > codec::Limits::kTextBytes) {
      return absl::InvalidArgumentError(util::Cat("device ", device.device_id(), ": ", field, " is ", value->size(),
                                                  " bytes, the limit is ", codec::Limits::kTextBytes));
    }
  }
  switch (device.kind()) {
    case rollertrace::v1::DEVICE_KIND_STERILISER:
      return absl::OkStatus();
    case rollertrace::v1::DEVICE_KIND_ROLLER:
      break;
    default:
      return absl::InvalidArgumentError(
          util::Cat("device ", device.device_id(), ": kind must be roller or steriliser"));
  }
  const std::string who = util::Cat("roller ", device.device_id(), ": ");
  if (device.needle_count() < kMinNeedleCount) {
    return absl::InvalidArgumentError(util::Cat(who, "needle count ", device.needle_count(),
                                                   " is below the minimum of ", kMinNeedleCount));
  }
  if (!(device.needle_length_mm() >= kMinNeedleLengthMm && device.needle_length_mm() <= kMaxNeedleLengthMm)) {
    return absl::InvalidArgumentError(util::Cat(who, "needle length ", device.needle_length_mm(),
                                                   " mm is outside 0.25-2.5 mm"));
  }
  if (device.rated_penetrations() == 0) {
    return absl::InvalidArgumentError(util::Cat(who, "rated penetrations must be greater than 0"));
  }
  return absl::OkStatus();
}

}  // namespace rollertrace::rules
