// ingestd's metrics, named per ARCHITECTURE.md's contract (docs/METRICS.md).
#pragma once

#include <string>

#include "metrics/metrics.h"

namespace rollertrace::ingest {

struct IngestMetrics {
  explicit IngestMetrics(metrics::Metrics& m)
      : ingested(m.Counter("rollertrace_events_ingested_total", "Events committed to the store, by event type")),
        rejected(m.Counter("rollertrace_events_rejected_total", "Events refused by ingestd, by reason")),
        duplicates(m.Counter("rollertrace_events_duplicate_total",
                             "Events received again after they were committed (acknowledged, stored once)")
                       .Add({})),
        gaps(m.Counter("rollertrace_sequence_gaps_opened_total", "Gaps observed in devices' sequence numbers")
                 .Add({})),
        commit_events(m.Histogram("rollertrace_ingest_commit_events", "Events in one group commit")
                          .Add({}, metrics::Metrics::CountBuckets())),
        commit_seconds(m.Histogram("rollertrace_ingest_commit_seconds",
                                   "Time to append one commit group with the WAL synced")
                           .Add({}, metrics::Metrics::LatencyBuckets())),
        latency(m.Histogram("rollertrace_ingest_latency_seconds",
                            "From the device's event time (source=device) or from ingestd's receipt "
                            "(source=ingestd) to commit")),
        latency_device(latency.Add({{"source", "device"}}, metrics::Metrics::LatencyBuckets())),
        latency_ingestd(latency.Add({{"source", "ingestd"}}, metrics::Metrics::LatencyBuckets())) {}

  prometheus::Family<prometheus::Counter>& ingested;
  prometheus::Family<prometheus::Counter>& rejected;
  prometheus::Counter& duplicates;
  prometheus::Counter& gaps;
  prometheus::Histogram& commit_events;
  prometheus::Histogram& commit_seconds;
  prometheus::Family<prometheus::Histogram>& latency;
  prometheus::Histogram& latency_device;
  prometheus::Histogram& latency_ingestd;

  void Rejected(const std::string& reason, double n = 1) { rejected.Add({{"reason", reason}}).Increment(n); }
};

}  // namespace rollertrace::ingest
