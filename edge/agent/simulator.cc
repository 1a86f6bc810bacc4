#include "agent/simulator.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>

#include "util/cat.h"

namespace rollertrace::edge {
namespace {

using rollertrace::v1::Device;
using rollertrace::v1::Event;

constexpr int64_t kMinute = 60 * 1000;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;

struct Model {
  const char* name;
  uint32_t needles;
  double needle_mm;
  rollertrace::v1::Indication indication;
  rollertrace::v1::Area area;
};

constexpr Model kModels[] = {
    {"DRS-192-0.50", 192, 0.5, rollertrace::v1::INDICATION_REJUVENATION, rollertrace::v1::AREA_FACE},
    {"DRS-540-1.00", 540, 1.0, rollertrace::v1::INDICATION_PIGMENTATION, rollertrace::v1::AREA_FACE},
    {"DRS-540-1.50", 540, 1.5, rollertrace::v1::INDICATION_HAIR_LOSS, rollertrace::v1::AREA_SCALP},
    {"MTS-192-2.00", 192, 2.0, rollertrace::v1::INDICATION_SCAR, rollertrace::v1::AREA_BODY},
    {"DRS-540-2.50", 540, 2.5, rollertrace::v1::INDICATION_ACNE, rollertrace::v1::AREA_FACE},
};

// Rated life in revolutions: every needle goes through the skin once per turn.
constexpr uint64_t kRatedRevolutions = 3000;

std::string Id(const std::string& prefix, int n, int width) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%0*d", width, n);
  return prefix + buf;
}

}  // namespace

