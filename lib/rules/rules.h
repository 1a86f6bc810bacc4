// The domain rules of DOMAIN.md, pure: facts and time go in, a decision with
// every rule id that fired comes out. No clock, disk or network. Shared by
// ingestd (authorisation and the re-check on ingestion) and the edge agent
// (offline decisions).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "rollertrace/v1/records.pb.h"
#include "rules/policy.h"

namespace rollertrace::rules {

// Rule ids, exactly as DOMAIN.md spells them.
inline constexpr char kUnknownDevice[] = "UNKNOWN_DEVICE";
inline constexpr char kDeviceRetired[] = "DEVICE_RETIRED";
inline constexpr char kDeviceLocked[] = "DEVICE_LOCKED";
inline constexpr char kSinglePatient[] = "SINGLE_PATIENT";
inline constexpr char kSessionLimit[] = "SESSION_LIMIT";
inline constexpr char kNotSterile[] = "NOT_STERILE";
inline constexpr char kSterilityExpired[] = "STERILITY_EXPIRED";
inline constexpr char kCycleFailed[] = "CYCLE_FAILED";
inline constexpr char kWorn[] = "WORN";
inline constexpr char kSessionTooSoon[] = "SESSION_TOO_SOON";
inline constexpr char kNeedleOutOfRange[] = "NEEDLE_OUT_OF_RANGE";
inline constexpr char kWornSoon[] = "WORN_SOON";
inline constexpr char kNeedleForIndication[] = "NEEDLE_FOR_INDICATION";
inline constexpr char kAnaesthesiaTime[] = "ANAESTHESIA_TIME";
inline constexpr char kCourseGap[] = "COURSE_GAP";
inline constexpr char kBiPending[] = "BI_PENDING";

// Rules whose violation is followed by a lock command (DOMAIN.md).
bool LocksRoller(std::string_view rule);

// What the rules know of a roller.
struct RollerFacts {
  bool registered = false;
  rollertrace::v1::Device device;
  rollertrace::v1::RollerUse use;
  uint32_t sessions_started = 0;
  uint64_t total_revolutions = 0;
};

// What the session would be.
struct SessionRequest {
  std::string patient_pseudonym;
  rollertrace::v1::Indication indication = rollertrace::v1::INDICATION_UNSPECIFIED;
  rollertrace::v1::Area area = rollertrace::v1::AREA_UNSPECIFIED;
  double needle_length_mm = 0;          // 0: the roller's registered length
  int64_t anaesthesia_applied_unix_ms = 0;  // 0: not recorded
  int64_t start_unix_ms = 0;
};

// The request for a session as a device describes it; `patient` is how the
// caller compares patients (ingestd: the pseudonym; an offline agent: the
// clinic's reference, which it has).
SessionRequest RequestFor(const rollertrace::v1::SessionStarted& session, std::string patient, int64_t start_unix_ms);

struct Decision {
  bool allowed = true;
  std::vector<rollertrace::v1::RuleHit> hits;  // deny rules first, then warn rules
  bool Fired(std::string_view rule) const;
};

// Wear as a fraction of rated life: the higher of revolutions x needles /
// rated penetrations and the measured wear.
double Wear(const RollerFacts& roller);

// May this roller start this session at request.start_unix_ms?
Decision Decide(const Policy& policy, const RollerFacts& roller, const SessionRequest& request);

struct CycleVerdict {
  bool parameters_passed = false;
  std::vector<std::string> reasons;  // why it failed; empty when it passed
};

// A cycle passes its parameters if its exposure meets one of its method's
// minimums and its chemical indicator passed (and an air-removal test, where
// recorded, passed).
CycleVerdict EvaluateCycle(const Policy& policy, const rollertrace::v1::SterilisationCycle& cycle);

// The roller's state after a cycle with it in the load.
void ApplyCycle(const rollertrace::v1::SterilisationCycle& cycle, const CycleVerdict& verdict,
                rollertrace::v1::RollerUse* use);

}  // namespace rollertrace::rules
