// The web console in a real browser (issue #15): Mosquitto, ingestd, the
// bridge and rollertrace-console as processes, and the packaged Chromium
// driven headless by tests/browser/console_browser.js (puppeteer-core). What
// the browser did is then checked through the gRPC API.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "rollertrace/v1/services.grpc.pb.h"
#include "support/cluster.h"
#include "support/devices.h"

namespace rollertrace::testing {
namespace {

using rollertrace::v1::Event;

TEST(Console, AnAuditorAndAnAdminAnswerTheAuditInTheBrowser) {
  Cluster cluster("console");
  cluster.StartAll();
  const int64_t now = Now();
  cluster.Register(Cluster::Roller("R-C1"));
  cluster.Register(Cluster::Roller("X-C1"));
  cluster.Register(Cluster::Steriliser("S-C1"));
  {
    TestDevice s(cluster.mqtt_uri(), "S-C1", "sterilisers");
    TestDevice r(cluster.mqtt_uri(), "R-C1");
    TestDevice x(cluster.mqtt_uri(), "X-C1");
    s.Send({Cycle(1, {"R-C1"}, now - 3 * kHour)});
    r.Send({SessionStart("R-C1-s1", "P-100", now - 2 * kHour), SessionEnd("R-C1-s1", now - kHour)});
    // A device that sends markup where text belongs (never sterilised, so it
    // also makes a violation whose detail and operator carry it).
    Event hostile = SessionStart("X-C1-s1", "P-300", now - 90 * 60 * 1000);
    hostile.mutable_session_started()->set_operator_id(
        "<script>window.__xss=1</script>\"><img src=x onerror=\"window.__xss=3\">");
    Event beat;
    beat.set_device_time_unix_ms(now - 80 * 60 * 1000);
    beat.mutable_heartbeat()->set_firmware("\"><img src=x onerror=\"window.__xss=2\">");
    x.Send({hostile, beat});
  }
  // X-C1's sequences 3 and 4 never arrive: an open gap.
  {
    v1::EventBatch late;
    late.set_device_id("X-C1");
    Event e;
    e.set_device_id("X-C1");
    e.set_sequence(5);
    e.set_device_time_unix_ms(now - 60 * 60 * 1000);
    e.mutable_heartbeat()->set_battery_fraction(0.5);
    *late.add_events() = e;
    cluster.Publish("rollers/X-C1/events", late.SerializeAsString());
  }
  v1::PatientTrailRequest pr;
  pr.set_patient_ref("P-100");
  v1::PatientTrail patient;
  {
    grpc::ClientContext ctx;
    cluster.Authenticate(&ctx);
    ASSERT_TRUE(v1::ComplianceService::NewStub(cluster.channel())->GetPatientTrail(&ctx, pr, &patient).ok());
  }
  ASSERT_FALSE(patient.patient_pseudonym().empty());

  const int port = FreePort();
  auto console = Process::Start({ROLLERTRACE_CONSOLE, "--listen", "127.0.0.1:" + std::to_string(port), "--ingestd",
                                 cluster.ingestd_address(), "--metrics", "127.0.0.1:" + std::to_string(FreePort()),
                                 "--time-zone", "Europe/Berlin"},
                                cluster.dir() + "/console.log");
  ASSERT_TRUE(WaitForPort(port, std::chrono::seconds(10))) << ReadFile(cluster.dir() + "/console.log");

  // The violation the browser will watch arrive: the roller on another patient.
  v1::EventBatch batch;
  batch.set_device_id("R-C1");
  Event other = SessionStart("R-C1-s2", "P-200", now);
  other.set_device_id("R-C1");
  other.set_sequence(3);
  *batch.add_events() = other;
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(batch, &json).ok());
  const std::string payload = cluster.dir() + "/violation.json";
  std::ofstream(payload) << json;

  const std::string shots = std::string(ROLLERTRACE_ARTIFACTS) + "/console";
  std::filesystem::create_directories(shots);
  std::ostringstream scenario;
  auto q = [](const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out + "\"";
  };
  scenario << "{\"url\":" << q("http://127.0.0.1:" + std::to_string(port))
           << ",\"admin_token_file\":" << q(cluster.TokenFile("admin"))
           << ",\"auditor_token_file\":" << q(cluster.TokenFile("auditor")) << ",\"screenshots\":" << q(shots)
           << ",\"roller\":\"R-C1\",\"hostile_roller\":\"X-C1\",\"gap\":\"3–4\",\"session_id\":\"R-C1-s1\",\"patient_ref\":\"P-100\""
           << ",\"pseudonym\":" << q(patient.patient_pseudonym()) << ",\"cycle_path\":\"/cycle/S-C1/1\""
           << ",\"unlock_reason\":\"re-sterilised and checked by the lead nurse\""
           << ",\"violation_rule\":\"SINGLE_PATIENT\",\"violation_command\":[" << q(ROLLERTRACE_MOSQUITTO_PUB)
           << ",\"-h\",\"127.0.0.1\",\"-p\"," << q(std::to_string(cluster.mqtt_port()))
           << ",\"-q\",\"1\",\"-t\",\"rollers/R-C1/events/json\",\"-f\"," << q(payload) << "]}";
  const std::string scenario_file = cluster.dir() + "/scenario.json";
  std::ofstream(scenario_file) << scenario.str();

