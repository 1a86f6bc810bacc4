// What the store split (issue #12) fixed, each found by reading the code:
// state that lived only in memory, a ledger link decided by a cache, column
// families by position, a store that did not know its format, and rules
// judged without a recorded policy version.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/utilities/write_batch_with_index.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "process/priority.h"
#include "store/audit_reader.h"
#include "store/commands.h"
#include "store/keys.h"
#include "store/signer.h"
#include "store/write_txn.h"

namespace rollertrace::store {
namespace {

constexpr int64_t kNow = 1764000000000;

rollertrace::v1::Device Roller(const std::string& id) {
  rollertrace::v1::Device d;
  d.set_device_id(id);
  d.set_kind(rollertrace::v1::DEVICE_KIND_ROLLER);
  d.set_model("DRS-540");
  d.set_needle_count(540);
  d.set_needle_length_mm(1.0);
  d.set_rated_penetrations(1000000);
  return d;
}

// An authorisation for patient P-1 (already a pseudonym, as ingestd passes it).
rollertrace::v1::AuthorizeRequest AskFor(const std::string& roller, int64_t start) {
  rollertrace::v1::AuthorizeRequest request;
  request.set_device_id(roller);
  request.set_start_unix_ms(start);
  request.mutable_session()->set_patient_pseudonym("P-1");
  return request;
}

// Sequence 1 of `id`: session s1 with patient P-1 (a pseudonym already) at kNow.
rollertrace::v1::EventBatch SessionStart(const std::string& id, rollertrace::v1::Indication indication) {
  rollertrace::v1::EventBatch b;
  b.set_device_id(id);
  auto* e = b.add_events();
  e->set_device_id(id);
  e->set_sequence(1);
  e->set_device_time_unix_ms(kNow);
  auto* started = e->mutable_session_started();
  started->set_session_id("s1");
  started->set_patient_pseudonym("P-1");
  started->set_indication(indication);
  return b;
}

rollertrace::v1::EventBatch Usage(const std::string& id, uint64_t sequence) {
  rollertrace::v1::EventBatch b;
  b.set_device_id(id);
  auto* e = b.add_events();
  e->set_device_id(id);
  e->set_sequence(sequence);
  e->set_device_time_unix_ms(kNow);
  e->mutable_usage_sample()->set_revolutions(10);
  return b;
}

class StorePartsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("store_parts_test." + std::to_string(getpid()) + "." +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open(StoreOptions options = {}) {
    store_.reset();
    auto s = EventStore::Open(dir_, options);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  uint64_t ExportedRecords(const std::string& device, std::string_view kind) {
    uint64_t n = 0;
    EXPECT_TRUE(store_->archiver()
                    .ExportDevices({device},
                                   [&](const rollertrace::v1::ArchiveRecord& r) {
                                     if (r.kind() == kind) ++n;
                                     return absl::OkStatus();
                                   })
                    .ok());
    return n;
  }
  // Runs f on the raw RocksDB of the (closed) store.
  void Raw(const std::function<void(rocksdb::DB*, rocksdb::ColumnFamilyHandle* meta)>& f) {
    store_.reset();
    auto db = Db::Open(dir_, true);
    ASSERT_TRUE(db.ok()) << db.status();
    f((*db)->raw(), (*db)->handle(Family::kMeta));
  }

  // A store from before formats: no meta family content and no command log.
  void MakeFormatOne() {
    store_.reset();
    auto db = Db::Open(dir_, true);
    ASSERT_TRUE(db.ok()) << db.status();
    for (Family family : {Family::kCommands, Family::kMeta}) {
      rocksdb::DB* raw = (*db)->raw();
      std::unique_ptr<rocksdb::Iterator> it(raw->NewIterator(rocksdb::ReadOptions(), (*db)->handle(family)));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        ASSERT_TRUE(raw->Delete(rocksdb::WriteOptions(), (*db)->handle(family), it->key()).ok());
      }
    }
  }

  std::string dir_;
  std::unique_ptr<EventStore> store_;
};

TEST(Schema, FamilyNamesAndRecordKindsArePinned) {
  // Record kinds are written into every ledger entry: changing one breaks
  // every existing chain. This table is what stores on disk hold.
  const std::vector<std::pair<std::string, std::string>> pinned = {
      {"default", ""},           {"events", "events"},       {"devices", "devices"},
      {"gaps", "gaps"},          {"cycles", "cycles"},       {"sessions", "sessions"},
      {"violations", "violations"}, {"decisions", "decisions"}, {"recalls", "recalls"},
      {"device_log", "device_log"}, {"findings", "findings"}, {"ledger", "ledger"},
      {"checkpoints", ""},       {"cycle_sessions", ""},     {"patient_sessions", ""},
      {"roller_cycles", ""},     {"device_violations", ""},  {"sessions_by_time", ""},
      {"cycles_by_time", ""},    {"meta", ""},               {"outbox", ""},
      {"commands", ""}};
  ASSERT_EQ(Families().size(), pinned.size());
  for (size_t i = 0; i < pinned.size(); ++i) {
    EXPECT_EQ(static_cast<size_t>(Families()[i].family), i) << "the table is in enum order";
    EXPECT_EQ(Families()[i].name, pinned[i].first);
    EXPECT_EQ(Families()[i].record_kind, pinned[i].second);
    if (!pinned[i].second.empty()) {
      EXPECT_EQ(FamilyOfKind(pinned[i].second), Families()[i].family);
    }
  }
  EXPECT_FALSE(FamilyOfKind("checkpoints").has_value()) << "checkpoints are not a device's record";
}

TEST_F(StorePartsTest, DecisionsAfterARestartNeverOverwriteEarlierOnes) {
  // The decision counter lived in memory: after a restart, a decision in the
  // same millisecond got the same key and overwrote a chained one.
  Open();
  ASSERT_TRUE(Register(*store_, Roller("R-1"), kNow - 1000).ok());
  const rollertrace::v1::AuthorizeRequest request = AskFor("R-1", kNow);
  auto first = Authorize(*store_, request, kNow);
  ASSERT_TRUE(first.ok()) << first.status();
  Open();
  auto second = Authorize(*store_, request, kNow);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(first->decision_id(), second->decision_id());
  EXPECT_EQ(ExportedRecords("R-1", "decisions"), 2u);
  auto report = store_->verifier().Verify("");
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->intact()) << (report->breaks_size() ? report->breaks(0).detail() : "");
}

TEST_F(StorePartsTest, ARestartAddsNoLinkToADevicesRecordChain) {
  // Whether a device's definition was linked depended on an in-memory cache:
  // the first write after a restart linked it again.
  Open();
  ASSERT_TRUE(Register(*store_, Roller("R-1"), kNow - 1000).ok());
  const rollertrace::v1::EventBatch one = Usage("R-1", 1), two = Usage("R-1", 2);
  const rollertrace::v1::EventBatch* first[] = {&one};
  ASSERT_TRUE(Append(*store_, first, kNow).ok());
  const uint64_t before = store_->audit().GetDevice("R-1")->state().records_length();
  EXPECT_EQ(before, 2u) << "registered: its log entry and its definition";
  Open();
  const rollertrace::v1::EventBatch* second[] = {&two};
  ASSERT_TRUE(Append(*store_, second, kNow + 1).ok());
  EXPECT_EQ(store_->audit().GetDevice("R-1")->state().records_length(), before);
  ASSERT_TRUE(Retire(*store_, "R-1", "worn", kNow + 2).ok());
  EXPECT_EQ(store_->audit().GetDevice("R-1")->state().records_length(), before + 2)
      << "a retirement: its log entry and the changed definition";
}

TEST_F(StorePartsTest, AWriteOnAKeptBatchCarriesNothingOfTheWriteBeforeIt) {
  // The one writer keeps its batch between writes (its buffer, not what was
  // in it): a write given up before its commit must leave nothing behind for
  // the next one to commit, and a committed one nothing to commit twice.
  Open();
  store_.reset();
  auto db = Db::Open(dir_, true);
  ASSERT_TRUE(db.ok()) << db.status();
  std::unique_ptr<rocksdb::WriteBatchWithIndex> spare;
  {
    WriteTxn given_up(**db, nullptr, &spare);
    given_up.Put(Family::kMeta, "test/given-up", "x");
  }
  ASSERT_NE(spare, nullptr) << "the batch was not kept";
  {
    WriteTxn committed(**db, nullptr, &spare);
    EXPECT_EQ(committed.Count(), 0u);
    std::string value;
    EXPECT_FALSE(*committed.Get(Family::kMeta, "test/given-up", &value)) << "read back from the kept batch";
    committed.Put(Family::kMeta, "test/committed", "y");
    ASSERT_TRUE(committed.Commit("test").ok());
  }
  {
    WriteTxn next(**db, nullptr, &spare);
    EXPECT_EQ(next.Count(), 0u) << "the committed write is still in the kept batch";
  }
  std::string value;
  EXPECT_TRUE((*db)->raw()->Get(rocksdb::ReadOptions(), (*db)->handle(Family::kMeta), "test/given-up", &value)
                  .IsNotFound());
  ASSERT_TRUE((*db)->raw()->Get(rocksdb::ReadOptions(), (*db)->handle(Family::kMeta), "test/committed", &value).ok());
  EXPECT_EQ(value, "y");
}

TEST_F(StorePartsTest, AWriteIndexesOnlyWhatTheApplierReadsBackAndRefusesToReadTheRest) {
  // A family the applier never reads during a write is written around the
  // batch's index (its cost); a read of it would miss this write's own
  // records, so it is refused rather than answered wrongly. The families it
  // does read back see this write.
  Open();
  store_.reset();
  auto db = Db::Open(dir_, true);
  ASSERT_TRUE(db.ok()) << db.status();
  WriteTxn txn(**db);
  std::string value;
  for (const FamilyInfo& f : Families()) {
    const std::string key = DeviceSequenceKey("roller-1", 1);
    txn.Put(f.family, key, "written in this write");
    absl::StatusOr<bool> read = txn.Get(f.family, key, &value);
    std::unique_ptr<rocksdb::Iterator> it = txn.Iterate(f.family);
    it->Seek(key);
    if (f.read_in_write) {
      ASSERT_TRUE(read.ok()) << f.name << ": " << read.status();
      EXPECT_TRUE(*read) << f.name;
      EXPECT_EQ(value, "written in this write") << f.name;
      ASSERT_TRUE(it->Valid()) << f.name;
      EXPECT_EQ(it->value().ToString(), "written in this write") << f.name;
    } else {
      EXPECT_EQ(read.status().code(), absl::StatusCode::kInternal) << f.name;
      EXPECT_FALSE(it->Valid()) << f.name;
      EXPECT_TRUE(it->status().IsNotSupported()) << f.name;
    }
  }
  // Written either way: the write holds every family's record.
  ASSERT_TRUE(txn.Commit("test").ok());
  for (const FamilyInfo& f : Families()) {
    ASSERT_TRUE((*db)->raw()->Get(rocksdb::ReadOptions(), (*db)->handle(f.family), DeviceSequenceKey("roller-1", 1),
                                  &value).ok())
        << f.name;
    EXPECT_EQ(value, "written in this write") << f.name;
  }
}

TEST_F(StorePartsTest, AStoreRecordsItsFormatAndRefusesANewerOne) {
  Open();
  ASSERT_NO_FATAL_FAILURE(Raw([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta) {
    std::string format;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), meta, std::string(kMetaFormat), &format).ok());
    EXPECT_EQ(format, std::to_string(kStoreFormat));
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), meta, std::string(kMetaFormat), "3").ok());
  }));
  auto s = EventStore::Open(dir_);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(s.status()));
  EXPECT_NE(s.status().message().find("format 3, newer than this build reads (2)"), std::string::npos)
      << s.status().message();
}

