// Every key layout of the store, and its decoder: nothing outside this file
// builds or takes apart a key. Integers are big-endian fixed width so byte
// order is numeric order; a device id (which never holds '\0', see
// codec::ValidateDeviceId) is followed by '\0' so that one device's keys form
// a contiguous range that no other device's keys interleave with.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rollertrace::store {

void AppendBigEndian64(std::string* out, uint64_t value);
// The same eight bytes, into out[0..7].
void PutBigEndian64(char* out, uint64_t value);
uint64_t ReadBigEndian64(std::string_view bytes);  // REQUIRES: bytes.size() >= 8

// All keys of one device in a per-device column family start with this.
std::string DevicePrefix(std::string_view device_id);

// device_id '\0' be64(sequence): events, gaps (by first sequence), sessions
// (by the sequence of the start), cycles and recalls (by cycle number),
// ledger (by index), and the agent's spool.
std::string DeviceSequenceKey(std::string_view device_id, uint64_t sequence);

struct DeviceSequence {
  std::string device_id;
  uint64_t sequence;
};
// Inverse of DeviceSequenceKey; nullopt for a key not made by it.
std::optional<DeviceSequence> DecodeDeviceSequenceKey(std::string_view key);

// The device a per-device key belongs to (its bytes before the first '\0');
// nullopt when there is none.
std::optional<std::string> KeyOwner(std::string_view key);

// decisions and device_log: device '\0' be64(unix_ms) be64(n), where n is a
// decision's counter or a log entry's record-chain index.
std::string TimedKey(std::string_view device_id, int64_t unix_ms, uint64_t n);
struct TimedKeyParts {
  std::string device_id;
  int64_t unix_ms;
  uint64_t n;
};
std::optional<TimedKeyParts> DecodeTimedKey(std::string_view key);

// findings: device '\0' be64(sequence) kind.
std::string FindingKey(std::string_view device_id, uint64_t sequence, std::string_view kind);
struct FindingKeyParts {
  std::string device_id;
  uint64_t sequence;
  std::string kind;
};
std::optional<FindingKeyParts> DecodeFindingKey(std::string_view key);

// be64(unix_ms) device '\0' be64(sequence) suffix: records in time order
// (violations: suffix = rule; sessions_by_time, cycles_by_time).
std::string TimeKey(int64_t unix_ms, std::string_view device_id, uint64_t sequence, std::string_view suffix = {});
struct TimeKeyParts {
  int64_t unix_ms;
  std::string device_id;
  uint64_t sequence;
  std::string suffix;
};
// Inverse of TimeKey; nullopt for a key not made by it.
std::optional<TimeKeyParts> DecodeTimeKey(std::string_view key);
// The first TimeKey at or after `unix_ms` (negative times start at 0).
std::string TimeKeyStart(int64_t unix_ms);

// Indexes. `outer` '\0' be64(n) then a DeviceSequenceKey: cycle_sessions
// (steriliser, cycle, then the session's key) and patient_sessions
// (pseudonym with no number: pseudonym '\0' then the session's key).
std::string CycleSessionKey(std::string_view steriliser_id, uint64_t cycle, std::string_view device_id,
                            uint64_t sequence);
std::string PatientSessionKey(std::string_view pseudonym, std::string_view device_id, uint64_t sequence);
// The session key after `prefix` (a cycle's DeviceSequenceKey or a
// patient's DevicePrefix).
std::optional<DeviceSequence> DecodeIndexedSession(std::string_view key, std::string_view prefix);

// roller_cycles: roller '\0' be64(cycle end) steriliser '\0' be64(cycle).
std::string RollerCycleKey(std::string_view roller_id, int64_t end_unix_ms, std::string_view steriliser_id,
                           uint64_t cycle);
struct RollerCycleParts {
  int64_t end_unix_ms;
  std::string steriliser_id;
  uint64_t cycle;
};
std::optional<RollerCycleParts> DecodeRollerCycleKey(std::string_view key, std::string_view roller_id);

// device_violations: session key + rule -> the violation's TimeKey.
std::string DeviceViolationKey(std::string_view device_id, uint64_t sequence, std::string_view rule);

// checkpoints: be64(unix_ms). commands: be64(index).
std::string CheckpointKey(int64_t unix_ms);
std::string CommandKey(uint64_t index);
// A device command's place in the outbox (Command.outbox_index).
inline std::string OutboxKey(uint64_t index) { return CommandKey(index); }

// meta: the store's own bookkeeping (db.h).
inline constexpr std::string_view kMetaFormat = "format";
inline constexpr std::string_view kMetaNextCommand = "next_command";
inline constexpr std::string_view kMetaNextOutbox = "next_outbox";
inline constexpr std::string_view kMetaMigratedFrom = "migrated_from";
inline constexpr std::string_view kMetaDecisionCounter = "decision_counter";
inline constexpr std::string_view kMetaPolicyVersion = "policy_version";
std::string PolicyKey(uint64_t version);
// A meta counter's value (next_command, decision_counter, policy_version): be64.
std::string CounterValue(uint64_t value);

}  // namespace rollertrace::store
