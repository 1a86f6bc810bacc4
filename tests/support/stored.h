// What the fleet tests check at the end: every event a simulated clinic
// planned is stored exactly once, in order, with no gap left open (asked
// through the cluster's gRPC address: one ingestd, or a cluster's router).
#pragma once

#include "agent/simulator.h"
#include "support/cluster.h"

namespace rollertrace::testing {

// `authorized`: every session start carries the decision it was asked under.
void ExpectStoredExactlyOnce(Cluster& cluster, const edge::SimOptions& options, bool authorized);

}  // namespace rollertrace::testing
