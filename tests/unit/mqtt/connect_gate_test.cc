#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "mqtt/mqtt_client.h"

namespace rollertrace::mqtt {
namespace {

TEST(ConnectGate, NeverLetsMoreThanItsSlotsInAtOnceAndServesInOrder) {
  ConnectGate gate(3);
  std::atomic<bool> stop{false};
  std::atomic<int> inside{0}, most{0};
  std::mutex mu;
  std::vector<int> order;
  std::vector<std::thread> threads;
  for (int i = 0; i < 40; ++i) {
    threads.emplace_back([&, i] {
      ASSERT_TRUE(gate.Acquire(stop));
      const int now = ++inside;
      for (int seen = most; now > seen && !most.compare_exchange_weak(seen, now);) {
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        order.push_back(i);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      --inside;
      gate.Release();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(order.size(), 40u);
  EXPECT_LE(most.load(), 3);
  EXPECT_GE(most.load(), 1);
}

TEST(ConnectGate, AWaiterGivesUpWhenStoppedAndPassesNoTurnItDidNotGet) {
  ConnectGate gate(1);
  std::atomic<bool> never{false}, stop{false};
  ASSERT_TRUE(gate.Acquire(never));  // the one slot is taken
  std::atomic<int> result{-1};
  std::thread waiter([&] { result = gate.Acquire(stop) ? 1 : 0; });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(result.load(), -1) << "no slot was free";
  stop = true;
  gate.Interrupt();
  waiter.join();
  EXPECT_EQ(result.load(), 0);
  gate.Release();
  // The slot is free again, and only once.
  ASSERT_TRUE(gate.Acquire(never));
  std::atomic<int> second{-1};
  std::atomic<bool> stop2{false};
  std::thread again([&] { second = gate.Acquire(stop2) ? 1 : 0; });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(second.load(), -1);
  gate.Release();
  again.join();
  EXPECT_EQ(second.load(), 1);
  gate.Release();
}

}  // namespace
}  // namespace rollertrace::mqtt
