// Durability beyond this process's disk: in cluster mode, a command counts
// as stored only once the shard's replicated log holds it too
// (docs/ARCHITECTURE.md, "The cluster"). Single-machine mode has none.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"

namespace rollertrace::ingest {

class Durability {
 public:
  virtual ~Durability() = default;
  // The last index of the store's command log now.
  virtual uint64_t LogEnd() const = 0;
  // Calls done(true) once every command through `index` is durable (maybe at
  // once), done(false) if that can no longer be told (shutting down).
  virtual void WhenDurable(uint64_t index, std::function<void(bool)> done) = 0;
  // Waits for it; Unavailable after `timeout`.
  virtual absl::Status AwaitDurable(uint64_t index, std::chrono::milliseconds timeout) = 0;
  // The largest command the log takes (bytes).
  virtual size_t MaxCommandBytes() const = 0;
};

}  // namespace rollertrace::ingest
