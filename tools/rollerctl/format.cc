#include "rollerctl/format.h"

#include <algorithm>
#include <ctime>
#include <iomanip>
#include <sstream>

#include "codec/codec.h"
#include "util/cat.h"
#include "util/hex.h"

namespace rollertrace::rollerctl {

std::string FormatTime(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::ostringstream out;
  out << std::put_time(&tm, "%Y-%m-%d %H:%M:%S UTC");
  return out.str();
}

std::string ShortPseudonym(const std::string& pseudonym) {
  return pseudonym.size() > 18 ? pseudonym.substr(0, 18) + "…" : pseudonym;
}

int64_t ParseTime(const std::string& text) {
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos && text.size() <= 15) {
    return std::stoll(text);
  }
  for (const char* format : {"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"}) {
    std::tm tm{};
    std::istringstream in(text);
    in >> std::get_time(&tm, format);
    if (!in.fail() && in.peek() == EOF) return static_cast<int64_t>(timegm(&tm)) * 1000;
  }
  return -1;
}

int64_t ParseEndTime(const std::string& text) {
  const int64_t t = ParseTime(text);
  const bool whole_day = text.size() == 10 && text[4] == '-';
  return t >= 0 && whole_day ? t + 86'400'000 : t;
}

std::string KindName(rollertrace::v1::DeviceKind kind) {
  switch (kind) {
    case rollertrace::v1::DEVICE_KIND_ROLLER:
      return "roller";
    case rollertrace::v1::DEVICE_KIND_STERILISER:
      return "steriliser";
    default:
      return "?";
  }
}

std::string LifecycleName(rollertrace::v1::Lifecycle lifecycle) {
  std::string name = rollertrace::v1::Lifecycle_Name(lifecycle);
  if (name.rfind("LIFECYCLE_", 0) == 0) name = name.substr(10);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::replace(name.begin(), name.end(), '_', ' ');
  return name;
}

std::string FormatDate(int64_t unix_ms) {
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::ostringstream out;
  out << std::put_time(&tm, "%e %b %Y");
  std::string s = out.str();
  return s[0] == ' ' ? s.substr(1) : s;
}

std::string FormatDuration(int64_t ms) {
  const int64_t s = ms / 1000;
  auto unit = [](int64_t n, const char* one, const char* many) { return util::Cat(n, " ", n == 1 ? one : many); };
  if (s >= 86400) {
    const int64_t h = s % 86400 / 3600;
    return unit(s / 86400, "day", "days") + (h ? util::Cat(" ", h, " h") : "");
  }
  if (s >= 3600) return util::Cat(s / 3600, " h", s % 3600 / 60 ? util::Cat(" ", s % 3600 / 60, " min") : "");
  if (s >= 60) return util::Cat(s / 60, " min");
  return util::Cat(s, " s");
}

std::string IndicatorLine(const rollertrace::v1::CycleRecord& c) {
  std::string line = util::Cat("BI ", IndicatorName(c.biological_indicator()));
  const bool lab = c.lab_biological_indicator() == rollertrace::v1::INDICATOR_PASS ||
                   c.lab_biological_indicator() == rollertrace::v1::INDICATOR_FAIL;
  const auto own = c.device_biological_indicator();
  const bool reported = own == rollertrace::v1::INDICATOR_PASS || own == rollertrace::v1::INDICATOR_FAIL;
  if (lab) {
    line += util::Cat(" (lab ", IndicatorName(c.lab_biological_indicator()),
                      c.bi_recorded_by().empty() ? std::string() : " by " + c.bi_recorded_by());
    line += reported ? util::Cat("; steriliser reported ", IndicatorName(own),
                                 own != c.lab_biological_indicator() ? ", DISAGREES" : "")
                     : std::string();
    line += ")";
  } else if (reported) {
    line += util::Cat(" (steriliser reported ", IndicatorName(own), "; no lab result yet: ",
                      own == rollertrace::v1::INDICATOR_PASS ? "a steriliser's pass counts only once the lab confirms it"
                                                             : "a failed indicator from any source counts",
                      ")");
  }
  return line;
}

std::string SeverityName(rollertrace::v1::Severity s) {
  return s == rollertrace::v1::SEVERITY_DENY ? "deny" : s == rollertrace::v1::SEVERITY_WARN ? "warn" : "-";
}

