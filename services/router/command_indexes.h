// The device commands a router owes one bridge stream. Each shard numbers its
// outbox on its own, so the bridge is given the router's numbers (unique on
// its stream) and each confirmation goes back to the shard that raised the
// command under the shard's number (docs/ARCHITECTURE.md, "Device commands are
// stored, then delivered"). A shard hands out a command again when it was not
// confirmed in time or its companion stream closed: the same (shard, index)
// keeps its router number, so a command resent for ever takes one entry, not
// one a resend. Not thread-safe: the router holds its lock around it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>

namespace rollertrace::router {

class CommandIndexes {
 public:
  struct Owner {
    size_t shard;
    uint64_t index;  // the shard's outbox index
  };
  // The router number for the shard's command (the same one again for a resend).
  uint64_t Number(size_t shard, uint64_t shard_index);
  // The shard and its index for a number the bridge confirmed, once; nullopt
  // for a number not (or no longer) owed.
  std::optional<Owner> Confirm(uint64_t number);
  size_t owed() const { return owners_.size(); }

 private:
  std::map<uint64_t, Owner> owners_;                        // router number -> owner
  std::map<std::pair<size_t, uint64_t>, uint64_t> numbers_;  // (shard, index) -> router number
  uint64_t next_ = 1;
};

}  // namespace rollertrace::router
