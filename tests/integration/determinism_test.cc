// The store as a deterministic state machine (docs/ARCHITECTURE.md, "The
// store"): one recorded clinic, replayed from its command log by
// rollertrace-store in two processes (with different groupings), gives the
// same key/value content, chain heads, trails and report as the store that
// recorded it; an ingestd's own store replays to the same verify heads.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <grpcpp/grpcpp.h>

#include "rollertrace/v1/services.grpc.pb.h"
#include "store/commands.h"
#include "store/signer.h"
#include "support/cluster.h"
#include "support/devices.h"
#include "support/nats_cluster.h"
#include "support/process.h"

namespace rollertrace::store {
namespace {

using rollertrace::testing::Cluster;
using rollertrace::testing::MakeTempDir;
using rollertrace::testing::Process;
using rollertrace::v1::EventBatch;

constexpr int64_t kT0 = 1764000000000;  // 2025-11-24
constexpr int64_t kHour = 3600 * 1000;
constexpr int64_t kDay = 24 * kHour;

// Runs rollertrace-store with `args`; its exit status, its output in *out.
int StoreTool(const std::vector<std::string>& args, const std::string& log, std::string* out = nullptr) {
  std::vector<std::string> argv = {ROLLERTRACE_STORE_TOOL};
  argv.insert(argv.end(), args.begin(), args.end());
  std::filesystem::remove(log);
  auto p = Process::Start(argv, log);
  const int status = p->Wait(std::chrono::seconds(120));
  if (out != nullptr) *out = rollertrace::testing::ReadFile(log);
  return status;
}

EventBatch Batch(const std::string& device, uint64_t* seq, std::vector<rollertrace::v1::Event> events) {
  EventBatch b;
  b.set_device_id(device);
  for (auto& e : events) {
    e.set_device_id(device);
    e.set_sequence(++*seq);
    if (e.has_session_started()) {
      // The store holds pseudonyms only (ingestd makes them before a command is built).
      auto* s = e.mutable_session_started();
      s->set_patient_pseudonym("pseudonym-of-" + s->patient_ref());
      s->clear_patient_ref();
    }
    *b.add_events() = std::move(e);
  }
  return b;
}

// Every key and value of every column family, in order.
std::map<std::string, std::vector<std::pair<std::string, std::string>>> Content(const std::string& dir) {
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> out;
  auto db = Db::Open(dir, true);
  EXPECT_TRUE(db.ok()) << db.status();
  if (!db.ok()) return out;
  SnapshotView view(**db);
  for (const auto& f : Families()) {
    auto& pairs = out[std::string(f.name)];
    EXPECT_TRUE(view.Scan(f.family, {}, [&](std::string_view k, std::string_view v) -> absl::StatusOr<bool> {
                      pairs.emplace_back(std::string(k), std::string(v));
                      return true;
                    }).ok());
  }
  return out;
}

void ExpectSameContent(const std::string& a, const std::string& b) {
  auto ca = Content(a), cb = Content(b);
  for (const auto& [family, pairs] : ca) {
    const auto& other = cb[family];
    ASSERT_EQ(pairs.size(), other.size()) << "column family " << family << " of " << a << " and " << b;
    for (size_t i = 0; i < pairs.size(); ++i) {
      ASSERT_EQ(pairs[i].first, other[i].first) << "family " << family << ", pair " << i;
      ASSERT_EQ(pairs[i].second, other[i].second) << "family " << family << ", key of pair " << i << " differs in value";
    }
  }
}

struct Heads {
  std::map<std::string, std::pair<std::string, std::string>> by_device;  // event head, record head
  bool intact = false;
  bool operator==(const Heads& o) const { return by_device == o.by_device && intact == o.intact; }
};

Heads HeadsOf(const std::string& dir, const std::string& public_key = {}) {
  Heads h;
  auto store = EventStore::Open(dir);
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return h;
  auto devices = (*store)->audit().ListDevices(rollertrace::v1::DEVICE_KIND_UNSPECIFIED);
  EXPECT_TRUE(devices.ok());
  for (const auto& d : *devices) {
    h.by_device[d.device().device_id()] = {d.state().chain_head(), d.state().records_head()};
  }
  auto report = (*store)->verifier().Verify("", public_key);
  EXPECT_TRUE(report.ok());
  h.intact = report.ok() && report->intact();
  EXPECT_TRUE(h.intact) << (report.ok() && report->breaks_size() > 0 ? report->breaks(0).detail() : "");
  return h;
}

rules::Policy PolicyWith(uint32_t session_limit, int64_t course_gap_days) {
  rules::Policy p;
  p.session_limit = session_limit;
  p.course_gap_ms = course_gap_days * kDay;
  return p;
}

// A clinic over weeks: three rollers and a steriliser, sessions, a second
// patient on one roller (violation, lock), a failed lab indicator and its
// recall, an unlock, a retirement, an import, a checkpoint, a stored
// authorisation, and a policy change half way.
void RecordClinic(const std::string& dir, const std::string& key_file) {
  using rollertrace::testing::Cycle;
  using rollertrace::testing::SessionEnd;
  using rollertrace::testing::SessionStart;
  using rollertrace::testing::Usage;
  StoreOptions options;
  options.policy = PolicyWith(4, 14);
  options.opened_unix_ms = kT0 - kDay;
  auto opened = EventStore::Open(dir, options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<EventStore> store = std::move(*opened);
  for (const char* id : {"R-1", "R-2", "R-3"}) ASSERT_TRUE(Register(*store, Cluster::Roller(id), kT0).ok());
  ASSERT_TRUE(Register(*store, Cluster::Steriliser("S-1"), kT0).ok());
  std::map<std::string, uint64_t> seq;
  auto append = [&](std::vector<EventBatch> batches, int64_t now) {
    std::vector<const EventBatch*> ptrs;
    for (auto& b : batches) ptrs.push_back(&b);
    auto r = Append(*store, ptrs, now);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->rejections.empty()) << r->rejections[0].detail();
  };
  // Week 1: a passing cycle, confirmed by the lab; two patients on two rollers.
  append({Batch("S-1", &seq["S-1"], {Cycle(1, {"R-1", "R-2"}, kT0 + kHour)})}, kT0 + kHour + 1000);
  rollertrace::v1::BiologicalIndicatorRequest lab;
  lab.set_steriliser_id("S-1");
  lab.set_cycle_number(1);
  lab.set_result(rollertrace::v1::INDICATOR_PASS);
  lab.set_recorded_by("lab-1");
  ASSERT_TRUE(RecordBiologicalIndicator(*store, lab, kT0 + 2 * kHour).ok());
  const int64_t w1 = kT0 + 3 * kHour;
  append({Batch("R-1", &seq["R-1"], {SessionStart("s1", "PA", w1), Usage("s1", 800, w1 + 60000), SessionEnd("s1", w1 + 600000)}),
          Batch("R-2", &seq["R-2"], {SessionStart("s2", "PB", w1), Usage("s2", 700, w1 + 60000), SessionEnd("s2", w1 + 600000)})},
         w1 + 700000);
  // An authorisation asked and answered, stored with its decision command.
  auto asked = rollertrace::testing::AuthorizeFor("R-1", "PA", kT0 + 8 * kDay);
  asked.mutable_session()->set_patient_pseudonym("pseudonym-of-PA");
  asked.mutable_session()->clear_patient_ref();
  ASSERT_TRUE(Authorize(*store, asked, kT0 + 8 * kDay - 60000).ok());
  // Week 2: a second cycle, R-1 again with PA, R-2 with another patient.
  append({Batch("S-1", &seq["S-1"], {Cycle(2, {"R-1", "R-2"}, kT0 + 7 * kDay)})}, kT0 + 7 * kDay + 1000);
  const int64_t w2 = kT0 + 8 * kDay;
  append({Batch("R-1", &seq["R-1"], {SessionStart("s3", "PA", w2), Usage("s3", 900, w2 + 60000), SessionEnd("s3", w2 + 600000)}),
          Batch("R-2", &seq["R-2"], {SessionStart("s4", "PC", w2)})},
         w2 + 700000);
  // The lab fails cycle 2: recall of the loads since cycle 1.
  lab.set_cycle_number(2);
  lab.set_result(rollertrace::v1::INDICATOR_FAIL);
  auto recall = RecordBiologicalIndicator(*store, lab, kT0 + 9 * kDay);
  ASSERT_TRUE(recall.ok()) << recall.status();
  ASSERT_EQ(recall->recalls.size(), 1u);
  rollertrace::v1::Command command;
  ASSERT_TRUE(Unlock(*store, "R-1", "re-sterilised after the recall", "admin-1", kT0 + 10 * kDay, &command).ok());
  ASSERT_TRUE(Retire(*store, "R-3", "dropped", kT0 + 10 * kDay).ok());
  auto signer = Signer::LoadOrCreate(key_file);
  ASSERT_TRUE(signer.ok()) << signer.status();
  ASSERT_TRUE(WriteCheckpoint(*store, *signer, kT0 + 10 * kDay + 1).ok());
  store.reset();

  // The policy changes (course gap 20 days): commands after it are judged under version 2.
  options.policy = PolicyWith(4, 20);
  options.opened_unix_ms = kT0 + 11 * kDay;
  opened = EventStore::Open(dir, options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  store = std::move(*opened);
  ASSERT_EQ(store->policy().first, 2u);
  const int64_t w3 = kT0 + 30 * kDay;
  append({Batch("R-1", &seq["R-1"], {SessionStart("s5", "PA", w3)})}, w3 + 1000);
  auto sessions = store->audit().Sessions("R-1");
  ASSERT_TRUE(sessions.ok());
  EXPECT_EQ(sessions->back().decision().policy_version(), 2u);

  // An import: a roller recorded by another clinic's store.
  const std::string other = dir + "-other";
  std::filesystem::remove_all(other);
  {
    auto o = EventStore::Open(other);
    ASSERT_TRUE(o.ok());
    ASSERT_TRUE(Register(**o, Cluster::Roller("R-9"), kT0).ok());
    uint64_t s9 = 0;
    EventBatch b = Batch("R-9", &s9, {Usage("x", 100, kT0 + kHour), Usage("x", 100, kT0 + 2 * kHour)});
    const EventBatch* ptrs[] = {&b};
    ASSERT_TRUE(Append(**o, ptrs, kT0 + 3 * kHour).ok());
    std::vector<rollertrace::v1::ArchiveRecord> records;
    ASSERT_TRUE((*o)->archiver().ExportDevices({"R-9"}, [&](const rollertrace::v1::ArchiveRecord& r) {
      records.push_back(r);
      return absl::OkStatus();
    }).ok());
    ASSERT_TRUE(Import(*store, {"R-9"}, records, kT0 + 31 * kDay).ok());
  }
  std::filesystem::remove_all(other);
}

TEST(Determinism, OneRecordedClinicGivesTheSameStoreInTwoProcesses) {
  const std::string base = MakeTempDir("determinism");
  const std::string recorded = base + "/recorded", log = base + "/clinic.log", key = base + "/signing.pem";
  ASSERT_NO_FATAL_FAILURE(RecordClinic(recorded, key));

  std::string out;
  ASSERT_EQ(StoreTool({"dump-log", "--data-dir", recorded, "--out", log}, base + "/dump.out", &out), 0) << out;
  // Two processes, two groupings: one command per write, and seven per write.
  std::vector<std::string> logs = {base + "/replay-a.out", base + "/replay-b.out"};
  auto a = Process::Start({ROLLERTRACE_STORE_TOOL, "replay", "--data-dir", base + "/a", "--log", log}, logs[0]);
  auto b = Process::Start({ROLLERTRACE_STORE_TOOL, "replay", "--data-dir", base + "/b", "--log", log, "--group", "7"},
                          logs[1]);
  ASSERT_EQ(a->Wait(std::chrono::seconds(120)), 0) << rollertrace::testing::ReadFile(logs[0]);
  ASSERT_EQ(b->Wait(std::chrono::seconds(120)), 0) << rollertrace::testing::ReadFile(logs[1]);

  ExpectSameContent(recorded, base + "/a");
  ExpectSameContent(recorded, base + "/b");
  auto signer = Signer::LoadOrCreate(key);
  ASSERT_TRUE(signer.ok());
  const Heads heads = HeadsOf(recorded, signer->public_key());
  EXPECT_EQ(heads.by_device.size(), 5u);
  EXPECT_TRUE(HeadsOf(base + "/a", signer->public_key()) == heads);
  EXPECT_TRUE(HeadsOf(base + "/b", signer->public_key()) == heads);

  // The same trails and report, read back.
  auto read = [](const std::string& dir) {
    auto s = EventStore::Open(dir);
    EXPECT_TRUE(s.ok());
    std::string bytes;
    for (const char* id : {"R-1", "R-2", "R-3", "R-9"}) bytes += (*s)->audit().RollerTrail(id)->SerializeAsString();
    bytes += (*s)->audit().CycleTrail("S-1", 2)->SerializeAsString();
    bytes += (*s)->audit().PatientTrail("pseudonym-of-PA")->SerializeAsString();
    auto report = (*s)->audit().Report(kT0, kT0 + 40 * kDay, kT0 + 41 * kDay);
    EXPECT_TRUE(report.ok());
    EXPECT_EQ(report->recalls_size(), 1);
    EXPECT_GE(report->violations(), 1u);
    return bytes + report->SerializeAsString();
  };
  const std::string original = read(recorded);
  EXPECT_EQ(read(base + "/a"), original);
  EXPECT_EQ(read(base + "/b"), original);

  // The digests the tool prints agree too.
  std::string d1, d2;
  ASSERT_EQ(StoreTool({"digest", "--data-dir", recorded}, base + "/digest-1.out", &d1), 0) << d1;
  ASSERT_EQ(StoreTool({"digest", "--data-dir", base + "/b"}, base + "/digest-2.out", &d2), 0) << d2;
  EXPECT_EQ(d1, d2);
  EXPECT_NE(d1.find("commands"), std::string::npos);
}

// Cluster mode (issue #16): the same recorded clinic, published into a
// shard's JetStream stream (three nats-server nodes, R3) and consumed by an
// ingestd shard on an empty store, gives the same store.
TEST(Determinism, TheRecordedClinicFedFromJetStreamGivesTheSameStore) {
  const std::string base = MakeTempDir("determinism_jetstream");
  const std::string recorded = base + "/recorded", log = base + "/clinic.log", key = base + "/signing.pem";
  ASSERT_NO_FATAL_FAILURE(RecordClinic(recorded, key));
  std::string out;
  ASSERT_EQ(StoreTool({"dump-log", "--data-dir", recorded, "--out", log}, base + "/dump.out", &out), 0) << out;
  rollertrace::testing::NatsCluster nats(base);
  ASSERT_NO_FATAL_FAILURE(nats.StartAll());
  ASSERT_EQ(StoreTool({"publish", "--log", log, "--cluster-nats", nats.Urls(), "--cluster-shard", "clinic"},
                      base + "/publish.out", &out),
            0)
      << out;
  // Publishing into a stream that holds commands is refused.
  EXPECT_EQ(StoreTool({"publish", "--log", log, "--cluster-nats", nats.Urls(), "--cluster-shard", "clinic"},
                      base + "/publish-again.out", &out),
            2)
      << out;

  // The shard runs the policy the clinic ended under, so it adds no policy command.
  std::ofstream(base + "/policy.yaml") << rules::FormatPolicy(PolicyWith(4, 20));
  const int port = rollertrace::testing::FreePort();
  auto shard = Process::Start({ROLLERTRACE_INGESTD, "--listen", "127.0.0.1:" + std::to_string(port), "--metrics", "",
                               "--data-dir", base + "/shard", "--insecure-no-auth", "--cluster-nats", nats.Urls(),
                               "--cluster-shard", "clinic", "--policy", base + "/policy.yaml"},
                              base + "/shard.log", {{"ROLLERTRACE_PSEUDONYM_SECRET", "determinism-secret-0123456789"}});
  ASSERT_TRUE(rollertrace::testing::WaitForPort(port, std::chrono::seconds(60)))
      << rollertrace::testing::ReadFile(base + "/shard.log");
  ASSERT_EQ(shard->Stop(std::chrono::seconds(15)), 0) << rollertrace::testing::ReadFile(base + "/shard.log");
  EXPECT_NE(rollertrace::testing::ReadFile(base + "/shard.log").find("catching up with the stream"), std::string::npos);

  ExpectSameContent(recorded, base + "/shard");
  auto signer = Signer::LoadOrCreate(key);
  ASSERT_TRUE(signer.ok());
  EXPECT_TRUE(HeadsOf(base + "/shard", signer->public_key()) == HeadsOf(recorded, signer->public_key()));
}

TEST(Determinism, TheSameCommandsGiveTheSameRecordHoweverTheyAreGrouped) {
  // Before the split a commit group shared one time, and reads during a write
  // missed the pending batch: the grouping changed the record.
  const std::string base = MakeTempDir("grouping");
  ASSERT_NO_FATAL_FAILURE(RecordClinic(base + "/recorded", base + "/signing.pem"));
  std::vector<rollertrace::v1::StoreCommand> commands;
  {
    auto s = EventStore::Open(base + "/recorded");
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->log().ForEach(1, [&](const rollertrace::v1::StoreCommand& c) -> absl::StatusOr<bool> {
      commands.push_back(c);
      return true;
    }).ok());
  }
  ASSERT_GT(commands.size(), 15u);
  auto one_write = EventStore::Open(base + "/one-write");
  ASSERT_TRUE(one_write.ok());
  auto results = (*one_write)->ExecuteGroup(commands);
  ASSERT_TRUE(results.ok()) << results.status();
  for (const auto& r : *results) ASSERT_TRUE(r.ok()) << r.status();
  one_write->reset();
  ExpectSameContent(base + "/recorded", base + "/one-write");
}

TEST(Determinism, AnIngestdStoreReplaysToTheSameVerifyHeads) {
  Cluster cluster("replay_ingestd");
  const std::string key = cluster.dir() + "/signing.pem";  // the cluster's ingestd signs with it
  cluster.StartIngestd();
  cluster.Register(Cluster::Roller("R-1"));
  cluster.Register(Cluster::Steriliser("S-1"));
  auto ingest = rollertrace::v1::IngestService::NewStub(cluster.channel());
  auto compliance = rollertrace::v1::ComplianceService::NewStub(cluster.channel());
  const int64_t now = rollertrace::testing::Now();
  uint64_t rs = 0, ss = 0;
  rollertrace::v1::IngestRequest request;
  *request.add_batches() = Batch("S-1", &ss, {rollertrace::testing::Cycle(1, {"R-1"}, now - kHour)});
  EventBatch roller = Batch("R-1", &rs, {rollertrace::testing::SessionStart("s1", "MRN-1", now - 60000),
                                         rollertrace::testing::Usage("s1", 500, now - 30000),
                                         rollertrace::testing::SessionEnd("s1", now - 1000)});
  // Through ingestd the patient is named by reference; it pseudonymises.
  auto* start = roller.mutable_events(0)->mutable_session_started();
  start->set_patient_ref("MRN-1");
  start->clear_patient_pseudonym();
  *request.add_batches() = roller;
  {
    grpc::ClientContext ctx;
    cluster.Authenticate(&ctx);
    rollertrace::v1::IngestResponse response;
    ASSERT_TRUE(ingest->IngestBatch(&ctx, request, &response).ok());
    ASSERT_EQ(response.rejections_size(), 0) << response.rejections(0).detail();
  }
  {
    grpc::ClientContext ctx;
    cluster.Authenticate(&ctx);
    rollertrace::v1::Decision d;
    ASSERT_TRUE(compliance->AuthorizeUse(&ctx, rollertrace::testing::AuthorizeFor("R-1", "MRN-2", now), &d).ok());
  }
  {
    grpc::ClientContext ctx;
    cluster.Authenticate(&ctx);
    rollertrace::v1::BiologicalIndicatorRequest lab;
    lab.set_steriliser_id("S-1");
    lab.set_cycle_number(1);
    lab.set_result(rollertrace::v1::INDICATOR_FAIL);
    lab.set_recorded_by("lab");
    rollertrace::v1::BiologicalIndicatorResponse response;
    ASSERT_TRUE(compliance->RecordBiologicalIndicator(&ctx, lab, &response).ok());
    ASSERT_TRUE(response.has_recall());
  }
  cluster.StopIngestd();

  const std::string log = cluster.dir() + "/ingestd.commands";
  std::string out;
  ASSERT_EQ(StoreTool({"dump-log", "--data-dir", cluster.ingestd_data_dir(), "--out", log}, cluster.dir() + "/dump.out",
                      &out),
            0)
      << out;
  ASSERT_EQ(StoreTool({"replay", "--data-dir", cluster.dir() + "/replayed", "--log", log}, cluster.dir() + "/replay.out",
                      &out),
            0)
      << out;
  auto signer = Signer::LoadOrCreate(key);
  ASSERT_TRUE(signer.ok());
  const Heads original = HeadsOf(cluster.ingestd_data_dir(), signer->public_key());
  EXPECT_EQ(original.by_device.size(), 2u);
  EXPECT_TRUE(HeadsOf(cluster.dir() + "/replayed", signer->public_key()) == original);
  ExpectSameContent(cluster.ingestd_data_dir(), cluster.dir() + "/replayed");
}

TEST(Determinism, AReplayIntoAStoreThatDiffersIsRefused) {
  const std::string base = MakeTempDir("replay_refused");
  ASSERT_NO_FATAL_FAILURE(RecordClinic(base + "/recorded", base + "/signing.pem"));
  std::string out;
  ASSERT_EQ(StoreTool({"dump-log", "--data-dir", base + "/recorded", "--out", base + "/log"}, base + "/dump.out", &out), 0);
  // Replaying the log onto the store that already holds it: command 1 is not
  // the next of that store's log.
  EXPECT_EQ(StoreTool({"replay", "--data-dir", base + "/recorded", "--log", base + "/log"}, base + "/again.out", &out), 2);
  EXPECT_NE(out.find("out of order"), std::string::npos) << out;
  // A cut log file is named as such.
  const std::string cut = base + "/cut";
  {
    std::ifstream in(base + "/log", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() - 5);
  }
  EXPECT_NE(StoreTool({"replay", "--data-dir", base + "/fresh", "--log", cut}, base + "/cut.out", &out), 0);
  EXPECT_NE(out.find("cut short"), std::string::npos) << out;
}

}  // namespace
}  // namespace rollertrace::store
