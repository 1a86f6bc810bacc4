// What the console's parts share (console.cc: the server; pages.cc: the
// pages; actions.cc: the admin actions): one request, and small helpers.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "console/console.h"
#include "console/html.h"

namespace rollertrace::console {

// Rows a page shows of a list.
inline constexpr size_t kPerPage = 50;

namespace internal {
std::string CookieValue(const httplib::Request& req, const std::string& name);
std::string Wear(const rollertrace::v1::DeviceRecord& r);
double WearFraction(const rollertrace::v1::DeviceRecord& r);
// What a roller is now, for the overview.
std::string RollerState(const rollertrace::v1::DeviceRecord& r);
std::string RollerLink(const std::string& id);
std::string CycleLink(const std::string& steriliser, uint64_t n);
// As rollerctl shows them: "p-" and 16 hex digits (the full one on the patient's page).
std::string Short(const std::string& pseudonym);
// A patient in a table: short on the page, linked to the patient's page
// (unless `link` is false), whole in the CSV, which hands it on.
Cell PatientCell(const std::string& pseudonym, bool link = true);
std::string Hidden(const std::string& name, const std::string& value);
int64_t ParseDateParam(const httplib::Request& req, const std::string& name, int64_t fallback);
// The box console.js fills with violations and locks as they happen.
std::string LiveBox(const std::string& title);
}  // namespace internal

// One request: its session (when signed in) and how to call ingestd as its user.
struct Console::Call {
  const httplib::Request& req;
  httplib::Response& res;
  std::optional<WebSession> session;
  bool admin() const { return session && session->role == "admin"; }
  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (session && !session->token.empty()) ctx->AddMetadata("authorization", "Bearer " + session->token);
    return ctx;
  }
  std::string Param(const char* name) const { return req.has_param(name) ? req.get_param_value(name) : ""; }
  size_t PageNumber() const {
    try {
      return req.has_param("page") ? std::stoul(req.get_param_value("page")) : 0;
    } catch (const std::exception&) {
      return 0;
    }
  }
  // The query without page/csv, to build links to other pages of the same list.
  std::string SelfQuery() const {
    std::string q;
    for (const auto& [k, v] : req.params) {
      if (k == "page" || k == "csv") continue;
      if (!q.empty()) q += '&';
      q += UrlEncode(k);
      q += '=';
      q += UrlEncode(v);
    }
    return q;
  }
  // Answers with the CSV of `table` when it was asked for; true if it did.
  bool Csv(const Table& table) {
    if (Param("csv") != table.id) return false;
    res.set_header("Content-Disposition", "attachment; filename=\"" + table.id + ".csv\"");
    res.set_content(RenderCsv(table), "text/csv; charset=utf-8");
    return true;
  }
  std::string CsrfField() const { return session ? internal::Hidden("csrf", session->csrf) : ""; }
};

}  // namespace rollertrace::console
