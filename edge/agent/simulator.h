// ClinicSimulator: a repeatable clinic for demos, tests and load. From a seed
// it plans rollers (one patient each, a course of up to four sessions 7-14 days
// apart), a morning sterilisation cycle for every roller used that day (each
// roller in its own room's steriliser, SteriliserOfRoller), usage
// samples while a session runs, and a nightly heartbeat per roller. Pure: the
// end of the simulated period is passed in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "rollertrace/v1/events.pb.h"
#include "rollertrace/v1/records.pb.h"

namespace rollertrace::edge {

struct SimOptions {
  uint64_t seed = 1;
  int rollers = 4;
  int sterilisers = 1;
  int days = 28;
  // The simulated period ends here; device times are before it.
  int64_t end_unix_ms = 0;
  // Share of sterilisation cycles whose exposure falls short of the method.
  double failing_cycle_rate = 0.05;
  // Share of sessions (after a roller's first) planned to break a rule:
  // another patient, no sterilisation that morning, too soon after the
  // previous session, a fifth session, or a roller worn out by heavy use.
  double violation_rate = 0;
  std::string roller_prefix = "R-";
  std::string steriliser_prefix = "S-";
  std::string clinic = "clinic-1";
};

struct SimEvent {
  codec::TopicKind kind;
  // A session start: in a clinic the morning's cycle was recorded hours
  // before; a replay must let the steriliser's records land first.
  bool needs_cycles_committed = false;
  // device_id, device_time_unix_ms and body are set; sequence is the spool's.
  rollertrace::v1::Event event;
};

class ClinicSimulator {
 public:
  explicit ClinicSimulator(const SimOptions& options);

  // The registrations of every simulated device, rollers first.
  const std::vector<rollertrace::v1::Device>& devices() const { return devices_; }
  // Every event of the period, in device-time order.
  const std::vector<SimEvent>& events() const { return events_; }

 private:
  std::vector<rollertrace::v1::Device> devices_;
  std::vector<SimEvent> events_;
};

// The steriliser (0-based) that roller number `roller` (0-based) always goes
// through, as a treatment room has its own: -1 without sterilisers.
int SteriliserOfRoller(const SimOptions& options, int roller);

// Which of `processes` processes plays device number `device` (an index into
// ClinicSimulator::devices()) when roller-fleet splits the clinic
// (--processes): a steriliser by its number, a roller with its steriliser, so
// that each process holds every cycle its rollers' sessions rely on.
int ProcessOfDevice(const SimOptions& options, int device, int processes);

}  // namespace rollertrace::edge
