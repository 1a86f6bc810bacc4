// Applier::Apply: checks a command's place in the log and its policy, hands
// its body to the apply_*.cc function for it, stages the devices it touched
// and writes it into the command log, all in one txn.
#include "store/applier.h"

#include "store/apply_internal.h"
#include "util/cat.h"

namespace rollertrace::store {
namespace {

absl::Status ApplyPolicy(WriteTxn& txn, PolicyBook& book, const rollertrace::v1::PolicyCommand& command, int64_t now) {
  absl::StatusOr<rules::Policy> policy = rules::ParsePolicy(command.policy_yaml());
  if (!policy.ok()) return absl::InvalidArgumentError(util::Cat("policy command: ", policy.status().message()));
  absl::StatusOr<uint64_t> current = txn.ReadCounter(kMetaPolicyVersion, 0);
  if (!current.ok()) return current.status();
  rollertrace::v1::PolicyRecord record;
  record.set_version(*current + 1);
  record.set_policy_yaml(command.policy_yaml());
  record.set_since_unix_ms(now);
  txn.Put(Family::kMeta, PolicyKey(record.version()), record.SerializeAsString());
  txn.Put(Family::kMeta, kMetaPolicyVersion, CounterValue(record.version()));
  book.Add(record.version(), std::move(*policy));
  return absl::OkStatus();
}

// The bridges published these device commands: they leave the outbox.
absl::Status ApplyCommandsPublished(WriteTxn& txn, const rollertrace::v1::CommandsPublishedCommand& command) {
  if (command.outbox_indexes().empty()) return absl::InvalidArgumentError("commands published: no outbox index");
  for (uint64_t index : command.outbox_indexes()) txn.Delete(Family::kOutbox, OutboxKey(index));
  return absl::OkStatus();
}

// The device commands this command raised go into the outbox with it, each
// under the next outbox index, so that they are sent again after a restart
// until a bridge says they were published.
absl::Status KeepInOutbox(WriteTxn& txn, std::vector<rollertrace::v1::Command>& commands) {
  if (commands.empty()) return absl::OkStatus();
  absl::StatusOr<uint64_t> next = txn.ReadCounter(kMetaNextOutbox, 1);
  if (!next.ok()) return next.status();
  uint64_t index = *next;
  for (rollertrace::v1::Command& c : commands) {
    c.set_outbox_index(index);
    txn.Put(Family::kOutbox, OutboxKey(index), c.SerializeAsString());
    ++index;
  }
  txn.Put(Family::kMeta, kMetaNextOutbox, CounterValue(index));
  return absl::OkStatus();
}

}  // namespace

absl::Status PolicyBook::Load(const ReadView& view) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    policies_.clear();
  }
  Add(0, rules::Policy{});
  absl::StatusOr<uint64_t> current = view.ReadCounter(kMetaPolicyVersion, 0);
  if (!current.ok()) return current.status();
  for (uint64_t v = 1; v <= *current; ++v) {
    rollertrace::v1::PolicyRecord record;
    absl::StatusOr<bool> found = view.Read(Family::kMeta, PolicyKey(v), &record);
    if (!found.ok()) return found.status();
    if (!*found) return absl::DataLossError(util::Cat("policy version ", v, " is missing from the store"));
    absl::StatusOr<rules::Policy> policy = rules::ParsePolicy(record.policy_yaml());
    if (!policy.ok()) return absl::DataLossError(util::Cat("stored policy version ", v, ": ", policy.status().message()));
    Add(v, std::move(*policy));
  }
  return absl::OkStatus();
}

std::shared_ptr<const rules::Policy> PolicyBook::Get(uint64_t version) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = policies_.find(version);
  return it == policies_.end() ? nullptr : it->second;
}

std::pair<uint64_t, std::shared_ptr<const rules::Policy>> PolicyBook::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (policies_.empty()) return {0, std::make_shared<const rules::Policy>()};
  return *policies_.rbegin();
}

void PolicyBook::Add(uint64_t version, rules::Policy policy) {
  std::lock_guard<std::mutex> lock(mu_);
  policies_[version] = std::make_shared<const rules::Policy>(std::move(policy));
}

absl::Status Applier::Apply(const rollertrace::v1::StoreCommand& command, WriteTxn& txn, CommandResult* result) {
  absl::StatusOr<uint64_t> next = txn.NextCommandIndex();
  if (!next.ok()) return next.status();
  if (command.index() != 0 && command.index() != *next) {
    return absl::FailedPreconditionError(util::Cat("command ", command.index(), " is out of order: the store's log ",
                                                   "expects command ", *next));
  }
  if (command.index() == 0 && command.policy_version() != policies_.Current().first &&
      !command.has_policy()) {
    // A new command is judged under the policy in force (stamped where it entered).
    return absl::FailedPreconditionError(util::Cat("command judged under policy version ", command.policy_version(),
                                                   " but the store's policy is version ", policies_.Current().first));
  }
  const std::shared_ptr<const rules::Policy> policy = policies_.Get(command.policy_version());
  if (policy == nullptr) {
    return absl::FailedPreconditionError(
        util::Cat("command judged under policy version ", command.policy_version(), ", which this store does not hold"));
  }
  apply::Context c{txn, *policy, command.policy_version(), command.judged_unix_ms(), result};
  absl::Status s;
  using C = rollertrace::v1::StoreCommand;
  switch (command.body_case()) {
    case C::kIngest: s = apply::Ingest(c, command.ingest()); break;
    case C::kRegister: s = apply::Register(c, command.register_()); break;
    case C::kRetire: s = apply::Retire(c, command.retire()); break;
    case C::kUnlock: s = apply::Unlock(c, command.unlock()); break;
    case C::kBiologicalIndicator: s = apply::LabIndicator(c, command.biological_indicator()); break;
    case C::kImport: s = apply::Import(c, command.import()); break;
    case C::kDecision: s = apply::StoreDecision(c, command.decision()); break;
    case C::kCheckpoint: s = apply::StoreCheckpoint(c, command.checkpoint()); break;
    case C::kPolicy: s = ApplyPolicy(txn, policies_, command.policy(), command.judged_unix_ms()); break;
    case C::kCommandsPublished: s = ApplyCommandsPublished(txn, command.commands_published()); break;
    default: s = absl::InvalidArgumentError("a store command without a body"); break;
  }
  if (s.ok()) s = KeepInOutbox(txn, result->commands);
  if (!s.ok()) {
    txn.ForgetCommand();
    return s;
  }
  txn.EndCommand(c.now);
  // Logged with its index only in the key, so that a fresh command and the
  // same command replayed give the same bytes.
  if (command.index() == 0) {
    txn.Put(Family::kCommands, CommandKey(*next), command.SerializeAsString());
  } else {
    rollertrace::v1::StoreCommand logged = command;
    logged.clear_index();
    txn.Put(Family::kCommands, CommandKey(*next), logged.SerializeAsString());
  }
  txn.AdvanceCommandIndex();
  result->index = *next;
  return absl::OkStatus();
}

}  // namespace rollertrace::store
