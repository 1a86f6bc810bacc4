// Whose word counts (DOMAIN.md): sterilisers, archives and clients cannot
// vouch for themselves. Each test reproduces what issue #10 found, through
// the interface it was found with: MQTT (test devices on a real Mosquitto),
// rollerctl, or gRPC, against a real ingestd on RocksDB and mqtt-bridge.
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/util/delimited_message_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>

#include "support/cluster.h"
#include "support/devices.h"

namespace rollertrace::testing {
namespace {


v1::Event CycleWithIndicator(uint64_t number, std::vector<std::string> load, int64_t end, v1::IndicatorResult bi) {
  v1::Event e = Cycle(number, std::move(load), end);
  e.mutable_sterilisation_cycle()->set_biological_indicator(bi);
  return e;
}

class TrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<Cluster>("trust");
    cluster_->StartAll();
  }

  v1::CycleRecord GetCycle(const std::string& steriliser, uint64_t number) {
    auto stub = v1::ComplianceService::NewStub(cluster_->channel());
    grpc::ClientContext ctx;
    cluster_->Authenticate(&ctx);
    v1::CycleRequest req;
    req.set_steriliser_id(steriliser);
    req.set_cycle_number(number);
    v1::CycleRecord c;
    grpc::Status s = stub->GetCycle(&ctx, req, &c);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return c;
  }

  grpc::Status GetRecall(const std::string& steriliser, uint64_t number, v1::RecallReport* r) {
    auto stub = v1::ComplianceService::NewStub(cluster_->channel());
    grpc::ClientContext ctx;
    cluster_->Authenticate(&ctx);
    v1::RecallRequest req;
    req.set_steriliser_id(steriliser);
    req.set_cycle_number(number);
    return stub->Recall(&ctx, req, r);
  }

  v1::RollerTrail Trail(const std::string& device) {
    auto stub = v1::ComplianceService::NewStub(cluster_->channel());
    grpc::ClientContext ctx;
    cluster_->Authenticate(&ctx);
    v1::RollerTrailRequest req;
    req.set_device_id(device);
    v1::RollerTrail t;
    EXPECT_TRUE(stub->GetRollerTrail(&ctx, req, &t).ok());
    return t;
  }

  std::unique_ptr<Cluster> cluster_;
};

// Issue #10, 1: steriliser SG reports its own BI FAIL; the lab's FAIL follows.
TEST_F(TrustTest, ASterilisersOwnFailedIndicatorStartsTheRecallAtOnce) {
  const int64_t now = Now();
  cluster_->Register(Cluster::Roller("RG1"));
  cluster_->Register(Cluster::Steriliser("SG"));
  TestDevice sg(cluster_->mqtt_uri(), "SG", "sterilisers");
  TestDevice rg1(cluster_->mqtt_uri(), "RG1");
  sg.Send({Cycle(1, {"RG1"}, now - 3 * kDay)});
  rg1.Send({SessionStart("RG1-s1", "MRN-G1", now - 3 * kDay + 2 * kHour),
            SessionEnd("RG1-s1", now - 3 * kDay + 3 * kHour)});
  // Cycle 2 comes with the steriliser's own failed indicator.
  sg.Send({CycleWithIndicator(2, {"RG1"}, now - kDay, v1::INDICATOR_FAIL)});

  v1::RecallReport recall;
  ASSERT_TRUE(GetRecall("SG", 2, &recall).ok()) << "a steriliser's own FAIL started no recall";
  ASSERT_EQ(recall.sessions_at_risk_size(), 1);
  EXPECT_EQ(recall.sessions_at_risk(0).session_id(), "RG1-s1");
  EXPECT_EQ(recall.patients_size(), 1);
  EXPECT_EQ(std::vector<std::string>(recall.locked_rollers().begin(), recall.locked_rollers().end()),
            std::vector<std::string>{"RG1"});
  EXPECT_EQ(cluster_->Device("RG1").device().lifecycle(), v1::LIFECYCLE_LOCKED);
  auto command = rg1.NextCommand();
  ASSERT_TRUE(command.has_value()) << "the recall's lock never reached RG1";
  EXPECT_EQ(command->command(), "lock");

  // The lab's result is recorded too, beside the steriliser's report.
  std::string out;
  ASSERT_EQ(cluster_->Rollerctl({"bi", "SG:2", "fail", "--by", "lab"}, &out), 0) << out;
  v1::CycleRecord c = GetCycle("SG", 2);
  EXPECT_EQ(c.device_biological_indicator(), v1::INDICATOR_FAIL);
  EXPECT_EQ(c.lab_biological_indicator(), v1::INDICATOR_FAIL);
  EXPECT_EQ(c.biological_indicator(), v1::INDICATOR_FAIL);
  EXPECT_EQ(c.bi_reports_size(), 2);
  ASSERT_EQ(cluster_->Rollerctl({"recall", "SG:2"}, &out), 0) << out;
  EXPECT_NE(out.find("RG1-s1"), std::string::npos) << out;
  ASSERT_EQ(cluster_->Rollerctl({"cycle", "SG:2"}, &out), 0) << out;
  EXPECT_NE(out.find("BI FAIL (lab FAIL by lab; steriliser reported FAIL)"), std::string::npos) << out;
}

