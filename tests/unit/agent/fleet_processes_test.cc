#include "agent/fleet_processes.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace rollertrace::edge {
namespace {

namespace fs = std::filesystem;

TEST(FleetProcesses, OneProcessPerThousandDevicesAtMostOnePerSteriliser) {
  EXPECT_EQ(AutoProcesses(4, 1), 1);
  EXPECT_EQ(AutoProcesses(999, 1), 1);
  EXPECT_EQ(AutoProcesses(1000, 10), 2);
  EXPECT_EQ(AutoProcesses(10000, 100), 11);
  EXPECT_EQ(AutoProcesses(10000, 3), 3);
  EXPECT_EQ(AutoProcesses(5000, 0), 5);
  EXPECT_EQ(AutoProcesses(0, 0), 1);
}

TEST(FleetProcesses, AReportLineSaysEverythingItWasGiven) {
  // Every field a distinct value: a field lost or swapped on either side shows.
  const std::string line =
      "phase=playing devices=1010 connected=1009 recorded=123456789012 pending=17 published=5 acked=6 "
      "resends=7 allowed=8 refused=9 offline=10 overrides=11 locked=12 oldest=1764000000123 source_done=40 "
      "source_total=50 connect_ms=2500 disconnect_ms=-1";
  absl::StatusOr<ProcessReport> r = DecodeReport(line);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->phase, "playing");
  EXPECT_EQ(r->stats.devices, 1010u);
  EXPECT_EQ(r->stats.recorded, 123456789012u);
  EXPECT_EQ(r->stats.locked, 12u);
  EXPECT_EQ(r->stats.oldest_pending_unix_ms, 1764000000123);
  EXPECT_EQ(r->source_total, 50u);
  EXPECT_DOUBLE_EQ(r->connect_seconds, 2.5);
  EXPECT_LT(r->disconnect_seconds, 0);
  EXPECT_EQ(Describe(r->stats),
            "123456789012 recorded, 6 acked, 17 pending, 7 resends, 1009/1010 connected; sessions 8 allowed, 9 "
            "refused (11 carried out anyway), 10 decided offline, 12 rollers locked");
  const std::string encoded = EncodeReport(*r);
  EXPECT_EQ(encoded, line + "\n");
  EXPECT_LT(encoded.size(), 512u) << "one atomic pipe write";
}

TEST(FleetProcesses, RefusesAReportLineItCannotRead) {
  EXPECT_FALSE(DecodeReport("").ok());
  EXPECT_FALSE(DecodeReport("recorded=5").ok()) << "no phase";
  EXPECT_FALSE(DecodeReport("phase=done recorded=five").ok());
  EXPECT_FALSE(DecodeReport("phase=done recorded=-1").ok());
  EXPECT_FALSE(DecodeReport("phase=done colour=blue").ok());
  EXPECT_FALSE(DecodeReport("phase=done recorded").ok());
}

TEST(FleetProcesses, SumsTheCountsAndKeepsTheOldestPendingEvent) {
  std::vector<ProcessReport> reports(3);
  reports[0].stats.recorded = 10;
  reports[0].stats.devices = 100;
  reports[0].stats.oldest_pending_unix_ms = 500;
  reports[1].stats.recorded = 20;
  reports[1].stats.devices = 100;
  reports[1].stats.oldest_pending_unix_ms = 300;
  reports[2].stats.recorded = 5;
  const FleetStats sum = SumStats(reports);
  EXPECT_EQ(sum.recorded, 35u);
  EXPECT_EQ(sum.devices, 200u);
  EXPECT_EQ(sum.oldest_pending_unix_ms, 300);
}

class SpoolLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("rt-spool-layout-" + std::to_string(getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(SpoolLayoutTest, ANewSpoolTakesEitherLayout) {
  EXPECT_TRUE(PrepareSpoolLayout(dir_, 1).ok());
  ASSERT_TRUE(PrepareSpoolLayout(dir_ + "-n", 3).ok());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(fs::is_directory(ProcessSpoolDir(dir_ + "-n", i))) << i;
  EXPECT_TRUE(PrepareSpoolLayout(dir_ + "-n", 3).ok()) << "the same number again";
  fs::remove_all(dir_ + "-n");
}

TEST_F(SpoolLayoutTest, ASpoolOfNProcessesRefusesAnotherNumber) {
  ASSERT_TRUE(PrepareSpoolLayout(dir_, 3).ok());
  const absl::Status other = PrepareSpoolLayout(dir_, 2);
  EXPECT_EQ(other.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(other.message().find("--processes 3"), std::string_view::npos) << other;
  const absl::Status one = PrepareSpoolLayout(dir_, 1);
  EXPECT_NE(one.message().find("--processes 3"), std::string_view::npos) << one;
}

TEST_F(SpoolLayoutTest, AOneProcessSpoolRefusesASplit) {
  fs::create_directories(dir_);
  std::ofstream(fs::path(dir_) / "CURRENT") << "MANIFEST-000001\n";
  const absl::Status split = PrepareSpoolLayout(dir_, 4);
  EXPECT_EQ(split.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(split.message().find("--processes 1"), std::string_view::npos) << split;
  EXPECT_TRUE(PrepareSpoolLayout(dir_, 1).ok());
}

TEST(FleetProcesses, GivesEachProcessItsOwnMetricsPort) {
  EXPECT_EQ(*OffsetListenAddress("127.0.0.1:9467", 3), "127.0.0.1:9470");
  EXPECT_EQ(*OffsetListenAddress("", 3), "");
  EXPECT_FALSE(OffsetListenAddress("localhost", 1).ok());
  EXPECT_FALSE(OffsetListenAddress("127.0.0.1:65535", 1).ok());
}

}  // namespace
}  // namespace rollertrace::edge
