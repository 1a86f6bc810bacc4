#include "agent/fleet_processes.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "process/shutdown.h"
#include "util/cat.h"

extern char** environ;

namespace rollertrace::edge {
namespace {

namespace fs = std::filesystem;

constexpr char kLayoutFile[] = "PROCESSES";

template <typename T>
bool ParseNumber(std::string_view text, T* out) {
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, *out);
  return ec == std::errc() && p == end;
}

// The fields of a report line, by name, so that both sides read one table.
struct Field {
  const char* name;
  uint64_t FleetStats::*count;  // or nullptr
  size_t FleetStats::*size;     // or nullptr
};
constexpr Field kStatsFields[] = {
    {"devices", nullptr, &FleetStats::devices},
    {"connected", nullptr, &FleetStats::connected},
    {"recorded", &FleetStats::recorded, nullptr},
    {"pending", nullptr, &FleetStats::pending},
    {"published", &FleetStats::published, nullptr},
    {"acked", &FleetStats::acked, nullptr},
    {"resends", &FleetStats::resends, nullptr},
    {"allowed", &FleetStats::sessions_allowed, nullptr},
    {"refused", &FleetStats::sessions_refused, nullptr},
    {"offline", &FleetStats::offline_decisions, nullptr},
    {"overrides", &FleetStats::overrides, nullptr},
    {"locked", nullptr, &FleetStats::locked},
};

bool Finished(const std::string& phase) { return phase == "done" || phase == "stopped" || phase == "failed"; }

struct Child {
  pid_t pid = -1;
  int fd = -1;  // the read end of its report pipe; -1 once closed
  std::string buffer;
  ProcessReport report;
  bool exited = false;
  int exit_code = 0;
};

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, int report_fd) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, report_fd, 3);
  std::vector<char*> raw;
  for (const auto& a : argv) raw.push_back(const_cast<char*>(a.c_str()));
  raw.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, raw.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return absl::InternalError(util::Cat("cannot start a fleet process: ", std::strerror(rc)));
  return pid;
}

// Reads what the child wrote and keeps its latest report; closes the pipe at
// its end.
void Drain(Child& c) {
  char buf[4096];
  while (c.fd >= 0) {
    const ssize_t n = read(c.fd, buf, sizeof buf);
    if (n > 0) {
      c.buffer.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    close(c.fd);
    c.fd = -1;
  }
  size_t nl;
  while ((nl = c.buffer.find('\n')) != std::string::npos) {
    if (auto r = DecodeReport(std::string_view(c.buffer).substr(0, nl)); r.ok()) c.report = std::move(*r);
    c.buffer.erase(0, nl + 1);
  }
}

}  // namespace

int AutoProcesses(int rollers, int sterilisers) {
  int n = (rollers + sterilisers + kDevicesPerProcess - 1) / kDevicesPerProcess;
  if (sterilisers > 0) n = std::min(n, sterilisers);
  return std::max(1, n);
}

std::string EncodeReport(const ProcessReport& r) {
  std::string line = util::Cat("phase=", r.phase);
  for (const Field& f : kStatsFields) {
    line += util::Cat(" ", f.name, "=", f.count ? r.stats.*f.count : static_cast<uint64_t>(r.stats.*f.size));
  }
  line += util::Cat(" oldest=", r.stats.oldest_pending_unix_ms, " source_done=", r.source_done,
                    " source_total=", r.source_total);
  // Whole milliseconds: no locale or float formatting on either side.
  line += util::Cat(" connect_ms=", r.connect_seconds < 0 ? -1 : static_cast<int64_t>(r.connect_seconds * 1000),
                    " disconnect_ms=",
                    r.disconnect_seconds < 0 ? -1 : static_cast<int64_t>(r.disconnect_seconds * 1000), "\n");
  return line;
}

absl::StatusOr<ProcessReport> DecodeReport(std::string_view line) {
  ProcessReport r;
  bool phase = false;
  while (!line.empty()) {
    const size_t space = line.find(' ');
    const std::string_view item = line.substr(0, space);
    line = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) return absl::InvalidArgumentError(util::Cat("not key=value: ", item));
    const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    bool ok = true;
    if (key == "phase") {
      r.phase = std::string(value);
      phase = !value.empty();
    } else if (key == "oldest") {
      ok = ParseNumber(value, &r.stats.oldest_pending_unix_ms);
    } else if (key == "source_done") {
      ok = ParseNumber(value, &r.source_done);
    } else if (key == "source_total") {
      ok = ParseNumber(value, &r.source_total);
    } else if (key == "connect_ms" || key == "disconnect_ms") {
      int64_t ms = 0;
      ok = ParseNumber(value, &ms);
      (key == "connect_ms" ? r.connect_seconds : r.disconnect_seconds) = ms < 0 ? -1 : ms / 1000.0;
    } else {
      const Field* field = nullptr;
      for (const Field& f : kStatsFields) {
        if (key == f.name) field = &f;
      }
      if (field == nullptr) return absl::InvalidArgumentError(util::Cat("unknown field ", key));
      ok = field->count ? ParseNumber(value, &(r.stats.*field->count)) : ParseNumber(value, &(r.stats.*field->size));
    }
    if (!ok) return absl::InvalidArgumentError(util::Cat("bad number in ", item));
  }
  if (!phase) return absl::InvalidArgumentError("a report without its phase");
  return r;
}

