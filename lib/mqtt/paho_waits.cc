#include "mqtt/paho_waits.h"

#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>

namespace rollertrace::mqtt::paho {

namespace {

constexpr long kNanos = 1'000'000'000L;

std::atomic<uint64_t> shortened_sleeps{0};
std::atomic<uint64_t> capped_waits{0};

timespec Add(timespec t, std::chrono::nanoseconds d) {
  t.tv_sec += static_cast<time_t>(d.count() / kNanos);
  t.tv_nsec += static_cast<long>(d.count() % kNanos);
  if (t.tv_nsec >= kNanos) {
    ++t.tv_sec;
    t.tv_nsec -= kNanos;
  }
  return t;
}

bool Before(const timespec& a, const timespec& b) {
  return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

}  // namespace

useconds_t ReceiveSleep(std::string_view thread, useconds_t requested) {
  return thread == kReceiveThread && requested == kPahoIdleSleep ? kReceiveIdleSleep : requested;
}

timespec SendWaitDeadline(std::string_view thread, const timespec& requested, const timespec& now) {
  if (thread != kSendThread) return requested;
  const timespec cap = Add(now, kSendWaitCap);
  const bool valid = requested.tv_nsec >= 0 && requested.tv_nsec < kNanos;
  return valid && Before(requested, cap) ? requested : cap;
}

Counts Acted() { return {shortened_sleeps.load(), capped_waits.load()}; }

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
bool Interposed() { return false; }

}  // namespace rollertrace::mqtt::paho
#else

namespace {

// This thread's name, read once: Paho names its threads as they start,
// before either wait.
std::string_view ThisThread() {
  thread_local char name[16] = {};
  thread_local bool read = false;
  if (!read) {
    read = true;
    if (pthread_getname_np(pthread_self(), name, sizeof name) != 0) name[0] = '\0';
  }
  return name;
}

}  // namespace

bool Interposed() {
  // What the dynamic linker gives Paho: this file's definitions when the
  // executable exports them (rt_mqtt's link options), the C library's if not.
  return dlsym(RTLD_DEFAULT, "usleep") == reinterpret_cast<void*>(&::usleep) &&
         dlsym(RTLD_DEFAULT, "pthread_cond_timedwait") == reinterpret_cast<void*>(&::pthread_cond_timedwait);
}

}  // namespace rollertrace::mqtt::paho

extern "C" {

// The C library's usleep, but for Paho's receive thread's idle sleep.
int usleep(useconds_t usec) {
  const useconds_t wait = rollertrace::mqtt::paho::ReceiveSleep(rollertrace::mqtt::paho::ThisThread(), usec);
  if (wait != usec) rollertrace::mqtt::paho::shortened_sleeps.fetch_add(1, std::memory_order_relaxed);
  const timespec t{static_cast<time_t>(wait / 1000000), static_cast<long>(wait % 1000000) * 1000L};
  return nanosleep(&t, nullptr);
}

// The C library's, with the deadline capped in Paho's send thread.
int pthread_cond_timedwait(pthread_cond_t* cond, pthread_mutex_t* mutex, const timespec* abstime) {
  using Real = int (*)(pthread_cond_t*, pthread_mutex_t*, const timespec*);
  // The current version (glibc keeps an older one beside it), else whichever comes next.
  static const Real real = [] {
    void* f = dlvsym(RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2");
    return reinterpret_cast<Real>(f != nullptr ? f : dlsym(RTLD_NEXT, "pthread_cond_timedwait"));
  }();
  const std::string_view thread = rollertrace::mqtt::paho::ThisThread();
  if (thread != rollertrace::mqtt::paho::kSendThread) return real(cond, mutex, abstime);
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  const timespec deadline = rollertrace::mqtt::paho::SendWaitDeadline(thread, *abstime, now);
  if (deadline.tv_sec != abstime->tv_sec || deadline.tv_nsec != abstime->tv_nsec) {
    rollertrace::mqtt::paho::capped_waits.fetch_add(1, std::memory_order_relaxed);
  }
  return real(cond, mutex, &deadline);
}

}  // extern "C"
#endif
