#include "process/priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace rollertrace::process {

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

absl::Status LowerThisThread(int nice) { return LowerThread(static_cast<pid_t>(syscall(SYS_gettid)), nice); }

std::map<std::string, std::set<int>> ThreadNiceValues(pid_t pid) {
  std::map<std::string, std::set<int>> nice;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream comm(task.path() / "comm");
    std::ifstream stat(task.path() / "stat");
    std::string name, line;
    if (!std::getline(comm, name) || !std::getline(stat, line)) continue;
    // proc(5): the fields after the command's closing parenthesis start at
    // field 3 (state); the nice value is field 19.
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    std::string field;
    int n = 3;
    while (n <= 19 && rest >> field) ++n;
    if (n == 20) nice[name].insert(std::stoi(field));
  }
  return nice;
}

}  // namespace rollertrace::process
