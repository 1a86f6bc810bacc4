// The one key encoder of RollerTrace's RocksDB stores. Integers are big-endian
// fixed width so byte order is numeric order; a device id (which never holds
// '\0', see codec::ValidateDeviceId) is followed by '\0' so that one device's
// keys form a contiguous range that no other device's keys interleave with.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rollertrace::store {

void AppendBigEndian64(std::string* out, uint64_t value);
uint64_t ReadBigEndian64(std::string_view bytes);  // REQUIRES: bytes.size() >= 8

// All keys of one device in a per-device column family start with this.
std::string DevicePrefix(std::string_view device_id);

// device_id '\0' be64(sequence): events, gaps (by first sequence), spools.
std::string DeviceSequenceKey(std::string_view device_id, uint64_t sequence);

struct DeviceSequence {
  std::string device_id;
  uint64_t sequence;
};
// Inverse of DeviceSequenceKey; nullopt for a key not made by it.
std::optional<DeviceSequence> DecodeDeviceSequenceKey(std::string_view key);

}  // namespace rollertrace::store

namespace rollertrace::store {

// steriliser '\0' be64(cycle) device '\0' be64(sequence): the index from a
// cycle to the sessions that relied on it.
std::string CycleSessionKey(std::string_view steriliser_id, uint64_t cycle, std::string_view device_id,
                            uint64_t sequence);
// be64(unix_ms) device '\0' be64(sequence) suffix: records in time order.
std::string TimeKey(int64_t unix_ms, std::string_view device_id, uint64_t sequence, std::string_view suffix = {});
struct TimeKeyParts {
  int64_t unix_ms;
  std::string device_id;
  uint64_t sequence;
  std::string suffix;
};
// Inverse of TimeKey; nullopt for a key not made by it.
std::optional<TimeKeyParts> DecodeTimeKey(std::string_view key);

}  // namespace rollertrace::store