ClinicSimulator::ClinicSimulator(const SimOptions& options) {
  std::mt19937_64 rng(options.seed);
  auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  const int64_t day0 = (options.end_unix_ms / kDay - options.days) * kDay;

  std::vector<const Model*> models;
  for (int r = 0; r < options.rollers; ++r) {
    const Model& m = kModels[uniform(0, std::size(kModels) - 1)];
    models.push_back(&m);
    Device& d = devices_.emplace_back();
    d.set_device_id(Id(options.roller_prefix, r + 1, 4));
    d.set_kind(rollertrace::v1::DEVICE_KIND_ROLLER);
    d.set_model(m.name);
    d.set_clinic(options.clinic);
    d.set_needle_count(m.needles);
    d.set_needle_length_mm(m.needle_mm);
    d.set_rated_penetrations(kRatedRevolutions * m.needles);
  }
  for (int s = 0; s < options.sterilisers; ++s) {
    Device& d = devices_.emplace_back();
    d.set_device_id(Id(options.steriliser_prefix, s + 1, 2));
    d.set_kind(rollertrace::v1::DEVICE_KIND_STERILISER);
    d.set_model("Steam pre-vacuum B-class 18L");
    d.set_clinic(options.clinic);
  }

  auto add = [&](codec::TopicKind kind, const std::string& device, int64_t t) -> Event& {
    SimEvent& e = events_.emplace_back();
    e.kind = kind;
    e.event.set_device_id(device);
    e.event.set_device_time_unix_ms(t);
    return e.event;
  };

  // day -> rollers used that day; sterilised together that morning.
  std::map<int, std::vector<int>> used_on;
  for (int r = 0; r < options.rollers; ++r) {
    const Model& m = *models[r];
    const std::string& id = devices_[r].device_id();
    const std::string patient = util::Cat("MRN-", uniform(100000, 999999));
    int day = static_cast<int>(uniform(0, 6));
    int last_session = 4;
    for (int session = 1; session <= last_session; ++session) {
      // Injected violations (sessions after the first only).
      enum { kNone, kOtherPatient, kUnsterilised, kTooSoon, kFifthSession, kHeavyUse } inject = kNone;
      if (session > 1 && chance(options.violation_rate)) inject = static_cast<decltype(inject)>(uniform(1, 5));
      if (inject == kFifthSession && session == 4) last_session = 5;
      // >= 7 days apart and < 14: no SESSION_TOO_SOON, no COURSE_GAP, unless injected.
      if (session > 1) day += inject == kTooSoon ? static_cast<int>(uniform(2, 5)) : static_cast<int>(uniform(8, 13));
      if (day >= options.days) break;
      if (inject != kUnsterilised) used_on[day].push_back(r);
      const int64_t start = day0 + day * kDay + uniform(9 * 60, 16 * 60) * kMinute;
      Event& started = add(codec::TopicKind::kRollerEvents, id, start);
      events_.back().needs_cycles_committed = true;
      auto* s = started.mutable_session_started();
      s->set_session_id(util::Cat(id, "-s", session));
      s->set_patient_ref(inject == kOtherPatient ? util::Cat("MRN-", uniform(100000, 999999)) : patient);
      s->set_operator_id(util::Cat("op-", uniform(1, 4)));
      s->set_indication(m.indication);
      s->set_area(m.area);
      s->set_needle_length_mm(m.needle_mm);
      if (m.area != rollertrace::v1::AREA_SCALP) {
        s->set_anaesthesia_applied_unix_ms(start - uniform(30, 45) * kMinute);
      }
      const int samples = static_cast<int>(uniform(6, 12));
      uint32_t total = 0;
      int64_t t = start;
      for (int k = 0; k < samples; ++k) {
        t += 2 * kMinute;
        Event& sample = add(codec::TopicKind::kRollerEvents, id, t);
        auto* u = sample.mutable_usage_sample();
        u->set_session_id(s->session_id());
        u->set_revolutions(static_cast<uint32_t>(inject == kHeavyUse ? uniform(400, 500) : uniform(20, 60)));
        u->set_pressure_kpa(static_cast<double>(uniform(80, 160)) / 10.0);
        total += u->revolutions();
      }
      Event& ended = add(codec::TopicKind::kRollerEvents, id, t + kMinute);
      ended.mutable_session_ended()->set_session_id(util::Cat(id, "-s", session));
      ended.mutable_session_ended()->set_total_revolutions(total);
    }
    for (int d = 0; d < options.days; ++d) {
      Event& hb = add(codec::TopicKind::kRollerEvents, id, day0 + d * kDay + 20 * kHour + r * 1000);
      auto* h = hb.mutable_heartbeat();
      h->set_battery_fraction(std::max(0.05, 1.0 - 0.02 * d));
      h->set_firmware("1.4.2");
      h->set_signal_dbm(static_cast<int32_t>(uniform(-80, -45)));
    }
  }

  if (options.sterilisers > 0) {
    std::vector<uint64_t> cycle_numbers(options.sterilisers, 0);
    // A chamber holds at most kRollersPerLoad pouched rollers: a big clinic's
    // morning is several loads. Each roller goes through its own room's
    // steriliser (SteriliserOfRoller).
    constexpr size_t kRollersPerLoad = 50;
    for (const auto& [day, used] : used_on) {
      std::vector<std::vector<int>> by_steriliser(options.sterilisers);
      for (int r : used) by_steriliser[SteriliserOfRoller(options, r)].push_back(r);
      for (int s = 0; s < options.sterilisers; ++s) {
        const std::vector<int>& mine = by_steriliser[s];
        for (size_t first = 0; first < mine.size(); first += kRollersPerLoad) {
          const std::string& id = devices_[options.rollers + s].device_id();
          const int64_t start = day0 + day * kDay + 7 * kHour + 30 * kMinute;
          Event& e = add(codec::TopicKind::kSteriliserCycles, id, start + 45 * kMinute);
          auto* c = e.mutable_sterilisation_cycle();
          c->set_steriliser_id(id);
          c->set_cycle_number(++cycle_numbers[s]);
          c->set_method("steam_prevacuum");
          c->set_start_unix_ms(start);
          c->set_end_unix_ms(start + 45 * kMinute);
          const bool fails = chance(options.failing_cycle_rate);
          c->set_exposure_temperature_c(fails ? 128.0 + uniform(0, 30) / 10.0 : 134.0 + uniform(0, 15) / 10.0);
          c->set_exposure_seconds(static_cast<uint32_t>(uniform(180, 240)));
          c->set_pressure_kpa(210.0 + uniform(0, 100) / 10.0);
          c->set_loaded_by("tech-a");
          for (size_t i = first; i < std::min(mine.size(), first + kRollersPerLoad); ++i) {
            c->add_load(devices_[mine[i]].device_id());
          }
          c->set_chemical_indicator(rollertrace::v1::INDICATOR_PASS);
          c->set_air_removal_test(rollertrace::v1::INDICATOR_PASS);
          c->set_leak_rate_mbar_per_min(uniform(5, 12) / 10.0);
          c->set_released_by("tech-b");
          c->set_biological_indicator(rollertrace::v1::INDICATOR_PENDING);
        }
      }
    }
  }

  std::stable_sort(events_.begin(), events_.end(), [](const SimEvent& a, const SimEvent& b) {
    return a.event.device_time_unix_ms() < b.event.device_time_unix_ms();
  });
}

int SteriliserOfRoller(const SimOptions& options, int roller) {
  return options.sterilisers > 0 ? roller % options.sterilisers : -1;
}

int ProcessOfDevice(const SimOptions& options, int device, int processes) {
  if (processes <= 1) return 0;
  if (device >= options.rollers) return (device - options.rollers) % processes;
  const int steriliser = SteriliserOfRoller(options, device);
  return (steriliser >= 0 ? steriliser : device) % processes;
}

}  // namespace rollertrace::edge
