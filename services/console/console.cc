#include "console/console.h"

#include "console/console_internal.h"

#include <algorithm>
#include <map>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "rollerctl/format.h"
#include "rollerctl/report.h"
#include "util/cat.h"
#include "util/clock.h"

namespace rollertrace::rollerctl {
extern const char kChartJs[];  // Chart.js from libjs-chart.js (tools/rollerctl/chartjs.cc)
}  // namespace rollertrace::rollerctl

namespace rollertrace::console {

extern const char kConsoleJs[];
extern const char kConsoleCss[];

namespace v1 = rollertrace::v1;
using util::Cat;

namespace {

constexpr char kCookie[] = "rt_session";
constexpr char kCsp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

}  // namespace

namespace internal {

std::string CookieValue(const httplib::Request& req, const std::string& name) {
  const std::string header = req.get_header_value("Cookie");
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string::npos) end = header.size();
    std::string part = header.substr(pos, end - pos);
    part.erase(0, part.find_first_not_of(' '));
    if (part.rfind(name + "=", 0) == 0) return part.substr(name.size() + 1);
    pos = end + 1;
  }
  return "";
}

std::string Wear(const v1::DeviceRecord& r) {
  const auto& d = r.device();
  if (d.kind() != v1::DEVICE_KIND_ROLLER || d.rated_penetrations() == 0) return "-";
  const double wear = static_cast<double>(r.state().total_revolutions()) * d.needle_count() / d.rated_penetrations();
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f %%", wear * 100);
  return buf;
}

double WearFraction(const v1::DeviceRecord& r) {
  const auto& d = r.device();
  if (d.rated_penetrations() == 0) return 0;
  return static_cast<double>(r.state().total_revolutions()) * d.needle_count() / d.rated_penetrations();
}

std::string RollerState(const v1::DeviceRecord& r) {
  if (r.device().lifecycle() == v1::LIFECYCLE_RETIRED) return "retired";
  if (r.device().lifecycle() == v1::LIFECYCLE_LOCKED) return "locked";
  if (WearFraction(r) >= 1.0) return "worn";
  if (!r.state().roller().open_session_id().empty()) return "in use";
  const auto& use = r.state().roller();
  if (use.last_session_end_unix_ms() > 0 && use.last_session_end_unix_ms() >= use.last_passing_cycle_end_unix_ms()) {
    return "due for sterilisation";
  }
  return "ready";
}

std::string RollerLink(const std::string& id) { return "/roller/" + UrlEncode(id); }
std::string CycleLink(const std::string& steriliser, uint64_t n) {
  return Cat("/cycle/", UrlEncode(steriliser), "/", n);
}
std::string Short(const std::string& pseudonym) { return pseudonym.substr(0, 18); }

Cell PatientCell(const std::string& pseudonym, bool link) {
  if (pseudonym.empty()) return Cell("");
  Cell c(Short(pseudonym), link ? "/patient?pseudonym=" + UrlEncode(pseudonym) : "");
  c.csv = pseudonym;
  return c;
}

std::string Hidden(const std::string& name, const std::string& value) {
  return "<input type=\"hidden\" name=\"" + Escape(name) + "\" value=\"" + Escape(value) + "\">";
}

int64_t ParseDateParam(const httplib::Request& req, const std::string& name, int64_t fallback) {
  if (!req.has_param(name.c_str())) return fallback;
  const std::string v = req.get_param_value(name.c_str());
  tm t{};
  if (v.size() != 10 || strptime(v.c_str(), "%Y-%m-%d", &t) == nullptr) return fallback;
  return static_cast<int64_t>(mktime(&t)) * 1000;  // midnight in the display zone
}



std::string LiveBox(const std::string& title) {
  return Cat("<section class=\"live\" id=\"live\" data-since=\"", util::NowUnixMs(), "\"><h2>", Escape(title),
             "</h2><p class=\"meta live-status\">live · waiting</p><table><thead><tr><th>time</th><th>what</th>"
             "<th>roller</th><th>rule</th><th>detail</th></tr></thead><tbody></tbody></table></section>");
}

}  // namespace internal

