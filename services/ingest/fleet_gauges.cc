#include "ingest/fleet_gauges.h"

#include "rules/rules.h"

namespace rollertrace::ingest {

FleetGauges::FleetGauges(store::EventStore& store, metrics::Metrics& m, rules::Policy policy,
                         std::chrono::milliseconds silent_after)
    : store_(store),
      policy_(std::move(policy)),
      silent_after_(silent_after),
      by_state_(m.Gauge("rollertrace_rollers", "Registered rollers by lifecycle state")),
      by_wear_(m.Gauge("rollertrace_rollers_by_wear", "Rollers (not retired) by needle-wear band")),
      worn_soon_(m.Gauge("rollertrace_rollers_worn_soon", "Rollers at or above the worn-soon wear, below worn")
                     .Add({})),
      locked_(m.Gauge("rollertrace_rollers_locked", "Rollers locked by a violation or a recall").Add({})),
      bi_pending_(m.Gauge("rollertrace_biological_indicators_pending",
                          "Sterilisation cycles whose biological-indicator result has not arrived")
                      .Add({})),
      silent_(m.Gauge("rollertrace_devices_silent", "Registered, not retired devices heard from longest ago than "
                                                    "the silence threshold (or never)")
                  .Add({})),
      worn_in_use_(m.Gauge("rollertrace_worn_roller_in_use",
                           "1 while a roller at or above its worn limit is in session; the series exists only then")),
      rocksdb_(m.Gauge("rollertrace_rocksdb_property", "RocksDB integer properties of ingestd's store")) {}

FleetGauges::~FleetGauges() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void FleetGauges::Start(std::chrono::milliseconds interval) {
  thread_ = std::thread([this, interval] {
    while (!stop_) {
      Refresh(std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count());
      for (auto slept = std::chrono::milliseconds(0); slept < interval && !stop_;
           slept += std::chrono::milliseconds(50)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  });
}

FleetGauges::Summary FleetGauges::Summarize(const rollertrace::v1::DeviceRecord& r) {
  Summary s;
  s.kind = r.device().kind();
  s.lifecycle = r.device().lifecycle();
  s.last_receive_unix_ms = r.state().last_receive_unix_ms();
  s.in_session = !r.state().roller().open_session_id().empty();
  if (s.kind == rollertrace::v1::DEVICE_KIND_ROLLER) {
    rules::RollerFacts f;
    f.device = r.device();
    f.use = r.state().roller();
    f.total_revolutions = r.state().total_revolutions();
    s.wear = rules::Wear(f);
  }
  return s;
}

bool FleetGauges::Update() {
  store::EventStore::ChangedDevices changed = store_.TakeChangedDevices();
  if (changed.all || read_all_) {
    auto devices = store_.audit().ListDevices(rollertrace::v1::DEVICE_KIND_UNSPECIFIED);
    if (!devices.ok()) {
      read_all_ = true;
      return false;
    }
    devices_.clear();
    for (const auto& r : *devices) devices_[r.device().device_id()] = Summarize(r);
    devices_read_ += devices->size();
    read_all_ = false;
    return true;
  }
  std::set<std::string> ids(std::make_move_iterator(changed.ids.begin()), std::make_move_iterator(changed.ids.end()));
  for (const std::string& id : ids) {
    absl::StatusOr<rollertrace::v1::DeviceRecord> r = store_.audit().GetDevice(id);
    ++devices_read_;
    if (r.ok()) {
      devices_[id] = Summarize(*r);
    } else if (absl::IsNotFound(r.status())) {
      devices_.erase(id);
    } else {
      read_all_ = true;  // this device's change is not in devices_: read them all next time
      return false;
    }
  }
  return true;
}

void FleetGauges::Refresh(int64_t now) {
  for (const auto& [name, value] : store_.Properties()) {
    rocksdb_.Add({{"property", name}}).Set(static_cast<double>(value));
  }
  if (!Update()) return;
  std::map<rollertrace::v1::Lifecycle, double> by_lifecycle;
  for (int l = rollertrace::v1::LIFECYCLE_REGISTERED; l <= rollertrace::v1::LIFECYCLE_RETIRED; ++l) {
    by_lifecycle[static_cast<rollertrace::v1::Lifecycle>(l)] = 0;
  }
  std::map<std::string, double> wear = {{"0-50%", 0}, {"50-80%", 0}, {"80-100%", 0}, {"100%+", 0}};
  double worn_soon = 0, locked = 0, silent = 0;
  std::set<std::string> worn_now;
  for (const auto& [id, d] : devices_) {
    const bool retired = d.lifecycle == rollertrace::v1::LIFECYCLE_RETIRED;
    if (!retired && now - d.last_receive_unix_ms > silent_after_.count()) ++silent;
    if (d.kind != rollertrace::v1::DEVICE_KIND_ROLLER) continue;
    ++by_lifecycle[d.lifecycle];
    if (d.lifecycle == rollertrace::v1::LIFECYCLE_LOCKED) ++locked;
    if (retired) continue;
    const double w = d.wear;
    ++wear[w < 0.5 ? "0-50%" : w < 0.8 ? "50-80%" : w < 1.0 ? "80-100%" : "100%+"];
    if (w >= policy_.worn_soon_fraction && w < policy_.worn_fraction) ++worn_soon;
    if (w >= policy_.worn_fraction && d.in_session) worn_now.insert(id);
  }
  for (const auto& [lifecycle, n] : by_lifecycle) {
    // LIFECYCLE_IN_SESSION -> in_session
    std::string name = rollertrace::v1::Lifecycle_Name(lifecycle);
    name = name.size() > 10 ? name.substr(10) : name;
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    by_state_.Add({{"state", name}}).Set(n);
  }
  for (const auto& [band, n] : wear) by_wear_.Add({{"band", band}}).Set(n);
  worn_soon_.Set(worn_soon);
  locked_.Set(locked);
  silent_.Set(silent);
  for (const auto& id : worn_in_use_ids_) {
    if (!worn_now.count(id)) worn_in_use_.Remove(&worn_in_use_.Add({{"device_id", id}}));
  }
  for (const auto& id : worn_now) worn_in_use_.Add({{"device_id", id}}).Set(1);
  worn_in_use_ids_ = std::move(worn_now);
  auto pending = store_.audit().CountPendingBiologicalIndicators();
  if (pending.ok()) bi_pending_.Set(static_cast<double>(*pending));
}

}  // namespace rollertrace::ingest
