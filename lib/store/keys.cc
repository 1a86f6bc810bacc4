#include "store/keys.h"

namespace rollertrace::store {

void AppendBigEndian64(std::string* out, uint64_t value) {
  char bytes[8];
  PutBigEndian64(bytes, value);
  out->append(bytes, sizeof bytes);
}

void PutBigEndian64(char* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (56 - 8 * i)) & 0xff);
}

uint64_t ReadBigEndian64(std::string_view bytes) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) {
    value = (value << 8) | static_cast<uint8_t>(bytes[i]);
  }
  return value;
}

std::string DevicePrefix(std::string_view device_id) {
  std::string key;
  key.reserve(device_id.size() + 9);  // room for a be64 after it, in one allocation
  key.append(device_id);
  key.push_back('\0');
  return key;
}

std::string DeviceSequenceKey(std::string_view device_id, uint64_t sequence) {
  std::string key = DevicePrefix(device_id);
  AppendBigEndian64(&key, sequence);
  return key;
}

std::optional<DeviceSequence> DecodeDeviceSequenceKey(std::string_view key) {
  if (key.size() < 10) return std::nullopt;
  const size_t id_size = key.size() - 9;
  if (key[id_size] != '\0' || key.substr(0, id_size).find('\0') != std::string_view::npos) return std::nullopt;
  return DeviceSequence{std::string(key.substr(0, id_size)), ReadBigEndian64(key.substr(id_size + 1))};
}

std::optional<std::string> KeyOwner(std::string_view key) {
  const size_t nul = key.find('\0');
  if (nul == std::string_view::npos || nul == 0 || key.size() < nul + 9) return std::nullopt;
  return std::string(key.substr(0, nul));
}

std::string TimedKey(std::string_view device_id, int64_t unix_ms, uint64_t n) {
  std::string key = DevicePrefix(device_id);
  AppendBigEndian64(&key, static_cast<uint64_t>(unix_ms));
  AppendBigEndian64(&key, n);
  return key;
}

std::optional<TimedKeyParts> DecodeTimedKey(std::string_view key) {
  const size_t nul = key.find('\0');
  if (nul == std::string_view::npos || key.size() != nul + 17) return std::nullopt;
  return TimedKeyParts{std::string(key.substr(0, nul)), static_cast<int64_t>(ReadBigEndian64(key.substr(nul + 1))),
                       ReadBigEndian64(key.substr(nul + 9))};
}

std::string FindingKey(std::string_view device_id, uint64_t sequence, std::string_view kind) {
  std::string key = DeviceSequenceKey(device_id, sequence);
  key.append(kind);
  return key;
}

std::optional<FindingKeyParts> DecodeFindingKey(std::string_view key) {
  const size_t nul = key.find('\0');
  if (nul == std::string_view::npos || key.size() < nul + 9) return std::nullopt;
  return FindingKeyParts{std::string(key.substr(0, nul)), ReadBigEndian64(key.substr(nul + 1)),
                         std::string(key.substr(nul + 9))};
}

std::string TimeKey(int64_t unix_ms, std::string_view device_id, uint64_t sequence, std::string_view suffix) {
  std::string key;
  AppendBigEndian64(&key, static_cast<uint64_t>(unix_ms));
  key += DeviceSequenceKey(device_id, sequence);
  key.append(suffix);
  return key;
}

std::optional<TimeKeyParts> DecodeTimeKey(std::string_view key) {
  if (key.size() < 8 + 1 + 8) return std::nullopt;
  const size_t nul = key.find('\0', 8);
  if (nul == std::string_view::npos || key.size() < nul + 1 + 8) return std::nullopt;
  return TimeKeyParts{static_cast<int64_t>(ReadBigEndian64(key)), std::string(key.substr(8, nul - 8)),
                      ReadBigEndian64(key.substr(nul + 1)), std::string(key.substr(nul + 9))};
}

std::string TimeKeyStart(int64_t unix_ms) {
  std::string key;
  AppendBigEndian64(&key, static_cast<uint64_t>(unix_ms < 0 ? 0 : unix_ms));
  return key;
}

std::string CycleSessionKey(std::string_view steriliser_id, uint64_t cycle, std::string_view device_id,
                            uint64_t sequence) {
  return DeviceSequenceKey(steriliser_id, cycle) + DeviceSequenceKey(device_id, sequence);
}

std::string PatientSessionKey(std::string_view pseudonym, std::string_view device_id, uint64_t sequence) {
  return DevicePrefix(pseudonym) + DeviceSequenceKey(device_id, sequence);
}

std::optional<DeviceSequence> DecodeIndexedSession(std::string_view key, std::string_view prefix) {
  if (key.size() < prefix.size() || key.substr(0, prefix.size()) != prefix) return std::nullopt;
  return DecodeDeviceSequenceKey(key.substr(prefix.size()));
}

std::string RollerCycleKey(std::string_view roller_id, int64_t end_unix_ms, std::string_view steriliser_id,
                           uint64_t cycle) {
  return DeviceSequenceKey(roller_id, static_cast<uint64_t>(end_unix_ms)) + DeviceSequenceKey(steriliser_id, cycle);
}

std::optional<RollerCycleParts> DecodeRollerCycleKey(std::string_view key, std::string_view roller_id) {
  const size_t prefix = roller_id.size() + 1;
  if (key.size() < prefix + 8) return std::nullopt;
  auto cycle = DecodeDeviceSequenceKey(key.substr(prefix + 8));
  if (!cycle) return std::nullopt;
  return RollerCycleParts{static_cast<int64_t>(ReadBigEndian64(key.substr(prefix))), std::move(cycle->device_id),
                          cycle->sequence};
}

std::string DeviceViolationKey(std::string_view device_id, uint64_t sequence, std::string_view rule) {
  std::string key = DeviceSequenceKey(device_id, sequence);
  key.append(rule);
  return key;
}

std::string CheckpointKey(int64_t unix_ms) {
  std::string key;
  AppendBigEndian64(&key, static_cast<uint64_t>(unix_ms));
  return key;
}

std::string CommandKey(uint64_t index) {
  std::string key;
  AppendBigEndian64(&key, index);
  return key;
}

std::string CounterValue(uint64_t value) {
  std::string out;
  AppendBigEndian64(&out, value);
  return out;
}

std::string PolicyKey(uint64_t version) {
  std::string key = "policy/";
  AppendBigEndian64(&key, version);
  return key;
}

}  // namespace rollertrace::store
