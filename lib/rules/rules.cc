#include "rules/rules.h"

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "util/cat.h"

namespace rollertrace::rules {
namespace {

using rollertrace::v1::RuleHit;

std::string Days(int64_t ms) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << ms / static_cast<double>(kDayMs) << " days";
  return out.str();
}

// "3 min", "2 min 59 s": never rounded, so a hold short by a second reads short.
std::string Minutes(uint32_t seconds) {
  if (seconds % 60 == 0) return util::Cat(seconds / 60, " min");
  if (seconds < 60) return util::Cat(seconds, " s");
  return util::Cat(seconds / 60, " min ", seconds % 60, " s");
}

std::string Percent(double fraction) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << fraction * 100 << " %";
  return out.str();
}

void Hit(Decision* d, const char* rule, rollertrace::v1::Severity severity, std::string detail) {
  RuleHit& h = d->hits.emplace_back();
  h.set_rule(rule);
  h.set_severity(severity);
  h.set_detail(std::move(detail));
  if (severity == rollertrace::v1::SEVERITY_DENY) d->allowed = false;
}

bool CycleFailed(const rollertrace::v1::CycleRef& c) {
  return !c.parameters_passed() || c.chemical_indicator() == rollertrace::v1::INDICATOR_FAIL ||
         c.biological_indicator() == rollertrace::v1::INDICATOR_FAIL;
}

}  // namespace

bool LocksRoller(std::string_view rule) {
  return rule == kWorn || rule == kSinglePatient || rule == kNotSterile || rule == kCycleFailed ||
         rule == kSessionLimit;
}

uint32_t Policy::SessionLimitFor(const std::string& model) const {
  auto it = session_limit_by_model.find(model);
  return it == session_limit_by_model.end() ? session_limit : it->second;
}

bool Decision::Fired(std::string_view rule) const {
  return std::any_of(hits.begin(), hits.end(), [&](const RuleHit& h) { return h.rule() == rule; });
}

SessionRequest RequestFor(const rollertrace::v1::SessionStarted& session, std::string patient, int64_t start) {
  SessionRequest r;
  r.patient_pseudonym = std::move(patient);
  r.indication = session.indication();
  r.area = session.area();
  r.needle_length_mm = session.needle_length_mm();
  r.anaesthesia_applied_unix_ms = session.anaesthesia_applied_unix_ms();
  r.start_unix_ms = start;
  return r;
}

SessionRequest RequestFor(const rollertrace::v1::SessionStarted& session, std::string patient, JudgedTime when) {
  SessionRequest r = RequestFor(session, std::move(patient), when.at_unix_ms);
  r.clock_ahead_ms = when.ahead_ms;
  if (when.ahead_ms > 0 && r.anaesthesia_applied_unix_ms > 0) r.anaesthesia_applied_unix_ms -= when.ahead_ms;
  return r;
}

JudgedTime JudgeTime(const Policy& policy, int64_t device_unix_ms, int64_t receive_unix_ms) {
  JudgedTime t;
  t.at_unix_ms = device_unix_ms > 0 ? device_unix_ms : receive_unix_ms;
  if (device_unix_ms > receive_unix_ms + policy.max_clock_skew_ms) {
    t.at_unix_ms = receive_unix_ms;
    t.ahead_ms = device_unix_ms - receive_unix_ms;
  }
  return t;
}

std::string CycleTimeProblem(const Policy& policy, const rollertrace::v1::SterilisationCycle& cycle,
                             int64_t receive_unix_ms) {
  if (cycle.end_unix_ms() > receive_unix_ms + policy.max_clock_skew_ms) {
    return util::Cat("the cycle ends ", Days(cycle.end_unix_ms() - receive_unix_ms),
                     " after it was received (allowed skew ", Minutes(static_cast<uint32_t>(policy.max_clock_skew_ms / 1000)),
                     "): a cycle cannot be reported before it ended");
  }
  if (cycle.start_unix_ms() > 0 && cycle.end_unix_ms() > 0 && cycle.start_unix_ms() > cycle.end_unix_ms()) {
    return util::Cat("the cycle starts ", Days(cycle.start_unix_ms() - cycle.end_unix_ms()), " after its end");
  }
  return "";
}

rollertrace::v1::IndicatorResult CountingIndicator(rollertrace::v1::IndicatorResult steriliser,
                                                   rollertrace::v1::IndicatorResult lab) {
  if (lab == rollertrace::v1::INDICATOR_PASS || lab == rollertrace::v1::INDICATOR_FAIL) return lab;
  if (steriliser == rollertrace::v1::INDICATOR_FAIL) return rollertrace::v1::INDICATOR_FAIL;
  return rollertrace::v1::INDICATOR_PENDING;
}

double Wear(const RollerFacts& roller) {
  double computed = 0;
  if (roller.device.rated_penetrations() > 0) {
    computed = static_cast<double>(roller.total_revolutions) * roller.device.needle_count() /
               static_cast<double>(roller.device.rated_penetrations());
  }
  return std::max(computed, roller.use.measured_wear());
}

