#include "ingest/fleet_gauges.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "store/commands.h"
#include "store_fixture.h"

namespace rollertrace::ingest {
namespace {

constexpr int64_t kNow = 1'790'000'000'000;  // device clocks and "now" of the refreshes

class FleetGaugesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::FreshDir("fleet_gauges_test");
    store_ = std::move(*store::EventStore::Open(dir_.string()));
    metrics_ = std::move(*metrics::Metrics::Create(""));
    test::RegisterRollers(*store_, 4, 1920, kNow);  // 10 revolutions wear one out
    rollertrace::v1::Device s;
    s.set_device_id("S-0");
    s.set_kind(rollertrace::v1::DEVICE_KIND_STERILISER);
    ASSERT_TRUE(store::Register(*store_, s, kNow).ok());
    gauges_ = std::make_unique<FleetGauges>(*store_, *metrics_, rules::Policy{}, std::chrono::minutes(10));
  }
  void TearDown() override {
    gauges_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // The value of gauge `name` with label `label`=`value` (or no label), if the series exists.
  std::optional<double> Gauge(const std::string& name, const std::string& label = "", const std::string& value = "") {
    for (const auto& family : metrics_->registry().Collect()) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) {
        bool match = label.empty();
        for (const auto& l : m.label) match = match || (l.name == label && l.value == value);
        if (match) return m.gauge.value;
      }
    }
    return std::nullopt;
  }

  void Append(const std::string& device, uint64_t sequence, rollertrace::v1::Event event) {
    rollertrace::v1::EventBatch batch;
    batch.set_device_id(device);
    event.set_device_id(device);
    event.set_sequence(sequence);
    event.set_device_time_unix_ms(kNow + static_cast<int64_t>(sequence) * 1000);
    *batch.add_events() = std::move(event);
    const rollertrace::v1::EventBatch* batches[] = {&batch};
    absl::StatusOr<store::CommandResult> r = store::Append(*store_, batches, kNow + static_cast<int64_t>(sequence) * 1000);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->rejections.empty()) << r->rejections.front().ShortDebugString();
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::EventStore> store_;
  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<FleetGauges> gauges_;
};

// The first refresh reads every device; later ones only those written since,
// and the gauges still follow the store.
TEST_F(FleetGaugesTest, ARefreshReadsOnlyTheDevicesWrittenSinceTheLastOne) {
  gauges_->Refresh(kNow);
  EXPECT_EQ(gauges_->devices_read(), 5u);
  EXPECT_EQ(Gauge("rollertrace_rollers", "state", "registered"), 4);
  EXPECT_EQ(Gauge("rollertrace_rollers", "state", "retired"), 0);
  EXPECT_EQ(Gauge("rollertrace_devices_silent"), 5) << "none has been heard from";

  gauges_->Refresh(kNow);
  EXPECT_EQ(gauges_->devices_read(), 5u) << "nothing was written";

  ASSERT_TRUE(store::Retire(*store_, "R-1", "dropped", kNow).ok());
  rollertrace::v1::Event heartbeat;
  heartbeat.mutable_heartbeat()->set_battery_fraction(1);
  Append("R-2", 1, heartbeat);
  gauges_->Refresh(kNow + 1000);
  EXPECT_EQ(gauges_->devices_read(), 7u) << "R-1 and R-2 only";
  EXPECT_EQ(Gauge("rollertrace_rollers", "state", "registered"), 3);
  EXPECT_EQ(Gauge("rollertrace_rollers", "state", "retired"), 1);
  EXPECT_EQ(Gauge("rollertrace_devices_silent"), 3) << "R-1 retired, R-2 heard from";
}

