// DOMAIN.md's rules through the real MQTT path: test devices publish events
// and authorisation requests to Mosquitto; mqtt-bridge relays them to ingestd
// (RocksDB on disk); decisions, acks and commands come back over MQTT.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "support/cluster.h"
#include "support/devices.h"

namespace rollertrace::testing {
namespace {


// One cluster for the suite; every test uses its own devices.
class RulesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new Cluster("rules");
    cluster_->StartAll();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  // A registered roller and steriliser pair, both connected.
  void SetUpDevices(const std::string& roller, uint64_t rated = 540 * 3000) {
    cluster_->Register(Cluster::Roller(roller, rated));
    cluster_->Register(Cluster::Steriliser("S-" + roller));
    roller_ = std::make_unique<TestDevice>(cluster_->mqtt_uri(), roller);
    steriliser_ = std::make_unique<TestDevice>(cluster_->mqtt_uri(), "S-" + roller, "sterilisers");
  }

  // One complete session: cycle the morning before, then start, usage, end.
  void Session(const std::string& session, const std::string& patient, int64_t start, uint64_t cycle,
               uint32_t revolutions = 100) {
    steriliser_->Send({Cycle(cycle, {roller_->id()}, start - 3 * kHour)});
    roller_->Send({SessionStart(session, patient, start), Usage(session, revolutions, start + 10 * 60000),
                   SessionEnd(session, start + 20 * 60000)});
  }

  v1::Decision MustAuthorize(const std::string& patient, int64_t start) {
    auto d = roller_->Authorize(AuthorizeFor(roller_->id(), patient, start));
    EXPECT_TRUE(d.has_value()) << "no decision on rollers/" << roller_->id() << "/decision";
    return d.value_or(v1::Decision());
  }

  std::vector<v1::Violation> Violations(const std::string& device) {
    auto stub = v1::ComplianceService::NewStub(cluster_->channel());
    grpc::ClientContext ctx;
    cluster_->Authenticate(&ctx);
    v1::ViolationsRequest req;
    req.set_device_id(device);
    v1::ViolationsResponse resp;
    EXPECT_TRUE(stub->ListViolations(&ctx, req, &resp).ok());
    return {resp.violations().begin(), resp.violations().end()};
  }

