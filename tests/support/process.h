// The one process launcher of the integration tests: real binaries as child
// processes, their output in a log file, stopped (SIGTERM, then SIGKILL) when
// the object goes away.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace rollertrace::testing {

class Process {
 public:
  // Starts argv[0] with the arguments; stdout and stderr go to log_path
  // (appended). Extra environment variables in `env`. Never returns null:
  // a failed exec shows as an exit code 127 and a line in the log.
  static std::unique_ptr<Process> Start(const std::vector<std::string>& argv, const std::string& log_path,
                                        const std::map<std::string, std::string>& env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  void Signal(int sig);
  // SIGTERM, up to `grace` to exit, then SIGKILL. Returns the exit status
  // (WEXITSTATUS, or 128 + signal).
  int Stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
  // Waits up to `timeout` for the process to exit; -1 if still running.
  int Wait(std::chrono::milliseconds timeout);
  bool Running();
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }

 private:
  Process(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  int exit_status_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();
// True once something accepts TCP connections on 127.0.0.1:port.
bool WaitForPort(int port, std::chrono::milliseconds timeout);
// A fresh directory under the test temp dir, named after the running test.
std::string MakeTempDir(const std::string& name);
// GET http://127.0.0.1:port/path; empty on failure.
std::string HttpGet(int port, const std::string& path);
// The value of one sample in Prometheus text format, e.g.
// MetricValue(text, "rollertrace_events_rejected_total{reason=\"malformed\"}"); 0 when absent.
double MetricValue(const std::string& text, const std::string& series);
std::string ReadFile(const std::string& path);
// A self-signed certificate for 127.0.0.1 and localhost in dir/cert.pem, its
// key in dir/key.pem (readable by the mosquitto user: a test key only).
void MakeTestCertificate(const std::string& dir);
// Writes a file only its owner may read (mode 0600), as secrets must be.
void WritePrivateFile(const std::string& path, const std::string& content);

}  // namespace rollertrace::testing