int64_t PatientsPreviousEnd(const rollertrace::v1::RollerUse& use, const SessionRequest& request) {
  // Not known whose the roller's sessions were: the roller's last one.
  if (use.bound_patient().empty()) return use.last_session_end_unix_ms();
  // Another patient than the bound one has no course on this roller
  // (SINGLE_PATIENT refuses it): there is no previous session of theirs to time.
  if (request.patient_pseudonym != use.bound_patient()) return 0;
  // A store from before this field was kept: the roller's last session.
  if (use.bound_patient_last_session_end_unix_ms() == 0) return use.last_session_end_unix_ms();
  return use.bound_patient_last_session_end_unix_ms();
}

Decision Decide(const Policy& policy, const RollerFacts& roller, const SessionRequest& request) {
  constexpr auto kDeny = rollertrace::v1::SEVERITY_DENY;
  constexpr auto kWarn = rollertrace::v1::SEVERITY_WARN;
  Decision d;
  if (!roller.registered) {
    Hit(&d, kUnknownDevice, kDeny, "the roller is not registered");
    return d;
  }
  const auto& dev = roller.device;
  const auto& use = roller.use;
  const int64_t start = request.start_unix_ms;

  if (dev.lifecycle() == rollertrace::v1::LIFECYCLE_RETIRED) {
    Hit(&d, kDeviceRetired, kDeny, util::Cat("retired: ", dev.retired_reason()));
  }
  if (dev.lifecycle() == rollertrace::v1::LIFECYCLE_LOCKED) {
    Hit(&d, kDeviceLocked, kDeny, util::Cat("locked: ", use.lock_reason()));
  }
  if (!use.bound_patient().empty() && use.bound_patient() != request.patient_pseudonym) {
    Hit(&d, kSinglePatient, kDeny, "the roller is bound to another patient");
  }
  const uint32_t limit = policy.SessionLimitFor(dev.model());
  if (roller.sessions_started >= limit) {
    Hit(&d, kSessionLimit, kDeny,
        util::Cat(roller.sessions_started, " sessions already, the limit is ", limit, "; retire the roller"));
  }
  const int64_t sterile_since = std::max(use.last_session_end_unix_ms(), use.last_session_start_unix_ms());
  const bool sterile = use.last_passing_cycle_end_unix_ms() > 0 && use.last_passing_cycle_end_unix_ms() > sterile_since;
  if (sterile && use.last_passing_cycle_end_unix_ms() > start) {
    Hit(&d, kNotSterile, kDeny,
        util::Cat("the last passing sterilisation cycle ends ", Days(use.last_passing_cycle_end_unix_ms() - start),
                  " after the session's start: a session relies only on a cycle that ended before it"));
  } else if (!sterile) {
    Hit(&d, kNotSterile, kDeny,
        use.last_passing_cycle_end_unix_ms() == 0
            ? std::string("no passing sterilisation cycle recorded")
            : std::string("no passing sterilisation cycle since the previous session"));
  } else if (start - use.last_passing_cycle_end_unix_ms() > policy.sterile_shelf_life_ms) {
    Hit(&d, kSterilityExpired, kDeny,
        util::Cat("sterilised ", Days(start - use.last_passing_cycle_end_unix_ms()), " ago, shelf life is ",
                  Days(policy.sterile_shelf_life_ms)));
  }
  if (use.has_last_cycle() && CycleFailed(use.last_cycle())) {
    const auto& c = use.last_cycle();
    // Name what failed: a failed chemical indicator alone is not "its parameters".
    std::string what;
    auto add = [&](const char* part) { what += (what.empty() ? "" : " and ") + std::string(part); };
    const bool chemical = c.chemical_indicator() == rollertrace::v1::INDICATOR_FAIL;
    if (chemical) add("its chemical indicator");
    if (!c.parameters_passed() && !chemical) add("its parameters");
    if (c.biological_indicator() == rollertrace::v1::INDICATOR_FAIL) add("its biological indicator");
    if (what.empty()) add("its parameters");
    Hit(&d, kCycleFailed, kDeny, util::Cat("cycle ", c.steriliser_id(), "#", c.cycle_number(), " failed ", what));
  }
  const double wear = Wear(roller);
  if (wear >= policy.worn_fraction) {
    Hit(&d, kWorn, kDeny, util::Cat("wear ", Percent(wear), " has reached ", Percent(policy.worn_fraction)));
  }
  const int64_t previous_end = PatientsPreviousEnd(use, request);
  if (previous_end > 0 && start - previous_end < policy.min_session_interval_ms) {
    Hit(&d, kSessionTooSoon, kDeny,
        util::Cat("the patient's previous session ended ", Days(start - previous_end), " ago, the minimum is ",
                  Days(policy.min_session_interval_ms)));
  }
  const double needle = request.needle_length_mm > 0 ? request.needle_length_mm : dev.needle_length_mm();
  if (needle < 0.25 || needle > 2.5) {
    Hit(&d, kNeedleOutOfRange, kDeny, util::Cat("needle length ", needle, " mm is outside 0.25-2.5 mm"));
  }

  if (wear >= policy.worn_soon_fraction && wear < policy.worn_fraction) {
    Hit(&d, kWornSoon, kWarn, util::Cat("wear ", Percent(wear)));
  }
  if (auto it = policy.needle_for_indication.find(request.indication); it != policy.needle_for_indication.end()) {
    if (needle < it->second.min_mm || needle > it->second.max_mm) {
      Hit(&d, kNeedleForIndication, kWarn,
          util::Cat(needle, " mm is unusual for ", rollertrace::v1::Indication_Name(request.indication), " (",
                    it->second.min_mm, "-", it->second.max_mm, " mm)"));
    }
  }
  if (request.area != rollertrace::v1::AREA_SCALP) {
    const int64_t a = request.anaesthesia_applied_unix_ms;
    if (a == 0) {
      Hit(&d, kAnaesthesiaTime, kWarn, "topical anaesthetic not recorded");
    } else if (a > start) {
      Hit(&d, kAnaesthesiaTime, kWarn,
          util::Cat("topical anaesthetic recorded ", (a - start) / kMinuteMs, " min after the session's start"));
    } else if (start - a < policy.anaesthesia_min_ms || start - a > policy.anaesthesia_max_ms) {
      Hit(&d, kAnaesthesiaTime, kWarn, util::Cat("anaesthetic applied ", (start - a) / kMinuteMs, " min before start"));
    }
  }
  if (previous_end > 0 && start - previous_end > policy.course_gap_ms) {
    Hit(&d, kCourseGap, kWarn, util::Cat(Days(start - previous_end), " since the patient's previous session"));
  }
  if (use.has_last_cycle() && (use.last_cycle().biological_indicator() == rollertrace::v1::INDICATOR_PENDING ||
                               use.last_cycle().biological_indicator() == rollertrace::v1::INDICATOR_UNSPECIFIED)) {
    Hit(&d, kBiPending, kWarn,
        util::Cat("cycle ", use.last_cycle().steriliser_id(), "#", use.last_cycle().cycle_number(),
                  " has no biological-indicator result yet"));
  }
  if (request.clock_ahead_ms > 0) {
    Hit(&d, kClockSkew, kWarn,
        util::Cat("the device's time was ", Days(request.clock_ahead_ms), " ahead of the server's (allowed skew ",
                  Minutes(static_cast<uint32_t>(policy.max_clock_skew_ms / 1000)),
                  "); time rules used the server's receive time"));
  }
  return d;
}

