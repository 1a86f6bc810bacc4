// Inside the audit reader: queries over a ReadView that more than one of its
// calls (and report.cc) compose. Not for use outside audit_reader.cc and report.cc.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "store/audit_reader.h"

namespace rollertrace::store::audit {

bool IndicatorKnown(rollertrace::v1::IndicatorResult r);
absl::StatusOr<rollertrace::v1::DeviceRecord> Device(const ReadView& view, std::string_view device_id);
absl::StatusOr<std::vector<rollertrace::v1::DeviceRecord>> Devices(const ReadView& view,
                                                                   rollertrace::v1::DeviceKind kind);
absl::StatusOr<rollertrace::v1::CycleRecord> Cycle(const ReadView& view, std::string_view steriliser_id,
                                                   uint64_t cycle);
absl::StatusOr<std::vector<rollertrace::v1::SessionRecord>> Sessions(const ReadView& view, std::string_view device_id);
absl::StatusOr<std::vector<rollertrace::v1::Finding>> Findings(const ReadView& view, std::string_view device_id);
absl::StatusOr<rollertrace::v1::HistoryResponse> History(const ReadView& view, std::string_view device_id,
                                                         uint64_t from_sequence, uint32_t limit);
absl::Status IndexedSessions(const ReadView& view, Family index, const std::string& prefix,
                             const std::function<void(rollertrace::v1::SessionRecord&)>& take);

}  // namespace rollertrace::store::audit