  static Cluster* cluster_;
  std::unique_ptr<TestDevice> roller_;
  std::unique_ptr<TestDevice> steriliser_;
};

Cluster* RulesTest::cluster_ = nullptr;

TEST_F(RulesTest, AllowsASterileRollerForItsPatientAndEchoesTheCorrelationId) {
  SetUpDevices("OK-1");
  steriliser_->Send({Cycle(1, {"OK-1"}, Now() - 2 * kHour)});
  auto request = AuthorizeFor("OK-1", "MRN-100", Now());
  const auto answered = [](const std::string& series) {
    return MetricValue(HttpGet(cluster_->bridge_metrics_port(), "/metrics"), series);
  };
  const std::string whole = "rollertrace_bridge_authorize_seconds_count";
  const std::string queued = "rollertrace_bridge_authorize_stage_seconds_count{stage=\"queued\"}";
  const std::string ingestd = "rollertrace_bridge_authorize_stage_seconds_count{stage=\"ingestd\"}";
  const double before = answered(whole), before_queued = answered(queued), before_ingestd = answered(ingestd);
  auto d = roller_->Authorize(request);
  ASSERT_TRUE(d.has_value());
  EXPECT_TRUE(d->allowed()) << Rules(*d);
  // The bridge timed it, from the request off MQTT to the decision published,
  // and its two stages: queued for an authoriser, then ingestd's answer.
  EXPECT_EQ(answered(whole), before + 1);
  EXPECT_EQ(answered(queued), before_queued + 1);
  EXPECT_EQ(answered(ingestd), before_ingestd + 1);
  EXPECT_EQ(d->correlation_id(), request.correlation_id());
  EXPECT_TRUE(Has(*d, "BI_PENDING")) << Rules(*d);
  // Only ingestd makes pseudonyms, and it hands none to a device.
  EXPECT_TRUE(d->patient_pseudonym().empty()) << d->patient_pseudonym();
}

TEST_F(RulesTest, RefusesASecondPatient) {
  SetUpDevices("SP-1");
  const int64_t now = Now();
  Session("SP-1-s1", "MRN-200", now - 10 * kDay, 1);
  steriliser_->Send({Cycle(2, {"SP-1"}, now - 2 * kHour)});
  v1::Decision other = MustAuthorize("MRN-201", now);
  EXPECT_FALSE(other.allowed());
  EXPECT_TRUE(Has(other, "SINGLE_PATIENT")) << Rules(other);
  v1::Decision same = MustAuthorize("MRN-200", now);
  EXPECT_TRUE(same.allowed()) << Rules(same);
}

// Issue #14: after a session carried out on another patient (a SINGLE_PATIENT
// violation, which locks the roller), the bound patient's next session was
// refused as SESSION_TOO_SOON because of the other patient's session.
TEST_F(RulesTest, AnotherPatientsSessionDoesNotMakeTheBoundPatientTooSoon) {
  SetUpDevices("TS-1");
  const int64_t now = Now();
  Session("TS-1-s1", "MRN-500", now - 10 * kDay, 1);
  Session("TS-1-s2", "MRN-501", now - kDay, 2);  // carried out on another patient
  std::string out;
  ASSERT_EQ(cluster_->Rollerctl({"unlock", "TS-1", "--by", "lead nurse", "--reason", "checked: wrong patient entered, roller ok"}, &out), 0)
      << out;
  steriliser_->Send({Cycle(3, {"TS-1"}, now - 2 * kHour)});
  v1::Decision same = MustAuthorize("MRN-500", now);
  EXPECT_FALSE(Has(same, "SESSION_TOO_SOON")) << Rules(same);
  EXPECT_TRUE(same.allowed()) << Rules(same);
  // Their own session a day ago would have been too soon.
  v1::Decision other = MustAuthorize("MRN-501", now);
  EXPECT_TRUE(Has(other, "SINGLE_PATIENT")) << Rules(other);
}

TEST_F(RulesTest, RefusesTheFifthSession) {
  SetUpDevices("SL-1");
  const int64_t now = Now();
  for (int i = 0; i < 4; ++i) {
    Session("SL-1-s" + std::to_string(i + 1), "MRN-300", now - (40 - 10 * i) * kDay, i + 1);
  }
  steriliser_->Send({Cycle(5, {"SL-1"}, now - 2 * kHour)});
  v1::Decision d = MustAuthorize("MRN-300", now);
  EXPECT_FALSE(d.allowed());
  EXPECT_TRUE(Has(d, "SESSION_LIMIT")) << Rules(d);
  EXPECT_EQ(d.hits_size(), 2) << Rules(d);  // SESSION_LIMIT and BI_PENDING only
}

TEST_F(RulesTest, RefusesARollerWithoutAPassingCycle) {
  SetUpDevices("NS-1");
  v1::Decision never = MustAuthorize("MRN-400", Now());
  EXPECT_FALSE(never.allowed());
  EXPECT_TRUE(Has(never, "NOT_STERILE")) << Rules(never);

  steriliser_->Send({Cycle(1, {"NS-1"}, Now() - 2 * kHour, /*pass=*/false)});
  v1::Decision failed = MustAuthorize("MRN-400", Now());
  EXPECT_FALSE(failed.allowed());
  EXPECT_TRUE(Has(failed, "NOT_STERILE")) << Rules(failed);
  EXPECT_TRUE(Has(failed, "CYCLE_FAILED")) << Rules(failed);
}

TEST_F(RulesTest, RefusesAnExpiredSterilisation) {
  SetUpDevices("EX-1");
  steriliser_->Send({Cycle(1, {"EX-1"}, Now() - 31 * kDay)});
  v1::Decision d = MustAuthorize("MRN-500", Now());
  EXPECT_FALSE(d.allowed());
  EXPECT_TRUE(Has(d, "STERILITY_EXPIRED")) << Rules(d);
}

TEST_F(RulesTest, RefusesAWornRollerAndLocksItWhenItIsUsedOffline) {
  // Rated for 200 revolutions of 540 needles; one session of 250 wears it out.
  SetUpDevices("WR-1", 540 * 200);
  const int64_t now = Now();
  Session("WR-1-s1", "MRN-600", now - 8 * kDay, 1, 250);
  steriliser_->Send({Cycle(2, {"WR-1"}, now - 2 * kHour)});
  v1::Decision d = MustAuthorize("MRN-600", now);
  EXPECT_FALSE(d.allowed());
  EXPECT_TRUE(Has(d, "WORN")) << Rules(d);

  // Used anyway while offline: a violation, and a lock command.
  roller_->Send({SessionStart("WR-1-s2", "MRN-600", now - kHour, /*offline=*/true)});
  auto command = roller_->NextCommand();
  ASSERT_TRUE(command.has_value()) << "no command on rollers/WR-1/command";
  EXPECT_EQ(command->command(), "lock");
  EXPECT_NE(command->reason().find("WORN"), std::string::npos) << command->reason();
  auto violations = Violations("WR-1");
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0].rule(), "WORN");
  EXPECT_EQ(violations[0].severity(), v1::SEVERITY_DENY);
  EXPECT_TRUE(violations[0].offline_decision());
  EXPECT_TRUE(violations[0].locked());
  EXPECT_EQ(cluster_->Device("WR-1").device().lifecycle(), v1::LIFECYCLE_LOCKED);
  const std::string metrics = HttpGet(cluster_->ingestd_metrics_port(), "/metrics");
  EXPECT_GE(MetricValue(metrics, "rollertrace_violations_total{rule=\"WORN\",severity=\"deny\"}"), 1) << metrics;

  // Locked: refused whatever else holds, until an administrator unlocks it.
  EXPECT_TRUE(Has(MustAuthorize("MRN-600", Now()), "DEVICE_LOCKED"));
  std::string out;
  ASSERT_EQ(cluster_->Rollerctl({"unlock", "WR-1", "--reason", "needles inspected", "--by", "admin-jo"}, &out), 0)
      << out;
  auto unlock = roller_->NextCommand();
  ASSERT_TRUE(unlock.has_value());
  EXPECT_EQ(unlock->command(), "unlock");
  auto record = cluster_->Device("WR-1");
  EXPECT_NE(record.device().lifecycle(), v1::LIFECYCLE_LOCKED);
  EXPECT_EQ(record.state().roller().unlocked_by(), "admin-jo");
  EXPECT_EQ(record.state().roller().unlock_reason(), "needles inspected");
}