// Every key and value of every family.
std::map<std::string, std::map<std::string, std::string>> Contents(const std::string& dir) {
  std::map<std::string, std::map<std::string, std::string>> all;
  auto db = Db::Open(dir, true);
  EXPECT_TRUE(db.ok()) << db.status();
  if (!db.ok()) return all;
  for (const FamilyInfo& f : Families()) {
    std::unique_ptr<rocksdb::Iterator> it((*db)->raw()->NewIterator(rocksdb::ReadOptions(), (*db)->handle(f.family)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) all[std::string(f.name)][it->key().ToString()] = it->value().ToString();
    EXPECT_TRUE(it->status().ok()) << f.name;
  }
  return all;
}

// A clinic's worth of commands: registrations, a policy, a session start, usage
// and an authorisation. Returns false on the first failure.
bool WriteClinic(EventStore& store) {
  for (const char* id : {"R-1", "R-2"}) {
    if (!Register(store, Roller(id), kNow - 1000).ok()) return false;
  }
  if (!store.AdoptPolicy(rules::Policy{}, kNow - 900).ok()) return false;
  if (!Authorize(store, AskFor("R-1", kNow), kNow).ok()) return false;
  const rollertrace::v1::EventBatch start = SessionStart("R-1", rollertrace::v1::INDICATION_UNSPECIFIED);
  const rollertrace::v1::EventBatch* first[] = {&start};
  if (!Append(store, first, kNow).ok()) return false;
  for (uint64_t seq = 2; seq < 40; ++seq) {
    const rollertrace::v1::EventBatch a = Usage("R-1", seq);
    const rollertrace::v1::EventBatch b = Usage("R-2", seq);
    const rollertrace::v1::EventBatch* both[] = {&a, &b};
    if (!Append(store, both, kNow + static_cast<int64_t>(seq)).ok()) return false;
  }
  return true;
}

TEST_F(StorePartsTest, AfterACrashTheOpenAppliesFromTheLogWhatTheStateHadNotFlushed) {
  // A command's effects are written without the WAL (docs/ARCHITECTURE.md,
  // "The log is the WAL"). A process that dies before a flush leaves only the
  // synced log; the next open must bring the state back from it, byte for byte.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto s = EventStore::Open(dir_);
    const bool ok = s.ok() && WriteClinic(**s);
    _exit(ok ? 0 : 1);  // no destructor, no close: nothing flushed
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the writing process failed";

  const std::string clean = dir_ + ".clean";
  std::filesystem::remove_all(clean);
  {
    auto s = EventStore::Open(clean);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE(WriteClinic(**s));
    EXPECT_EQ((*s)->caught_up_at_open(), 0u);
  }

  Open();
  const uint64_t logged = *store_->log().NextIndex() - 1;
  EXPECT_GT(logged, 40u);
  EXPECT_EQ(store_->caught_up_at_open(), logged) << "every command's effects were lost with the process";
  EXPECT_TRUE(store_->verifier().Verify("")->intact());
  store_.reset();
  const auto recovered = Contents(dir_);
  const auto reference = Contents(clean);
  EXPECT_EQ(recovered.at("events").size(), 77u);
  for (const auto& [family, rows] : reference) EXPECT_TRUE(recovered.at(family) == rows) << family;

  // Once applied, a clean reopen has nothing left to apply, and writes go on.
  Open();
  EXPECT_EQ(store_->caught_up_at_open(), 0u);
  const rollertrace::v1::EventBatch next = Usage("R-2", 40);
  const rollertrace::v1::EventBatch* batches[] = {&next};
  ASSERT_TRUE(Append(*store_, batches, kNow + 50).ok());
  std::filesystem::remove_all(clean);
}

TEST_F(StorePartsTest, AFormatOneStoreIsRefusedUntilMigratedThenKeepsItsRecords) {
  Open();
  ASSERT_TRUE(Register(*store_, Roller("R-1"), kNow - 1000).ok());
  const rollertrace::v1::AuthorizeRequest request = AskFor("R-1", kNow);
  ASSERT_TRUE(Authorize(*store_, request, kNow).ok());
  ASSERT_NO_FATAL_FAILURE(MakeFormatOne());
  auto refused = EventStore::Open(dir_);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("rollertrace-store migrate --data-dir " + dir_), std::string::npos)
      << refused.status().message();

  auto migrated = Db::Open(dir_, true, Db::Mode::kMigrate);
  ASSERT_TRUE(migrated.ok()) << migrated.status();
  migrated->reset();
  Open();
  EXPECT_FALSE(*store_->log().Complete()) << "its history before the migration is not in the log";
  EXPECT_EQ(*store_->log().NextIndex(), 1u);
  // The decision counter resumes after the stored decisions.
  auto next = Authorize(*store_, request, kNow);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(ExportedRecords("R-1", "decisions"), 2u);
  EXPECT_TRUE(store_->verifier().Verify("")->intact());
}

