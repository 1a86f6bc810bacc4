// roller-fleet over several processes (--processes N): Paho C serves all the
// MQTT clients of a process from one receive thread that polls every socket
// for every packet, so one process carries about a thousand clients well and
// ten thousand badly (docs/BENCHMARKS.md). The parent starts N copies of
// itself, each playing the devices ProcessOfDevice gives it from the same
// clinic, with its own spool (<spool-dir>/process-<i>); each reports its state
// to the parent on a pipe, one line of ProcessReport a few times a second, and
// the parent prints the fleet's progress as one fleet.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/fleet.h"

namespace rollertrace::edge {

// How many processes roller-fleet uses when --processes is 0 (auto): one per
// kDevicesPerProcess devices, at most one per steriliser (a process holds
// whole sterilisers with their rollers), at least one.
constexpr int kDevicesPerProcess = 1000;
int AutoProcesses(int rollers, int sterilisers);

// What a child process tells its parent.
struct ProcessReport {
  // registering, connecting, playing, draining, done, stopped, failed
  std::string phase = "starting";
  FleetStats stats;
  size_t source_done = 0;
  size_t source_total = 0;
  double connect_seconds = -1;     // once every device of the process connected
  double disconnect_seconds = -1;  // once it disconnected at the end
};
std::string EncodeReport(const ProcessReport& report);  // one line, '\n' included
absl::StatusOr<ProcessReport> DecodeReport(std::string_view line);

// The sum over processes (phase and times are not summed).
FleetStats SumStats(const std::vector<ProcessReport>& reports);

// A spool directory belongs to one layout: a single process's RocksDB, or a
// file PROCESSES naming N and N process-<i> directories. Refuses the other
// layout, or another N (a device's unacked events and sequence live in the
// spool of the process that played it), with a message that says what to run.
// Creates the layout when the directory is new or empty.
absl::Status PrepareSpoolLayout(const std::string& dir, int processes);
std::string ProcessSpoolDir(const std::string& dir, int process);

// `host:port` with the port raised by `offset` (each child its own metrics
// port); empty stays empty.
absl::StatusOr<std::string> OffsetListenAddress(const std::string& listen, int offset);

// Sends report lines to the parent (the file descriptor it passed with
// --report-fd). Never throws; a parent gone is ignored.
class ReportPipe {
 public:
  explicit ReportPipe(int fd) : fd_(fd) {}
  void Send(const ProcessReport& report) const;

 private:
  int fd_;
};

// The parent: runs `processes` copies of /proc/self/exe with `args` (the
// command line after argv[0]) and, for each, "--processes N --process i
// --report-fd 3"; prints the fleet's progress on stderr; forwards SIGINT and
// SIGTERM (SIGKILL for a child still running 30 s later). Returns the exit
// code: 0 when every process is done, 1 when one failed, else 3.
// REQUIRES: process::BlockShutdownSignals() was called.
int RunFleetProcesses(const std::vector<std::string>& args, int processes);

}  // namespace rollertrace::edge