TEST_F(RulesTest, FailedBiologicalIndicatorRecallsBackToTheLastNegativeOne) {
  const int64_t now = Now();
  for (const char* id : {"RC-A", "RC-B", "RC-C", "RC-D"}) cluster_->Register(Cluster::Roller(id));
  cluster_->Register(Cluster::Steriliser("RC-S"));
  cluster_->Register(Cluster::Steriliser("RC-T"));
  TestDevice s(cluster_->mqtt_uri(), "RC-S", "sterilisers");
  TestDevice t(cluster_->mqtt_uri(), "RC-T", "sterilisers");
  TestDevice b(cluster_->mqtt_uri(), "RC-B");
  TestDevice d(cluster_->mqtt_uri(), "RC-D");

  s.Send({Cycle(1, {"RC-A"}, now - 10 * kDay)});
  s.Send({Cycle(2, {"RC-B", "RC-C"}, now - 8 * kDay)});
  b.Send({SessionStart("RC-B-s1", "MRN-701", now - 8 * kDay + 2 * kHour)});
  s.Send({Cycle(3, {"RC-D"}, now - 6 * kDay)});
  d.Send({SessionStart("RC-D-s1", "MRN-702", now - 6 * kDay + 2 * kHour)});
  t.Send({Cycle(1, {"RC-C"}, now - 5 * kDay)});  // RC-C sterilised again elsewhere

  std::string out;
  ASSERT_EQ(cluster_->Rollerctl({"bi", "RC-S:1", "pass"}, &out), 0) << out;
  ASSERT_EQ(cluster_->Rollerctl({"bi", "RC-S:3", "fail", "--by", "lab"}, &out), 0) << out;
  EXPECT_NE(out.find("RECALL started"), std::string::npos) << out;

  auto stub = v1::ComplianceService::NewStub(cluster_->channel());
  grpc::ClientContext ctx;
  cluster_->Authenticate(&ctx);
  v1::RecallRequest req;
  req.set_steriliser_id("RC-S");
  req.set_cycle_number(3);
  v1::RecallReport r;
  ASSERT_TRUE(stub->Recall(&ctx, req, &r).ok());
  EXPECT_EQ(r.last_negative_cycle(), 1u);
  std::vector<uint64_t> suspect;
  for (const auto& c : r.suspect_cycles()) suspect.push_back(c.cycle().cycle_number());
  EXPECT_EQ(suspect, (std::vector<uint64_t>{2, 3}));
  std::vector<std::string> sessions;
  for (const auto& x : r.sessions_at_risk()) sessions.push_back(x.session_id());
  std::sort(sessions.begin(), sessions.end());
  EXPECT_EQ(sessions, (std::vector<std::string>{"RC-B-s1", "RC-D-s1"}));
  EXPECT_EQ(r.patients_size(), 2);
  std::vector<std::string> locked(r.locked_rollers().begin(), r.locked_rollers().end());
  EXPECT_EQ(locked, (std::vector<std::string>{"RC-B", "RC-D"}));
  EXPECT_EQ(cluster_->Device("RC-B").device().lifecycle(), v1::LIFECYCLE_LOCKED);
  EXPECT_NE(cluster_->Device("RC-C").device().lifecycle(), v1::LIFECYCLE_LOCKED);
  EXPECT_NE(cluster_->Device("RC-A").device().lifecycle(), v1::LIFECYCLE_LOCKED);
  auto command = d.NextCommand();
  ASSERT_TRUE(command.has_value()) << "the recall's lock never reached RC-D";
  EXPECT_EQ(command->command(), "lock");

  ASSERT_EQ(cluster_->Rollerctl({"recall", "RC-S:3"}, &out), 0) << out;
  EXPECT_NE(out.find("last negative indicator, cycle 1"), std::string::npos) << out;
  EXPECT_NE(out.find("RC-B-s1"), std::string::npos) << out;
  EXPECT_NE(out.find("Rollers locked (2): RC-B RC-D"), std::string::npos) << out;
}

