#include "console/html.h"

#include <cstdlib>
#include <ctime>
#include <filesystem>

#include "rollerctl/format.h"
#include "util/cat.h"
#include "util/html.h"

namespace rollertrace::console {

std::string Escape(const std::string& text) { return util::HtmlEscape(text); }

std::string UrlEncode(const std::string& text) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string JsonForScript(const std::string& json) {
  std::string out;
  for (char c : json) {
    if (c == '<') {
      out += "\\u003c";
    } else if (c == '>') {
      out += "\\u003e";
    } else if (c == '&') {
      out += "\\u0026";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {
std::string& Zone() {
  static std::string zone = "UTC";
  return zone;
}
}  // namespace

bool SetDisplayZone(const std::string& zone) {
  if (zone != "UTC") {
    if (zone.find("..") != std::string::npos || zone.empty() || zone[0] == '/') return false;
    std::error_code ec;
    if (!std::filesystem::is_regular_file("/usr/share/zoneinfo/" + zone, ec)) return false;
  }
  setenv("TZ", zone.c_str(), 1);
  tzset();
  Zone() = zone;
  return true;
}

const std::string& DisplayZone() { return Zone(); }

namespace {
std::string Local(int64_t unix_ms, const char* format) {
  const time_t t = static_cast<time_t>(unix_ms / 1000);
  tm local{};
  localtime_r(&t, &local);
  char buf[64];
  strftime(buf, sizeof buf, format, &local);
  return buf;
}
}  // namespace

std::string LocalTime(int64_t unix_ms) { return unix_ms == 0 ? "-" : Local(unix_ms, "%Y-%m-%d %H:%M:%S %Z"); }
std::string LocalDate(int64_t unix_ms) { return Local(unix_ms, "%Y-%m-%d"); }

Cell At(int64_t unix_ms) {
  Cell c(LocalTime(unix_ms));
  c.csv = rollerctl::FormatTime(unix_ms);
  return c;
}

std::string RenderTable(const Table& table, const std::string& self_query, size_t page, size_t per_page) {
  std::string out;
  const size_t total = table.rows.size();
  size_t first = 0, last = total;
  if (per_page > 0) {
    first = std::min(total, page * per_page);
    last = std::min(total, first + per_page);
  }
  const std::string joiner = self_query.empty() ? "?" : "?" + self_query + "&";
  out += util::Cat("<div class=\"table\" id=\"", Escape(table.id), "\"><p class=\"meta\">", total, " rows");
  if (per_page > 0 && total > 0) out += util::Cat(", ", first + 1, "–", last, " shown");
  out += util::Cat(" · <a class=\"csv\" href=\"", Escape(joiner), "csv=", Escape(table.id), "\">download CSV</a></p>");
  out += "<table><thead><tr>";
  for (const auto& h : table.headers) out += "<th>" + Escape(h) + "</th>";
  out += "</tr></thead><tbody>";
  for (size_t i = first; i < last; ++i) {
    out += "<tr>";
    for (const Cell& c : table.rows[i]) {
      out += "<td>";
      if (!c.href.empty()) {
        out += "<a href=\"" + Escape(c.href) + "\">" + Escape(c.text) + "</a>";
      } else {
        out += Escape(c.text);
      }
      out += "</td>";
    }
    out += "</tr>";
  }
  out += "</tbody></table>";
  if (per_page > 0 && total > per_page) {
    out += "<p class=\"pages\">";
    if (page > 0) out += util::Cat("<a rel=\"prev\" href=\"", Escape(joiner), "page=", page - 1, "\">← previous</a> ");
    out += util::Cat("page ", page + 1, " of ", (total + per_page - 1) / per_page);
    if (last < total) out += util::Cat(" <a rel=\"next\" href=\"", Escape(joiner), "page=", page + 1, "\">next →</a>");
    out += "</p>";
  }
  out += "</div>";
  return out;
}

namespace {
std::string CsvField(const std::string& s) {
  // A leading =, +, @ or tab would be a formula to a spreadsheet: quote it away.
  const bool formula = !s.empty() && (s[0] == '=' || s[0] == '+' || s[0] == '@' || s[0] == '\t');
  if (!formula && s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  if (formula) out += '\'';
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}
}  // namespace

std::string RenderCsv(const Table& table) {
  std::string out;
  auto line = [&out](const std::vector<std::string>& fields) {
    for (size_t i = 0; i < fields.size(); ++i) {
      if (i > 0) out += ',';
      out += CsvField(fields[i]);
    }
    out += "\r\n";
  };
  line(table.headers);
  for (const auto& row : table.rows) {
    std::vector<std::string> fields;
    for (const Cell& c : row) fields.push_back(c.csv.empty() ? c.text : c.csv);
    line(fields);
  }
  return out;
}

}  // namespace rollertrace::console
