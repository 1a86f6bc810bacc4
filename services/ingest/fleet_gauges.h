// FleetGauges: the state of the fleet as Prometheus gauges, recomputed from
// the store on a timer: rollers by lifecycle state and wear band, rollers
// worn-soon and locked, biological indicators pending, silent devices, and —
// one series per roller, only while it holds — rollertrace_worn_roller_in_use
// {device_id} for a worn roller in session. Also RocksDB's own figures.
#pragma once

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>

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

 private:
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
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace rollertrace::ingest
