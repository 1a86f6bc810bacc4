// EventStore: the system of record, a deterministic state machine over
// commands (docs/ARCHITECTURE.md, "The store"). This facade opens the parts
// and hands them out: writes go through Execute / ExecuteGroup as
// StoreCommands (store/commands.h builds them), reads through audit(),
// verifier() and archiver(), authorisation answers through Decide.
//
// Exactly-once: an event is identified by (device id, sequence). A new one is
// stored with its device's updated state and gap records in one atomic,
// synced write; a repeated one is acknowledged again but not stored.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rollertrace/v1/commands.pb.h"
#include "rules/policy.h"
#include "store/applier.h"
#include "store/archiver.h"
#include "store/audit_reader.h"
#include "store/command_log.h"
#include "store/db.h"
#include "store/decider.h"
#include "store/verifier.h"

namespace rollertrace::store {

struct StoreOptions {
  // Sync the WAL with every write. Only benchmarks turn this off.
  bool sync = true;
  // The rules to judge by from now on: when set and not the store's current
  // policy, Open applies a policy command (judged at `opened_unix_ms`, or the
  // wall clock when 0). Unset: the store's own (replay, tools).
  std::optional<rules::Policy> policy;
  int64_t opened_unix_ms = 0;
  Db::Mode mode = Db::Mode::kServe;
  // Nice value of RocksDB's flush and compaction threads (Db::Open); 0 = off.
  int background_nice = 0;
  // How many written device ids TakeChangedDevices keeps before it gives up
  // counting and answers "all".
  size_t changed_devices_kept = 100000;
};

class EventStore {
 public:
  // Opens (creating if missing) the store in directory `path`.
  static absl::StatusOr<std::unique_ptr<EventStore>> Open(const std::string& path, StoreOptions options = {});
  ~EventStore();
  EventStore(const EventStore&) = delete;
  EventStore& operator=(const EventStore&) = delete;

  // Applies one command in its own commit: the command through the synced
  // WAL, then its effects (re-applied from the log after a crash, so the
  // commit is all or nothing). A new command (index
  // 0) must name the current policy version (policy().first); a replayed one
  // (index set) must be the next of the log. A refused command changes nothing.
  absl::StatusOr<CommandResult> Execute(const rollertrace::v1::StoreCommand& command);
  // Applies commands in order in one write (group commit): the same record
  // as applying them one by one. A refused command is answered with its
  // status and changes nothing; an error of the store itself fails the
  // group and nothing is written. Thread-safe, like Execute.
  absl::StatusOr<std::vector<absl::StatusOr<CommandResult>>> ExecuteGroup(
      std::span<const rollertrace::v1::StoreCommand> commands);

  // How many logged commands the open applied because their effects were
  // not on disk (a crash before the flush: docs/ARCHITECTURE.md, "The log is
  // the WAL"); 0 after a clean stop.
  uint64_t caught_up_at_open() const { return caught_up_at_open_; }

  // After commands were replayed into an open store (a shard catching up
  // with its stream): new decisions continue after the replayed ones.
  absl::Status ResumeCounters();
  // Makes `policy` the one new commands are judged under: a policy command
  // judged at `now_unix_ms`, unless it is the current one already.
  absl::Status AdoptPolicy(const rules::Policy& policy, int64_t now_unix_ms);

  // The rules' answer for a session about to start, from what is committed
  // (never waits behind a write); store it with a decision command.
  absl::StatusOr<RecordedDecision> Decide(const rollertrace::v1::AuthorizeRequest& request, int64_t now_unix_ms) const;
  // The device commands not yet published by a bridge (the outbox), in the
  // order they were raised.
  absl::StatusOr<std::vector<rollertrace::v1::Command>> OutboxCommands() const;
  // The policy new commands are judged under, and its version.
  std::pair<uint64_t, std::shared_ptr<const rules::Policy>> policy() const { return policies_.Current(); }

  // The devices whose records (definition or state) were written since the
  // last call, for a reader that keeps its own summary of every device and
  // re-reads only these (FleetGauges: a scan of every device a second was a
  // fifth of ingestd's CPU under a 10,000-roller fleet). `all` on the first
  // call, and when more ids piled up than StoreOptions::changed_devices_kept
  // (nobody asked): then re-read every device. An id may come more than once.
  // Noted after the write is visible to readers, so a read after this call
  // sees at least what it names. Thread-safe.
  struct ChangedDevices {
    bool all = false;
    std::vector<std::string> ids;
  };
  ChangedDevices TakeChangedDevices();

  const AuditReader& audit() const { return audit_; }
  const Verifier& verifier() const { return verifier_; }
  const Archiver& archiver() const { return archiver_; }
  const CommandLog& log() const { return log_; }
  // RocksDB integer properties for metrics, e.g. "rocksdb.estimate-live-data-size".
  std::map<std::string, uint64_t> Properties() const { return db_->Properties(); }
  // The store's directory, and RocksDB's recovery after a failed write
  // (a full disk): OK when it takes writes again.
  const std::string& path() const { return db_->path(); }
  absl::Status Resume() { return db_->Resume(); }

 private:
  explicit EventStore(std::unique_ptr<Db> db);
  absl::StatusOr<std::vector<absl::StatusOr<CommandResult>>> ExecuteGroupLocked(
      std::span<const rollertrace::v1::StoreCommand> commands);
  // Applies the logged commands beyond meta's next index; how many.
  absl::StatusOr<uint64_t> CatchUpLocked();

  std::unique_ptr<Db> db_;
  AuditReader audit_;
  Verifier verifier_;
  Archiver archiver_;
  CommandLog log_;
  PolicyBook policies_;
  Applier applier_;
  mutable std::atomic<uint64_t> decision_counter_{0};  // from meta at open
  std::mutex write_mu_;  // one write at a time: commands apply in order
  DeviceCache device_cache_;  // guarded by write_mu_
  std::unique_ptr<rocksdb::WriteBatchWithIndex> spare_batch_;  // guarded by write_mu_ (WriteTxn)
  bool catch_up_needed_ = false;  // guarded by write_mu_: a commit failed, the log may be ahead
  size_t changed_devices_kept_ = 0;
  std::vector<std::string> written_devices_;  // guarded by write_mu_: one write's, reused
  std::mutex changed_mu_;  // taken after write_mu_, never before it
  ChangedDevices changed_{.all = true, .ids = {}};  // guarded by changed_mu_
  uint64_t caught_up_at_open_ = 0;
};

}  // namespace rollertrace::store