TEST_F(StorePartsTest, APolicyChangeAppliesToCommandsJudgedAfterItAndIsNamedInTheirDecisions) {
  StoreOptions options;
  options.policy = rules::Policy{};
  options.opened_unix_ms = kNow - 5000;
  Open(options);
  ASSERT_EQ(store_->policy().first, 1u);
  ASSERT_TRUE(Register(*store_, Roller("R-1"), kNow - 1000).ok());
  const rollertrace::v1::EventBatch start = SessionStart("R-1", rollertrace::v1::INDICATION_UNSPECIFIED);
  const rollertrace::v1::EventBatch* batches[] = {&start};
  ASSERT_TRUE(Append(*store_, batches, kNow).ok());
  EXPECT_EQ(store_->audit().Sessions("R-1")->front().decision().policy_version(), 1u);

  // The same policy again: no new version.
  Open(options);
  EXPECT_EQ(store_->policy().first, 1u);
  // A session limit of one: the next session is past it, under version 2.
  options.policy->session_limit = 1;
  Open(options);
  ASSERT_EQ(store_->policy().first, 2u);
  const rollertrace::v1::AuthorizeRequest request = AskFor("R-1", kNow + 1000);
  auto d = Authorize(*store_, request, kNow + 1000);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->policy_version(), 2u);
  EXPECT_TRUE(std::any_of(d->hits().begin(), d->hits().end(),
                          [](const rollertrace::v1::RuleHit& h) { return h.rule() == "SESSION_LIMIT"; }));
  // The first session keeps the version it was judged under.
  EXPECT_EQ(store_->audit().Sessions("R-1")->front().decision().policy_version(), 1u);

  // A new command naming another version than the one in force is refused.
  rollertrace::v1::StoreCommand stale = NewCommand(*store_, kNow + 2000);
  stale.set_policy_version(1);
  *stale.mutable_retire()->mutable_device_id() = "R-1";
  auto r = store_->Execute(stale);
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
}

