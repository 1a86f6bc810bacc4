// Alerts proven against a real Prometheus: the Debian prometheus server
// scrapes the running ingestd with the project's own alert rules, and the
// test reads what fires through Prometheus's HTTP API.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/cluster.h"
#include "support/devices.h"

namespace rollertrace::testing {
namespace {

// A Prometheus scraping the cluster (and a fleet, if fleet_port) every second
// with deploy/prometheus's rules, labelling targets clinic="clinic-1" as the
// shipped scrape config does.
std::unique_ptr<Process> StartPrometheus(const Cluster& cluster, int port, int fleet_port = 0) {
  const std::string config = cluster.dir() + "/prometheus.yml";
  std::ofstream out(config);
  out << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      << "rule_files:\n  - " << ROLLERTRACE_SOURCE_DIR << "/deploy/prometheus/rollertrace.rules.yml\n"
      << "scrape_configs:\n";
  auto job = [&](const char* name, int target) {
    out << "  - job_name: " << name << "\n    static_configs:\n      - targets: ['127.0.0.1:" << target
        << "']\n        labels: {clinic: clinic-1}\n";
  };
  job("ingestd", cluster.ingestd_metrics_port());
  job("mqtt-bridge", cluster.bridge_metrics_port());
  if (fleet_port) job("roller-fleet", fleet_port);
  out.close();
  auto p = Process::Start({ROLLERTRACE_PROMETHEUS, "--config.file=" + config,
                           "--storage.tsdb.path=" + cluster.dir() + "/prometheus-data",
                           "--web.listen-address=127.0.0.1:" + std::to_string(port)},
                          cluster.dir() + "/prometheus.log");
  EXPECT_TRUE(WaitForPort(port, std::chrono::seconds(30))) << ReadFile(cluster.dir() + "/prometheus.log");
  return p;
}

// Registers the roller (rated for 200 revolutions) and its steriliser, wears
// the roller out in one session of 250 eight days ago, and sterilises it again
// two hours ago: the next session start is a worn roller in use.
void WearOut(Cluster& cluster, TestDevice& roller, TestDevice& steriliser, const std::string& patient) {
  cluster.Register(Cluster::Roller(roller.id(), 540 * 200));
  cluster.Register(Cluster::Steriliser(steriliser.id()));
  const int64_t now = Now();
  const std::string session = roller.id() + "-s1";
  steriliser.Send({Cycle(1, {roller.id()}, now - 9 * kDay)});
  roller.Send({SessionStart(session, patient, now - 8 * kDay), Usage(session, 250, now - 8 * kDay + 60000),
               SessionEnd(session, now - 8 * kDay + 120000)});
  steriliser.Send({Cycle(2, {roller.id()}, now - 2 * kHour)});
}

TEST(Observability, WornRollerInUseFiresWithTheRollersDeviceId) {
  Cluster cluster("prometheus");
  cluster.StartAll();
  const int prom_port = FreePort();
  auto prometheus = StartPrometheus(cluster, prom_port);

  TestDevice roller(cluster.mqtt_uri(), "PW-1");
  TestDevice steriliser(cluster.mqtt_uri(), "PW-S", "sterilisers");
  WearOut(cluster, roller, steriliser, "MRN-9");

  // Nothing fires before the worn roller is in use.
  auto alerts = [&] { return nlohmann::json::parse(HttpGet(prom_port, "/api/v1/alerts"), nullptr, false); };
  auto firing_for = [&](const std::string& alert, const std::string& device) {
    auto j = alerts();
    if (j.is_discarded() || !j.contains("data")) return false;
    for (const auto& a : j["data"]["alerts"]) {
      if (a["labels"].value("alertname", "") == alert && a["labels"].value("device_id", "") == device &&
          a.value("state", "") == "firing") {
        return true;
      }
    }
    return false;
  };
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_FALSE(firing_for("WornRollerInUse", "PW-1"));

  // Used anyway (offline): the session starts on a worn roller.
  roller.Send({SessionStart("PW-1-s2", "MRN-9", Now(), /*offline=*/true)});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  bool fired = false;
  while (!fired && std::chrono::steady_clock::now() < deadline) {
    fired = firing_for("WornRollerInUse", "PW-1");
    if (!fired) std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  EXPECT_TRUE(fired) << alerts().dump(2) << "\n" << ReadFile(cluster.dir() + "/prometheus.log");

  // The violation counter behind UnsterilisedUse/SinglePatientBreach is there too.
  auto query = nlohmann::json::parse(
      HttpGet(prom_port, "/api/v1/query?query=rollertrace_violations_total%7Brule%3D%22WORN%22%7D"), nullptr, false);
  ASSERT_FALSE(query.is_discarded());
  EXPECT_FALSE(query["data"]["result"].empty()) << query.dump(2);
}

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// Every query of every dashboard under dashboards/, run as Grafana would (a
// range query) against a Prometheus that watched a clinic day with
// violations, a recall, rejects, duplicates and a worn roller in use.
TEST(Observability, EveryDashboardQueryIsValidAndReturnsSeries) {
  Cluster cluster("dashboards");
  cluster.StartAll();
  const int prom_port = FreePort();
  const int fleet_port = FreePort();
  auto prometheus = StartPrometheus(cluster, prom_port, fleet_port);

  auto fleet = cluster.StartFleet({"--rollers", "4", "--sterilisers", "1", "--days", "21", "--seed", "3",
                                   "--register-with", cluster.ingestd_address(), "--spool-dir",
                                   cluster.dir() + "/spool", "--rate", "25", "--violation-rate", "0.5",
                                   "--override-rate", "1", "--failing-cycle-rate", "0.2", "--metrics",
                                   "127.0.0.1:" + std::to_string(fleet_port)},
                                  "fleet.log");
  // The fleet's own metrics must be scraped while it runs (it exits when done).
  bool fleet_scraped = false;
  for (int i = 0; i < 200 && !fleet_scraped && fleet->Running(); ++i) {
    auto j = nlohmann::json::parse(HttpGet(prom_port, "/api/v1/query?query=rollertrace_agent_spool_events"), nullptr,
                                   false);
    fleet_scraped = !j.is_discarded() && j.contains("data") && !j["data"]["result"].empty();
    if (!fleet_scraped) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(fleet_scraped) << "Prometheus never scraped roller-fleet while it ran\n"
                             << ReadFile(cluster.dir() + "/prometheus.log");
  // A worn roller in session, rejects and duplicates, while the fleet runs.
  {
    TestDevice roller(cluster.mqtt_uri(), "DW-1");
    TestDevice steriliser(cluster.mqtt_uri(), "DW-S", "sterilisers");
    WearOut(cluster, roller, steriliser, "MRN-8");
    roller.Send({SessionStart("DW-1-s2", "MRN-8", Now(), /*offline=*/true)});
  }
  v1::EventBatch again;
  again.set_device_id("DW-1");
  auto* e = again.add_events();
  e->set_sequence(1);
  e->mutable_heartbeat()->set_battery_fraction(0.5);
  cluster.Publish("rollers/DW-1/events", again.SerializeAsString());  // sequence 1 again, other content: a conflicting resend
  again.set_device_id("NOBODY");
  cluster.Publish("rollers/NOBODY/events", again.SerializeAsString());  // unknown device
  cluster.Publish("rollers/DW-1/events", "not protobuf at all");        // malformed
  ASSERT_EQ(fleet->Wait(std::chrono::seconds(120)), 0) << ReadFile(fleet->log_path());
  std::string out;
  ASSERT_EQ(cluster.Rollerctl({"bi", "S-01:1", "pass"}, &out), 0) << out;
  ASSERT_EQ(cluster.Rollerctl({"bi", "S-01:2", "fail"}, &out), 0) << out;
  std::this_thread::sleep_for(std::chrono::seconds(4));  // a few more scrapes and evaluations

  size_t queries = 0;
  for (const char* file : {"fleet-and-wear.json", "sterilisation-compliance.json", "ingest-health.json"}) {
    auto dashboard = nlohmann::json::parse(ReadFile(std::string(ROLLERTRACE_SOURCE_DIR) + "/dashboards/" + file));
    ASSERT_TRUE(dashboard.contains("panels")) << file;
    for (const auto& panel : dashboard["panels"]) {
      for (const auto& target : panel["targets"]) {
        std::string expr = target["expr"];
        for (auto [from, to] : {std::pair<std::string, std::string>{"$clinic", "clinic-1"},
                                {"$device", ".*"}, {"$__rate_interval", "30s"}, {"$__range", "5m"}}) {
          for (size_t at; (at = expr.find(from)) != std::string::npos;) expr.replace(at, from.size(), to);
        }
        const int64_t end = Now() / 1000;
        auto answer = nlohmann::json::parse(
            HttpGet(prom_port, "/api/v1/query_range?query=" + UrlEncode(expr) + "&start=" +
                                   std::to_string(end - 150) + "&end=" + std::to_string(end) + "&step=1"),
            nullptr, false);
        ++queries;
        ASSERT_FALSE(answer.is_discarded()) << file << " / " << panel["title"] << ": " << expr;
        EXPECT_EQ(answer.value("status", ""), "success") << file << " / " << panel["title"] << ": " << expr << "\n"
                                                         << answer.dump();
        EXPECT_FALSE(answer["data"]["result"].empty())
            << file << " / " << panel["title"] << " returns no series: " << expr;
      }
    }
  }
  EXPECT_GE(queries, 20u);
}

}  // namespace
}  // namespace rollertrace::testing