// Issue #10, 2: steriliser SH reports its own PASS; the lab's FAIL must still count.
TEST_F(TrustTest, TheLabsFailedIndicatorIsRecordedAfterASterilisersOwnPass) {
  const int64_t now = Now();
  cluster_->Register(Cluster::Roller("RH1"));
  cluster_->Register(Cluster::Roller("RH2"));
  cluster_->Register(Cluster::Steriliser("SH"));
  TestDevice sh(cluster_->mqtt_uri(), "SH", "sterilisers");
  TestDevice rh1(cluster_->mqtt_uri(), "RH1");
  TestDevice rh2(cluster_->mqtt_uri(), "RH2");
  sh.Send({CycleWithIndicator(1, {"RH1"}, now - 6 * kDay, v1::INDICATOR_PASS)});
  rh1.Send({SessionStart("RH1-s1", "MRN-H1", now - 6 * kDay + kHour), SessionEnd("RH1-s1", now - 6 * kDay + 2 * kHour)});
  sh.Send({Cycle(2, {"RH2"}, now - 4 * kDay)});
  rh2.Send({SessionStart("RH2-s1", "MRN-H2", now - 4 * kDay + kHour), SessionEnd("RH2-s1", now - 4 * kDay + 2 * kHour)});

  // A steriliser's own PASS is not yet a negative indicator: before the lab
  // confirms it, the rules still warn that the result is pending.
  v1::CycleRecord first = GetCycle("SH", 1);
  EXPECT_EQ(first.device_biological_indicator(), v1::INDICATOR_PASS);
  EXPECT_EQ(first.biological_indicator(), v1::INDICATOR_PENDING);

  // A failure of cycle 2 reaches back past cycle 1: its PASS was only the steriliser's word.
  std::string out;
  ASSERT_EQ(cluster_->Rollerctl({"bi", "SH:2", "fail", "--by", "lab"}, &out), 0) << out;
  v1::RecallReport two;
  ASSERT_TRUE(GetRecall("SH", 2, &two).ok());
  EXPECT_EQ(two.last_negative_cycle(), 0u);
  EXPECT_EQ(two.sessions_at_risk_size(), 2);

  // And the lab's FAIL of cycle 1 itself is accepted, not refused.
  ASSERT_EQ(cluster_->Rollerctl({"bi", "SH:1", "fail", "--by", "lab"}, &out), 0) << out;
  EXPECT_NE(out.find("recorded biological indicator FAIL"), std::string::npos) << out;
  v1::CycleRecord c = GetCycle("SH", 1);
  EXPECT_EQ(c.device_biological_indicator(), v1::INDICATOR_PASS);
  EXPECT_EQ(c.lab_biological_indicator(), v1::INDICATOR_FAIL);
  EXPECT_EQ(c.biological_indicator(), v1::INDICATOR_FAIL);
  v1::RecallReport one;
  ASSERT_TRUE(GetRecall("SH", 1, &one).ok()) << "the lab's FAIL after a steriliser's PASS started no recall";
  std::vector<std::string> at_risk;
  for (const auto& x : one.sessions_at_risk()) at_risk.push_back(x.session_id());
  std::sort(at_risk.begin(), at_risk.end());
  EXPECT_EQ(at_risk, (std::vector<std::string>{"RH1-s1", "RH2-s1"}));
  ASSERT_EQ(cluster_->Rollerctl({"cycle", "SH:1"}, &out), 0) << out;
  EXPECT_NE(out.find("steriliser reported pass, DISAGREES"), std::string::npos) << out;
}

// Issue #10, 3: a cycle dated 60 days ahead must not make its load sterile.
TEST_F(TrustTest, ACycleDatedInTheFutureIsRefusedAndRecordedAsAFinding) {
  const int64_t now = Now();
  cluster_->Register(Cluster::Roller("RF1"));
  cluster_->Register(Cluster::Steriliser("SF"));
  TestDevice sf(cluster_->mqtt_uri(), "SF", "sterilisers");
  TestDevice rf1(cluster_->mqtt_uri(), "RF1");
  sf.Send({Cycle(1, {"RF1"}, now + 60 * kDay)});

  v1::Decision today = rf1.Authorize(AuthorizeFor("RF1", "MRN-F1", now)).value_or(v1::Decision());
  EXPECT_FALSE(today.allowed()) << Rules(today);
  EXPECT_TRUE(Has(today, "NOT_STERILE")) << Rules(today);
  v1::Decision later = rf1.Authorize(AuthorizeFor("RF1", "MRN-F1", now + 45 * kDay)).value_or(v1::Decision());
  EXPECT_FALSE(later.allowed()) << Rules(later);
  EXPECT_TRUE(Has(later, "CLOCK_SKEW")) << Rules(later);
  EXPECT_EQ(Rules(later).find("min before start"), std::string::npos) << "arithmetic on clamped times: " << Rules(later);
  EXPECT_NE(cluster_->Device("RF1").device().lifecycle(), v1::LIFECYCLE_STERILE);

  // Kept as a finding in the steriliser's record, counted, and shown.
  v1::RollerTrail trail = Trail("SF");
  ASSERT_EQ(trail.findings_size(), 1);
  EXPECT_EQ(trail.findings(0).kind(), "CYCLE_TIME");
  EXPECT_EQ(trail.cycles_size(), 0);
  EXPECT_EQ(MetricValue(HttpGet(cluster_->ingestd_metrics_port(), "/metrics"),
                        "rollertrace_findings_total{kind=\"CYCLE_TIME\"}"),
            1);
  std::string out;
  ASSERT_EQ(cluster_->Rollerctl({"trail", "roller", "SF"}, &out), 0) << out;
  EXPECT_NE(out.find("FINDING"), std::string::npos) << out;
  EXPECT_NE(out.find("a cycle cannot be reported before it ended"), std::string::npos) << out;

  // A cycle that starts after its end is refused the same way.
  v1::Event backwards = Cycle(2, {"RF1"}, now - kHour);
  backwards.mutable_sterilisation_cycle()->set_start_unix_ms(now);
  sf.Send({backwards});
  EXPECT_EQ(Trail("SF").findings_size(), 2);
  ASSERT_EQ(cluster_->Rollerctl({"verify"}, &out), 0) << out;
}

