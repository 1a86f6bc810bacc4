// CPU priority for bulk work. The threads that only move bulk events (storing
// them, forwarding them) run at a higher nice value than the decision path, so
// that on a machine a burst keeps busy an authorisation does not wait for a
// core behind them (docs/ARCHITECTURE.md, "Under load"). Linux keeps the nice
// value per thread; a thread or process started later inherits its starter's.
// Raising it needs no privilege; lowering it back does, so these only raise.
#pragma once

#include <sys/types.h>

#include <map>
#include <set>
#include <string>

#include "absl/status/status.h"

namespace rollertrace::process {

// The highest nice value (the lowest priority) Linux gives a thread.
constexpr int kMaxNice = 19;

// Sets the calling thread's nice value to `nice` (1..kMaxNice); 0 does nothing.
absl::Status LowerThisThread(int nice);

// Sets the nice value of thread or process `id` (its first thread, for a
// process: the threads it starts later inherit it) to `nice`; 0 does nothing.
absl::Status LowerThread(pid_t id, int nice);

// The nice values the threads of process `pid` have, by thread name (from
// /proc; a thread that ends meanwhile is left out). For tests and checks.
std::map<std::string, std::set<int>> ThreadNiceValues(pid_t pid);

}  // namespace rollertrace::process
