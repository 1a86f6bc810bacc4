// What the fleet tests check at the end: every event a simulated clinic
// planned is stored exactly once, in order, with no gap left open (asked
// through the cluster's gRPC address: one ingestd, or a cluster's router).
#pragma once

#include <set>
#include <string>

#include "agent/simulator.h"
#include "support/cluster.h"

namespace rollertrace::testing {

// `authorized`: every session start carries the decision it was asked under.
void ExpectStoredExactlyOnce(Cluster& cluster, const edge::SimOptions& options, bool authorized);

// Under faults a fleet may be refused sessions (asked while the server did
// not yet hold a cycle, or decided offline from what a roller last heard):
// those never take place and are left out of what must be stored; sessions
// may also have been allowed offline. Everything else is checked as above.
struct FleetOutcome {
  std::set<std::string> refused_sessions;  // refused and not carried out anyway
};
// The sessions a roller-fleet log says were refused and not carried out.
FleetOutcome ReadFleetOutcome(const std::string& fleet_log);
void ExpectStoredExactlyOnce(Cluster& cluster, const edge::SimOptions& options, const FleetOutcome& outcome);

}  // namespace rollertrace::testing
