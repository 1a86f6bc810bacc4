// AuditReader: every read of the audit (DOMAIN.md, "What a compliance officer
// must be able to answer"), read-only. Each call reads one snapshot, so a
// trail or a report is consistent while ingestion goes on.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "rollertrace/v1/records.pb.h"
#include "rollertrace/v1/services.pb.h"
#include "store/db.h"

namespace rollertrace::store {

struct ViolationFilter {
  int64_t from_unix_ms = 0;
  int64_t to_unix_ms = 0;  // 0: no bound
  std::string rule;
  std::string device_id;
  rollertrace::v1::Severity severity = rollertrace::v1::SEVERITY_UNSPECIFIED;
  // Paging: at most `limit` (0: no limit), after the violation whose key is
  // `after_key` (empty: from the start).
  size_t limit = 0;
  std::string after_key;
};

// One page of violations; next_key is empty on the last page.
struct ViolationPage {
  std::vector<rollertrace::v1::Violation> violations;
  std::string next_key;
};

class AuditReader {
 public:
  explicit AuditReader(const Db& db) : db_(db) {}

  absl::StatusOr<rollertrace::v1::DeviceRecord> GetDevice(std::string_view device_id) const;
  // KIND_UNSPECIFIED lists every kind. Ordered by device id.
  absl::StatusOr<std::vector<rollertrace::v1::DeviceRecord>> ListDevices(rollertrace::v1::DeviceKind kind) const;
  // Events of one device from `from_sequence` on, in sequence order.
  absl::StatusOr<rollertrace::v1::HistoryResponse> History(std::string_view device_id, uint64_t from_sequence,
                                                           uint32_t limit) const;
  // Open gaps, then closed ones.
  absl::StatusOr<std::vector<rollertrace::v1::Gap>> Gaps(std::string_view device_id) const;
  // Sessions of one device, in order.
  absl::StatusOr<std::vector<rollertrace::v1::SessionRecord>> Sessions(std::string_view device_id) const;
  absl::StatusOr<rollertrace::v1::CycleRecord> GetCycle(std::string_view steriliser_id, uint64_t cycle) const;
  absl::StatusOr<rollertrace::v1::RecallReport> GetRecall(std::string_view steriliser_id, uint64_t cycle) const;
  absl::StatusOr<ViolationPage> ListViolations(const ViolationFilter& filter) const;
  // Trails, read from key ranges and indexes only; at most events_limit of
  // the roller's raw events (from its first).
  absl::StatusOr<rollertrace::v1::RollerTrail> RollerTrail(std::string_view device_id, size_t events_limit = 0) const;
  // REQUIRES: a pseudonym (the service pseudonymises a clinic reference first).
  absl::StatusOr<rollertrace::v1::PatientTrail> PatientTrail(std::string_view patient_pseudonym) const;
  absl::StatusOr<rollertrace::v1::CycleTrail> CycleTrail(std::string_view steriliser_id, uint64_t cycle) const;
  // The compliance report of [from, to), from the time indexes (report.cc).
  absl::StatusOr<rollertrace::v1::PeriodReport> Report(int64_t from_unix_ms, int64_t to_unix_ms,
                                                       int64_t now_unix_ms) const;
  // Cycles whose biological indicator is still pending (or not recorded).
  absl::StatusOr<uint64_t> CountPendingBiologicalIndicators() const;

 private:
  const Db& db_;
};

}  // namespace rollertrace::store