TEST_F(StorePartsTest, ATrailReadWhileEventsArriveIsOneMomentOfTheStore) {
  // Trails read the device record, then its events, without a snapshot: a
  // write in between gave a trail whose events outnumbered its own state.
  Open();
  ASSERT_TRUE(Register(*store_, Roller("R-1"), kNow - 1000).ok());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint64_t seq = 1; !stop && seq < 100000; ++seq) {
      const rollertrace::v1::EventBatch b = Usage("R-1", seq);
      const rollertrace::v1::EventBatch* batches[] = {&b};
      if (!Append(*store_, batches, kNow + static_cast<int64_t>(seq)).ok()) break;
    }
  });
  // Read while the writer is at it: from its first stored event on.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    auto d = store_->audit().GetDevice("R-1");
    if (d.ok() && d->state().events_stored() > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  int checked = 0;
  uint64_t seen = 0;
  for (; checked < 200; ++checked) {
    // With every raw event (a trail carries them only when asked).
    auto trail = store_->audit().RollerTrail("R-1", 1'000'000);
    if (!trail.ok() || static_cast<uint64_t>(trail->events_size()) != trail->roller().state().events_stored()) {
      ADD_FAILURE() << (trail.ok() ? trail->ShortDebugString().substr(0, 300) : trail.status().ToString());
      break;
    }
    seen = std::max<uint64_t>(seen, trail->events_size());
  }
  stop = true;
  writer.join();
  EXPECT_EQ(checked, 200);
  EXPECT_GT(seen, 0u) << "the writer should have stored events while the trails were read";
}

