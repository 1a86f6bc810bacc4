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

constexpr int64_t kDay = 24 * 3600 * 1000LL;
constexpr int64_t kHour = 3600 * 1000LL;

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A Prometheus scraping the cluster every second with deploy/prometheus's rules.
std::unique_ptr<Process> StartPrometheus(const Cluster& cluster, int port) {
  const std::string config = cluster.dir() + "/prometheus.yml";
  std::ofstream(config) << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                        << "rule_files:\n  - " << ROLLERTRACE_SOURCE_DIR
                        << "/deploy/prometheus/rollertrace.rules.yml\n"
                        << "scrape_configs:\n"
                        << "  - job_name: ingestd\n    static_configs:\n      - targets: ['127.0.0.1:"
                        << cluster.ingestd_metrics_port() << "']\n"
                        << "  - job_name: mqtt-bridge\n    static_configs:\n      - targets: ['127.0.0.1:"
                        << cluster.bridge_metrics_port() << "']\n";
  auto p = Process::Start({ROLLERTRACE_PROMETHEUS, "--config.file=" + config,
                           "--storage.tsdb.path=" + cluster.dir() + "/prometheus-data",
                           "--web.listen-address=127.0.0.1:" + std::to_string(port)},
                          cluster.dir() + "/prometheus.log");
  EXPECT_TRUE(WaitForPort(port, std::chrono::seconds(30))) << ReadFile(cluster.dir() + "/prometheus.log");
  return p;
}

TEST(Observability, WornRollerInUseFiresWithTheRollersDeviceId) {
  Cluster cluster("prometheus");
  cluster.StartAll();
  const int prom_port = FreePort();
  auto prometheus = StartPrometheus(cluster, prom_port);

  // A roller rated for 200 revolutions, worn out by one session of 250.
  cluster.Register(Cluster::Roller("PW-1", 540 * 200));
  cluster.Register(Cluster::Steriliser("PW-S"));
  TestDevice roller(cluster.mqtt_uri(), "PW-1");
  TestDevice steriliser(cluster.mqtt_uri(), "PW-S", "sterilisers");
  const int64_t now = Now();
  steriliser.Send({Cycle(1, {"PW-1"}, now - 9 * kDay)});
  roller.Send({SessionStart("PW-1-s1", "MRN-9", now - 8 * kDay), Usage("PW-1-s1", 250, now - 8 * kDay + 60000),
               SessionEnd("PW-1-s1", now - 8 * kDay + 120000)});
  steriliser.Send({Cycle(2, {"PW-1"}, now - 2 * kHour)});

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

}  // namespace
}  // namespace rollertrace::testing