  auto browser = Process::Start({ROLLERTRACE_NODE, std::string(ROLLERTRACE_SOURCE_DIR) + "/tests/browser/console_browser.js",
                                 scenario_file},
                                cluster.dir() + "/browser.log");
  const int rc = browser->Wait(std::chrono::seconds(180));
  const std::string log = ReadFile(cluster.dir() + "/browser.log");
  ASSERT_EQ(rc, 0) << log << "\nconsole log:\n" << ReadFile(cluster.dir() + "/console.log");
  EXPECT_NE(log.find("\"ok\":true"), std::string::npos) << log;

  // What the browser did, as the API sees it.
  const v1::DeviceRecord roller = cluster.Device("R-C1");
  // Unlocked by the admin after the recall, then locked again by the violation
  // the browser watched arrive.
  EXPECT_NE(roller.state().roller().lock_reason().find("SINGLE_PATIENT"), std::string::npos)
      << roller.ShortDebugString();
  EXPECT_EQ(roller.state().roller().unlock_reason(), "re-sterilised and checked by the lead nurse");
  EXPECT_NE(roller.device().lifecycle(), v1::LIFECYCLE_RETIRED) << "the auditor's retire was refused";
  v1::CycleRequest cr;
  cr.set_steriliser_id("S-C1");
  cr.set_cycle_number(1);
  v1::CycleRecord cycle;
  grpc::ClientContext ctx;
  cluster.Authenticate(&ctx);
  ASSERT_TRUE(v1::ComplianceService::NewStub(cluster.channel())->GetCycle(&ctx, cr, &cycle).ok());
  EXPECT_EQ(cycle.lab_biological_indicator(), v1::INDICATOR_FAIL);
  // The console kept no patient reference: not in its log.
  EXPECT_EQ(ReadFile(cluster.dir() + "/console.log").find("P-100"), std::string::npos);
  for (const char* shot : {"01-fleet", "02-roller", "03-patient", "05-recall", "07-violation-live", "09-gaps", "12-auditor"}) {
    EXPECT_TRUE(std::filesystem::file_size(shots + "/" + shot + ".png") > 1000) << shot;
  }
}

// Under TLS the session cookie is Secure as well; plain HTTP is not answered.
TEST(Console, ServesHttpsWithASecureSessionCookie) {
  Cluster cluster("console-tls");
  cluster.StartIngestd();
  MakeTestCertificate(cluster.dir());
  const int port = FreePort();
  auto console = Process::Start({ROLLERTRACE_CONSOLE, "--listen", "127.0.0.1:" + std::to_string(port), "--ingestd",
                                 cluster.ingestd_address(), "--metrics", "127.0.0.1:" + std::to_string(FreePort()),
                                 "--tls-cert", cluster.dir() + "/cert.pem", "--tls-key", cluster.dir() + "/key.pem"},
                                cluster.dir() + "/console.log");
  ASSERT_TRUE(WaitForPort(port, std::chrono::seconds(10))) << ReadFile(cluster.dir() + "/console.log");
  const std::string url = "https://127.0.0.1:" + std::to_string(port);
  auto curl = [&](const std::vector<std::string>& args, std::string* out) {
    std::vector<std::string> argv = {ROLLERTRACE_CURL, "-sS", "--max-time", "10", "--cacert", cluster.dir() + "/cert.pem"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto p = Process::Start(argv, cluster.dir() + "/curl.log");
    const int rc = p->Wait(std::chrono::seconds(20));
    *out = ReadFile(cluster.dir() + "/curl.log");
    return rc;
  };
  std::string out;
  ASSERT_EQ(curl({url + "/login"}, &out), 0) << out;
  EXPECT_NE(out.find("Sign in"), std::string::npos) << out;
  const std::string token = ReadFile(cluster.TokenFile("auditor"));
  ASSERT_EQ(curl({"-i", "--data-urlencode", "token=" + token.substr(0, token.find('\n')), url + "/login"}, &out), 0)
      << out;
  EXPECT_NE(out.find("HTTP/1.1 303"), std::string::npos) << out;
  EXPECT_NE(out.find("HttpOnly; SameSite=Strict; Secure"), std::string::npos) << out;
  std::string plain;
  EXPECT_NE(curl({"http://127.0.0.1:" + std::to_string(port) + "/login"}, &plain), 0) << plain;
}

}  // namespace
}  // namespace rollertrace::testing
