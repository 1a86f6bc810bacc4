// FleetGauges: the state of the fleet as Prometheus gauges, recomputed from
// the store on a timer: rollers by lifecycle state and wear band, rollers
// worn-soon and locked, biological indicators pending, silent devices, and —
// one series per roller, only while it holds — rollertrace_worn_roller_in_use
// {device_id} for a worn roller in session. Also RocksDB's own figures.
//
// It keeps what the gauges need of every device and, on each refresh,
// re-reads only the devices the store wrote since the last one
// (EventStore::TakeChangedDevices); every device on the first refresh, when
// the store lost count, and after a failed read. Reading every device each
// second was a fifth of ingestd's CPU under a 10,000-roller fleet: each
// device's record has many versions in the memtable, and a scan steps over
// all of them (docs/BENCHMARKS.md, fourteenth session).
#pragma once

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>

#include "metrics/metrics.h"
#include "rules/policy.h"
#include "store/event_store.h"

namespace rollertrace::ingest {

class FleetGauges {
 public:
  // Borrows store and metrics. A device is silent when nothing was received
  // from it for `silent_after`.
  FleetGauges(store::EventStore& store, metrics::Metrics& metrics, rules::Policy policy,
              std::chrono::milliseconds silent_after);
  // Stops and joins the refresher, if started.
  ~FleetGauges();
  FleetGauges(const FleetGauges&) = delete;
  FleetGauges& operator=(const FleetGauges&) = delete;

  // Recomputes every gauge once.
  void Refresh(int64_t now_unix_ms);
  // Refreshes every `interval` on a thread of its own.
  void Start(std::chrono::milliseconds interval);
  // Device records read by the refreshes so far.
  uint64_t devices_read() const { return devices_read_; }

 private:
  // What the gauges need of one device.
  struct Summary {
    rollertrace::v1::DeviceKind kind = rollertrace::v1::DEVICE_KIND_UNSPECIFIED;
    rollertrace::v1::Lifecycle lifecycle = rollertrace::v1::LIFECYCLE_UNSPECIFIED;
    int64_t last_receive_unix_ms = 0;
    double wear = 0;  // rollers only
    bool in_session = false;
  };
  static Summary Summarize(const rollertrace::v1::DeviceRecord& record);
  // Brings devices_ up to date with the store; false when it could not (the
  // gauges then keep their values until a later refresh can).
  bool Update();

  store::EventStore& store_;
  rules::Policy policy_;
  std::chrono::milliseconds silent_after_;
  prometheus::Family<prometheus::Gauge>& by_state_;
  prometheus::Family<prometheus::Gauge>& by_wear_;
  prometheus::Gauge& worn_soon_;
  prometheus::Gauge& locked_;
  prometheus::Gauge& bi_pending_;
  prometheus::Gauge& silent_;
  prometheus::Family<prometheus::Gauge>& worn_in_use_;
  prometheus::Family<prometheus::Gauge>& rocksdb_;
  std::set<std::string> worn_in_use_ids_;
  // The refresher's own (Refresh is never called on two threads at once).
  std::unordered_map<std::string, Summary> devices_;
  bool read_all_ = true;  // the next update reads every device
  std::atomic<uint64_t> devices_read_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace rollertrace::ingest
