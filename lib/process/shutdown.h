// Clean shutdown for the binaries' mains.
#pragma once

#include <atomic>
#include <chrono>
#include <thread>

namespace rollertrace::process {

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts
// later. Call first thing in main(), before any thread is created.
void BlockShutdownSignals();

// Waits until SIGINT or SIGTERM arrives, or `timeout` passes (zero = forever).
// Returns the signal number, or 0 on timeout.
// REQUIRES: BlockShutdownSignals() was called.
int WaitForShutdownSignal(std::chrono::milliseconds timeout = std::chrono::milliseconds::zero());

// Watches for SIGINT/SIGTERM on a thread of its own, for mains that do work
// in a loop. REQUIRES: BlockShutdownSignals() was called.
class ShutdownWatcher {
 public:
  ShutdownWatcher();
  // Joins the watching thread (within ~200 ms).
  ~ShutdownWatcher();
  ShutdownWatcher(const ShutdownWatcher&) = delete;
  ShutdownWatcher& operator=(const ShutdownWatcher&) = delete;

  bool requested() const { return requested_.load(); }
  // For callers that stop on their own account (a deadline, work done).
  void Request() { requested_ = true; }
  const std::atomic<bool>& flag() const { return requested_; }

 private:
  std::atomic<bool> requested_{false};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace rollertrace::process