TEST_F(StorePartsTest, VerifyNamesAKeyMismatchAsSuchNotAsTampering) {
  // Seen (issue #14): verify against a store signed with another key said
  // "checkpoints were tampered with".
  Open();
  ASSERT_TRUE(Register(*store_, Roller("R-1"), kNow).ok());
  const std::string a = dir_ + ".key-a.pem", b = dir_ + ".key-b.pem";
  std::filesystem::remove(a);
  std::filesystem::remove(b);
  auto signer_a = Signer::LoadOrCreate(a);
  auto signer_b = Signer::LoadOrCreate(b);
  ASSERT_TRUE(signer_a.ok() && signer_b.ok());
  ASSERT_TRUE(WriteCheckpoint(*store_, *signer_a, kNow + 1).ok());
  EXPECT_TRUE(store_->verifier().Verify("", signer_a->public_key())->intact());
  auto report = store_->verifier().Verify("", signer_b->public_key());
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->breaks_size(), 1);
  EXPECT_NE(report->breaks(0).detail().find("signed by another key"), std::string::npos) << report->breaks(0).detail();
  EXPECT_EQ(report->breaks(0).detail().find("tampered"), std::string::npos) << report->breaks(0).detail();
  std::filesystem::remove(a);
  std::filesystem::remove(b);
}

