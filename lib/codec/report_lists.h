// A period report's lists are bounded in bytes, so a report always fits in
// one gRPC answer (4 MiB by default) whatever the store holds: issue #14 saw
// devices fill a period with records until `rollerctl report` failed for
// everyone. The counts of a report stay whole; a list keeps what fits in its
// share and counts the rest in PeriodReport.omitted, to be read page by page
// (ListViolations, GetCycle, Recall, the trails).
#pragma once

#include <cstddef>
#include <cstdint>

#include <google/protobuf/message.h>

#include "rollertrace/v1/services.pb.h"

namespace rollertrace::codec {

// Each list's share of a report, in bytes: 3 MiB in all, leaving room for the
// counts and the buckets (at most one a week to 2100: ~140 KiB).
struct ReportListBytes {
  static constexpr size_t kViolations = 1 << 20;
  static constexpr size_t kCycles = 768 << 10;
  static constexpr size_t kPendingIndicators = 256 << 10;
  static constexpr size_t kLockedRollers = 256 << 10;
  static constexpr size_t kRetiredRollers = 128 << 10;
  static constexpr size_t kRecalls = 384 << 10;
  static constexpr size_t kFindings = 256 << 10;
};

// One list's share: Take says whether one more element fits, counting the
// ones that do not.
class ListShare {
 public:
  explicit ListShare(size_t bytes) : left_(bytes) {}
  bool Take(const google::protobuf::Message& element);
  uint32_t omitted() const { return omitted_; }

 private:
  size_t left_;
  uint32_t omitted_ = 0;
};

// Cuts every list of `report` to its share (after shards' reports were
// merged), adding what it cut to report->omitted().
void FitReportLists(rollertrace::v1::PeriodReport* report);

// The same for the trails and a History page: each list keeps to its share.
// A trail's raw events and a History page are cut, never counted: their next
// sequence says where to continue.
struct TrailListBytes {
  static constexpr size_t kEvents = 1536 << 10;  // a roller trail's raw events
  static constexpr size_t kHistory = 3 << 20;    // a History page
  static constexpr size_t kSessions = 1 << 20;   // a patient's or cycle's: twice this
  static constexpr size_t kOther = 256 << 10;    // log, cycles, violations, findings
};
void FitTrailLists(rollertrace::v1::RollerTrail* trail);
void FitTrailLists(rollertrace::v1::PatientTrail* trail);
void FitTrailLists(rollertrace::v1::CycleTrail* trail);
void FitHistoryPage(rollertrace::v1::HistoryResponse* page);

}  // namespace rollertrace::codec
