#include "mqtt/paho_waits.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace rollertrace::mqtt::paho {
namespace {

timespec At(time_t s, long ns) { return timespec{s, ns}; }

TEST(PahoWaits, OnlyTheReceiveThreadsIdleSleepIsShortened) {
  EXPECT_EQ(ReceiveSleep(kReceiveThread, kPahoIdleSleep), kReceiveIdleSleep);
  EXPECT_EQ(ReceiveSleep(kReceiveThread, 250000), 250000u) << "another sleep of that thread";
  EXPECT_EQ(ReceiveSleep(kSendThread, kPahoIdleSleep), kPahoIdleSleep);
  EXPECT_EQ(ReceiveSleep("ingest-writer", kPahoIdleSleep), kPahoIdleSleep);
}

TEST(PahoWaits, OnlyTheSendThreadsWaitIsCapped) {
  const timespec now = At(100, 999'000'000);
  const timespec in_a_second = At(101, 999'000'000);
  const timespec capped = SendWaitDeadline(kSendThread, in_a_second, now);
  EXPECT_EQ(capped.tv_sec, 101);
  EXPECT_EQ(capped.tv_nsec, 4'000'000) << "now + 5 ms, carried into the next second";
  const timespec sooner = At(101, 1'000'000);
  EXPECT_EQ(SendWaitDeadline(kSendThread, sooner, now).tv_nsec, 1'000'000) << "an earlier deadline is kept";
  // Paho's own arithmetic can overflow the nanoseconds of a 10 ms wait.
  const timespec broken = At(101, 1'500'000'000);
  EXPECT_EQ(SendWaitDeadline(kSendThread, broken, now).tv_nsec, 4'000'000);
  EXPECT_EQ(SendWaitDeadline(kReceiveThread, in_a_second, now).tv_sec, 101);
  EXPECT_EQ(SendWaitDeadline(kReceiveThread, in_a_second, now).tv_nsec, 999'000'000);
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
// Runs `body` in a thread named as Paho names its own.
template <typename F>
void InThreadNamed(const char* name, F body) {
  std::thread t([&] {
    pthread_setname_np(pthread_self(), name);
    body();
  });
  t.join();
}

TEST(PahoWaits, ThisProgramsUsleepAndTimedWaitAreTheOnesThatCutThem) {
  ASSERT_TRUE(Interposed()) << "the executable does not export usleep and pthread_cond_timedwait";
  const Counts before = Acted();
  InThreadNamed("MQTTAsync_rcv", [] { EXPECT_EQ(usleep(kPahoIdleSleep), 0); });
  EXPECT_EQ(Acted().shortened_sleeps, before.shortened_sleeps + 1);
  usleep(1000);  // anyone else's sleep is left alone
  EXPECT_EQ(Acted().shortened_sleeps, before.shortened_sleeps + 1);

  // Without the cap this wait would take the minute it asks for.
  InThreadNamed("MQTTAsync_send", [] {
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    timespec deadline{};
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    pthread_mutex_lock(&mu);
    EXPECT_EQ(pthread_cond_timedwait(&cv, &mu, &deadline), ETIMEDOUT);
    pthread_mutex_unlock(&mu);
  });
  EXPECT_EQ(Acted().capped_waits, before.capped_waits + 1);
}
#endif

}  // namespace
}  // namespace rollertrace::mqtt::paho