TEST_F(StorePartsTest, ThePeriodReportCountsWarnRuleHits) {
  // Seen (issue #14): the period report had no count of warn-rule hits.
  Open();
  ASSERT_TRUE(Register(*store_, Roller("R-1"), kNow - 1000).ok());
  // 1.0 mm needles: short for a scar (a warning).
  const rollertrace::v1::EventBatch b = SessionStart("R-1", rollertrace::v1::INDICATION_SCAR);
  const rollertrace::v1::EventBatch* batches[] = {&b};
  ASSERT_TRUE(Append(*store_, batches, kNow).ok());
  auto report = store_->audit().Report(kNow - 1000, kNow + 1000, kNow + 2000);
  ASSERT_TRUE(report.ok()) << report.status();
  bool found = false;
  for (const auto& c : report->warnings_by_rule()) found = found || (c.rule() == "NEEDLE_FOR_INDICATION" && c.count() == 1);
  EXPECT_TRUE(found) << report->ShortDebugString();
}

// Issue #14: audit answers were one message however long; violations now page.
TEST_F(StorePartsTest, ViolationsPageInDetectionOrderWithNothingLostOrRepeated) {
  Open();
  std::vector<rollertrace::v1::EventBatch> batches;
  for (int i = 1; i <= 7; ++i) {
    const std::string id = "R-" + std::to_string(i);
    ASSERT_TRUE(Register(*store_, Roller(id), kNow - 1000).ok());
    batches.push_back(SessionStart(id, rollertrace::v1::INDICATION_SCAR));  // never sterilised: violations
  }
  for (const auto& b : batches) {
    const rollertrace::v1::EventBatch* one[] = {&b};
    ASSERT_TRUE(Append(*store_, one, kNow).ok());
  }
  auto all = store_->audit().ListViolations({});
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_GE(all->violations.size(), 7u);
  EXPECT_TRUE(all->next_key.empty());
  for (const std::string device : {"", "R-3"}) {
    std::vector<std::string> paged;
    ViolationFilter f;
    f.device_id = device;
    f.limit = 2;
    int pages = 0;
    do {
      auto page = store_->audit().ListViolations(f);
      ASSERT_TRUE(page.ok()) << page.status();
      ASSERT_LE(page->violations.size(), 2u);
      for (const auto& v : page->violations) paged.push_back(v.SerializeAsString());
      f.after_key = page->next_key;
      ASSERT_LT(++pages, 100);
    } while (!f.after_key.empty());
    std::vector<std::string> expected;
    for (const auto& v : all->violations) {
      if (device.empty() || v.device_id() == device) expected.push_back(v.SerializeAsString());
    }
    EXPECT_EQ(paged, expected) << "device filter '" << device << "'";
    if (device.empty()) {
      EXPECT_GE(pages, 4);
    }
  }
}