FleetStats SumStats(const std::vector<ProcessReport>& reports) {
  FleetStats sum;
  for (const auto& r : reports) {
    for (const Field& f : kStatsFields) {
      if (f.count) sum.*f.count += r.stats.*f.count;
      if (f.size) sum.*f.size += r.stats.*f.size;
    }
    const int64_t oldest = r.stats.oldest_pending_unix_ms;
    if (oldest > 0 && (sum.oldest_pending_unix_ms == 0 || oldest < sum.oldest_pending_unix_ms)) {
      sum.oldest_pending_unix_ms = oldest;
    }
  }
  return sum;
}

std::string ProcessSpoolDir(const std::string& dir, int process) {
  return (fs::path(dir) / util::Cat("process-", process)).string();
}

absl::Status PrepareSpoolLayout(const std::string& dir, int processes) {
  std::error_code ec;
  const fs::path root(dir);
  const bool single = fs::exists(root / "CURRENT", ec);
  int held = 0;
  if (std::ifstream in(root / kLayoutFile); in) {
    if (!(in >> held) || held < 1) {
      return absl::FailedPreconditionError(util::Cat("spool ", dir, ": ", kLayoutFile, " does not hold a number"));
    }
  }
  if (processes == 1) {
    if (held > 0) {
      return absl::FailedPreconditionError(util::Cat("spool ", dir, " holds the spools of ", held,
                                                     " processes: run with --processes ", held,
                                                     ", or start with an empty --spool-dir"));
    }
    return absl::OkStatus();
  }
  if (single) {
    return absl::FailedPreconditionError(util::Cat("spool ", dir,
                                                   " holds the spool of one process: run with --processes 1, or "
                                                   "start with an empty --spool-dir"));
  }
  if (held > 0 && held != processes) {
    return absl::FailedPreconditionError(util::Cat("spool ", dir, " holds the spools of ", held,
                                                   " processes, not ", processes, ": run with --processes ", held,
                                                   " (a device's unacknowledged events live in its process's "
                                                   "spool), or start with an empty --spool-dir"));
  }
  fs::create_directories(root, ec);
  if (ec) return absl::FailedPreconditionError(util::Cat("spool ", dir, ": ", ec.message()));
  for (int i = 0; i < processes; ++i) {
    fs::create_directories(ProcessSpoolDir(dir, i), ec);
    if (ec) return absl::FailedPreconditionError(util::Cat("spool ", ProcessSpoolDir(dir, i), ": ", ec.message()));
  }
  if (held == 0) {
    std::ofstream out(root / kLayoutFile);
    out << processes << "\n";
    if (!out) return absl::FailedPreconditionError(util::Cat("spool ", dir, ": cannot write ", kLayoutFile));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> OffsetListenAddress(const std::string& listen, int offset) {
  if (listen.empty()) return listen;
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !ParseNumber(std::string_view(listen).substr(colon + 1), &port) ||
      port + offset > 65535) {
    return absl::InvalidArgumentError(util::Cat("cannot give each process its own port from '", listen,
                                                "': expected host:port with room for ", offset, " more"));
  }
  return util::Cat(listen.substr(0, colon + 1), port + offset);
}

void ReportPipe::Send(const ProcessReport& report) const {
  const std::string line = EncodeReport(report);
  // One write of less than PIPE_BUF bytes: the parent never reads half a line
  // from two writers, and a full pipe (a parent not reading) drops the line.
  (void)!write(fd_, line.data(), line.size());
}

int RunFleetProcesses(const std::vector<std::string>& args, int processes) {
  process::ShutdownWatcher shutdown;
  std::vector<Child> children(static_cast<size_t>(processes));
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < processes; ++i) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
      std::cerr << "roller-fleet: cannot make a pipe: " << std::strerror(errno) << std::endl;
      return 1;
    }
    // Non-blocking on both ends: a parent that stops reading costs a child
    // its report lines, never its progress. The child's end is moved above 3
    // first: dup2 onto itself would leave close-on-exec set.
    const int write_end = fcntl(fds[1], F_DUPFD_CLOEXEC, 10);
    close(fds[1]);
    std::vector<std::string> argv = {"roller-fleet"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& a : {std::string("--processes"), std::to_string(processes), std::string("--process"),
                                 std::to_string(i), std::string("--report-fd"), std::string("3")}) {
      argv.push_back(a);
    }
    absl::StatusOr<pid_t> pid = Spawn(argv, write_end);
    close(write_end);
    if (!pid.ok()) {
      std::cerr << "roller-fleet: " << pid.status().message() << std::endl;
      close(fds[0]);
      for (auto& c : children) {
        if (c.pid > 0) kill(c.pid, SIGTERM);
      }
      for (auto& c : children) {
        if (c.pid > 0) waitpid(c.pid, nullptr, 0);
        if (c.fd >= 0) close(c.fd);
      }
      return 1;
    }
    children[static_cast<size_t>(i)].pid = *pid;
    children[static_cast<size_t>(i)].fd = fds[0];
  }

  using Clock = std::chrono::steady_clock;
  auto last_line = start;
  bool connected_said = false;
  std::optional<Clock::time_point> terminated;  // when SIGTERM went to the children
  auto terminate = [&](const char* why) {
    if (terminated) return;
    terminated = Clock::now();
    if (why != nullptr) std::cerr << "roller-fleet: " << why << "; stopping every process" << std::endl;
    for (auto& c : children) {
      if (!c.exited) kill(c.pid, SIGTERM);
    }
  };
  auto reports = [&] {
    std::vector<ProcessReport> r;
    for (const auto& c : children) r.push_back(c.report);
    return r;
  };
  while (true) {
    std::vector<pollfd> fds;
    for (const auto& c : children) {
      if (c.fd >= 0) fds.push_back({c.fd, POLLIN, 0});
    }
    if (!fds.empty()) {
      poll(fds.data(), fds.size(), 250);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    for (auto& c : children) Drain(c);
    bool all_exited = true;
    for (auto& c : children) {
      if (c.exited) continue;
      int status = 0;
      if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
        c.exited = true;
        c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        Drain(c);
        if (c.exit_code != 0 && c.exit_code != 3) {
          c.report.phase = "failed";
          terminate("a fleet process failed");
        } else if (!Finished(c.report.phase)) {
          c.report.phase = c.exit_code == 0 ? "done" : "stopped";
        }
      } else {
        all_exited = false;
      }
    }
    if (all_exited) break;
    if (shutdown.requested()) terminate(nullptr);
    if (terminated && Clock::now() - *terminated > std::chrono::seconds(30)) {
      for (auto& c : children) {
        if (!c.exited) kill(c.pid, SIGKILL);
      }
    }

    const std::vector<ProcessReport> now = reports();
    const FleetStats sum = SumStats(now);
    bool connecting = false;
    double connect_seconds = 0;
    for (const auto& r : now) {
      if (r.connect_seconds < 0 && !Finished(r.phase)) connecting = true;
      connect_seconds = std::max(connect_seconds, r.connect_seconds);
    }
    if (!connecting && !connected_said) {
      std::cerr << "roller-fleet: " << sum.connected << "/" << sum.devices << " devices connected in "
                << connect_seconds << " s (" << processes << " processes)" << std::endl;
      connected_said = true;
    }
    if (Clock::now() - last_line > std::chrono::seconds(2)) {
      last_line = Clock::now();
      if (connecting && sum.devices == 0) {
        std::cerr << "roller-fleet: starting " << processes << " processes (each simulates the clinic and "
                  << "registers its devices)" << std::endl;
      } else if (connecting) {
        std::cerr << "roller-fleet: connecting: " << sum.connected << "/" << sum.devices << std::endl;
      } else {
        size_t done = 0, total = 0;
        for (const auto& r : now) {
          done += r.source_done;
          total += r.source_total;
        }
        std::cerr << "roller-fleet: source " << done << "/" << total << "; " << Describe(sum) << std::endl;
      }
    }
  }

  const std::vector<ProcessReport> last = reports();
  bool failed = false, all_done = true;
  double disconnect_seconds = 0;
  for (size_t i = 0; i < children.size(); ++i) {
    const Child& c = children[i];
    failed |= c.exit_code != 0 && c.exit_code != 3;
    all_done &= c.exit_code == 0;
    disconnect_seconds = std::max(disconnect_seconds, c.report.disconnect_seconds);
    std::cerr << "roller-fleet: process " << i << "/" << processes << " " << c.report.phase << " (exit "
              << c.exit_code << "); " << Describe(c.report.stats) << std::endl;
  }
  std::cerr << "roller-fleet: " << (all_done ? "done" : "stopped") << "; " << Describe(SumStats(last)) << std::endl;
  std::cerr << "roller-fleet: disconnected in " << disconnect_seconds << " s" << std::endl;
  return failed ? 1 : all_done ? 0 : 3;
}

}  // namespace rollertrace::edge