using namespace internal;  // NOLINT: the console's own helpers

Console::Console(std::shared_ptr<grpc::Channel> ingestd, ConsoleOptions options, metrics::Metrics& metrics)
    : options_(std::move(options)),
      registry_(v1::RegistryService::NewStub(ingestd)),
      compliance_(v1::ComplianceService::NewStub(ingestd)),
      sessions_(options_.session_ttl),
      requests_(metrics.Counter("rollertrace_console_requests_total", "Console HTTP requests by page and status")),
      latency_(metrics.Histogram("rollertrace_console_request_seconds", "Console time to answer, by page")),
      signed_in_(metrics.Gauge("rollertrace_console_sessions", "Browsers signed in to the console").Add({})) {
  if (!options_.tls_cert.empty()) {
    server_ = std::make_unique<httplib::SSLServer>(options_.tls_cert.c_str(), options_.tls_key.c_str());
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  // Headers and body go out as separate writes: without this, Nagle's
  // algorithm holds the body for the client's delayed ACK (40 ms a page).
  server_->set_tcp_nodelay(true);
  Route();
}

Console::~Console() { Stop(); }

absl::Status Console::Bind() {
  if (!server_->is_valid()) return absl::InvalidArgumentError("cannot load --tls-cert/--tls-key");
  const auto colon = options_.listen.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("--listen must be host:port");
  const std::string host = options_.listen.substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(options_.listen.substr(colon + 1));
  } catch (const std::exception&) {
    return absl::InvalidArgumentError("--listen must be host:port");
  }
  if (port == 0) {
    port_ = server_->bind_to_any_port(host.c_str());
  } else if (server_->bind_to_port(host.c_str(), port)) {
    port_ = port;
  }
  if (port_ <= 0) return absl::UnavailableError(Cat("cannot listen on ", options_.listen, " (in use?)"));
  return absl::OkStatus();
}

void Console::Serve() { server_->listen_after_bind(); }
void Console::Stop() {
  if (server_) server_->stop();
}

void Console::Handle(const char* page, const httplib::Request& req, httplib::Response& res,
                     void (Console::*handler)(Call&)) {
  const auto start = std::chrono::steady_clock::now();
  res.set_header("Content-Security-Policy", kCsp);
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Frame-Options", "DENY");
  Call c{req, res, sessions_.Find(CookieValue(req, kCookie))};
  if (!c.session) {
    if (req.path.rfind("/api/", 0) == 0) {
      res.status = 401;
      res.set_content(R"({"error":"not signed in"})", "application/json");
    } else {
      res.status = 303;
      res.set_header("Location", "/login");
    }
  } else if (req.method == "POST" && !SameSecret(c.Param("csrf"), c.session->csrf)) {
    res.status = 403;
    Page(c, "Refused", "<p class=\"error\">This form is stale or did not come from the console (CSRF token "
                       "missing or wrong). Go back, reload and try again.</p>");
  } else {
    try {
      (this->*handler)(c);
    } catch (const std::exception& e) {
      res.status = 500;
      Page(c, "Error", "<p class=\"error\">" + Escape(e.what()) + "</p>");
    }
  }
  const std::string code = std::to_string(res.status);
  requests_.Add({{"page", page}, {"code", code}}).Increment();
  latency_.Add({{"page", page}}, metrics::Metrics::LatencyBuckets())
      .Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

void Console::Page(Call& c, const std::string& title, const std::string& body) {
  std::string out = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + Escape(title) +
                    " · RollerTrace</title><link rel=\"stylesheet\" href=\"/static/console.css\">"
                    "<script src=\"/static/chart.js\" defer></script>"
                    "<script src=\"/static/console.js\" defer></script></head><body><header>"
                    "<strong>RollerTrace</strong><a href=\"/\">Fleet</a><a href=\"/violations\">Violations</a>"
                    "<a href=\"/patient\">Patient</a><a href=\"/report\">Report</a><a href=\"/verify\">Ledger</a>";
  if (c.session) {
    out += "<span class=\"who\">signed in as <b id=\"role\">" + Escape(c.session->role) +
           "</b> · times in " + Escape(DisplayZone()) +
           " <form method=\"post\" action=\"/logout\" style=\"display:inline\">" + c.CsrfField() +
           "<button>Sign out</button></form></span>";
  }
  out += "</header><main><h1>" + Escape(title) + "</h1>" + body + "</main></body></html>";
  c.res.set_content(out, "text/html; charset=utf-8");
}

void Console::Fail(Call& c, const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::NOT_FOUND: c.res.status = 404; break;
    case grpc::StatusCode::PERMISSION_DENIED: c.res.status = 403; break;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION: c.res.status = 400; break;
    case grpc::StatusCode::UNAUTHENTICATED: c.res.status = 401; break;
    default: c.res.status = 502;
  }
  Page(c, "Not possible", "<p class=\"error\" id=\"error\">" + Escape(s.error_message()) + "</p>");
}

