// The applier: a StoreCommand -> its effects in one WriteTxn. Reads only the
// txn (the store plus what this write put so far) and the command: no clock,
// no randomness, no process state. The rules library is called only here and
// in decider.h.
//
// A command is checked before it writes: a refused command (InvalidArgument,
// NotFound, AlreadyExists, FailedPrecondition, OutOfRange) leaves the txn as it was; any
// other error is the store's own (I/O, corruption) and the whole txn must be
// dropped.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "rollertrace/v1/commands.pb.h"
#include "rollertrace/v1/records.pb.h"
#include "rollertrace/v1/services.pb.h"
#include "rules/policy.h"
#include "store/write_txn.h"

namespace rollertrace::store {

// What applying one command did: for metrics, acks and answers; never stored.
struct CommandResult {
  uint64_t index = 0;  // in the command log
  // Ingest.
  std::vector<rollertrace::v1::DeviceAck> acks;  // one per device with an event committed or repeated
  std::vector<rollertrace::v1::Rejection> rejections;
  std::map<std::string_view, uint64_t> stored_by_type;  // codec::EventType's static label -> count
  uint64_t duplicates = 0;
  uint64_t conflicts = 0;  // repeats with other content (refused, kept as EVENT_CONFLICT findings)
  uint64_t gaps_opened = 0;
  std::vector<rollertrace::v1::Violation> violations;
  std::vector<rollertrace::v1::Decision> decisions;  // re-checks of ingested session starts
  std::vector<rollertrace::v1::CycleRecord> cycles;
  std::vector<rollertrace::v1::Finding> findings;  // device input refused or flagged
  // Recalls started (a steriliser's own failed indicator, or the lab's).
  std::vector<rollertrace::v1::RecallReport> recalls;
  // Commands for devices (locks, unlocks) this command set off.
  std::vector<rollertrace::v1::Command> commands;
  // Register, retire, unlock: the device as it now is.
  rollertrace::v1::Device device;
  // A lab's biological-indicator result: the cycle as it now is.
  rollertrace::v1::CycleRecord cycle;
};

// The policies the store holds, by version (version 0: rules::Policy's
// defaults, before the store held any).
// Thread-safe: the decider reads it while the applier adds to it.
class PolicyBook {
 public:
  // Loads every stored version.
  absl::Status Load(const ReadView& view);
  // nullptr for a version the store does not hold.
  std::shared_ptr<const rules::Policy> Get(uint64_t version) const;
  // The latest version and its policy.
  std::pair<uint64_t, std::shared_ptr<const rules::Policy>> Current() const;
  void Add(uint64_t version, rules::Policy policy);

 private:
  mutable std::mutex mu_;
  std::map<uint64_t, std::shared_ptr<const rules::Policy>> policies_;  // guarded by mu_
};

class Applier {
 public:
  // Borrows `policies`; it is updated by policy commands.
  explicit Applier(PolicyBook& policies) : policies_(policies) {}

  // Applies `command` (index 0: a new command, given the next index of the
  // log; else a replayed one, which must carry exactly that index) and writes
  // it into the command log, all in `txn`.
  absl::Status Apply(const rollertrace::v1::StoreCommand& command, WriteTxn& txn, CommandResult* result);

 private:
  PolicyBook& policies_;
};

}  // namespace rollertrace::store