// Roles: the auditor reads, only an admin writes, the device only ingests and
// asks; a wrong or missing token is refused and counted.
TEST_F(RulesTest, AccessNeedsTheRightRole) {
  SetUpDevices("AC-1");
  std::string out;
  const auto as = [&](const std::string& role, std::vector<std::string> args) {
    std::vector<std::string> argv = {"--token-file", cluster_->TokenFile(role)};
    argv.insert(argv.end(), args.begin(), args.end());
    return cluster_->Rollerctl(argv, &out);
  };
  EXPECT_EQ(as("auditor", {"show", "AC-1"}), 0) << out;
  EXPECT_EQ(as("auditor", {"retire", "AC-1", "--reason", "x"}), 6) << out;
  EXPECT_NE(out.find("role auditor may not call Retire"), std::string::npos) << out;
  EXPECT_EQ(as("device", {"violations"}), 6) << out;
  EXPECT_NE(out.find("role device may not call ListViolations"), std::string::npos) << out;
  WritePrivateFile(cluster_->dir() + "/wrong-token", "not-a-token-of-this-cluster\n");
  EXPECT_EQ(cluster_->Rollerctl({"--token-file", cluster_->dir() + "/wrong-token", "show", "AC-1"}, &out), 6) << out;
  EXPECT_NE(out.find("unknown token"), std::string::npos) << out;

  auto stub = v1::RegistryService::NewStub(cluster_->channel());
  grpc::ClientContext ctx;
  v1::GetDeviceRequest req;
  req.set_device_id("AC-1");
  v1::DeviceRecord record;
  EXPECT_EQ(stub->Get(&ctx, req, &record).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  const std::string metrics = HttpGet(cluster_->ingestd_metrics_port(), "/metrics");
  EXPECT_EQ(MetricValue(metrics, "rollertrace_auth_refusals_total{reason=\"forbidden\"}"), 2) << metrics;
  EXPECT_EQ(MetricValue(metrics, "rollertrace_auth_refusals_total{reason=\"unknown_token\"}"), 1) << metrics;
  EXPECT_EQ(MetricValue(metrics, "rollertrace_auth_refusals_total{reason=\"missing_token\"}"), 1) << metrics;
}

// DOMAIN.md's audit questions, one rollerctl command each.
TEST_F(RulesTest, TrailsAnswerTheAuditQuestionsInOneCommandEach) {
  SetUpDevices("TR-1");
  const int64_t now = Now();
  Session("TR-1-s1", "MRN-A", now - 10 * kDay, 1);
  // A second patient, without a new cycle: violations and a lock.
  roller_->Send({SessionStart("TR-1-s2", "MRN-B", now - kDay, /*offline=*/true)});
  ASSERT_TRUE(roller_->NextCommand().has_value());
  std::string out;
  ASSERT_EQ(cluster_->Rollerctl({"unlock", "TR-1", "--reason", "investigated", "--by", "admin-kim"}, &out), 0) << out;

  ASSERT_EQ(cluster_->Rollerctl({"trail", "roller", "TR-1"}, &out), 0) << out;
  for (const char* expected : {"registered", "sterilised", "S-TR-1:1", "session TR-1-s1", "session TR-1-s2",
                               "VIOLATION", "SINGLE_PATIENT", "NOT_STERILE", "locked", "unlocked",
                               "investigated (by admin-kim)", "wear at start"}) {
    EXPECT_NE(out.find(expected), std::string::npos) << "roller trail lacks '" << expected << "':\n" << out;
  }
  // In time order (device times here are days before the registration, which is ingestd's now).
  EXPECT_LT(out.find("sterilised"), out.find("session TR-1-s1")) << out;
  EXPECT_LT(out.find("session TR-1-s1"), out.find("session TR-1-s2")) << out;
  EXPECT_LT(out.find("VIOLATION"), out.find("unlocked")) << out;

  ASSERT_EQ(cluster_->Rollerctl({"trail", "patient", "--ref", "MRN-A"}, &out), 0) << out;
  EXPECT_NE(out.find("1 sessions"), std::string::npos) << out;
  EXPECT_NE(out.find("TR-1-s1"), std::string::npos) << out;
  EXPECT_EQ(out.find("TR-1-s2"), std::string::npos) << out;
  EXPECT_NE(out.find("S-TR-1:1"), std::string::npos) << out;
  EXPECT_EQ(out.find("MRN-A"), std::string::npos) << "the trail shows pseudonyms only:\n" << out;

  ASSERT_EQ(cluster_->Rollerctl({"trail", "cycle", "S-TR-1:1"}, &out), 0) << out;
  EXPECT_NE(out.find("load: TR-1"), std::string::npos) << out;
  EXPECT_NE(out.find("Sessions that relied on it (2)"), std::string::npos) << out;

  ASSERT_EQ(cluster_->Rollerctl({"trail", "cycle", "S-TR-1:99"}, &out), 1) << out;
  EXPECT_NE(out.find("no cycle 99"), std::string::npos) << out;
}

// Every byte of a file, for searching.
std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST_F(RulesTest, NoRawPatientReferenceReachesTheStoreLogsOrMetrics) {
  SetUpDevices("PV-1");
  const std::string ref = "ZEBRA-PATIENT-4711-QX";
  const int64_t now = Now();
  steriliser_->Send({Cycle(1, {"PV-1"}, now - 2 * kHour)});
  auto d = roller_->Authorize(AuthorizeFor("PV-1", ref, now));
  ASSERT_TRUE(d.has_value());
  roller_->Send({SessionStart("PV-1-s1", ref, now), SessionEnd("PV-1-s1", now + 60000)});
  const std::string pseudonym = cluster_->Device("PV-1").state().roller().bound_patient();
  ASSERT_EQ(pseudonym.rfind("p-", 0), 0u);

  std::string metrics = HttpGet(cluster_->ingestd_metrics_port(), "/metrics") +
                        HttpGet(cluster_->bridge_metrics_port(), "/metrics");
  EXPECT_EQ(metrics.find(ref), std::string::npos);
  // Let RocksDB write its files out, then read every one of them and the logs.
  cluster_->StopIngestd();
  bool pseudonym_seen = false;
  size_t files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(cluster_->dir())) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    if (name.rfind("payload-", 0) == 0) continue;  // what the test itself published
    const std::string content = Slurp(entry.path());
    ++files;
    EXPECT_EQ(content.find(ref), std::string::npos) << "raw patient reference found in " << entry.path();
    EXPECT_EQ(content.find(kTestSecret), std::string::npos) << "the secret found in " << entry.path();
    if (entry.path().string().find("ingestd-db") != std::string::npos) {
      pseudonym_seen |= content.find(pseudonym) != std::string::npos;
    }
  }
  EXPECT_GT(files, 5u);
  // The search does read the store: the pseudonym is there.
  EXPECT_TRUE(pseudonym_seen);
  cluster_->StartIngestd();
}