void Console::Route() {
  auto& s = *server_;
  s.Get("/static/console.js", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kConsoleJs, "text/javascript; charset=utf-8");
  });
  s.Get("/static/console.css", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kConsoleCss, "text/css; charset=utf-8");
  });
  s.Get("/static/chart.js", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(rollerctl::kChartJs, "text/javascript; charset=utf-8");
  });
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });

  s.Get("/login", [this](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy", kCsp);
    res.set_content(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in · RollerTrace</title>"
        "<link rel=\"stylesheet\" href=\"/static/console.css\"></head><body><header><strong>RollerTrace</strong>"
        "</header><main><h1>Sign in</h1><form method=\"post\" action=\"/login\"><p><label>Access token "
        "(the auditor's or admin's token from ingestd's tokens file)<br><input type=\"password\" name=\"token\" "
        "id=\"token\" size=\"60\" autocomplete=\"off\" required></label></p><button id=\"sign-in\">Sign in</button>"
        "</form></main></body></html>",
        "text/html; charset=utf-8");
    (void)this;
  });
  s.Post("/login", [this](const httplib::Request& req, httplib::Response& res) {
    res.set_header("Content-Security-Policy", kCsp);
    const std::string token = req.has_param("token") ? req.get_param_value("token") : "";
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    ctx.AddMetadata("authorization", "Bearer " + token);
    v1::WhoAmIResponse who;
    grpc::Status st = compliance_->WhoAmI(&ctx, v1::WhoAmIRequest(), &who);
    std::string problem;
    if (!st.ok()) {
      problem = st.error_code() == grpc::StatusCode::UNAUTHENTICATED ? "That token is not known to ingestd."
                                                                      : "ingestd: " + st.error_message();
    } else if (who.role() != "auditor" && who.role() != "admin") {
      problem = "A " + who.role() + " token cannot sign in to the console.";
    }
    requests_.Add({{"page", "login"}, {"code", problem.empty() ? "303" : "401"}}).Increment();
    if (!problem.empty()) {
      res.status = 401;
      res.set_content("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Sign in</title>"
                      "<link rel=\"stylesheet\" href=\"/static/console.css\"></head><body><main><p class=\"error\" "
                      "id=\"error\">" + Escape(problem) + "</p><a href=\"/login\">Try again</a></main></body></html>",
                      "text/html; charset=utf-8");
      return;
    }
    const std::string id = sessions_.Create(token, who.role());
    signed_in_.Set(static_cast<double>(sessions_.size()));
    res.set_header("Set-Cookie", Cat(kCookie, "=", id, "; Path=/; HttpOnly; SameSite=Strict",
                                     options_.tls_cert.empty() ? "" : "; Secure"));
    res.status = 303;
    res.set_header("Location", "/");
  });
  s.Post("/logout", [this](const httplib::Request& req, httplib::Response& res) {
    Handle("logout", req, res, &Console::SignOut);
  });

  auto get = [this, &s](const char* pattern, const char* page, void (Console::*h)(Call&)) {
    s.Get(pattern, [this, page, h](const httplib::Request& req, httplib::Response& res) { Handle(page, req, res, h); });
  };
  auto post = [this, &s](const char* pattern, const char* page, void (Console::*h)(Call&)) {
    s.Post(pattern, [this, page, h](const httplib::Request& req, httplib::Response& res) { Handle(page, req, res, h); });
  };
  get("/", "overview", &Console::Overview);
  get(R"(/roller/([^/]+))", "roller", &Console::Roller);
  post(R"(/roller/([^/]+)/unlock)", "unlock", &Console::Unlock);
  post(R"(/roller/([^/]+)/retire)", "retire", &Console::Retire);
  get("/patient", "patient", &Console::Patient);
  post("/patient", "patient", &Console::Patient);
  get(R"(/cycle/([^/]+)/(\d+))", "cycle", &Console::Cycle);
  post(R"(/cycle/([^/]+)/(\d+)/indicator)", "indicator", &Console::Indicator);
  get(R"(/gaps/([^/]+))", "gaps", &Console::Gaps);
  get("/violations", "violations", &Console::Violations);
  get("/report", "report", &Console::Report);
  get("/verify", "verify", &Console::Verify);
  get("/api/live", "live", &Console::Live);
}

