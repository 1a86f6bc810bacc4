// Playing a simulated clinic through a Fleet: the roller-agent's and
// roller-fleet's main loop (lanes of rollers, the sterilisers' lane, waiting
// for cycles before sessions, authorisations and operator overrides).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/fleet.h"
#include "agent/simulator.h"

namespace rollertrace::edge {

// Replays simulator events into `fleet` at `rate` events per second (0 = as
// fast as the spool takes them), resuming each device after its source cursor.
// Sterilisers play in source order on one thread, rollers on
// FleetOptions::play_lanes threads, each roller's events in order.
// Before a session start it waits until every steriliser event dated before
// it is recorded and (up to 30 s) acknowledged, as in a clinic where cycles
// end hours before sessions,
// then asks for authorisation: a refused session is not carried out (its
// events are skipped) unless the operator overrides (FleetOptions::override_rate).
// Returns how many it recorded; stops early when `stop` becomes true.
// progress(i, n) is called now and then with events done of n.
// log(line) tells of each refused session, with its reasons.
absl::StatusOr<uint64_t> PlaySimulation(Fleet& fleet, const std::vector<SimEvent>& events, double rate,
                                        const std::atomic<bool>& stop,
                                        const std::function<void(size_t, size_t)>& progress,
                                        const std::function<void(const std::string&)>& log = nullptr);

}  // namespace rollertrace::edge
