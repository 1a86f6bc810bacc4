// The commands that enter by gRPC rather than from devices: register,
// retire, unlock, a recorded authorisation decision, an import, a signed
// checkpoint. Each checks everything before it writes (applier.h).
#include <set>

#include "codec/codec.h"
#include "rules/registration.h"
#include "store/apply_internal.h"
#include "store/archiver.h"
#include "util/cat.h"

namespace rollertrace::store::apply {

using rollertrace::v1::DeviceRecord;

rollertrace::v1::Command MakeCommand(const std::string& device, const char* command, std::string reason, int64_t now) {
  rollertrace::v1::Command c;
  c.set_device_id(device);
  c.set_command(command);
  c.set_reason(std::move(reason));
  c.set_issued_unix_ms(now);
  return c;
}

void Lock(DeviceRecord* r, const std::string& reason, int64_t now) {
  r->mutable_device()->set_lifecycle(rollertrace::v1::LIFECYCLE_LOCKED);
  r->mutable_state()->mutable_roller()->set_lock_reason(reason);
  r->mutable_state()->mutable_roller()->set_locked_unix_ms(now);
}

void Log(Context& c, DeviceRecord* device, const char* kind, const std::string& reason, const std::string& by) {
  const std::string& device_id = device->device().device_id();
  rollertrace::v1::DeviceLogEntry entry;
  entry.set_device_id(device_id);
  entry.set_unix_ms(c.now);
  entry.set_kind(kind);
  entry.set_reason(reason);
  entry.set_by(by);
  // Keyed by the index its record-chain link gets: unique, and from the store alone.
  const uint64_t link = device->state().records_length() + 1;
  c.txn.PutRecord(device, Family::kDeviceLog, TimedKey(device_id, c.now, link), entry.SerializeAsString(), c.now);
}

absl::Status Register(Context& c, const rollertrace::v1::RegisterCommand& command) {
  rollertrace::v1::Device device = command.device();
  if (absl::Status s = rules::ValidateRegistration(device); !s.ok()) return s;
  absl::StatusOr<bool> found = c.txn.HasDevice(device.device_id());
  if (!found.ok()) return found.status();
  if (*found) return absl::AlreadyExistsError(util::Cat("device ", device.device_id(), " is already registered"));
  device.set_registered_unix_ms(c.now);
  device.set_lifecycle(rollertrace::v1::LIFECYCLE_REGISTERED);
  device.clear_retired_reason();
  device.clear_retired_unix_ms();
  DeviceRecord record;
  *record.mutable_device() = device;
  DeviceRecord* added = c.txn.AddDevice(std::move(record));
  Log(c, added, "registered", device.model(), "");
  c.result->device = device;
  return absl::OkStatus();
}

namespace {

absl::StatusOr<DeviceRecord*> Registered(Context& c, const std::string& device_id) {
  absl::StatusOr<DeviceRecord*> record = c.txn.Device(device_id);
  if (record.ok() && *record == nullptr) return absl::NotFoundError(util::Cat("device ", device_id, " is not registered"));
  return record;
}

}  // namespace

namespace {

absl::Status Text(const char* what, const std::string& value, size_t limit) {
  if (value.size() <= limit) return absl::OkStatus();
  return absl::OutOfRangeError(util::Cat(what, " is ", value.size(), " bytes, the limit is ", limit));
}

}  // namespace

absl::Status Retire(Context& c, const rollertrace::v1::RetireCommand& command) {
  if (absl::Status s = Text("a retirement's reason", command.reason(), codec::Limits::kReasonBytes); !s.ok()) return s;
  absl::StatusOr<DeviceRecord*> record = Registered(c, command.device_id());
  if (!record.ok()) return record.status();
  if (Retired(**record)) return absl::FailedPreconditionError(util::Cat("device ", command.device_id(), " is already retired"));
  rollertrace::v1::Device* device = (*record)->mutable_device();
  device->set_lifecycle(rollertrace::v1::LIFECYCLE_RETIRED);
  device->set_retired_reason(command.reason());
  device->set_retired_unix_ms(c.now);
  Log(c, *record, "retired", command.reason(), "");
  c.result->device = *device;
  return absl::OkStatus();
}

absl::Status Unlock(Context& c, const rollertrace::v1::UnlockCommand& command) {
  if (command.reason().empty() || command.by().empty()) {
    return absl::InvalidArgumentError("an unlock needs a reason and who releases it");
  }
  if (absl::Status s = Text("an unlock's reason", command.reason(), codec::Limits::kReasonBytes); !s.ok()) return s;
  if (absl::Status s = Text("who unlocks", command.by(), codec::Limits::kWhoBytes); !s.ok()) return s;
  absl::StatusOr<DeviceRecord*> found = Registered(c, command.device_id());
  if (!found.ok()) return found.status();
  DeviceRecord& record = **found;
  if (!Locked(record)) return absl::FailedPreconditionError(util::Cat("device ", command.device_id(), " is not locked"));
  auto* use = record.mutable_state()->mutable_roller();
  const bool sterile =
      use->last_passing_cycle_end_unix_ms() > std::max(use->last_session_end_unix_ms(), use->last_session_start_unix_ms());
  record.mutable_device()->set_lifecycle(sterile ? rollertrace::v1::LIFECYCLE_STERILE
                                         : record.state().sessions_started() > 0 ? rollertrace::v1::LIFECYCLE_USED
                                                                                 : rollertrace::v1::LIFECYCLE_REGISTERED);
  use->set_unlocked_by(command.by());
  use->set_unlock_reason(command.reason());
  use->set_unlocked_unix_ms(c.now);
  use->clear_lock_reason();
  use->clear_locked_unix_ms();
  Log(c, &record, "unlocked", command.reason(), command.by());
  c.result->commands.push_back(MakeCommand(command.device_id(), "unlock", command.reason(), c.now));
  c.result->device = record.device();
  return absl::OkStatus();
}

absl::Status StoreDecision(Context& c, const rollertrace::v1::RecordDecisionCommand& command) {
  const rollertrace::v1::Decision& d = command.decision();
  absl::StatusOr<DeviceRecord*> owner = Registered(c, d.device_id());
  if (!owner.ok()) return owner.status();
  c.txn.PutRecord(*owner, Family::kDecisions, TimedKey(d.device_id(), d.decided_unix_ms(), command.counter()),
                  d.SerializeAsString(), c.now);
  absl::StatusOr<uint64_t> stored = c.txn.ReadCounter(kMetaDecisionCounter, 0);
  if (!stored.ok()) return stored.status();
  if (*stored < command.counter()) c.txn.Put(Family::kMeta, kMetaDecisionCounter, CounterValue(command.counter()));
  return absl::OkStatus();
}

absl::Status Import(Context& c, const rollertrace::v1::ImportCommand& command) {
  const std::vector<std::string> device_ids(command.device_ids().begin(), command.device_ids().end());
  absl::StatusOr<std::vector<CheckedRecord>> checked = CheckArchive(device_ids, command.records());
  if (!checked.ok()) return checked.status();
  for (const std::string& id : device_ids) {
    absl::StatusOr<bool> found = c.txn.HasDevice(id);
    if (!found.ok()) return found.status();
    if (*found) {
      return absl::AlreadyExistsError(
          util::Cat("device ", id, " is already in this store: an archive is imported into a store without it"));
    }
  }
  for (const CheckedRecord& r : *checked) {
    const auto& raw = command.records(static_cast<int>(r.index));
    c.txn.Put(r.family, raw.key(), raw.value());
    if (r.family == Family::kSessions) {
      IndexSession(c.txn, r.session);
    } else if (r.family == Family::kViolations) {
      IndexViolation(c.txn, r.violation, raw.key());
    } else if (r.family == Family::kCycles) {
      IndexCycle(c.txn, r.cycle);
    }
  }
  return absl::OkStatus();
}

absl::Status StoreCheckpoint(Context& c, const rollertrace::v1::CheckpointCommand& command) {
  c.txn.Put(Family::kCheckpoints, CheckpointKey(command.checkpoint().unix_ms()),
            command.checkpoint().SerializeAsString());
  return absl::OkStatus();
}

}  // namespace rollertrace::store::apply

