// Clean shutdown for the binaries' mains.
#pragma once

#include <chrono>

namespace rollertrace::process {

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts
// later. Call first thing in main(), before any thread is created.
void BlockShutdownSignals();

// Waits until SIGINT or SIGTERM arrives, or `timeout` passes (zero = forever).
// Returns the signal number, or 0 on timeout.
// REQUIRES: BlockShutdownSignals() was called.
int WaitForShutdownSignal(std::chrono::milliseconds timeout = std::chrono::milliseconds::zero());

}  // namespace rollertrace::process
