#include "store/keys.h"

namespace rollertrace::store {

void AppendBigEndian64(std::string* out, uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

uint64_t ReadBigEndian64(std::string_view bytes) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) {
    value = (value << 8) | static_cast<uint8_t>(bytes[i]);
  }
  return value;
}

std::string DevicePrefix(std::string_view device_id) {
  std::string key(device_id);
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

}  // namespace rollertrace::store

namespace rollertrace::store {

std::string CycleSessionKey(std::string_view steriliser_id, uint64_t cycle, std::string_view device_id,
                            uint64_t sequence) {
  return DeviceSequenceKey(steriliser_id, cycle) + DeviceSequenceKey(device_id, sequence);
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

}  // namespace rollertrace::store