// Issue #10, 4: a cycle number resent with other content never overwrites.
TEST_F(TrustTest, AResentCycleNumberWithOtherContentIsRefusedAndTheLabsResultKept) {
  const int64_t now = Now();
  cluster_->Register(Cluster::Roller("RC1"));
  cluster_->Register(Cluster::Steriliser("SC"));
  TestDevice sc(cluster_->mqtt_uri(), "SC", "sterilisers");
  sc.Send({Cycle(1, {"RC1"}, now - kDay)});
  std::string out;
  ASSERT_EQ(cluster_->Rollerctl({"bi", "SC:1", "pass", "--by", "lab"}, &out), 0) << out;
  v1::Event forged = Cycle(1, {"RC1"}, now - kDay, /*pass=*/false);  // 126 °C
  sc.Send({forged});
  v1::CycleRecord c = GetCycle("SC", 1);
  EXPECT_DOUBLE_EQ(c.cycle().exposure_temperature_c(), 134.5);
  EXPECT_EQ(c.lab_biological_indicator(), v1::INDICATOR_PASS);
  EXPECT_EQ(c.biological_indicator(), v1::INDICATOR_PASS);
  v1::RollerTrail trail = Trail("SC");
  ASSERT_EQ(trail.findings_size(), 1);
  EXPECT_EQ(trail.findings(0).kind(), "CYCLE_CONFLICT");
  EXPECT_FALSE(trail.findings(0).stored_hash().empty());
  EXPECT_NE(trail.findings(0).stored_hash(), trail.findings(0).received_hash());
  ASSERT_EQ(cluster_->Rollerctl({"trail", "cycle", "SC:1"}, &out), 0) << out;
  EXPECT_NE(out.find("CYCLE_CONFLICT"), std::string::npos) << out;
  // An identical resend is only a resend.
  sc.Send({Cycle(1, {"RC1"}, now - kDay)});
  EXPECT_EQ(Trail("SC").findings_size(), 1);
  EXPECT_EQ(MetricValue(HttpGet(cluster_->ingestd_metrics_port(), "/metrics"),
                        "rollertrace_findings_total{kind=\"CYCLE_CONFLICT\"}"),
            1);
}