// roller-fleet's agents ask before every session: with every cycle failing
// they refuse every session; operators who carry on anyway produce violations
// and the rollers get locked.
TEST_F(RulesTest, AgentsRefuseUnsafeSessionsAndOverridesBecomeViolations) {
  const std::string end = std::to_string(Now());
  std::vector<std::string> common = {"--rollers", "3", "--sterilisers", "1", "--days", "21", "--seed", "5",
                                     "--end-time-ms", end, "--register-with", cluster_->ingestd_address(),
                                     "--failing-cycle-rate", "1", "--rate", "0"};
  auto careful_args = common;
  careful_args.insert(careful_args.end(), {"--roller-prefix", "CA-", "--steriliser-prefix", "CS-", "--spool-dir",
                                           cluster_->dir() + "/careful"});
  auto careful = cluster_->StartFleet(careful_args, "careful.log");
  ASSERT_EQ(careful->Wait(std::chrono::seconds(120)), 0) << ReadFile(careful->log_path());
  for (const char* id : {"CA-0001", "CA-0002", "CA-0003"}) {
    for (const auto& e : cluster_->History(id)) EXPECT_FALSE(e.event().has_session_started()) << id;
    EXPECT_TRUE(Violations(id).empty()) << id;
  }
  EXPECT_NE(ReadFile(careful->log_path()).find(" 0 allowed"), std::string::npos) << ReadFile(careful->log_path());

  auto reckless_args = common;
  reckless_args.insert(reckless_args.end(), {"--roller-prefix", "RK-", "--steriliser-prefix", "RS-", "--spool-dir",
                                             cluster_->dir() + "/reckless", "--override-rate", "1"});
  auto reckless = cluster_->StartFleet(reckless_args, "reckless.log");
  ASSERT_EQ(reckless->Wait(std::chrono::seconds(120)), 0) << ReadFile(reckless->log_path());
  for (const char* id : {"RK-0001", "RK-0002", "RK-0003"}) {
    auto violations = Violations(id);
    auto not_sterile = std::find_if(violations.begin(), violations.end(),
                                    [](const v1::Violation& v) { return v.rule() == "NOT_STERILE"; });
    ASSERT_NE(not_sterile, violations.end()) << id;
    EXPECT_TRUE(not_sterile->locked()) << id;
    EXPECT_FALSE(not_sterile->session_id().empty()) << id;
    EXPECT_EQ(cluster_->Device(id).device().lifecycle(), v1::LIFECYCLE_LOCKED) << id;
  }
}

}  // namespace
}  // namespace rollertrace::testing
