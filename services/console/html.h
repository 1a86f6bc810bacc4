// HTML building blocks of the console: escaping, tables that also download as
// CSV, and times in the clinic's zone. Everything a device or a client sent
// goes through Escape (text and attribute values alike).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rollertrace::console {

// &, <, >, " and ' as entities: safe in element text and in quoted attributes.
std::string Escape(const std::string& text);
// For a path segment or query value (RFC 3986 unreserved kept).
std::string UrlEncode(const std::string& text);
// JSON text safe inside <script type="application/json"> ('<' as \u003c).
std::string JsonForScript(const std::string& json);

// The clinic's time zone for display (exports and the API stay UTC). Set once
// at start; false when the zone is not in /usr/share/zoneinfo.
bool SetDisplayZone(const std::string& zone);
const std::string& DisplayZone();
// "2026-12-02 09:30:05 CET"; "-" for 0.
std::string LocalTime(int64_t unix_ms);
// "2026-12-02" in the display zone (form values, chart labels).
std::string LocalDate(int64_t unix_ms);

// One cell: text, and a link when href is set. A time (At) shows in the
// display zone and downloads in UTC, like every export.
struct Cell {
  std::string text;
  std::string href;
  std::string csv;  // what the CSV holds, when not the text
  Cell(std::string t) : text(std::move(t)) {}  // NOLINT: cells are mostly plain text
  Cell(const char* t) : text(t) {}             // NOLINT
  Cell(std::string t, std::string h) : text(std::move(t)), href(std::move(h)) {}
};
// "2026-12-02 09:30:05 CET" on the page, "2026-12-02 08:30:05 UTC" in the CSV.
Cell At(int64_t unix_ms);

struct Table {
  std::string id;  // names the CSV download: <id>.csv
  std::vector<std::string> headers;
  std::vector<std::vector<Cell>> rows;
};

// The table, with a "CSV" link (?csv=<id> on the current query), paged: rows
// [page*per_page, (page+1)*per_page) and links to the pages around.
std::string RenderTable(const Table& table, const std::string& self_query, size_t page = 0, size_t per_page = 0);
// RFC 4180 CSV of every row.
std::string RenderCsv(const Table& table);

}  // namespace rollertrace::console
