#include "process/shutdown.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

namespace rollertrace::process {
namespace {

sigset_t ShutdownSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void BlockShutdownSignals() {
  sigset_t set = ShutdownSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A peer that vanishes must not kill us through a write to its socket.
  signal(SIGPIPE, SIG_IGN);
}

int WaitForShutdownSignal(std::chrono::milliseconds timeout) {
  sigset_t set = ShutdownSet();
  if (timeout == std::chrono::milliseconds::zero()) {
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    return sig;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return 0;
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(left);
    timespec ts{static_cast<time_t>(secs.count()),
                static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(left - secs).count())};
    int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig > 0) return sig;
  }
}

ShutdownWatcher::ShutdownWatcher()
    : thread_([this] {
        while (!done_) {
          if (WaitForShutdownSignal(std::chrono::milliseconds(200)) != 0) requested_ = true;
        }
      }) {}

ShutdownWatcher::~ShutdownWatcher() {
  done_ = true;
  thread_.join();
}

}  // namespace rollertrace::process
