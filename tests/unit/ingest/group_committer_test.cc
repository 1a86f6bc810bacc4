#include "ingest/group_committer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "store_fixture.h"

namespace rollertrace::ingest {
namespace {

using rollertrace::v1::IngestRequest;

class GroupCommitterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::FreshDir("group_committer_test");
    store_ = std::move(*store::EventStore::Open(dir_.string()));
    metrics_ = std::move(*metrics::Metrics::Create(""));
    ingest_metrics_ = std::make_unique<IngestMetrics>(*metrics_);
    test::RegisterRollers(*store_, 4, 1000, 1);
    committer_ = std::make_unique<GroupCommitter>(*store_, pseudonymizer_, *ingest_metrics_, [] { return 42; });
  }
  void TearDown() override {
    committer_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  static IngestRequest Request(uint64_t id, const std::string& device, uint64_t first, int n) {
    IngestRequest r;
    r.set_request_id(id);
    auto* b = r.add_batches();
    b->set_device_id(device);
    for (int i = 0; i < n; ++i) {
      auto* e = b->add_events();
      e->set_sequence(first + i);
      e->mutable_heartbeat()->set_battery_fraction(1);
    }
    return r;
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::EventStore> store_;
  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<IngestMetrics> ingest_metrics_;
  pseudonym::Pseudonymizer pseudonymizer_ = *pseudonym::Pseudonymizer::FromSecret("unit-test-secret-0123456789");
  std::unique_ptr<GroupCommitter> committer_;
};

TEST_F(GroupCommitterTest, PseudonymisesPatientsBeforeStoring) {
  IngestRequest r = Request(1, "R-0", 1, 1);
  auto* e = r.mutable_batches(0)->mutable_events(0);
  e->mutable_session_started()->set_patient_ref("MRN-777001");
  auto response = committer_->Submit(r).get();
  EXPECT_EQ(response.rejections_size(), 0);
  auto history = store_->audit().History("R-0", 1, 0);
  ASSERT_EQ(history->events_size(), 1);
  const auto& started = history->events(0).event().session_started();
  EXPECT_TRUE(started.patient_ref().empty());
  EXPECT_EQ(started.patient_pseudonym(), pseudonymizer_.Pseudonym("MRN-777001"));
}

TEST_F(GroupCommitterTest, RejectsInvalidBatchesAndStoresTheRest) {
  IngestRequest r = Request(7, "R-1", 1, 2);
  auto* bad = r.add_batches();
  bad->set_device_id("R-2");
  bad->add_events()->set_sequence(1);  // no body
  auto* ghost = r.add_batches();
  *ghost = Request(0, "GHOST", 1, 1).batches(0);
  auto response = committer_->Submit(r).get();
  ASSERT_EQ(response.rejections_size(), 2);
  EXPECT_EQ(response.rejections(0).reason(), "invalid");
  EXPECT_EQ(response.rejections(1).reason(), "unknown_device");
  ASSERT_EQ(response.acks_size(), 1);
  EXPECT_EQ(response.acks(0).contiguous_through(), 2u);
  EXPECT_EQ(ingest_metrics_->rejected.Add({{"reason", "unknown_device"}}).Value(), 1);
}

// A unary caller (IngestBatch) pays no hand-off when nothing else is being
// committed: its request is committed on its own thread. The committer's clock
// is read by whichever thread commits, so it tells them apart.
TEST_F(GroupCommitterTest, AnIdleCommitterCommitsAWaitingCallersRequestOnItsOwnThread) {
  std::mutex mu;
  std::set<std::thread::id> clock_readers;
  committer_ = std::make_unique<GroupCommitter>(*store_, pseudonymizer_, *ingest_metrics_, [&] {
    std::lock_guard<std::mutex> lock(mu);
    clock_readers.insert(std::this_thread::get_id());
    return int64_t{42};
  });
  const auto response = committer_->SubmitAndWait(Request(9, "R-0", 1, 1));
  EXPECT_EQ(response.request_id(), 9u);
  ASSERT_EQ(response.acks_size(), 1);
  EXPECT_EQ(response.acks(0).contiguous_through(), 1u);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(clock_readers, std::set<std::thread::id>{std::this_thread::get_id()});
  }
  committer_.reset();  // before the clock's captures go
  EXPECT_EQ(store_->audit().GetDevice("R-0")->state().events_stored(), 1u);
}

// Callers that commit their own requests, streams that queue theirs and
// authorisations whose decisions ride on the next commit, all at once: every
// request answered with its acks, every event and decision stored once.
TEST_F(GroupCommitterTest, WaitingCallersQueuedRequestsAndDecisionsMixWithoutLoss) {
  std::vector<std::thread> threads;
  std::vector<uint64_t> acked(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 25; ++k) {
        IngestRequest r = Request(k, "R-" + std::to_string(t), k * 4 + 1, 4);
        auto response = t % 2 == 0 ? committer_->SubmitAndWait(r) : committer_->Submit(r).get();
        EXPECT_EQ(response.request_id(), static_cast<uint64_t>(k));
        ASSERT_EQ(response.acks_size(), 1);
        acked[t] = response.acks(0).contiguous_through();
      }
    });
  }
  constexpr int kDecisions = 30;
  threads.emplace_back([&] {
    for (int k = 0; k < kDecisions; ++k) {
      rollertrace::v1::AuthorizeRequest a;
      a.set_device_id("R-" + std::to_string(k % 4));
      a.set_correlation_id("C-" + std::to_string(k));
      EXPECT_TRUE(committer_->Authorize(a).ok());
    }
  });
  for (auto& th : threads) th.join();
  committer_.reset();  // stores the decisions still waiting
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(acked[t], 100u);
    EXPECT_EQ(store_->audit().GetDevice("R-" + std::to_string(t))->state().events_stored(), 100u);
  }
  // Four registrations, a hundred batches, every decision.
  EXPECT_EQ(*store_->log().NextIndex(), 1u + 4 + 100 + kDecisions);
}

// A device command a bridge took and never confirmed (its control connection
// went down, say) is handed out again; once confirmed, never again.
TEST_F(GroupCommitterTest, ACommandNoBridgeConfirmsIsHandedOutAgainUntilOneDoes) {
  committer_.reset();
  GroupCommitOptions options;
  options.command_resend_after = std::chrono::milliseconds(100);
  committer_ = std::make_unique<GroupCommitter>(*store_, pseudonymizer_, *ingest_metrics_, [] { return 42; }, options);
  std::mutex mu;
  std::vector<uint64_t> taken;
  committer_->outbox().AddSink([&](std::vector<rollertrace::v1::Command>& commands) {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& c : commands) taken.push_back(c.outbox_index());
    return true;
  });
  rollertrace::v1::Command lock_command;
  lock_command.set_device_id("R-1");
  lock_command.set_command("lock");
  lock_command.set_outbox_index(7);
  committer_->outbox().Enqueue({lock_command});
  auto count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return taken.size();
  };
  for (int i = 0; i < 300 && count() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GE(count(), 3u) << "an unconfirmed command was not handed out again";
  committer_->outbox().Published({7});
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  const size_t after = count();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(count(), after) << "a confirmed command was handed out again";
  std::lock_guard<std::mutex> lock(mu);
  for (uint64_t index : taken) EXPECT_EQ(index, 7u);
}

}  // namespace
}  // namespace rollertrace::ingest
