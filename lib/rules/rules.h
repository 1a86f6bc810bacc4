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
inline constexpr char kClockSkew[] = "CLOCK_SKEW";

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
  // How far the device's own time for the start was ahead of the server's
  // receive time beyond the allowed skew; > 0 makes CLOCK_SKEW fire, and
  // start_unix_ms is then the receive time (see JudgeTime).
  int64_t clock_ahead_ms = 0;
};

// The time a device-dated fact is judged at (DOMAIN.md): the device's time
// when it is no more than the allowed skew ahead of the receive time, else
// the receive time, with how far ahead the device claimed to be.
struct JudgedTime {
  int64_t at_unix_ms = 0;
  int64_t ahead_ms = 0;  // 0 unless the device's time was refused
};
JudgedTime JudgeTime(const Policy& policy, int64_t device_unix_ms, int64_t receive_unix_ms);

// When the requesting patient's own previous session with the roller ended
// (SESSION_TOO_SOON, COURSE_GAP); 0 when there is none to time against.
int64_t PatientsPreviousEnd(const rollertrace::v1::RollerUse& use, const SessionRequest& request);

// The request for a session as a device describes it; `patient` is how the
// caller compares patients (ingestd: the pseudonym; an offline agent: the
// clinic's reference, which it has).
SessionRequest RequestFor(const rollertrace::v1::SessionStarted& session, std::string patient, int64_t start_unix_ms);
// The same, judged at `when`: a start dated beyond the skew is judged at its
// receive time, and the anaesthesia time, read off the same fast clock, is
// moved back as far (else a session would get a false ANAESTHESIA_TIME).
SessionRequest RequestFor(const rollertrace::v1::SessionStarted& session, std::string patient, JudgedTime when);

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
  std::string minimums;              // the method's, as text; empty when the method is unknown
};

// A cycle passes its parameters if its exposure meets one of its method's
// minimums and its chemical indicator passed (and an air-removal test, where
// recorded, passed).
CycleVerdict EvaluateCycle(const Policy& policy, const rollertrace::v1::SterilisationCycle& cycle);

// Why a steriliser's cycle cannot be taken as dated (its end after the
// receive time plus the allowed skew, its start after its end), or "" when
// its times are acceptable.
std::string CycleTimeProblem(const Policy& policy, const rollertrace::v1::SterilisationCycle& cycle,
                             int64_t receive_unix_ms);

// The biological-indicator result that counts (DOMAIN.md, "Whose word
// counts"): the lab's when it recorded one; else FAIL when the steriliser
// reported FAIL (any failed indicator is reason enough); else PENDING. A
// steriliser's own PASS never counts.
rollertrace::v1::IndicatorResult CountingIndicator(rollertrace::v1::IndicatorResult steriliser,
                                                   rollertrace::v1::IndicatorResult lab);

// The roller's state after a cycle with it in the load; `biological` is the
// cycle's counting biological-indicator result.
void ApplyCycle(const rollertrace::v1::SterilisationCycle& cycle, const CycleVerdict& verdict,
                rollertrace::v1::IndicatorResult biological, rollertrace::v1::RollerUse* use);

}  // namespace rollertrace::rules