// A trail carries the roller's raw events only when asked, at most as many as asked.
TEST_F(StorePartsTest, ARollerTrailCarriesAtMostTheEventsAskedFor) {
  Open();
  ASSERT_TRUE(Register(*store_, Roller("R-1"), kNow - 1000).ok());
  rollertrace::v1::EventBatch b = SessionStart("R-1", rollertrace::v1::INDICATION_SCAR);
  for (uint64_t seq = 2; seq <= 5; ++seq) {
    auto* e = b.add_events();
    e->set_device_id("R-1");
    e->set_sequence(seq);
    e->set_device_time_unix_ms(kNow + static_cast<int64_t>(seq));
    e->mutable_usage_sample()->set_session_id("s1");
    e->mutable_usage_sample()->set_revolutions(10);
  }
  const rollertrace::v1::EventBatch* one[] = {&b};
  ASSERT_TRUE(Append(*store_, one, kNow).ok());
  auto none = store_->audit().RollerTrail("R-1");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->events_size(), 0);
  auto some = store_->audit().RollerTrail("R-1", 3);
  ASSERT_TRUE(some.ok());
  ASSERT_EQ(some->events_size(), 3);
  EXPECT_EQ(some->next_event_sequence(), 4u);
  auto every = store_->audit().RollerTrail("R-1", 10);
  ASSERT_TRUE(every.ok());
  EXPECT_EQ(every->events_size(), 5);
  EXPECT_EQ(every->next_event_sequence(), 0u);
}

TEST(PolicyText, FormatPolicyIsCanonicalAndParsesBack) {
  rules::Policy p;
  p.session_limit = 3;
  p.session_limit_by_model["MTS \"192\""] = 2;
  p.course_gap_ms = 21 * rules::kDayMs;
  p.anaesthesia_min_ms = 25 * rules::kMinuteMs;
  p.methods["dry_heat"] = {{160.0, 7200}};
  const std::string text = rules::FormatPolicy(p);
  auto back = rules::ParsePolicy(text);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_EQ(rules::FormatPolicy(*back), text);
  EXPECT_EQ(back->session_limit, 3u);
  EXPECT_EQ(back->session_limit_by_model.at("MTS \"192\""), 2u);
  EXPECT_EQ(back->course_gap_ms, 21 * rules::kDayMs);
  EXPECT_EQ(back->methods.at("dry_heat")[0].hold_seconds, 7200u);
  EXPECT_EQ(rules::FormatPolicy(rules::Policy{}), rules::FormatPolicy(*rules::ParsePolicy("")));
}

// Nice values of this process's threads whose name begins with `prefix`.
std::multiset<int> NiceOfThreads(const std::string& prefix) {
  std::multiset<int> found;
  for (const auto& [name, values] : process::ThreadNiceValues(getpid())) {
    if (name.rfind(prefix, 0) == 0) found.insert(values.begin(), values.end());
  }
  return found;
}

