// The decider: the rules' answer for a session about to start, from what the
// store holds (read-only; never waits behind a write). Its answer is stored
// by a decision command (applier.h). Also the facts both it and the applier
// give the rules.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "rollertrace/v1/commands.pb.h"
#include "rollertrace/v1/services.pb.h"
#include "rules/rules.h"
#include "store/db.h"

namespace rollertrace::store {

// An authorisation decision as decided, to be stored by a decision command.
struct RecordedDecision {
  rollertrace::v1::Decision decision;
  uint64_t counter = 0;  // part of its id and key
  bool store = false;    // false for an unknown device: answered, not stored
};

rules::RollerFacts FactsOf(const rollertrace::v1::DeviceRecord& record);

// The cycle a session starting at `start` relies on: the roller's latest
// cycle that ended before it, and the latest passing one. Replaces the
// facts' last cycle when that one ends after `start`.
absl::Status CycleBefore(const ReadView& view, const std::string& roller_id, int64_t start,
                         rollertrace::v1::RollerUse* use);

// The rules' answer under `policy` (version `policy_version`) at `now`. An
// unregistered roller gets a deny with UNKNOWN_DEVICE.
// REQUIRES: the session's patient reference already pseudonymised.
absl::StatusOr<RecordedDecision> Decide(const ReadView& view, const rules::Policy& policy, uint64_t policy_version,
                                        const rollertrace::v1::AuthorizeRequest& request, int64_t now,
                                        uint64_t counter);

}  // namespace rollertrace::store
