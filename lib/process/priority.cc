#include "process/priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace rollertrace::process {

pid_t ThisThreadId() { return static_cast<pid_t>(syscall(SYS_gettid)); }

absl::Status LowerThread(pid_t id, int nice) {
  if (nice == 0) return absl::OkStatus();
  if (nice < 0 || nice > kMaxNice) {
    return absl::InvalidArgumentError("a bulk nice value is 0 (off) to " + std::to_string(kMaxNice) + ", not " +
                                      std::to_string(nice));
  }
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(id), nice) != 0) {
    const int err = errno;
    return absl::PermissionDeniedError("cannot set the nice value of thread " + std::to_string(id) + " to " +
                                       std::to_string(nice) + ": " + std::strerror(err));
  }
  return absl::OkStatus();
}

absl::Status LowerThisThread(int nice) { return LowerThread(ThisThreadId(), nice); }

int NiceOf(pid_t id) {
  errno = 0;
  const int n = getpriority(PRIO_PROCESS, static_cast<id_t>(id));
  return errno == 0 ? n : 0;
}

}  // namespace rollertrace::process