CycleVerdict EvaluateCycle(const Policy& policy, const rollertrace::v1::SterilisationCycle& cycle) {
  CycleVerdict v;
  auto it = policy.methods.find(cycle.method());
  if (it == policy.methods.end()) {
    v.reasons.push_back(util::Cat("unknown sterilisation method '", cycle.method(), "'"));
  } else {
    bool met = false;
    for (const auto& m : it->second) {
      met = met || (cycle.exposure_temperature_c() >= m.temperature_c && cycle.exposure_seconds() >= m.hold_seconds);
      v.minimums += util::Cat(v.minimums.empty() ? "" : " or ", m.temperature_c, " °C for ", Minutes(m.hold_seconds));
    }
    if (!met) {
      v.reasons.push_back(util::Cat("exposure ", cycle.exposure_temperature_c(), " °C for ",
                                    Minutes(cycle.exposure_seconds()), " is short of ", cycle.method(), " (",
                                    v.minimums, ")"));
    }
  }
  if (cycle.chemical_indicator() != rollertrace::v1::INDICATOR_PASS) {
    v.reasons.push_back(cycle.chemical_indicator() == rollertrace::v1::INDICATOR_FAIL
                            ? "chemical indicator failed"
                            : "chemical indicator not recorded");
  }
  if (cycle.air_removal_test() == rollertrace::v1::INDICATOR_FAIL) v.reasons.push_back("air-removal test failed");
  v.parameters_passed = v.reasons.empty();
  return v;
}

void ApplyCycle(const rollertrace::v1::SterilisationCycle& cycle, const CycleVerdict& verdict,
                rollertrace::v1::IndicatorResult biological, rollertrace::v1::RollerUse* use) {
  auto* ref = use->mutable_last_cycle();
  ref->set_steriliser_id(cycle.steriliser_id());
  ref->set_cycle_number(cycle.cycle_number());
  ref->set_end_unix_ms(cycle.end_unix_ms());
  ref->set_parameters_passed(verdict.parameters_passed);
  ref->set_chemical_indicator(cycle.chemical_indicator());
  ref->set_biological_indicator(biological);
  if (verdict.parameters_passed) {
    use->set_last_passing_cycle_end_unix_ms(std::max(use->last_passing_cycle_end_unix_ms(), cycle.end_unix_ms()));
  }
}

}  // namespace rollertrace::rules
