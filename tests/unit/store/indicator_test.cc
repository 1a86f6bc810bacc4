// DOMAIN.md "Whose word counts", in the store: every combination of what a
// steriliser reports about a cycle's biological indicator (nothing, PASS,
// FAIL) and what the lab records (PASS, FAIL), in both orders.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "store/commands.h"

namespace rollertrace::store {
namespace {

using rollertrace::v1::IndicatorResult;
constexpr auto kNone = rollertrace::v1::INDICATOR_UNSPECIFIED;
constexpr auto kPass = rollertrace::v1::INDICATOR_PASS;
constexpr auto kFail = rollertrace::v1::INDICATOR_FAIL;
constexpr auto kPending = rollertrace::v1::INDICATOR_PENDING;
constexpr int64_t kNow = 1764000000000;
constexpr int64_t kHour = 3600 * 1000;

struct Row {
  IndicatorResult steriliser;  // reported by the steriliser
  IndicatorResult lab;         // recorded by the lab
  bool lab_first;              // the lab before the steriliser's report (sent in a resend of the cycle)
};

std::string Name(const ::testing::TestParamInfo<Row>& info) {
  auto n = [](IndicatorResult r) { return r == kNone ? "None" : r == kPass ? "Pass" : "Fail"; };
  return std::string("Steriliser") + n(info.param.steriliser) + "Lab" + n(info.param.lab) +
         (info.param.lab_first ? "LabFirst" : "SteriliserFirst");
}

class IndicatorTest : public ::testing::TestWithParam<Row> {
 protected:
  void SetUp() override {
    // A parameterised test's name has a '/': one directory, not two (the
    // outer one was left behind).
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = std::filesystem::temp_directory_path() /
           ("indicator_test." + std::to_string(getpid()) + "." +
            std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + name);
    std::filesystem::remove_all(dir_);
    auto s = EventStore::Open(dir_.string());
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    rollertrace::v1::Device roller;
    roller.set_device_id("R-1");
    roller.set_kind(rollertrace::v1::DEVICE_KIND_ROLLER);
    roller.set_model("DRS-540");
    roller.set_needle_count(540);
    roller.set_needle_length_mm(1.0);
    roller.set_rated_penetrations(1000000);
    ASSERT_TRUE(store::Register(*store_, roller, kNow - 10 * kHour).ok());
    rollertrace::v1::Device steriliser;
    steriliser.set_device_id("S-1");
    steriliser.set_kind(rollertrace::v1::DEVICE_KIND_STERILISER);
    steriliser.set_model("autoclave");
    ASSERT_TRUE(store::Register(*store_, steriliser, kNow - 10 * kHour).ok());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Sends cycle `number` with the steriliser's own report `bi`, as event `sequence`.
  void SendCycle(uint64_t sequence, uint64_t number, IndicatorResult bi) {
    rollertrace::v1::EventBatch b;
    b.set_device_id("S-1");
    auto* e = b.add_events();
    e->set_device_id("S-1");
    e->set_sequence(sequence);
    e->set_device_time_unix_ms(kNow - 2 * kHour);
    auto* c = e->mutable_sterilisation_cycle();
    c->set_cycle_number(number);
    c->set_method("steam_prevacuum");
    c->set_start_unix_ms(kNow - 3 * kHour);
    c->set_end_unix_ms(kNow - 2 * kHour);
    c->set_exposure_temperature_c(134.5);
    c->set_exposure_seconds(240);
    c->set_chemical_indicator(kPass);
    c->set_biological_indicator(bi);
    c->add_load("R-1");
    const rollertrace::v1::EventBatch* batches[] = {&b};
    auto r = store::Append(*store_, batches, kNow);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->findings.empty()) << r->findings[0].detail();
  }
  void RecordLab(uint64_t number, IndicatorResult result) {
    rollertrace::v1::BiologicalIndicatorRequest req;
    req.set_steriliser_id("S-1");
    req.set_cycle_number(number);
    req.set_result(result);
    req.set_recorded_by("lab");
    auto r = store::RecordBiologicalIndicator(*store_, req, kNow);
    ASSERT_TRUE(r.ok()) << "the lab's result must always be recorded: " << r.status();
  }