void Console::SignOut(Call& c) {
  sessions_.Remove(CookieValue(c.req, kCookie));
  signed_in_.Set(static_cast<double>(sessions_.size()));
  c.res.set_header("Set-Cookie", Cat(kCookie, "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"));
  c.res.status = 303;
  c.res.set_header("Location", "/login");
}

// Violations and locks since the page was rendered, polled by console.js.
void Console::Live(Call& c) {
  int64_t since = 0;
  try {
    since = std::stoll(c.Param("since"));
  } catch (const std::exception&) {
    since = util::NowUnixMs();
  }
  nlohmann::json items = nlohmann::json::array();
  v1::ViolationsRequest vr;
  vr.set_from_unix_ms(since);
  v1::ViolationsResponse violations;
  auto ctx = c.Context();
  int64_t next = since;
  grpc::Status st = compliance_->ListViolations(ctx.get(), vr, &violations);
  if (!st.ok()) {
    c.res.status = 502;
    c.res.set_content(nlohmann::json{{"error", st.error_message()}}.dump(), "application/json");
    return;
  }
  for (const auto& v : violations.violations()) {
    if (v.detected_unix_ms() < since) continue;
    items.push_back({{"time", LocalTime(v.detected_unix_ms())}, {"kind", v.locked() ? "violation, locked" : "violation"},
                     {"device", v.device_id()}, {"rule", v.rule()}, {"detail", v.detail()}});
    next = std::max(next, v.detected_unix_ms() + 1);
  }
  v1::ListDevicesRequest lr;
  lr.set_kind(v1::DEVICE_KIND_ROLLER);
  v1::ListDevicesResponse devices;
  auto ctx2 = c.Context();
  if (registry_->List(ctx2.get(), lr, &devices).ok()) {
    for (const auto& d : devices.devices()) {
      const auto& use = d.state().roller();
      if (use.locked_unix_ms() >= since && !use.lock_reason().empty()) {
        items.push_back({{"time", LocalTime(use.locked_unix_ms())}, {"kind", "lock"}, {"device", d.device().device_id()},
                         {"rule", ""}, {"detail", use.lock_reason()}});
        next = std::max(next, use.locked_unix_ms() + 1);
      }
    }
  }
  c.res.set_content(nlohmann::json{{"items", items}, {"next_since", next}, {"checked", LocalTime(util::NowUnixMs())}}
                        .dump(),
                    "application/json");
}

}  // namespace rollertrace::console
