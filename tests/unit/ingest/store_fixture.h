// What the ingest unit tests share: a fresh store directory named after the
// running test, and registered rollers.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "store/commands.h"
#include "store/event_store.h"

namespace rollertrace::ingest::test {

// An empty directory under the system's temporary one, named `suite`, this
// process and the running test.
inline std::filesystem::path FreshDir(const std::string& suite) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              (suite + "." + std::to_string(getpid()) + "." +
                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  return dir;
}

// Registers rollers R-0 .. R-(n-1): 192 needles of 0.5 mm, rated for
// `rated_penetrations`.
inline void RegisterRollers(store::EventStore& store, int n, uint64_t rated_penetrations, int64_t now) {
  for (int i = 0; i < n; ++i) {
    rollertrace::v1::Device d;
    d.set_device_id("R-" + std::to_string(i));
    d.set_kind(rollertrace::v1::DEVICE_KIND_ROLLER);
    d.set_needle_count(192);
    d.set_needle_length_mm(0.5);
    d.set_rated_penetrations(rated_penetrations);
    ASSERT_TRUE(store::Register(store, d, now).ok());
  }
}

}  // namespace rollertrace::ingest::test