  std::filesystem::path dir_;
  std::unique_ptr<EventStore> store_;
};

TEST_P(IndicatorTest, TheLabsResultCountsAndAnyFailureRecalls) {
  const Row& row = GetParam();
  if (row.lab_first) {
    SendCycle(1, 1, kPending);
    RecordLab(1, row.lab);
    if (row.steriliser != kNone) SendCycle(2, 1, row.steriliser);  // the steriliser's later report
  } else {
    SendCycle(1, 1, row.steriliser == kNone ? kPending : row.steriliser);
    RecordLab(1, row.lab);
  }
  absl::StatusOr<rollertrace::v1::CycleRecord> c = store_->audit().GetCycle("S-1", 1);
  ASSERT_TRUE(c.ok()) << c.status();
  // The steriliser's report is kept beside the lab's; the lab's counts.
  EXPECT_EQ(c->device_biological_indicator(), row.steriliser == kNone ? kPending : row.steriliser);
  EXPECT_EQ(c->lab_biological_indicator(), row.lab);
  EXPECT_EQ(c->biological_indicator(), row.lab);
  EXPECT_EQ(c->bi_reports_size(), row.steriliser == kNone ? 1 : 2);
  // Any FAIL, from either source, starts the recall; two PASSes start none.
  const bool any_fail = row.steriliser == kFail || row.lab == kFail;
  absl::StatusOr<rollertrace::v1::RecallReport> recall = store_->audit().GetRecall("S-1", 1);
  EXPECT_EQ(recall.ok(), any_fail) << recall.status();
  // The roller's last cycle carries the result that counts.
  absl::StatusOr<rollertrace::v1::DeviceRecord> roller = store_->audit().GetDevice("R-1");
  ASSERT_TRUE(roller.ok());
  EXPECT_EQ(roller->state().roller().last_cycle().biological_indicator(), row.lab);
  if (any_fail) {
    EXPECT_EQ(roller->device().lifecycle(), rollertrace::v1::LIFECYCLE_LOCKED);
  }
  absl::StatusOr<rollertrace::v1::VerifyReport> verified = store_->verifier().Verify("");
  ASSERT_TRUE(verified.ok());
  EXPECT_TRUE(verified->intact());
}

INSTANTIATE_TEST_SUITE_P(EveryCombination, IndicatorTest,
                         ::testing::Values(Row{kNone, kPass, false}, Row{kNone, kFail, false},
                                           Row{kPass, kPass, false}, Row{kPass, kFail, false},
                                           Row{kFail, kPass, false}, Row{kFail, kFail, false},
                                           Row{kPass, kPass, true}, Row{kPass, kFail, true},
                                           Row{kFail, kPass, true}, Row{kFail, kFail, true}),
                         Name);

// Only a lab-confirmed PASS is the negative indicator a recall reaches back to.
TEST_F(IndicatorTest, ARecallReachesPastASterilisersOwnPass) {
  SendCycle(1, 1, kPass);  // the steriliser's word only
  SendCycle(2, 2, kPending);
  SendCycle(3, 3, kPending);
  RecordLab(2, kPass);
  RecordLab(3, kFail);
  absl::StatusOr<rollertrace::v1::RecallReport> recall = store_->audit().GetRecall("S-1", 3);
  ASSERT_TRUE(recall.ok()) << recall.status();
  EXPECT_EQ(recall->last_negative_cycle(), 2u);

  SendCycle(4, 4, kPass);
  SendCycle(5, 5, kFail);  // the steriliser's own FAIL recalls back past its own PASS of cycle 4
  absl::StatusOr<rollertrace::v1::RecallReport> again = store_->audit().GetRecall("S-1", 5);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->last_negative_cycle(), 2u);
  std::vector<uint64_t> suspect;
  for (const auto& c : again->suspect_cycles()) suspect.push_back(c.cycle().cycle_number());
  EXPECT_EQ(suspect, (std::vector<uint64_t>{3, 4, 5}));
}

// A recall's lock and an unlock are device commands: each waits in the
// store's outbox, under its own index, until a bridge says it was published,
// and a store opened again still holds them (ingestd sends them again).
TEST_F(IndicatorTest, DeviceCommandsWaitInTheOutboxUntilPublishedAndSurviveAReopen) {
  auto outbox = [&] {
    absl::StatusOr<std::vector<rollertrace::v1::Command>> commands = store_->OutboxCommands();
    EXPECT_TRUE(commands.ok()) << commands.status();
    std::vector<std::string> out;
    for (const auto& c : commands.value_or(std::vector<rollertrace::v1::Command>{})) {
      out.push_back(std::to_string(c.outbox_index()) + " " + c.command() + " " + c.device_id());
    }
    return out;
  };
  EXPECT_TRUE(outbox().empty());
  SendCycle(1, 1, kFail);  // the recall locks R-1
  EXPECT_EQ(outbox(), (std::vector<std::string>{"1 lock R-1"}));

  store_.reset();
  auto reopened = EventStore::Open(dir_.string());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  EXPECT_EQ(outbox(), (std::vector<std::string>{"1 lock R-1"}));

  rollertrace::v1::Command unlock;
  ASSERT_TRUE(store::Unlock(*store_, "R-1", "re-sterilised", "admin", kNow + kHour, &unlock).ok());
  EXPECT_EQ(unlock.outbox_index(), 2u);
  EXPECT_EQ(outbox(), (std::vector<std::string>{"1 lock R-1", "2 unlock R-1"}));

  const uint64_t first[] = {1};
  ASSERT_TRUE(store_->Execute(CommandsPublishedCommand(*store_, first, kNow + kHour)).ok());
  EXPECT_EQ(outbox(), (std::vector<std::string>{"2 unlock R-1"}));
  // Said twice (a bridge that told two streams): nothing changes.
  ASSERT_TRUE(store_->Execute(CommandsPublishedCommand(*store_, first, kNow + kHour)).ok());
  EXPECT_EQ(outbox(), (std::vector<std::string>{"2 unlock R-1"}));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Execute(CommandsPublishedCommand(*store_, {}, kNow + kHour)).status()));
  const uint64_t second[] = {2};
  ASSERT_TRUE(store_->Execute(CommandsPublishedCommand(*store_, second, kNow + kHour)).ok());
  EXPECT_TRUE(outbox().empty());
}

}  // namespace
}  // namespace rollertrace::store
