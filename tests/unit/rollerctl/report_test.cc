// The report renderers: the same data in tables, HTML and CSV, escaped.
#include "rollerctl/report.h"

#include <gtest/gtest.h>

#include <sstream>

namespace rollertrace::rollerctl {
namespace {

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kNov1 = 1'793'491'200'000;  // 2026-11-01 00:00 UTC

rollertrace::v1::PeriodReport Sample() {
  rollertrace::v1::PeriodReport r;
  r.set_from_unix_ms(kNov1);
  r.set_to_unix_ms(kNov1 + 3 * kDay);
  r.set_bucket_ms(kDay);
  for (int d = 0; d < 3; ++d) r.add_buckets()->set_start_unix_ms(kNov1 + d * kDay);
  r.mutable_buckets(1)->set_sessions(2);
  auto* v = r.add_violation_list();
  v->set_device_id("R-1");
  v->set_rule("WORN");
  v->set_detail("wear 104 %, \"worn\" <b>at</b> 1.0, limit");
  v->set_detected_unix_ms(kNov1 + kDay);
  r.set_violations(1);
  return r;
}

TEST(ReportRender, CsvQuotesFieldsWithCommasAndQuotes) {
  auto files = RenderReportCsv(Sample());
  ASSERT_TRUE(files.count("violations.csv"));
  const std::string& csv = files["violations.csv"];
  EXPECT_NE(csv.find("\"wear 104 %, \"\"worn\"\" <b>at</b> 1.0, limit\""), std::string::npos) << csv;
  EXPECT_NE(csv.find("2026-11-02 00:00:00 UTC"), std::string::npos) << csv;
  EXPECT_EQ(files["over_time.csv"],
            "Day,Sessions started,Against a deny rule,Violations,Cycles ended,Cycles failed\r\n"
            "1 Nov 2026,0,0,0,0,0\r\n2 Nov 2026,2,0,0,0,0\r\n3 Nov 2026,0,0,0,0,0\r\n");
}

TEST(ReportRender, HtmlEscapesTextAndEmbedsChartJs) {
  const std::string html = RenderReportHtml(Sample());
  EXPECT_NE(html.find("&quot;worn&quot; &lt;b&gt;at&lt;/b&gt;"), std::string::npos);
  EXPECT_EQ(html.find("<b>at</b>"), std::string::npos);
  EXPECT_NE(html.find("Chart.js v3"), std::string::npos) << "Chart.js inlined";
  EXPECT_EQ(html.find("<script src="), std::string::npos);
  EXPECT_NE(html.find("No recall in the period."), std::string::npos);
}

TEST(ReportRender, TablesNameEmptySections) {
  std::ostringstream out;
  RenderReportTables(Sample(), out);
  EXPECT_NE(out.str().find("No biological indicator is pending."), std::string::npos) << out.str();
  const size_t line = out.str().find("Length of the period");
  ASSERT_NE(line, std::string::npos) << out.str();
  EXPECT_EQ(out.str().substr(line, out.str().find('\n', line) - line).rfind("3 days"),
            out.str().find('\n', line) - line - 6)
      << "the period's length, in days:\n" << out.str();
}

}  // namespace
}  // namespace rollertrace::rollerctl
