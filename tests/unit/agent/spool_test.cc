#include "agent/spool.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <rocksdb/db.h>

#include <filesystem>

#include "store/keys.h"

namespace rollertrace::edge {
namespace {

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("spool_test." + std::to_string(getpid()) + "." +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    Reopen();
  }
  void TearDown() override {
    spool_.reset();
    db_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    spool_.reset();
    db_.reset();
    auto db = SpoolDb::Open(dir_.string());
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    auto spool = Spool::Open(*db_, "R-1");
    ASSERT_TRUE(spool.ok()) << spool.status();
    spool_ = std::move(*spool);
  }
  void Record(int n) {
    for (int i = 0; i < n; ++i) {
      rollertrace::v1::Event e;
      e.set_device_time_unix_ms(1000 + spool_->meta().next_sequence());
      e.mutable_heartbeat()->set_battery_fraction(0.5);
      ASSERT_TRUE(spool_->Append(e, spool_->meta().source_cursor() + 1).ok());
    }
  }
  static rollertrace::v1::DeviceAck Ack(uint64_t through, std::vector<std::pair<uint64_t, uint64_t>> ranges = {}) {
    rollertrace::v1::DeviceAck a;
    a.set_device_id("R-1");
    a.set_contiguous_through(through);
    for (auto [f, l] : ranges) {
      auto* r = a.add_committed();
      r->set_first(f);
      r->set_last(l);
    }
    return a;
  }

  std::filesystem::path dir_;
  std::unique_ptr<SpoolDb> db_;
  std::unique_ptr<Spool> spool_;
};

TEST_F(SpoolTest, ACorruptSpooledEventIsQuarantinedAndReportedNotSilentlySkipped) {
  Record(3);
  ASSERT_TRUE(db_->db()->Put(rocksdb::WriteOptions(), store::DeviceSequenceKey("R-1", 2), "\xff\xff not an event").ok());
  auto pending = spool_->Pending(0, 10);
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].sequence(), 1u);
  EXPECT_EQ(pending[1].sequence(), 3u);
  EXPECT_EQ(spool_->quarantined(), 1u);
  EXPECT_EQ(spool_->pending_count(), 2u) << "it no longer waits for an ack that cannot come";
  std::string kept;
  EXPECT_TRUE(db_->db()->Get(rocksdb::ReadOptions(), std::string("\0quarantine\0", 12) + store::DeviceSequenceKey("R-1", 2),
                             &kept).ok())
      << "its bytes are kept aside";
}

TEST_F(SpoolTest, ALostBookkeepingRecordNeverReusesASequence) {
  Record(3);
  ASSERT_TRUE(db_->db()->Delete(rocksdb::WriteOptions(), store::DeviceSequenceKey("R-1", 0)).ok());
  Reopen();
  EXPECT_EQ(spool_->meta().next_sequence(), 4u);
  rollertrace::v1::Event e;
  e.mutable_heartbeat()->set_battery_fraction(0.5);
  auto recorded = spool_->Append(e, 0);
  ASSERT_TRUE(recorded.ok());
  EXPECT_EQ(recorded->sequence(), 4u);
}

TEST_F(SpoolTest, NumbersEventsFromOneWithoutGaps) {
  Record(3);
  auto pending = spool_->Pending(0, 10);
  ASSERT_EQ(pending.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(pending[i].sequence(), i + 1);
    EXPECT_EQ(pending[i].device_id(), "R-1");
  }
}

TEST_F(SpoolTest, KeepsPendingEventsSequenceAndCursorAcrossRestart) {
  Record(5);
  ASSERT_TRUE(spool_->Acknowledge(Ack(2)).ok());
  Reopen();
  EXPECT_EQ(spool_->pending_count(), 3u);
  EXPECT_EQ(spool_->meta().next_sequence(), 6u);
  EXPECT_EQ(spool_->meta().source_cursor(), 5u);
  EXPECT_EQ(spool_->oldest_pending_unix_ms(), 1003);
  Record(1);
  EXPECT_EQ(spool_->Pending(5, 10).at(0).sequence(), 6u);
}

TEST_F(SpoolTest, ForgetsOnlyWhatAnAckCovers) {
  Record(10);
  auto removed = spool_->Acknowledge(Ack(3, {{6, 7}, {9, 9}}));
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 6u);
  std::vector<uint64_t> left;
  for (const auto& e : spool_->Pending(0, 100)) left.push_back(e.sequence());
  EXPECT_EQ(left, (std::vector<uint64_t>{4, 5, 8, 10}));
  EXPECT_EQ(*spool_->Acknowledge(Ack(3)), 0u);
}

TEST_F(SpoolTest, PendingPagesAfterASequence) {
  Record(7);
  auto page = spool_->Pending(3, 2);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].sequence(), 4u);
  EXPECT_EQ(page[1].sequence(), 5u);
}

TEST_F(SpoolTest, DevicesSharingADatabaseKeepTheirOwnEvents) {
  auto other = Spool::Open(*db_, "R-10");
  ASSERT_TRUE(other.ok());
  Record(2);
  rollertrace::v1::Event e;
  e.mutable_heartbeat();
  ASSERT_TRUE((*other)->Append(e, 1).ok());
  EXPECT_EQ(spool_->pending_count(), 2u);
  EXPECT_EQ((*other)->Pending(0, 10).at(0).device_id(), "R-10");
  Reopen();
  EXPECT_EQ(spool_->pending_count(), 2u);
}

}  // namespace
}  // namespace rollertrace::edge