TEST_F(StorePartsTest, FlushesAndCompactionsRunAtTheBackgroundNiceValue) {
  // Bulk work behind the decisions (docs/ARCHITECTURE.md "Under load"): the
  // threads RocksDB starts for flushes and compactions take the store's
  // background nice value as their first job begins; the caller keeps its own.
  auto db = Db::Open(dir_, true, Db::Mode::kServe, 6);
  ASSERT_TRUE(db.ok()) << db.status();
  rocksdb::DB* raw = (*db)->raw();
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), (*db)->handle(Family::kEvents), "k" + std::to_string(i),
                           std::string(100, 'v'))
                      .ok());
    }
    ASSERT_TRUE(raw->Flush(rocksdb::FlushOptions(), (*db)->handle(Family::kEvents)).ok());
  }
  EXPECT_EQ(NiceOfThreads("rocksdb:high").count(6), 1u) << "the flush thread";
  rocksdb::CompactRangeOptions compact;
  compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  ASSERT_TRUE(raw->CompactRange(compact, (*db)->handle(Family::kEvents), nullptr, nullptr).ok());
  EXPECT_GE(NiceOfThreads("rocksdb:low").count(6), 1u) << "a compaction thread";
  EXPECT_EQ(getpriority(PRIO_PROCESS, 0), 0) << "the caller's own thread";
}

// The number of the events family's one file when it is still the file that
// flush wrote (sequence numbers not zeroed by a rewrite), else 0.
uint64_t FlushedEventsFile(const Db& db) {
  rocksdb::ColumnFamilyMetaData meta;
  db.raw()->GetColumnFamilyMetaData(db.handle(Family::kEvents), &meta);
  uint64_t file = 0;
  for (const auto& level : meta.levels) {
    for (const auto& f : level.files) {
      if (f.largest_seqno != 0) file = f.file_number;
    }
  }
  return file;
}

TEST_F(StorePartsTest, ReadersOfOneReadLeaveAYoungStoresFilesAlone) {
  // Every snapshot released makes RocksDB rewrite the bottom level's files
  // written since (compaction reason BottommostFiles); on a young store that
  // is each file a flush writes. The readers ingestd runs every second (the
  // fleet gauges, the outbox) read once per query and take no snapshot, so a
  // burst does not pay for a rewrite of every flush (docs/BENCHMARKS.md).
  auto db = Db::Open(dir_, true);
  ASSERT_TRUE(db.ok()) << db.status();
  rocksdb::DB* raw = (*db)->raw();
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), (*db)->handle(Family::kEvents), "k" + std::to_string(i),
                         std::string(100, 'v'))
                    .ok());
  }
  ASSERT_TRUE(raw->Flush(rocksdb::FlushOptions(), (*db)->handle(Family::kEvents)).ok());
  ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), (*db)->handle(Family::kMeta), "later", "x").ok());
  const uint64_t flushed = FlushedEventsFile(**db);
  ASSERT_NE(flushed, 0u);

  AuditReader audit(**db);
  for (int round = 0; round < 10; ++round) {
    ASSERT_TRUE(audit.ListDevices(rollertrace::v1::DEVICE_KIND_UNSPECIFIED).ok());
    ASSERT_TRUE(audit.CountPendingBiologicalIndicators().ok());
    ASSERT_TRUE(audit.History("R-1", 1, 10).ok());
    ASSERT_TRUE(LatestView(**db).ReadCounter("counter", 0).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(FlushedEventsFile(**db), flushed) << "rewritten after round " << round;
  }

  // The control: a released snapshot has the file rewritten.
  { SnapshotView view(**db); }
  for (int waited = 0; waited < 100 && FlushedEventsFile(**db) == flushed; ++waited) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(FlushedEventsFile(**db), flushed) << "a released snapshot did not rewrite the file";
}

}  // namespace
}  // namespace rollertrace::store
