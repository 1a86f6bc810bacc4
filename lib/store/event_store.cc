#include "store/event_store.h"

#include <rocksdb/utilities/write_batch_with_index.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "store/keys.h"
#include "util/cat.h"

namespace rollertrace::store {

EventStore::EventStore(std::unique_ptr<Db> db)
    : db_(std::move(db)), audit_(*db_), verifier_(*db_), archiver_(*db_), log_(*db_), applier_(policies_) {}

absl::StatusOr<std::unique_ptr<EventStore>> EventStore::Open(const std::string& path, StoreOptions options) {
  absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(path, options.sync, options.mode, options.background_nice);
  if (!db.ok()) return db.status();
  std::unique_ptr<EventStore> store(new EventStore(std::move(*db)));
  store->changed_devices_kept_ = options.changed_devices_kept;
  if (absl::Status s = store->policies_.Load(SnapshotView(*store->db_)); !s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(store->write_mu_);
    absl::StatusOr<uint64_t> applied = store->CatchUpLocked();
    if (!applied.ok()) {
      return absl::DataLossError(util::Cat("the store's command log is ahead of its state and ",
                                           "could not be applied: ", applied.status().message()));
    }
    store->caught_up_at_open_ = *applied;
  }
  {
    SnapshotView view(*store->db_);
    absl::StatusOr<uint64_t> counter = view.ReadCounter(kMetaDecisionCounter, 0);
    if (!counter.ok()) return counter.status();
    store->decision_counter_ = *counter;
  }
  if (options.policy) {
    const int64_t now = options.opened_unix_ms != 0 ? options.opened_unix_ms
                                                    : std::chrono::duration_cast<std::chrono::milliseconds>(
                                                          std::chrono::system_clock::now().time_since_epoch())
                                                          .count();
    if (absl::Status s = store->AdoptPolicy(*options.policy, now); !s.ok()) return s;
  }
  return store;
}

absl::Status EventStore::ResumeCounters() {
  std::lock_guard<std::mutex> lock(write_mu_);
  absl::StatusOr<uint64_t> counter = LatestView(*db_).ReadCounter(kMetaDecisionCounter, 0);
  if (!counter.ok()) return counter.status();
  decision_counter_ = std::max(decision_counter_.load(), *counter);
  return absl::OkStatus();
}

absl::Status EventStore::AdoptPolicy(const rules::Policy& policy, int64_t now_unix_ms) {
  rollertrace::v1::StoreCommand command;
  command.mutable_policy()->set_policy_yaml(rules::FormatPolicy(policy));
  const auto [version, current] = this->policy();
  if (version != 0 && rules::FormatPolicy(*current) == command.policy().policy_yaml()) return absl::OkStatus();
  command.set_policy_version(version);
  command.set_judged_unix_ms(now_unix_ms);
  return Execute(command).status();
}

EventStore::~EventStore() = default;

absl::StatusOr<CommandResult> EventStore::Execute(const rollertrace::v1::StoreCommand& command) {
  absl::StatusOr<std::vector<absl::StatusOr<CommandResult>>> results = ExecuteGroup({&command, 1});
  if (!results.ok()) return results.status();
  return std::move(results->front());
}

absl::StatusOr<std::vector<absl::StatusOr<CommandResult>>> EventStore::ExecuteGroup(
    std::span<const rollertrace::v1::StoreCommand> commands) {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (catch_up_needed_) {
    // A commit failed: the log may hold commands whose effects were not
    // written. They are applied first, so that none is skipped.
    if (absl::StatusOr<uint64_t> applied = CatchUpLocked(); !applied.ok()) return applied.status();
  }
  return ExecuteGroupLocked(commands);
}

absl::StatusOr<uint64_t> EventStore::CatchUpLocked() {
  absl::StatusOr<uint64_t> next = log_.NextIndex();
  if (!next.ok()) return next.status();
  constexpr size_t kGroup = 256;
  std::vector<rollertrace::v1::StoreCommand> group;
  uint64_t applied = 0;
  auto apply = [&]() -> absl::Status {
    if (group.empty()) return absl::OkStatus();
    absl::StatusOr<std::vector<absl::StatusOr<CommandResult>>> results = ExecuteGroupLocked(group);
    if (!results.ok()) return results.status();
    for (size_t i = 0; i < results->size(); ++i) {
      if (!(*results)[i].ok()) {
        return absl::DataLossError(util::Cat("logged command ", group[i].index(), " does not apply: ",
                                             (*results)[i].status().message()));
      }
    }
    applied += group.size();
    group.clear();
    return absl::OkStatus();
  };
  absl::Status s = log_.ForEach(*next, [&](const rollertrace::v1::StoreCommand& c) -> absl::StatusOr<bool> {
    group.push_back(c);
    if (group.size() == kGroup) {
      if (absl::Status a = apply(); !a.ok()) return a;
    }
    return true;
  });
  if (s.ok()) s = apply();
  if (!s.ok()) return s;
  catch_up_needed_ = false;
  return applied;
}

absl::StatusOr<std::vector<absl::StatusOr<CommandResult>>> EventStore::ExecuteGroupLocked(
    std::span<const rollertrace::v1::StoreCommand> commands) {
  WriteTxn txn(*db_, &device_cache_, &spare_batch_);
  std::vector<absl::StatusOr<CommandResult>> results;
  results.reserve(commands.size());
  for (const rollertrace::v1::StoreCommand& command : commands) {
    CommandResult result;
    absl::Status s = applier_.Apply(command, txn, &result);
    if (s.ok()) {
      results.emplace_back(std::move(result));
      continue;
    }
    const bool refused = absl::IsInvalidArgument(s) || absl::IsNotFound(s) || absl::IsAlreadyExists(s) ||
                         absl::IsFailedPrecondition(s) || absl::IsOutOfRange(s);
    if (!refused) {
      (void)policies_.Load(SnapshotView(*db_));  // forget what this write taught it
      return s;
    }
    results.emplace_back(std::move(s));
  }
  written_devices_.clear();
  if (absl::Status s = txn.Commit("write the store", &written_devices_); !s.ok()) {
    catch_up_needed_ = true;
    (void)policies_.Load(SnapshotView(*db_));
    return s;
  }
  if (!written_devices_.empty()) {
    std::lock_guard<std::mutex> lock(changed_mu_);
    if (changed_.all) {
      // every device is to be re-read anyway
    } else if (changed_.ids.size() + written_devices_.size() > changed_devices_kept_) {
      changed_ = ChangedDevices{.all = true, .ids = {}};
    } else {
      changed_.ids.insert(changed_.ids.end(), written_devices_.begin(), written_devices_.end());
    }
  }
  return results;
}

EventStore::ChangedDevices EventStore::TakeChangedDevices() {
  std::lock_guard<std::mutex> lock(changed_mu_);
  return std::exchange(changed_, ChangedDevices{});
}

absl::StatusOr<RecordedDecision> EventStore::Decide(const rollertrace::v1::AuthorizeRequest& request,
                                                    int64_t now) const {
  const auto [version, policy] = policies_.Current();
  return store::Decide(SnapshotView(*db_), *policy, version, request, now, ++decision_counter_);
}

absl::StatusOr<std::vector<rollertrace::v1::Command>> EventStore::OutboxCommands() const {
  std::vector<rollertrace::v1::Command> commands;
  absl::Status s = LatestView(*db_).Scan(Family::kOutbox, {}, [&](std::string_view key, std::string_view value)
                                                                    -> absl::StatusOr<bool> {
    if (!commands.emplace_back().ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      return ReadView::Corrupt(Family::kOutbox, key);
    }
    return true;
  });
  if (!s.ok()) return s;
  return commands;
}

}  // namespace rollertrace::store
