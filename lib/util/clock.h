// The wall clock in the unit every record uses. Only mains and adapters read
// the clock; libraries take time as a parameter.
#pragma once

#include <chrono>
#include <cstdint>

namespace rollertrace::util {

inline int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace rollertrace::util