// rollertrace_worn_roller_in_use{device_id} exists while a worn roller is in
// session, and goes when the session ends: both seen by incremental refreshes.
TEST_F(FleetGaugesTest, AWornRollerInSessionIsASeriesUntilTheSessionEnds) {
  gauges_->Refresh(kNow);
  EXPECT_FALSE(Gauge("rollertrace_worn_roller_in_use", "device_id", "R-3").has_value());

  rollertrace::v1::Event start;
  start.mutable_session_started()->set_session_id("s-1");
  start.mutable_session_started()->set_patient_pseudonym("p-1");
  Append("R-3", 1, start);
  rollertrace::v1::Event sample;
  sample.mutable_usage_sample()->set_session_id("s-1");
  sample.mutable_usage_sample()->set_revolutions(12);
  Append("R-3", 2, sample);
  gauges_->Refresh(kNow + 3000);
  EXPECT_EQ(Gauge("rollertrace_worn_roller_in_use", "device_id", "R-3"), 1);
  EXPECT_EQ(Gauge("rollertrace_rollers_by_wear", "band", "100%+"), 1);

  rollertrace::v1::Event end;
  end.mutable_session_ended()->set_session_id("s-1");
  end.mutable_session_ended()->set_total_revolutions(12);
  Append("R-3", 3, end);
  gauges_->Refresh(kNow + 4000);
  EXPECT_FALSE(Gauge("rollertrace_worn_roller_in_use", "device_id", "R-3").has_value());
  EXPECT_EQ(gauges_->devices_read(), 5u + 2u) << "R-3 once a refresh";
}

// Writes that nobody collects are not kept without bound: past the limit the
// store answers "all", and the next refresh reads every device again.
TEST_F(FleetGaugesTest, PastItsLimitTheStoreAsksForEveryDeviceToBeReadAgain) {
  gauges_.reset();
  store_.reset();
  store::StoreOptions options;
  options.changed_devices_kept = 3;
  store_ = std::move(*store::EventStore::Open(dir_.string(), options));
  gauges_ = std::make_unique<FleetGauges>(*store_, *metrics_, rules::Policy{}, std::chrono::minutes(10));
  gauges_->Refresh(kNow);
  EXPECT_EQ(gauges_->devices_read(), 5u);

  rollertrace::v1::Event heartbeat;
  heartbeat.mutable_heartbeat()->set_battery_fraction(1);
  for (int i = 0; i < 3; ++i) Append("R-" + std::to_string(i), 1, heartbeat);
  gauges_->Refresh(kNow);
  EXPECT_EQ(gauges_->devices_read(), 5u + 3u) << "three written, three kept";
  for (int i = 0; i < 4; ++i) Append("R-" + std::to_string(i), 2, heartbeat);
  gauges_->Refresh(kNow);
  EXPECT_EQ(gauges_->devices_read(), 5u + 3u + 5u) << "four written, more than kept: every device";
  EXPECT_EQ(Gauge("rollertrace_devices_silent"), 1) << "only S-0";
}

// The refresher runs on its own thread while commits note the devices they
// wrote: once the writes stop, the next refresh agrees with the store.
TEST_F(FleetGaugesTest, ARefresherBesideTheWriterEndsAgreeingWithTheStore) {
  gauges_->Start(std::chrono::milliseconds(1));
  rollertrace::v1::Event heartbeat;
  heartbeat.mutable_heartbeat()->set_battery_fraction(1);
  for (uint64_t s = 1; s <= 50; ++s) {
    for (int i = 0; i < 3; ++i) Append("R-" + std::to_string(i), s, heartbeat);
  }
  ASSERT_TRUE(store::Retire(*store_, "R-3", "dropped", kNow).ok());
  // The refresher's clock is the wall clock: every device is silent by it,
  // but a retired one is not counted.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (Gauge("rollertrace_rollers", "state", "retired") != 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(Gauge("rollertrace_rollers", "state", "retired"), 1);
  EXPECT_EQ(Gauge("rollertrace_rollers", "state", "registered"), 3);
  EXPECT_EQ(Gauge("rollertrace_devices_silent"), 4);
}

}  // namespace
}  // namespace rollertrace::ingest
