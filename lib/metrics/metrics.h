// The one metrics helper: a prometheus-cpp registry, served over HTTP at
// /metrics when a listen address is given. Every RollerTrace metric name
// starts with "rollertrace_" (ARCHITECTURE.md).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"

namespace rollertrace::metrics {

class Metrics {
 public:
  // listen: "127.0.0.1:9464", or empty for a registry that is not served
  // (tests, benchmarks). Fails with a clear message if the port is taken.
  static absl::StatusOr<std::unique_ptr<Metrics>> Create(const std::string& listen);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  prometheus::Family<prometheus::Counter>& Counter(const std::string& name, const std::string& help);
  prometheus::Family<prometheus::Gauge>& Gauge(const std::string& name, const std::string& help);
  prometheus::Family<prometheus::Histogram>& Histogram(const std::string& name, const std::string& help);

  prometheus::Registry& registry() { return *registry_; }

  // Buckets for durations in seconds, 0.5 ms to 60 s.
  static prometheus::Histogram::BucketBoundaries LatencyBuckets();
  // Buckets for counts, 1 to 4096 in powers of two.
  static prometheus::Histogram::BucketBoundaries CountBuckets();

 private:
  Metrics() = default;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace rollertrace::metrics
