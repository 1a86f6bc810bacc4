#include "agent/device_agent.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace rollertrace::edge {
namespace {

using Clock = DeviceAgent::Clock;
using std::chrono::milliseconds;

// Records what the agent publishes; can pretend the broker is gone.
struct FakeBroker {
  std::vector<std::pair<std::string, rollertrace::v1::EventBatch>> published;
  bool up = true;
  Publisher publisher() {
    return [this](const std::string& topic, const std::string& payload) {
      if (!up) return absl::UnavailableError("down");
      rollertrace::v1::EventBatch b;
      EXPECT_TRUE(b.ParseFromString(payload));
      published.emplace_back(topic, b);
      return absl::OkStatus();
    };
  }
  std::vector<uint64_t> Sequences() const {
    std::vector<uint64_t> out;
    for (const auto& [t, b] : published)
      for (const auto& e : b.events()) out.push_back(e.sequence());
    return out;
  }
};

class DeviceAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("device_agent_test." + std::to_string(getpid()) + "." +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    db_ = std::move(*SpoolDb::Open(dir_.string()));
    spool_ = std::move(*Spool::Open(*db_, "R-1"));
    AgentOptions options;
    options.max_batch_events = 2;
    options.ack_timeout = milliseconds(1000);
    agent_ = std::make_unique<DeviceAgent>(*spool_, options);
  }
  void TearDown() override {
    agent_.reset();
    spool_.reset();
    db_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Record(int n) {
    for (int i = 0; i < n; ++i) {
      rollertrace::v1::Event e;
      e.mutable_heartbeat()->set_battery_fraction(1);
      ASSERT_TRUE(agent_->Record(e, 0).ok());
    }
  }
  void AckThrough(uint64_t seq) {
    rollertrace::v1::DeviceAck ack;
    ack.set_device_id("R-1");
    ack.set_contiguous_through(seq);
    agent_->OnAck(ack.SerializeAsString());
  }

  std::filesystem::path dir_;
  std::unique_ptr<SpoolDb> db_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<DeviceAgent> agent_;
  FakeBroker broker_;
  Clock::time_point t0_ = Clock::now();
};

TEST_F(DeviceAgentTest, PublishesEachEventOnceInBatchesOnItsTopic) {
  Record(5);
  agent_->Pump(broker_.publisher(), t0_);
  EXPECT_EQ(broker_.Sequences(), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  ASSERT_EQ(broker_.published.size(), 3u);
  EXPECT_EQ(broker_.published[0].first, "rollers/R-1/events");
  agent_->Pump(broker_.publisher(), t0_ + milliseconds(10));
  EXPECT_EQ(broker_.Sequences().size(), 5u);
}

TEST_F(DeviceAgentTest, AckedEventsLeaveTheSpool) {
  Record(4);
  agent_->Pump(broker_.publisher(), t0_);
  AckThrough(3);
  EXPECT_EQ(agent_->stats().pending, 1u);
  EXPECT_EQ(agent_->stats().acked_events, 3u);
}

TEST_F(DeviceAgentTest, IgnoresAcksForOtherDevicesAndGarbage) {
  Record(2);
  rollertrace::v1::DeviceAck other;
  other.set_device_id("R-2");
  other.set_contiguous_through(2);
  agent_->OnAck(other.SerializeAsString());
  agent_->OnAck("\xff\xff garbage");
  EXPECT_EQ(agent_->stats().pending, 2u);
}

TEST_F(DeviceAgentTest, ResendsEverythingPendingAfterTheAckTimeout) {
  Record(3);
  agent_->Pump(broker_.publisher(), t0_);
  AckThrough(1);
  broker_.published.clear();
  agent_->Pump(broker_.publisher(), Clock::now() + milliseconds(500));
  EXPECT_TRUE(broker_.published.empty());
  agent_->Pump(broker_.publisher(), Clock::now() + milliseconds(1500));
  EXPECT_EQ(broker_.Sequences(), (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(agent_->stats().resends, 1u);
}

TEST_F(DeviceAgentTest, ResendsAfterAReconnect) {
  Record(2);
  agent_->Pump(broker_.publisher(), t0_);
  broker_.published.clear();
  agent_->OnConnected();
  agent_->Pump(broker_.publisher(), t0_ + milliseconds(1));
  EXPECT_EQ(broker_.Sequences(), (std::vector<uint64_t>{1, 2}));
}

TEST_F(DeviceAgentTest, KeepsEventsWhileTheBrokerIsDownAndSendsThemLater) {
  broker_.up = false;
  Record(3);
  agent_->Pump(broker_.publisher(), t0_);
  EXPECT_TRUE(broker_.published.empty());
  EXPECT_EQ(agent_->stats().pending, 3u);
  broker_.up = true;
  agent_->Pump(broker_.publisher(), t0_ + milliseconds(1));
  EXPECT_EQ(broker_.Sequences(), (std::vector<uint64_t>{1, 2, 3}));
}

}  // namespace
}  // namespace rollertrace::edge