// Issue #10, 6: a session start without its patient cannot bind the roller to nobody.
TEST_F(TrustTest, ASessionStartWithoutAPatientOrWithAClientsPseudonymIsRefused) {
  const int64_t now = Now();
  cluster_->Register(Cluster::Roller("RP1"));
  cluster_->Register(Cluster::Steriliser("SP"));
  TestDevice sp(cluster_->mqtt_uri(), "SP", "sterilisers");
  sp.Send({Cycle(1, {"RP1"}, now - 2 * kHour)});
  const std::string metrics_before = HttpGet(cluster_->bridge_metrics_port(), "/metrics");
  cluster_->Publish("rollers/RP1/events/json",
                    R"({"deviceId":"RP1","events":[{"sequence":"1","deviceTimeUnixMs":")" + std::to_string(now) +
                        R"(","sessionStarted":{"sessionId":"RP1-s0","operatorId":"op-1"}}]})");
  cluster_->Publish("rollers/RP1/events/json",
                    R"({"deviceId":"RP1","events":[{"sequence":"1","deviceTimeUnixMs":")" + std::to_string(now) +
                        R"(","sessionStarted":{"sessionId":"RP1-s0","patientPseudonym":"p-0000","operatorId":"op-1"}}]})");
  ASSERT_TRUE([&] {
    for (int i = 0; i < 100; ++i) {
      if (MetricValue(HttpGet(cluster_->bridge_metrics_port(), "/metrics"),
                      "rollertrace_bridge_messages_rejected_total{reason=\"invalid\"}") >=
          MetricValue(metrics_before, "rollertrace_bridge_messages_rejected_total{reason=\"invalid\"}") + 2) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }()) << ReadFile(cluster_->dir() + "/bridge.log");
  v1::DeviceRecord record = cluster_->Device("RP1");
  EXPECT_EQ(record.state().events_stored(), 0u);
  EXPECT_TRUE(record.state().roller().bound_patient().empty());

  // Straight to gRPC the same is refused, and AuthorizeUse takes no pseudonym either.
  auto ingest = v1::IngestService::NewStub(cluster_->channel());
  grpc::ClientContext ctx;
  cluster_->Authenticate(&ctx);
  v1::IngestRequest req;
  auto* batch = req.add_batches();
  batch->set_device_id("RP1");
  v1::Event e = SessionStart("RP1-s0", "", now);
  e.set_sequence(1);
  *batch->add_events() = e;
  v1::IngestResponse resp;
  ASSERT_TRUE(ingest->IngestBatch(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.rejections_size(), 1);
  EXPECT_NE(resp.rejections(0).detail().find("patient"), std::string::npos) << resp.rejections(0).detail();
  auto compliance = v1::ComplianceService::NewStub(cluster_->channel());
  grpc::ClientContext actx;
  cluster_->Authenticate(&actx);
  v1::AuthorizeRequest ask = AuthorizeFor("RP1", "", now);
  ask.mutable_session()->set_patient_pseudonym("p-chosen-by-the-client");
  v1::Decision d;
  EXPECT_EQ(compliance->AuthorizeUse(&actx, ask, &d).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // A real session binds the roller; a decision over MQTT never carries the pseudonym.
  TestDevice rp1(cluster_->mqtt_uri(), "RP1");
  v1::Decision first = rp1.Authorize(AuthorizeFor("RP1", "MRN-P1", now)).value_or(v1::Decision());
  EXPECT_TRUE(first.allowed()) << Rules(first);
  EXPECT_TRUE(first.patient_pseudonym().empty());
  rp1.Send({SessionStart("RP1-s1", "MRN-P1", now), SessionEnd("RP1-s1", now + 20 * 60000)});
  v1::Decision other = rp1.Authorize(AuthorizeFor("RP1", "MRN-P2", now + 8 * kDay)).value_or(v1::Decision());
  EXPECT_TRUE(Has(other, "SINGLE_PATIENT")) << Rules(other);
  EXPECT_TRUE(other.patient_pseudonym().empty());
  ASSERT_TRUE(other.has_roller());
  EXPECT_TRUE(other.roller().use().bound_patient().empty());
  EXPECT_TRUE(other.roller().patient_bound());
}

TEST_F(TrustTest, APatientTrailRefusesWhatIsNotAPseudonym) {
  std::string out;
  EXPECT_NE(cluster_->Rollerctl({"trail", "patient", "--pseudonym", "p-abc"}, &out), 0) << out;
  EXPECT_NE(out.find("not a patient pseudonym"), std::string::npos) << out;
  auto stub = v1::ComplianceService::NewStub(cluster_->channel());
  grpc::ClientContext ctx;
  cluster_->Authenticate(&ctx);
  v1::PatientTrailRequest req;
  req.set_patient_pseudonym(std::string("p-") + std::string(63, 'a') + std::string(1, '\0'));
  v1::PatientTrail t;
  EXPECT_EQ(stub->GetPatientTrail(&ctx, req, &t).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// --- Issue #10, 5: import checks the whole archive before it writes. ---

std::vector<v1::ArchiveChunk> ReadArchive(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  google::protobuf::io::IstreamInputStream input(&file);
  std::vector<v1::ArchiveChunk> chunks;
  v1::ArchiveChunk chunk;
  bool clean_eof = false;
  while ((chunk.Clear(), google::protobuf::util::ParseDelimitedFromZeroCopyStream(&chunk, &input, &clean_eof))) {
    chunks.push_back(chunk);
  }
  EXPECT_TRUE(clean_eof) << path;
  return chunks;
}

void WriteArchive(const std::string& path, const std::vector<v1::ArchiveChunk>& chunks) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  for (const auto& c : chunks) ASSERT_TRUE(google::protobuf::util::SerializeDelimitedToOstream(c, &file));
}

class ImportTest : public TrustTest {
 protected:
  // X-1 with a few events, exported to dir/x1.archive.
  void SetUp() override {
    TrustTest::SetUp();
    cluster_->Register(Cluster::Roller("X-1"));
    cluster_->Register(Cluster::Steriliser("XS"));
    TestDevice xs(cluster_->mqtt_uri(), "XS", "sterilisers");
    xs.Send({Cycle(1, {"X-1"}, Now() - 2 * kHour)});
    TestDevice x1(cluster_->mqtt_uri(), "X-1");
    x1.Send({SessionStart("X-1-s1", "MRN-X1", Now() - kHour), SessionEnd("X-1-s1", Now() - 30 * 60000)});
    archive_ = cluster_->dir() + "/x1.archive";
    std::string out;
    ASSERT_EQ(cluster_->Rollerctl({"export", "--device", "X-1", "-o", archive_}, &out), 0) << out;
    history_before_ = HistoryText("X-1");
  }

  std::string HistoryText(const std::string& id) {
    std::string out;
    EXPECT_EQ(cluster_->Rollerctl({"--json", "history", id}, &out), 0) << out;
    return out;
  }

  std::string archive_;
  std::string history_before_;
};

TEST_F(ImportTest, RefusesRecordsOfADeviceTheHeaderDoesNotName) {
  std::vector<v1::ArchiveChunk> chunks = ReadArchive(archive_);
  ASSERT_FALSE(chunks.empty());
  // A header for a new device, with X-1's events (rewritten) and a device record for the new one.
  chunks.front().mutable_header()->clear_device_ids();
  chunks.front().mutable_header()->add_device_ids("NEW-1");
  uint64_t records = 0;
  for (auto& c : chunks) {
    for (auto& r : *c.mutable_records()) {
      if (r.kind() == "events") {
        v1::StoredEvent e;
        ASSERT_TRUE(e.ParseFromString(r.value()));
        e.mutable_event()->mutable_heartbeat()->set_firmware("EVIL");
        r.set_value(e.SerializeAsString());
      }
      if (r.kind() == "devices") {
        v1::DeviceRecord d;
        ASSERT_TRUE(d.ParseFromString(r.value()));
        d.mutable_device()->set_device_id("NEW-1");
        r.set_key("NEW-1");
        r.set_value(d.SerializeAsString());
      }
    }
    records += c.records_size();
  }
  chunks.back().mutable_trailer()->set_records(records);
  const std::string crafted = cluster_->dir() + "/crafted.archive";
  WriteArchive(crafted, chunks);
  std::string out;
  EXPECT_NE(cluster_->Rollerctl({"import", crafted}, &out), 0) << out;
  EXPECT_NE(out.find("belongs to device X-1, which the archive's header does not list"), std::string::npos) << out;
  EXPECT_EQ(HistoryText("X-1"), history_before_) << "a crafted archive rewrote X-1's events";
  EXPECT_NE(cluster_->Rollerctl({"show", "NEW-1"}, &out), 0) << out;
  ASSERT_EQ(cluster_->Rollerctl({"verify"}, &out), 0) << out;
}

TEST_F(ImportTest, RefusesADeviceRecordThatDoesNotParse) {
  v1::ArchiveChunk chunk;
  chunk.mutable_header()->set_format("rollertrace-archive/2");
  chunk.mutable_header()->add_device_ids("BAD-1");
  auto* r = chunk.add_records();
  r->set_kind("devices");
  r->set_key("BAD-1");
  r->set_value(std::string("\xff\xff\xff\xff", 4));
  chunk.mutable_trailer()->set_records(1);
  const std::string crafted = cluster_->dir() + "/bad.archive";
  WriteArchive(crafted, {chunk});
  std::string out;
  EXPECT_NE(cluster_->Rollerctl({"import", crafted}, &out), 0) << out;
  EXPECT_NE(out.find("does not parse"), std::string::npos) << out;
  // The fleet list (ListDevices) still answers.
  ASSERT_EQ(cluster_->Rollerctl({"list"}, &out), 0) << out;
  EXPECT_NE(out.find("X-1"), std::string::npos) << out;
}

TEST_F(ImportTest, ACutArchiveLeavesTheOtherStoreExactlyAsItWas) {
  Cluster fresh("trust-fresh");
  fresh.StartBroker();
  fresh.StartIngestd();
  std::vector<v1::ArchiveChunk> chunks = ReadArchive(archive_);
  ASSERT_GE(chunks.size(), 2u) << "the archive has a trailer chunk";
  // Cut in the middle of a chunk: rollerctl cancels the call.
  const std::string whole = ReadFile(archive_);
  const std::string cut = fresh.dir() + "/cut.archive";
  std::ofstream(cut, std::ios::binary) << whole.substr(0, whole.size() - 7);
  std::string out;
  EXPECT_EQ(fresh.Rollerctl({"import", cut}, &out), 2) << out;
  EXPECT_NE(out.find("import cancelled, nothing was imported"), std::string::npos) << out;
  EXPECT_NE(fresh.Rollerctl({"show", "X-1"}, &out), 0) << out;
  // Cut exactly at a chunk boundary, before the trailer: ingestd refuses it whole.
  std::vector<v1::ArchiveChunk> without_trailer(chunks.begin(), chunks.end());
  while (!without_trailer.empty() && without_trailer.back().has_trailer()) without_trailer.pop_back();
  const std::string short_file = fresh.dir() + "/short.archive";
  WriteArchive(short_file, without_trailer);
  EXPECT_NE(fresh.Rollerctl({"import", short_file}, &out), 0) << out;
  EXPECT_NE(out.find("cut short"), std::string::npos) << out;
  EXPECT_NE(fresh.Rollerctl({"show", "X-1"}, &out), 0) << out;
  EXPECT_NE(fresh.Rollerctl({"show", "XS"}, &out), 0) << out;
  // The whole archive imports, and verifies.
  ASSERT_EQ(fresh.Rollerctl({"import", archive_}, &out), 0) << out;
  ASSERT_EQ(fresh.Rollerctl({"verify"}, &out), 0) << out;
  ASSERT_EQ(fresh.Rollerctl({"show", "X-1"}, &out), 0) << out;
}

// --- Issue #10, 7: credentials as a careful operator expects. ---

// ingestd with `args` (and a store in dir); waits for it to exit and returns its code and log.
int RunIngestd(const std::string& dir, std::vector<std::string> args, std::string* log) {
  std::vector<std::string> argv = {ROLLERTRACE_INGESTD, "--data-dir", dir + "/db", "--metrics", ""};
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = Process::Start(argv, dir + "/ingestd.log", {{"ROLLERTRACE_PSEUDONYM_SECRET", kTestSecret}});
  const int code = p->Wait(std::chrono::seconds(20));
  *log = ReadFile(dir + "/ingestd.log");
  return code;
}

TEST(Credentials, IngestdServesWithoutAccessControlOnlyOnLoopback) {
  const std::string dir = MakeTempDir("open-access");
  std::string log;
  EXPECT_EQ(RunIngestd(dir, {"--insecure-no-auth", "--listen", "0.0.0.0:" + std::to_string(FreePort())}, &log), 2)
      << log;
  EXPECT_NE(log.find("--insecure-no-auth serves only on a loopback address"), std::string::npos) << log;
}

TEST(Credentials, IngestdRefusesSecretsOthersMayReadAndTokensGivenTwice) {
  const std::string dir = MakeTempDir("secrets");
  const std::string listen = "127.0.0.1:" + std::to_string(FreePort());
  std::ofstream(dir + "/tokens") << "admin admin-token-0123456789abcdef\n";
  std::filesystem::permissions(dir + "/tokens", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                                    std::filesystem::perms::others_read);
  std::string log;
  EXPECT_EQ(RunIngestd(dir, {"--listen", listen, "--tokens-file", dir + "/tokens"}, &log), 2) << log;
  EXPECT_NE(log.find("may be read by group or others (mode 0604)"), std::string::npos) << log;
  EXPECT_EQ(log.find("admin-token-0123456789abcdef"), std::string::npos) << "the error leaks the token";

  WritePrivateFile(dir + "/tokens", "admin same-token-0123456789abcdef\nauditor same-token-0123456789abcdef\n");
  EXPECT_EQ(RunIngestd(dir, {"--listen", listen, "--tokens-file", dir + "/tokens"}, &log), 2) << log;
  EXPECT_NE(log.find("line 2: this token is already given"), std::string::npos) << log;

  WritePrivateFile(dir + "/tokens", "admin admin-token-0123456789abcdef\n");
  std::ofstream(dir + "/secret") << "a-pseudonym-secret-of-this-test\n";
  std::filesystem::permissions(dir + "/secret", std::filesystem::perms::owner_read | std::filesystem::perms::group_read);
  EXPECT_EQ(RunIngestd(dir, {"--listen", listen, "--tokens-file", dir + "/tokens", "--pseudonym-secret-file",
                             dir + "/secret"},
                       &log),
            2)
      << log;
  EXPECT_NE(log.find("chmod 600 " + dir + "/secret"), std::string::npos) << log;
}

TEST(Credentials, TheSigningKeyIsCreatedPrivateAndNeverThroughALink) {
  const std::string dir = MakeTempDir("signing-key");
  const int port = FreePort();
  WritePrivateFile(dir + "/tokens", "admin admin-token-0123456789abcdef\n");
  {
    auto ingestd = Process::Start({ROLLERTRACE_INGESTD, "--data-dir", dir + "/db", "--metrics", "", "--listen",
                                   "127.0.0.1:" + std::to_string(port), "--tokens-file", dir + "/tokens",
                                   "--signing-key", dir + "/signing.pem"},
                                  dir + "/ingestd.log", {{"ROLLERTRACE_PSEUDONYM_SECRET", kTestSecret}});
    ASSERT_TRUE(WaitForPort(port, std::chrono::seconds(20))) << ReadFile(dir + "/ingestd.log");
  }
  struct stat st{};
  ASSERT_EQ(stat((dir + "/signing.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // A link where the key should be (planted to make ingestd write its key elsewhere) is refused.
  std::filesystem::create_symlink(dir + "/elsewhere.pem", dir + "/link.pem");
  std::string log;
  EXPECT_EQ(RunIngestd(dir, {"--listen", "127.0.0.1:" + std::to_string(FreePort()), "--tokens-file", dir + "/tokens",
                             "--signing-key", dir + "/link.pem"},
                       &log),
            2)
      << log;
  EXPECT_NE(log.find("is a symbolic link"), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(dir + "/elsewhere.pem"));
}

TEST(Credentials, AnAgentSendsNoPasswordInClearOffLoopback) {
  const std::string dir = MakeTempDir("agent-password");
  WritePrivateFile(dir + "/password", "secret-password\n");
  auto agent = Process::Start({ROLLERTRACE_AGENT, "--device-id", "R-1", "--mqtt", "tcp://192.0.2.10:1883",
                               "--mqtt-username", "R-1", "--mqtt-password-file", dir + "/password", "--spool-dir",
                               dir + "/spool"},
                              dir + "/agent.log");
  EXPECT_EQ(agent->Wait(std::chrono::seconds(10)), 2) << ReadFile(dir + "/agent.log");
  EXPECT_NE(ReadFile(dir + "/agent.log").find("in clear"), std::string::npos) << ReadFile(dir + "/agent.log");
  std::filesystem::permissions(dir + "/password", std::filesystem::perms::group_read, std::filesystem::perm_options::add);
  auto loose = Process::Start({ROLLERTRACE_AGENT, "--device-id", "R-1", "--mqtt", "ssl://192.0.2.10:8883",
                               "--mqtt-username", "R-1", "--mqtt-password-file", dir + "/password", "--spool-dir",
                               dir + "/spool"},
                              dir + "/agent2.log");
  EXPECT_EQ(loose->Wait(std::chrono::seconds(10)), 2) << ReadFile(dir + "/agent2.log");
  EXPECT_NE(ReadFile(dir + "/agent2.log").find("chmod 600"), std::string::npos) << ReadFile(dir + "/agent2.log");
}

// The shipped production broker configuration and ACL, on loopback: devices
// log in with their own credentials over TLS and can neither publish as
// another device nor knock the bridge off with its client id.
TEST(Credentials, TheProductionBrokerTakesOnlyLoggedInDevicesEachOnItsOwnTopics) {
  Cluster cluster("production-broker");
  const std::string dir = cluster.dir();
  ASSERT_NO_FATAL_FAILURE(MakeTestCertificate(dir));
  // Users and passwords, made the way the production config says.
  auto passwd = Process::Start({ROLLERTRACE_MOSQUITTO_PASSWD, "-c", "-b", dir + "/passwd", "R-1", "r1-password"},
                               dir + "/passwd.log");
  ASSERT_EQ(passwd->Wait(std::chrono::seconds(10)), 0) << ReadFile(dir + "/passwd.log");
  for (const char* bridge_user : {"mqtt-bridge", "mqtt-bridge-control", "mqtt-bridge-acks"}) {
    passwd = Process::Start({ROLLERTRACE_MOSQUITTO_PASSWD, "-b", dir + "/passwd", bridge_user, "bridge-password"},
                            dir + "/passwd.log");
    ASSERT_EQ(passwd->Wait(std::chrono::seconds(10)), 0) << ReadFile(dir + "/passwd.log");
  }
  // Mosquitto started as root reads its files as user mosquitto: test files only.
  std::filesystem::permissions(dir + "/passwd", std::filesystem::perms::others_read, std::filesystem::perm_options::add);
  std::filesystem::copy_file(std::string(ROLLERTRACE_SOURCE_DIR) + "/deploy/mosquitto/acl.conf", dir + "/acl.conf");
  std::filesystem::permissions(dir + "/acl.conf", std::filesystem::perms::others_read, std::filesystem::perm_options::add);
  std::ifstream shipped(std::string(ROLLERTRACE_SOURCE_DIR) + "/deploy/mosquitto/mosquitto-production.conf");
  std::ofstream conf(dir + "/mosquitto.conf");
  bool clientid_from_user = false;
  for (std::string line; std::getline(shipped, line);) {
    const std::string key = line.substr(0, line.find(' '));
    if (key == "listener") line = "listener " + std::to_string(cluster.mqtt_port()) + " 127.0.0.1";
    if (key == "cafile") line = "cafile " + dir + "/cert.pem";
    if (key == "certfile") line = "certfile " + dir + "/cert.pem";
    if (key == "keyfile") line = "keyfile " + dir + "/key.pem";
    if (key == "password_file") line = "password_file " + dir + "/passwd";
    if (key == "acl_file") line = "acl_file " + dir + "/acl.conf";
    if (key == "persistence") line = "persistence false";
    if (key == "persistence_location") continue;
    clientid_from_user |= line == "use_username_as_clientid true";
    conf << line << "\n";
  }
  conf.close();
  EXPECT_TRUE(clientid_from_user) << "mosquitto-production.conf lacks use_username_as_clientid true";
  ASSERT_NO_FATAL_FAILURE(cluster.StartBrokerWithConfig(dir + "/mosquitto.conf", /*tls=*/true));
  cluster.StartIngestd();
  WritePrivateFile(dir + "/bridge-password", "bridge-password\n");
  ASSERT_NO_FATAL_FAILURE(cluster.StartBridge({"--mqtt-ca-file", dir + "/cert.pem", "--mqtt-username", "mqtt-bridge",
                                               "--mqtt-password-file", dir + "/bridge-password"}));
  cluster.Register(Cluster::Roller("R-1"));
  cluster.Register(Cluster::Roller("R-2"));

  // R-1 logs in as itself and its event is stored.
  WritePrivateFile(dir + "/r1-password", "r1-password\n");
  WritePrivateFile(dir + "/events", R"({"deviceTimeUnixMs":"1764000000000","heartbeat":{"batteryFraction":0.9}})"
                                    "\n");
  auto agent = cluster.StartAgent({"--device-id", "R-1", "--mqtt-ca-file", dir + "/cert.pem", "--mqtt-username", "R-1",
                                   "--mqtt-password-file", dir + "/r1-password", "--source", dir + "/events",
                                   "--spool-dir", dir + "/spool", "--exit-when-drained", "--duration", "60"},
                                  "agent.log");
  ASSERT_EQ(agent->Wait(std::chrono::seconds(60)), 0) << ReadFile(dir + "/agent.log");
  EXPECT_EQ(cluster.Device("R-1").state().events_stored(), 1u);

  // Anonymous clients are refused; R-1 cannot write R-2's topics (the broker drops it).
  const std::string batch = R"({"deviceId":"R-2","events":[{"sequence":"1","heartbeat":{"batteryFraction":0.5}}]})";
  std::string out;
  EXPECT_NE(cluster.PublishWith("rollers/R-2/events/json", batch, {"--cafile", dir + "/cert.pem"}, &out), 0) << out;
  EXPECT_EQ(cluster.PublishWith("rollers/R-2/events/json", batch,
                                {"--cafile", dir + "/cert.pem", "-u", "R-1", "-P", "r1-password"}, &out),
            0)
      << out;
  // R-1 connecting with the bridge's client id gets its own user name as id: the bridge stays on.
  const double reconnects_before =
      MetricValue(HttpGet(cluster.bridge_metrics_port(), "/metrics"), "rollertrace_bridge_mqtt_reconnects_total");
  EXPECT_EQ(cluster.PublishWith("rollers/R-1/status", "online",
                                {"--cafile", dir + "/cert.pem", "-u", "R-1", "-P", "r1-password", "-i", "mqtt-bridge"},
                                &out),
            0)
      << out;
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const std::string metrics = HttpGet(cluster.bridge_metrics_port(), "/metrics");
  EXPECT_EQ(MetricValue(metrics, "rollertrace_bridge_mqtt_reconnects_total"), reconnects_before) << metrics;
  EXPECT_EQ(MetricValue(metrics, "rollertrace_bridge_mqtt_connected"), 1) << metrics;
  EXPECT_EQ(cluster.Device("R-2").state().events_stored(), 0u) << "R-1 published as R-2";
}

// Issue #14.6: with the shipped local deploy/mosquitto/mosquitto.conf an
// anonymous local process stored a session for R-0001. The local setup is now
// made by deploy/mosquitto/local-auth.sh, as run-demo.sh does it: a user and
// password per device and the ACL.
TEST(Credentials, TheLocalBrokerTakesNoAnonymousClientAndKeepsEachDeviceToItsOwnTopics) {
  Cluster cluster("local-broker");
  const std::string dir = cluster.dir();
  const std::string auth = dir + "/mqtt";
  auto made = Process::Start({"/bin/bash", std::string(ROLLERTRACE_SOURCE_DIR) + "/deploy/mosquitto/local-auth.sh",
                              "--dir", auth, "--port", std::to_string(cluster.mqtt_port()), "R-1", "R-2"},
                             dir + "/local-auth.log");
  ASSERT_EQ(made->Wait(std::chrono::seconds(30)), 0) << ReadFile(dir + "/local-auth.log");
  ASSERT_NO_FATAL_FAILURE(cluster.StartBrokerWithConfig(auth + "/mosquitto.conf", /*tls=*/false));
  cluster.StartIngestd();
  ASSERT_NO_FATAL_FAILURE(
      cluster.StartBridge({"--mqtt-username", "mqtt-bridge", "--mqtt-password-file", auth + "/bridge-password"}));
  cluster.Register(Cluster::Roller("R-1"));
  cluster.Register(Cluster::Roller("R-2"));
  const auto password = [&](const std::string& device) {
    std::string p = ReadFile(auth + "/mqtt-password-" + device);
    return p.substr(0, p.find('\n'));
  };

  // The anonymous session start of the issue: refused by the broker, nothing stored.
  const std::string session =
      R"({"deviceId":"R-1","events":[{"sequence":"1","deviceTimeUnixMs":"1764000000000",)"
      R"("sessionStarted":{"sessionId":"anon-s1","patientRef":"MRN-1","operatorId":"nobody"}}]})";
  std::string out;
  EXPECT_NE(cluster.PublishWith("rollers/R-1/events/json", session, {}, &out), 0) << out;
  // R-2 logged in as itself cannot write R-1's topics (the broker drops it).
  EXPECT_EQ(cluster.PublishWith("rollers/R-1/events/json", session, {"-u", "R-2", "-P", password("R-2")}, &out), 0)
      << out;

  // R-1 with its own credentials (from the generated credentials file) is stored.
  WritePrivateFile(dir + "/events", R"({"deviceTimeUnixMs":"1764000000000","heartbeat":{"batteryFraction":0.9}})"
                                    "\n");
  auto agent = cluster.StartAgent({"--device-id", "R-1", "--mqtt-username", "R-1", "--mqtt-password-file",
                                   auth + "/mqtt-password-R-1", "--source", dir + "/events", "--spool-dir",
                                   dir + "/spool", "--exit-when-drained", "--duration", "60"},
                                  "agent.log");
  ASSERT_EQ(agent->Wait(std::chrono::seconds(60)), 0) << ReadFile(dir + "/agent.log");
  const v1::DeviceRecord r1 = cluster.Device("R-1");
  EXPECT_EQ(r1.state().events_stored(), 1u) << "only R-1's own heartbeat";
  EXPECT_EQ(r1.state().sessions_started(), 0u) << "a session from someone who is not R-1 was stored";
  EXPECT_EQ(cluster.Device("R-2").state().events_stored(), 0u);
}

}  // namespace
}  // namespace rollertrace::testing
