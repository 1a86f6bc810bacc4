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
  // What each publish was to call on the broker's PUBACK, in order.
  std::vector<std::function<void()>> delivered_callbacks;
  bool up = true;
  size_t room = SIZE_MAX;  // publishes the client's queue still takes
  Publisher publisher() {
    return [this](const std::string& topic, const std::string& payload, std::function<void()> delivered) {
      if (!up) return absl::UnavailableError("down");
      if (room == 0) return absl::ResourceExhaustedError("no more messages can be buffered");
      --room;
      delivered_callbacks.push_back(std::move(delivered));
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
  // Options as in SetUp, with a fleet's shared AckTimer and the given floor.
  static AgentOptions SharedTimerOptions(milliseconds floor) {
    AgentOptions options;
    options.max_batch_events = 2;
    options.ack_timeout = floor;
    options.ack_timer = std::make_shared<AckTimer>();
    return options;
  }
  // An agent with a fleet's shared AckTimer (SharedTimerOptions) that has
  // published two events in one batch; returns when (t0).
  Clock::time_point PublishTwoWithSharedTimer(milliseconds floor, AgentOptions* options) {
    *options = SharedTimerOptions(floor);
    agent_ = std::make_unique<DeviceAgent>(*spool_, *options);
    Record(2);
    const auto t0 = Clock::now();
    agent_->Pump(broker_.publisher(), t0);
    return t0;
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

TEST(AckTimerTest, LearnsTheRoundTripAboveItsFloor) {
  AckTimer timer;
  EXPECT_EQ(timer.Timeout(milliseconds(3000)), milliseconds(3000));  // nothing learnt yet
  timer.Observe(milliseconds(4000));
  // RFC 6298's first sample: 4000 + 4 x 2000.
  EXPECT_EQ(timer.Timeout(milliseconds(3000)), milliseconds(12000));
  for (int i = 0; i < 200; ++i) timer.Observe(milliseconds(10));
  EXPECT_EQ(timer.Timeout(milliseconds(3000)), milliseconds(3000));  // fast again: the floor
  for (int i = 0; i < 3; ++i) timer.Observe(std::chrono::seconds(600));
  EXPECT_EQ(timer.Timeout(milliseconds(3000)), milliseconds(60000));  // capped
}

// A fleet whose acks come slowly learns it from the acks that came: its
// devices wait that long instead of each resending its backlog at the floor
// (the resend storm of a 10,000-roller fleet).
TEST_F(DeviceAgentTest, ASlowServerLearntFromItsAcksCausesNoResend) {
  AgentOptions options = SharedTimerOptions(milliseconds(1000));
  options.ack_timer->Observe(milliseconds(2000));  // another device of the fleet saw a 2 s round trip
  agent_ = std::make_unique<DeviceAgent>(*spool_, options);
  Record(3);
  agent_->Pump(broker_.publisher(), Clock::now());
  broker_.published.clear();
  agent_->Pump(broker_.publisher(), Clock::now() + milliseconds(1500));  // past the floor, within 2 s + 4 x 1 s
  EXPECT_TRUE(broker_.published.empty());
  EXPECT_EQ(agent_->stats().resends, 0u);
  agent_->Pump(broker_.publisher(), Clock::now() + milliseconds(6500));  // beyond what was learnt
  EXPECT_EQ(agent_->stats().resends, 1u);
}

// A fleet's thousand clients share one MQTT send thread: a batch may wait
// there for seconds before the broker has it. That wait is no lost message;
// counting it resent thousands of batches in a 10,000-roller fleet. The wait
// for ingestd's ack counts from the broker's PUBACK.
TEST_F(DeviceAgentTest, ABatchStillInTheClientsSendQueueIsNotResent) {
  AgentOptions options;
  const auto t0 = PublishTwoWithSharedTimer(milliseconds(1000), &options);
  ASSERT_EQ(broker_.published.size(), 1u);
  agent_->OnDelivered(2, t0 + milliseconds(2500));  // the broker took it 2.5 s later
  agent_->Pump(broker_.publisher(), t0 + milliseconds(3000));
  EXPECT_EQ(agent_->stats().resends, 0u) << "resent 0.5 s after the broker took it";
  agent_->Pump(broker_.publisher(), t0 + milliseconds(3600));
  EXPECT_EQ(agent_->stats().resends, 1u) << "no ack 1.1 s after the broker took it: sent again";
  EXPECT_EQ(broker_.published.size(), 2u);
}

// The first wave of a 10,000-roller fleet: every roller publishes at once and
// the server works through them in the order the broker took them. While the
// fleet hears acks for batches the broker took before ours, ours is queued
// behind them, not lost: no resend past the floor. Once nothing answers
// anyone, the backlog goes out again.
TEST_F(DeviceAgentTest, AFleetHearingAcksForEarlierBatchesWaitsPastTheFloor) {
  AgentOptions options;
  const auto t0 = PublishTwoWithSharedTimer(milliseconds(1000), &options);
  agent_->OnDelivered(2, t0 + milliseconds(100));
  options.ack_timer->Acked(t0 + milliseconds(50), t0 + milliseconds(2000));  // another roller's, taken before ours
  agent_->Pump(broker_.publisher(), t0 + milliseconds(2500));
  EXPECT_EQ(agent_->stats().resends, 0u) << "resent while the fleet still heard acks for earlier batches";
  options.ack_timer->Acked(t0 + milliseconds(90), t0 + milliseconds(3000));
  agent_->Pump(broker_.publisher(), t0 + milliseconds(3800));
  EXPECT_EQ(agent_->stats().resends, 0u);
  agent_->Pump(broker_.publisher(), t0 + milliseconds(5000));  // 2 s without any ack in the fleet
  EXPECT_EQ(agent_->stats().resends, 1u);
  EXPECT_EQ(broker_.published.size(), 2u);
}

// A bridge killed with our batch in its memory: the broker took it, and then
// batches it took later are acked while ours is not. That batch is lost, and
// goes out again at once rather than after the whole wait (RACK).
TEST_F(DeviceAgentTest, ABatchOvertakenByOneTheBrokerTookLaterIsResentAtOnce) {
  AgentOptions options;
  const auto t0 = PublishTwoWithSharedTimer(milliseconds(1000), &options);  // reorder window: the 1 s wait
  ASSERT_EQ(broker_.delivered_callbacks.size(), 1u);
  broker_.delivered_callbacks[0]();  // the broker's PUBACK, about t0
  options.ack_timer->Acked(t0 + milliseconds(900), t0 + milliseconds(1000));  // later, within the window
  agent_->Pump(broker_.publisher(), t0 + milliseconds(1100));
  EXPECT_EQ(agent_->stats().resends, 0u) << "within the reorder window is not overtaken";
  options.ack_timer->Acked(t0 + milliseconds(1500), t0 + milliseconds(1600));
  agent_->Pump(broker_.publisher(), t0 + milliseconds(1700));
  EXPECT_EQ(agent_->stats().resends, 1u) << "a batch taken 1.5 s after ours was acked";
  EXPECT_EQ(broker_.Sequences(), (std::vector<uint64_t>{1, 2, 1, 2}));
  // The window widens with what the fleet learnt: 2 s + 4 x 1 s here.
  ASSERT_EQ(broker_.delivered_callbacks.size(), 2u);
  broker_.delivered_callbacks[1]();  // the resent batch's PUBACK, about t0
  options.ack_timer->Observe(milliseconds(2000));
  options.ack_timer->Acked(t0 + milliseconds(4000), t0 + milliseconds(4100));
  agent_->Pump(broker_.publisher(), t0 + milliseconds(4200));
  EXPECT_EQ(agent_->stats().resends, 1u) << "taken 4 s after ours is within a 6 s window";
}

TEST_F(DeviceAgentTest, AnAckTeachesTheRoundTripOfFirstSendsOnly) {
  AgentOptions options = SharedTimerOptions(milliseconds(1));
  agent_ = std::make_unique<DeviceAgent>(*spool_, options);
  Record(2);
  agent_->Pump(broker_.publisher(), Clock::now());
  usleep(30000);
  AckThrough(2);  // about 30 ms after its first send
  EXPECT_GE(options.ack_timer->Timeout(milliseconds(1)), milliseconds(30));
  // A resent batch gives no sample (Karn): its ack may answer either send.
  auto resent_timer = std::make_shared<AckTimer>();
  options.ack_timer = resent_timer;
  agent_ = std::make_unique<DeviceAgent>(*spool_, options);
  Record(2);
  agent_->Pump(broker_.publisher(), Clock::now());
  agent_->OnConnected();
  agent_->Pump(broker_.publisher(), Clock::now());  // everything again
  usleep(30000);
  AckThrough(4);
  EXPECT_EQ(resent_timer->Timeout(milliseconds(1)), milliseconds(1));
}

TEST_F(DeviceAgentTest, ResendsAfterAReconnect) {
  Record(2);
  agent_->Pump(broker_.publisher(), t0_);
  broker_.published.clear();
  agent_->OnConnected();
  agent_->Pump(broker_.publisher(), t0_ + milliseconds(1));
  EXPECT_EQ(broker_.Sequences(), (std::vector<uint64_t>{1, 2}));
}

// A full client queue (Paho's maxBufferedMessages) is no lost connection:
// what the client took is not sent again, the rest follows later.
TEST_F(DeviceAgentTest, AFullClientQueueHoldsTheRestBackWithoutResending) {
  Record(5);
  broker_.room = 1;
  agent_->Pump(broker_.publisher(), t0_);
  EXPECT_EQ(broker_.Sequences(), (std::vector<uint64_t>{1, 2}));
  broker_.room = SIZE_MAX;
  agent_->Pump(broker_.publisher(), t0_ + milliseconds(20));
  EXPECT_EQ(broker_.Sequences(), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(agent_->stats().resends, 0u);
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

namespace rollertrace::edge {
namespace {

rollertrace::v1::SessionStarted Session(const std::string& patient) {
  rollertrace::v1::SessionStarted s;
  s.set_session_id("s");
  s.set_patient_ref(patient);
  s.set_area(rollertrace::v1::AREA_SCALP);
  s.set_needle_length_mm(1.0);
  return s;
}

class AgentAuthorizationTest : public DeviceAgentTest {
 protected:
  // A server that allows and sends its snapshot: a roller sterile since
  // `cycle_end` (with the cycle it relied on, when `with_cycle`), no sessions.
  Publisher AnswerAllowSterileSince(int64_t cycle_end, bool with_cycle) {
    return [this, cycle_end, with_cycle](const std::string&, const std::string& payload, std::function<void()>) {
      rollertrace::v1::AuthorizeRequest req;
      req.ParseFromString(payload);
      rollertrace::v1::Decision d;
      d.set_device_id("R-1");
      d.set_correlation_id(req.correlation_id());
      d.set_allowed(true);
      auto* snap = d.mutable_roller();
      snap->mutable_device()->set_needle_count(540);
      snap->mutable_device()->set_needle_length_mm(1.0);
      snap->mutable_device()->set_rated_penetrations(540 * 3000);
      snap->mutable_device()->set_lifecycle(rollertrace::v1::LIFECYCLE_STERILE);
      snap->mutable_use()->set_last_passing_cycle_end_unix_ms(cycle_end);
      if (with_cycle) {
        auto* cycle = snap->mutable_use()->mutable_last_cycle();
        cycle->set_end_unix_ms(cycle_end);
        cycle->set_parameters_passed(true);
        cycle->set_steriliser_id("S-1");
        cycle->set_biological_indicator(rollertrace::v1::INDICATOR_PASS);
      }
      agent_->OnDecision(d.SerializeAsString());
      return absl::OkStatus();
    };
  }
};

TEST_F(AgentAuthorizationTest, AsksOnTheAuthorizeTopicAndFollowsTheServersAnswer) {
  std::string asked_topic;
  rollertrace::v1::AuthorizeRequest asked;
  Publisher answer_deny = [&](const std::string& topic, const std::string& payload, std::function<void()>) {
    asked_topic = topic;
    asked.ParseFromString(payload);
    rollertrace::v1::Decision d;
    d.set_device_id("R-1");
    d.set_correlation_id(asked.correlation_id());
    d.set_allowed(false);
    d.add_hits()->set_rule("SINGLE_PATIENT");
    agent_->OnDecision(d.SerializeAsString());  // as if it came back over MQTT
    return absl::OkStatus();
  };
  Authorization a = agent_->Authorize(Session("MRN-1"), 1000, answer_deny, milliseconds(2000));
  EXPECT_EQ(asked_topic, "rollers/R-1/authorize");
  EXPECT_EQ(asked.session().patient_ref(), "MRN-1");
  EXPECT_FALSE(a.allowed);
  EXPECT_FALSE(a.offline);
  EXPECT_EQ(a.decision.hits(0).rule(), "SINGLE_PATIENT");
  EXPECT_EQ(agent_->stats().sessions_refused, 1u);
}

TEST_F(AgentAuthorizationTest, DecidesOfflineFromTheLastServerStateWhenNoAnswerComes) {
  // The server once said: registered, sterile since yesterday, no sessions.
  Publisher answer_allow = AnswerAllowSterileSince(500, /*with_cycle=*/false);
  ASSERT_TRUE(agent_->Authorize(Session("MRN-1"), 1000, answer_allow, milliseconds(2000)).allowed);
  rollertrace::v1::Event started;
  started.set_device_time_unix_ms(1000);
  *started.mutable_session_started() = Session("MRN-1");
  ASSERT_TRUE(agent_->Record(started, 1).ok());
  rollertrace::v1::Event ended;
  ended.set_device_time_unix_ms(2000);
  ended.mutable_session_ended()->set_session_id("s");
  ASSERT_TRUE(agent_->Record(ended, 2).ok());

  Publisher silent = [](const std::string&, const std::string&, std::function<void()>) { return absl::OkStatus(); };
  const int64_t eight_days = 8LL * 24 * 3600 * 1000;
  Authorization other = agent_->Authorize(Session("MRN-2"), eight_days, silent, milliseconds(50));
  EXPECT_TRUE(other.offline);
  EXPECT_FALSE(other.allowed);
  std::string rules;
  for (const auto& h : other.decision.hits()) rules += h.rule() + " ";
  // Another patient, and no cycle since its own session: refused offline too.
  EXPECT_NE(rules.find("SINGLE_PATIENT"), std::string::npos) << rules;
  EXPECT_NE(rules.find("NOT_STERILE"), std::string::npos) << rules;
  EXPECT_EQ(agent_->stats().offline_decisions, 1u);
}

TEST_F(AgentAuthorizationTest, ARestartedAgentDecidesOfflineAsOneThatNeverStopped) {
  // Seen (issue #13): after a SIGKILL, roller-fleet refused sessions offline
  // with NOT_STERILE "no passing sterilisation cycle recorded": its state was
  // only in memory.
  Publisher answer_allow = AnswerAllowSterileSince(500, /*with_cycle=*/true);
  ASSERT_TRUE(agent_->Authorize(Session("MRN-1"), 1000, answer_allow, milliseconds(2000)).allowed);
  rollertrace::v1::Event usage;
  usage.set_device_time_unix_ms(1500);
  usage.mutable_usage_sample()->set_revolutions(700);
  ASSERT_TRUE(agent_->Record(usage, 1).ok());
  Publisher silent = [](const std::string&, const std::string&, std::function<void()>) { return absl::OkStatus(); };
  Authorization before = agent_->Authorize(Session("MRN-1"), 1800, silent, milliseconds(50));

  // The agent dies (its memory is gone) and starts again on the same spool.
  agent_.reset();
  spool_.reset();
  spool_ = std::move(*Spool::Open(*db_, "R-1"));
  AgentOptions options;
  agent_ = std::make_unique<DeviceAgent>(*spool_, options);
  Authorization after = agent_->Authorize(Session("MRN-1"), 1800, silent, milliseconds(50));
  ASSERT_TRUE(after.offline);
  auto rules = [](const Authorization& a) {
    std::string out;
    for (const auto& h : a.decision.hits()) out += h.rule() + " ";
    return out;
  };
  EXPECT_TRUE(before.allowed) << rules(before);
  EXPECT_EQ(after.allowed, before.allowed) << rules(after) << " vs " << rules(before);
  EXPECT_EQ(rules(after), rules(before));
  EXPECT_EQ(rules(after).find("NOT_STERILE"), std::string::npos) << rules(after);

  // Its own events since the snapshot count too: after a session with MRN-1
  // and another restart, another patient is refused.
  rollertrace::v1::Event started;
  started.set_device_time_unix_ms(2000);
  *started.mutable_session_started() = Session("MRN-1");
  ASSERT_TRUE(agent_->Record(started, 2).ok());
  agent_.reset();
  agent_ = std::make_unique<DeviceAgent>(*spool_, options);
  EXPECT_NE(rules(agent_->Authorize(Session("MRN-2"), 2100, silent, milliseconds(50))).find("SINGLE_PATIENT"),
            std::string::npos);
}

TEST_F(AgentAuthorizationTest, ALockSurvivesARestart) {
  rollertrace::v1::Command lock;
  lock.set_device_id("R-1");
  lock.set_command("lock");
  lock.set_reason("recall");
  agent_->OnCommand(lock.SerializeAsString());
  agent_.reset();
  agent_ = std::make_unique<DeviceAgent>(*spool_, AgentOptions{});
  EXPECT_TRUE(agent_->locked());
}

TEST_F(AgentAuthorizationTest, ADecisionAfterTheTimeoutIsDropped) {
  // A decision that came too late stayed in memory for ever.
  std::string correlation;
  Publisher late = [&](const std::string&, const std::string& payload, std::function<void()>) {
    rollertrace::v1::AuthorizeRequest req;
    req.ParseFromString(payload);
    correlation = req.correlation_id();
    return absl::OkStatus();
  };
  Authorization a = agent_->Authorize(Session("MRN-1"), 1000, late, milliseconds(20));
  ASSERT_TRUE(a.offline);
  rollertrace::v1::Decision d;
  d.set_device_id("R-1");
  d.set_correlation_id(correlation);
  d.set_allowed(false);
  agent_->OnDecision(d.SerializeAsString());
  // The next request is not answered by the stale decision.
  Authorization b = agent_->Authorize(Session("MRN-1"), 1000, late, milliseconds(20));
  EXPECT_TRUE(b.offline);
  EXPECT_NE(correlation, a.decision.correlation_id());
}

TEST_F(AgentAuthorizationTest, RefusesEverySessionWhileLockedUntilUnlocked) {
  rollertrace::v1::Command lock;
  lock.set_device_id("R-1");
  lock.set_command("lock");
  lock.set_reason("WORN in session s");
  agent_->OnCommand(lock.SerializeAsString());
  bool asked = false;
  Publisher ask = [&](const std::string&, const std::string&, std::function<void()>) {
    asked = true;
    return absl::OkStatus();
  };
  Authorization a = agent_->Authorize(Session("MRN-1"), 1000, ask, milliseconds(50));
  EXPECT_FALSE(a.allowed);
  EXPECT_FALSE(asked) << "a locked roller does not even ask";
  EXPECT_EQ(a.decision.hits(0).rule(), "DEVICE_LOCKED");
  EXPECT_TRUE(agent_->stats().locked);
  lock.set_command("unlock");
  agent_->OnCommand(lock.SerializeAsString());
  EXPECT_FALSE(agent_->locked());
}

}  // namespace
}  // namespace rollertrace::edge
