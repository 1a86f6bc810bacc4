// Paho C's two idle waits, cut short.
//
// Debian's Paho C (1.3.12; the same code in upstream's develop branch) has
// two waits that make an idle client slow to act:
// - its receive thread polls its sockets for up to 1 s and, when that poll
//   times out, sleeps another 100 ms (MQTTAsync_cycle: MQTTAsync_sleep(100)),
//   so a message that arrives after a second of quiet waits up to 100 ms
//   before it is read. Authorisations 1.05 s apart took 51 ms each over
//   MQTT, 1.7 ms back to back (docs/BENCHMARKS.md, eleventh session);
// - its send thread checks its command queue and then, with no predicate,
//   waits up to 1 s on a condition variable that a new command signals. A
//   command queued between the check and the wait is a lost wake-up: it goes
//   out a second late. About one MQTT authorisation round trip in 2,400 took
//   1,100 ms (the lost wake-up, then the receiver's 100 ms sleep).
// Neither wait has an option, and the library is the distribution's. Paho
// calls both through the PLT, so this process's own `usleep` and
// `pthread_cond_timedwait` (paho_waits.cc) take its calls: in Paho's receive
// thread the 100 ms sleep becomes kReceiveIdleSleep; in its send thread the
// wait ends by kSendWaitCap at the latest, after which Paho looks at its
// queue again (a lost wake-up then costs at most that). Every other caller,
// and every other thread, gets the C library's behaviour unchanged.
// Not under a sanitizer: ThreadSanitizer intercepts both functions itself.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string_view>

namespace rollertrace::mqtt::paho {

// The names Paho C gives its threads (Thread_set_name).
inline constexpr std::string_view kReceiveThread = "MQTTAsync_rcv";
inline constexpr std::string_view kSendThread = "MQTTAsync_send";
// The receive thread's sleep after an idle poll, in microseconds.
inline constexpr useconds_t kPahoIdleSleep = 100000;
inline constexpr useconds_t kReceiveIdleSleep = 2000;
inline constexpr std::chrono::milliseconds kSendWaitCap{5};

// What a sleep of `requested` microseconds becomes in thread `thread`.
useconds_t ReceiveSleep(std::string_view thread, useconds_t requested);
// The deadline (CLOCK_REALTIME) a wait until `requested` gets in thread
// `thread`, at `now`. A deadline Paho got wrong (nanoseconds out of range)
// becomes the cap.
timespec SendWaitDeadline(std::string_view thread, const timespec& requested, const timespec& now);

// Whether this process's usleep and pthread_cond_timedwait are the ones
// above (false in a sanitizer build, or if the linker did not export them).
bool Interposed();

// How often each has acted in this process: proof that Paho's own threads
// come through here (tests).
struct Counts {
  uint64_t shortened_sleeps = 0;
  uint64_t capped_waits = 0;
};
Counts Acted();

}  // namespace rollertrace::mqtt::paho
