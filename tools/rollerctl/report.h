// `rollerctl report`: a period's compliance report as terminal tables, a
// self-contained printable HTML page (charts by the inlined Chart.js), CSV
// files or JSON. The renderers are pure functions of the report.
#pragma once

#include <map>
#include <ostream>
#include <string>

#include "rollerctl/commands.h"
#include "rollertrace/v1/services.pb.h"

namespace rollertrace::rollerctl {

enum class ReportFormat { kTable, kHtml, kCsv, kJson };

// Fetches the report of [from, to) and writes it: tables and JSON to `output`
// or stdout, HTML to the file `output`, CSV to files in the directory `output`.
int Report(const Context& ctx, int64_t from_unix_ms, int64_t to_unix_ms, ReportFormat format,
           const std::string& output);

void RenderReportTables(const rollertrace::v1::PeriodReport& report, std::ostream& out);
std::string RenderReportHtml(const rollertrace::v1::PeriodReport& report);
// File name -> CSV text (RFC 4180, header row first).
std::map<std::string, std::string> RenderReportCsv(const rollertrace::v1::PeriodReport& report);

}  // namespace rollertrace::rollerctl