std::string IndicatorName(rollertrace::v1::IndicatorResult r) {
  switch (r) {
    case rollertrace::v1::INDICATOR_PASS:
      return "pass";
    case rollertrace::v1::INDICATOR_FAIL:
      return "FAIL";
    case rollertrace::v1::INDICATOR_PENDING:
      return "pending";
    default:
      return "n/r";
  }
}

namespace {
std::string EnumTail(const std::string& name, size_t prefix) {
  std::string s = name.size() > prefix ? name.substr(prefix) : name;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}
}  // namespace

std::string DescribeEvent(const rollertrace::v1::Event& e) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1);
  switch (e.body_case()) {
    case rollertrace::v1::Event::kSessionStarted: {
      const auto& s = e.session_started();
      out << "session " << s.session_id() << " started: patient " << ShortPseudonym(s.patient_pseudonym())
          << ", operator " << s.operator_id() << ", "
          << EnumTail(rollertrace::v1::Indication_Name(s.indication()), 11) << ", "
          << EnumTail(rollertrace::v1::Area_Name(s.area()), 5) << ", " << std::setprecision(2)
          << s.needle_length_mm() << " mm";
      break;
    }
    case rollertrace::v1::Event::kUsageSample:
      out << "usage in " << e.usage_sample().session_id() << ": " << e.usage_sample().revolutions() << " rev at "
          << e.usage_sample().pressure_kpa() << " kPa";
      break;
    case rollertrace::v1::Event::kSessionEnded:
      out << "session " << e.session_ended().session_id() << " ended: " << e.session_ended().total_revolutions()
          << " rev in all";
      break;
    case rollertrace::v1::Event::kWearMeasured:
      out << "wear measured: " << e.wear_measured().wear_fraction() * 100 << " %";
      break;
    case rollertrace::v1::Event::kSterilisationCycle: {
      const auto& c = e.sterilisation_cycle();
      out << "cycle #" << c.cycle_number() << " " << c.method() << ": " << c.exposure_temperature_c() << " °C for "
          << c.exposure_seconds() / 60.0 << " min, load " << c.load_size() << ", CI "
          << IndicatorName(c.chemical_indicator()) << ", BI " << IndicatorName(c.biological_indicator());
      break;
    }
    case rollertrace::v1::Event::kHeartbeat:
      out << "heartbeat: battery " << e.heartbeat().battery_fraction() * 100 << " %, firmware "
          << e.heartbeat().firmware() << ", " << e.heartbeat().signal_dbm() << " dBm";
      break;
    default:
      out << "(empty)";
  }
  return out.str();
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> width(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) width[i] = std::max(width[i], row[i].size());
  };
  measure(header_);
  for (const auto& r : rows_) measure(r);
  auto print = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      out << row[i];
      if (i + 1 < row.size()) out << std::string(width[i] - row[i].size() + 2, ' ');
    }
    out << "\n";
  };
  print(header_);
  std::vector<std::string> rule;
  for (size_t w : width) rule.push_back(std::string(w, '-'));
  print(rule);
  for (const auto& r : rows_) print(r);
}

std::string LoadList(const rollertrace::v1::SterilisationCycle& cycle) {
  std::string load;
  for (const auto& r : cycle.load()) load += (load.empty() ? "" : ", ") + r;
  return load.empty() ? "-" : load;
}

std::string CycleLine(const rollertrace::v1::CycleRecord& c) {
  rollertrace::v1::Event e;
  *e.mutable_sterilisation_cycle() = c.cycle();
  e.mutable_sterilisation_cycle()->clear_biological_indicator();  // shown below, with whose word it is
  std::string line = util::Cat(c.cycle().steriliser_id(), ":", c.cycle().cycle_number(), " ended ",
                               FormatTime(c.cycle().end_unix_ms()), "; ", DescribeEvent(e), "; parameters ",
                               c.parameters_passed() ? "passed" : "FAILED");
  for (const auto& r : c.failure_reasons()) line += util::Cat(" (", r, ")");
  return line + "; " + IndicatorLine(c);
}

std::string FindingLine(const rollertrace::v1::Finding& f) {
  return util::Cat(f.kind(), " at sequence ", f.sequence(), ": ", f.detail(),
                   f.stored_hash().empty() ? std::string()
                                           : util::Cat(" (stored sha256 ", util::Hex(f.stored_hash()).substr(0, 16),
                                                       ", sent ", util::Hex(f.received_hash()).substr(0, 16), ")"));
}


}  // namespace rollertrace::rollerctl
