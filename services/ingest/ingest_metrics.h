// ingestd's metrics, named per ARCHITECTURE.md's contract (docs/METRICS.md).
#pragma once

#include <string>

#include "metrics/metrics.h"
#include "rollertrace/v1/records.pb.h"
#include "rollertrace/v1/services.pb.h"

namespace rollertrace::ingest {

struct IngestMetrics {
  explicit IngestMetrics(metrics::Metrics& m)
      : ingested(m.Counter("rollertrace_events_ingested_total", "Events committed to the store, by event type")),
        rejected(m.Counter("rollertrace_events_rejected_total", "Events refused by ingestd, by reason")),
        duplicates(m.Counter("rollertrace_events_duplicate_total",
                             "Events received again after they were committed (acknowledged, stored once)")
                       .Add({})),
        conflicting(m.Counter("rollertrace_events_conflicting_total",
                              "Events sent again under a stored sequence with other content (refused, the stored "
                              "event kept, an EVENT_CONFLICT finding)")
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
                            "(source=ingestd) or from the bridge's receipt from MQTT (source=bridge) to commit")),
        latency_device(latency.Add({{"source", "device"}}, metrics::Metrics::LatencyBuckets())),
        latency_ingestd(latency.Add({{"source", "ingestd"}}, metrics::Metrics::LatencyBuckets())),
        latency_bridge(latency.Add({{"source", "bridge"}}, metrics::Metrics::LatencyBuckets())),
        violations(m.Counter("rollertrace_violations_total",
                             "Sessions that started while a deny rule held, by rule and severity")),
        decisions(m.Counter("rollertrace_decisions_total",
                            "Authorisation decisions, by result (allow, deny) and source (authorize: asked before "
                            "use; ingest: the re-check of an ingested session start)")),
        rule_hits(m.Counter("rollertrace_rule_hits_total", "Rules that fired in decisions, by rule and severity")),
        cycles(m.Counter("rollertrace_sterilisation_cycles_total", "Sterilisation cycles recorded, by result")),
        bi_results(m.Counter("rollertrace_biological_indicator_results_total",
                             "Biological-indicator results recorded, by result")),
        recalls(m.Counter("rollertrace_recalls_total", "Recalls started by a failed biological indicator").Add({})),
        commands(m.Counter("rollertrace_device_commands_total", "Commands issued to devices, by command")),
        commands_unpublished(m.Gauge("rollertrace_device_commands_unpublished",
                                     "Device commands stored and not yet published by a bridge (waiting for one, "
                                     "or sent and not confirmed)")
                                 .Add({})),
        findings(m.Counter("rollertrace_findings_total",
                           "Device input refused or flagged and kept as a finding, by kind (CYCLE_TIME, "
                           "CYCLE_CONFLICT, EVENT_CONFLICT, CLOCK_AHEAD)")),
        audit_requests(m.Counter("rollertrace_audit_requests_total",
                                 "Compliance operations (verify, report, export, import, backup), by result")),
        archive_records(m.Counter("rollertrace_archive_records_total",
                                  "Records written to (export) or loaded from (import) archives")),
        broken_chains(m.Gauge("rollertrace_verify_broken_chains",
                              "Broken hash chains found by the latest verification of the whole store")
                          .Add({})),
        verified_at(m.Gauge("rollertrace_verify_last_run_timestamp_seconds",
                            "When the whole store was last verified (unix seconds)")
                        .Add({})) {}

  prometheus::Family<prometheus::Counter>& ingested;
  prometheus::Family<prometheus::Counter>& rejected;
  prometheus::Counter& duplicates;
  prometheus::Counter& conflicting;
  prometheus::Counter& gaps;
  prometheus::Histogram& commit_events;
  prometheus::Histogram& commit_seconds;
  prometheus::Family<prometheus::Histogram>& latency;
  prometheus::Histogram& latency_device;
  prometheus::Histogram& latency_ingestd;
  prometheus::Histogram& latency_bridge;

  prometheus::Family<prometheus::Counter>& violations;
  prometheus::Family<prometheus::Counter>& decisions;
  prometheus::Family<prometheus::Counter>& rule_hits;
  prometheus::Family<prometheus::Counter>& cycles;
  prometheus::Family<prometheus::Counter>& bi_results;
  prometheus::Counter& recalls;
  prometheus::Family<prometheus::Counter>& commands;
  prometheus::Gauge& commands_unpublished;
  prometheus::Family<prometheus::Counter>& findings;
  prometheus::Family<prometheus::Counter>& audit_requests;
  prometheus::Family<prometheus::Counter>& archive_records;
  prometheus::Gauge& broken_chains;
  prometheus::Gauge& verified_at;

  void Audited(const std::string& operation, bool ok) {
    audit_requests.Add({{"operation", operation}, {"result", ok ? "ok" : "error"}}).Increment();
  }
  // After a verification of the whole store.
  void Verified(const rollertrace::v1::VerifyReport& report, int64_t now_unix_ms) {
    broken_chains.Set(report.breaks_size());
    verified_at.Set(static_cast<double>(now_unix_ms) / 1000.0);
  }

  void Rejected(const std::string& reason, double n = 1) { rejected.Add({{"reason", reason}}).Increment(n); }

  static std::string SeverityLabel(rollertrace::v1::Severity s) {
    return s == rollertrace::v1::SEVERITY_DENY ? "deny" : s == rollertrace::v1::SEVERITY_WARN ? "warn" : "none";
  }
  void Decided(const rollertrace::v1::Decision& d, const std::string& source) {
    decisions.Add({{"result", d.allowed() ? "allow" : "deny"}, {"source", source}}).Increment();
    for (const auto& h : d.hits()) rule_hits.Add({{"rule", h.rule()}, {"severity", SeverityLabel(h.severity())}}).Increment();
  }
};

}  // namespace rollertrace::ingest
