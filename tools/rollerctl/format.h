// How rollerctl shows things to a person: aligned tables, readable times.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "rollertrace/v1/records.pb.h"

namespace rollertrace::rollerctl {

// "2026-11-25 16:53:13 UTC"; "-" for 0.
std::string FormatTime(int64_t unix_ms);
// A pseudonym in a table or a line of text: "p-" and its first 16 hex digits,
// then "…". Full where it is handed on (patients to follow up, JSON, CSV).
std::string ShortPseudonym(const std::string& pseudonym);
// "2026-11-25", "2026-11-25T16:53:13Z" or unix milliseconds; -1 if none of them.
int64_t ParseTime(const std::string& text);
// "25 Nov 2026".
std::string FormatDate(int64_t unix_ms);
// "3 days 4 h", "2 h 5 min", "45 s".
std::string FormatDuration(int64_t ms);
std::string IndicatorName(rollertrace::v1::IndicatorResult result);
// "BI FAIL (lab FAIL by lab-7; steriliser reported pass)": the result that
// counts, then whose word it is and what the other source said.
std::string IndicatorLine(const rollertrace::v1::CycleRecord& cycle);
// Lower-case hex of bytes.
std::string SeverityName(rollertrace::v1::Severity severity);
// The end of a period given as its last day: "2026-11-30" is the first instant
// of 1 Dec; a time or unix ms is taken as it is. -1 if unreadable.
int64_t ParseEndTime(const std::string& text);
std::string KindName(rollertrace::v1::DeviceKind kind);
std::string LifecycleName(rollertrace::v1::Lifecycle lifecycle);
// One line about an event's body, e.g. "usage_sample session R-0001-s1: 42 rev, 12.5 kPa".
std::string DescribeEvent(const rollertrace::v1::Event& event);
// A cycle on one line: steriliser:number, when it ended, its parameters and
// its indicator with whose word it is.
std::string CycleLine(const rollertrace::v1::CycleRecord& cycle);
// A cycle's load: its rollers, comma-separated; "-" when it had none.
std::string LoadList(const rollertrace::v1::SterilisationCycle& cycle);
// A finding on one line, with the two hashes of a conflicting resend.
std::string FindingLine(const rollertrace::v1::Finding& finding);

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const;
  size_t size() const { return rows_.size(); }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace rollertrace::rollerctl