namespace rollertrace::store::apply {

void IndexSession(WriteTxn& txn, const rollertrace::v1::SessionRecord& s) {
  if (!s.cycle().steriliser_id().empty()) {
    txn.Put(Family::kCycleSessions,
            CycleSessionKey(s.cycle().steriliser_id(), s.cycle().cycle_number(), s.device_id(), s.sequence()), "");
  }
  txn.Put(Family::kSessionsByTime, TimeKey(s.start_unix_ms(), s.device_id(), s.sequence()), "");
  txn.Put(Family::kPatientSessions, PatientSessionKey(s.patient_pseudonym(), s.device_id(), s.sequence()), "");
}

void IndexViolation(WriteTxn& txn, const rollertrace::v1::Violation& v, const std::string& violation_key) {
  txn.Put(Family::kDeviceViolations, DeviceViolationKey(v.device_id(), v.sequence(), v.rule()), violation_key);
}

void IndexCycle(WriteTxn& txn, const rollertrace::v1::CycleRecord& c) {
  const auto& cycle = c.cycle();
  for (const std::string& roller_id : cycle.load()) {
    if (std::find(c.unknown_load().begin(), c.unknown_load().end(), roller_id) != c.unknown_load().end()) continue;
    txn.Put(Family::kRollerCycles,
            RollerCycleKey(roller_id, cycle.end_unix_ms(), cycle.steriliser_id(), cycle.cycle_number()), "");
  }
  txn.Put(Family::kCyclesByTime,
          TimeKey(cycle.end_unix_ms() > 0 ? cycle.end_unix_ms() : c.received_unix_ms(), cycle.steriliser_id(),
                  cycle.cycle_number()),
          "");
}

}  // namespace rollertrace::store::apply
