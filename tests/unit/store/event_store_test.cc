#include "store/commands.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace rollertrace::store {
namespace {

using rollertrace::v1::Device;
using rollertrace::v1::EventBatch;

class EventStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("event_store_test." + std::to_string(getpid()) + "." +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    Reopen();
    ASSERT_TRUE(store::Register(*store_, Roller("R-1"), 100).ok());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    auto s = EventStore::Open(dir_.string());
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  static Device Roller(const std::string& id, uint32_t needles = 540, double mm = 1.0) {
    Device d;
    d.set_device_id(id);
    d.set_kind(rollertrace::v1::DEVICE_KIND_ROLLER);
    d.set_model("DRS-540");
    d.set_needle_count(needles);
    d.set_needle_length_mm(mm);
    d.set_rated_penetrations(1000000);
    return d;
  }
  static EventBatch Batch(const std::string& id, std::vector<uint64_t> seqs) {
    EventBatch b;
    b.set_device_id(id);
    for (uint64_t s : seqs) {
      auto* e = b.add_events();
      e->set_device_id(id);
      e->set_sequence(s);
      e->set_device_time_unix_ms(1000 + s);
      e->mutable_usage_sample()->set_revolutions(10);
    }
    return b;
  }
  CommandResult Append(std::vector<EventBatch> batches, int64_t now = 5000) {
    std::vector<const EventBatch*> ptrs;
    for (auto& b : batches) ptrs.push_back(&b);
    auto r = store::Append(*store_, ptrs, now);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult{};
  }

  std::filesystem::path dir_;
  std::unique_ptr<EventStore> store_;
};

TEST_F(EventStoreTest, StoresEachEventOnceAndAcksRepeats) {
  CommandResult first = Append({Batch("R-1", {1, 2, 3})});
  EXPECT_EQ(first.stored_by_type["usage_sample"], 3u);
  ASSERT_EQ(first.acks.size(), 1u);
  EXPECT_EQ(first.acks[0].contiguous_through(), 3u);

  CommandResult again = Append({Batch("R-1", {2, 3, 4})});
  EXPECT_EQ(again.duplicates, 2u);
  EXPECT_EQ(again.stored_by_type["usage_sample"], 1u);
  ASSERT_EQ(again.acks.size(), 1u);
  EXPECT_EQ(again.acks[0].contiguous_through(), 4u);
  ASSERT_EQ(again.acks[0].committed_size(), 1);
  EXPECT_EQ(again.acks[0].committed(0).first(), 2u);
  EXPECT_EQ(again.acks[0].committed(0).last(), 4u);

  auto record = store_->audit().GetDevice("R-1");
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->state().events_stored(), 4u);
  EXPECT_EQ(record->state().duplicates(), 2u);
  EXPECT_EQ(record->state().total_revolutions(), 40u);
}

TEST_F(EventStoreTest, DeduplicatesWithinOneGroup) {
  CommandResult r = Append({Batch("R-1", {1, 2}), Batch("R-1", {2, 1, 3})});
  EXPECT_EQ(r.stored_by_type["usage_sample"], 3u);
  EXPECT_EQ(r.duplicates, 2u);
  EXPECT_EQ(store_->audit().History("R-1", 1, 0)->events_size(), 3);
}

TEST_F(EventStoreTest, RecordsAGapAndClosesItWhenTheMissingEventsArrive) {
  Append({Batch("R-1", {1, 2, 6})}, 5000);
  auto record = store_->audit().GetDevice("R-1");
  EXPECT_EQ(record->state().contiguous_through(), 2u);
  EXPECT_EQ(record->state().highest_sequence(), 6u);
  ASSERT_EQ(record->state().open_gaps_size(), 1);
  EXPECT_EQ(record->state().open_gaps(0).first(), 3u);
  EXPECT_EQ(record->state().open_gaps(0).last(), 5u);

  CommandResult mid = Append({Batch("R-1", {4})}, 6000);
  EXPECT_EQ(mid.acks[0].contiguous_through(), 2u);
  auto gaps = store_->audit().Gaps("R-1");
  ASSERT_EQ(gaps->size(), 1u);
  ASSERT_EQ((*gaps)[0].missing_size(), 2);  // 3 and 5 still missing
  EXPECT_EQ((*gaps)[0].missing(0).first(), 3u);
  EXPECT_EQ((*gaps)[0].missing(1).first(), 5u);

  Append({Batch("R-1", {3})}, 7000);
  EXPECT_EQ(store_->audit().GetDevice("R-1")->state().contiguous_through(), 4u);
  CommandResult last = Append({Batch("R-1", {5})}, 8000);
  EXPECT_EQ(last.acks[0].contiguous_through(), 6u);

  gaps = store_->audit().Gaps("R-1");
  ASSERT_EQ(gaps->size(), 1u);
  EXPECT_EQ((*gaps)[0].opened_unix_ms(), 5000);
  EXPECT_EQ((*gaps)[0].closed_unix_ms(), 8000);
  EXPECT_EQ(store_->audit().GetDevice("R-1")->state().open_gaps_size(), 0);
}

TEST_F(EventStoreTest, RejectsUnknownDevicesWithoutLosingOthersEvents) {
  CommandResult r = Append({Batch("GHOST", {1}), Batch("R-1", {1})});
  ASSERT_EQ(r.rejections.size(), 1u);
  EXPECT_EQ(r.rejections[0].device_id(), "GHOST");
  EXPECT_EQ(r.rejections[0].reason(), "unknown_device");
  EXPECT_EQ(store_->audit().History("R-1", 1, 0)->events_size(), 1);
}

TEST_F(EventStoreTest, RejectsRawPatientReferencesAndWrongKinds) {
  EventBatch b = Batch("R-1", {1});
  b.mutable_events(0)->mutable_session_started()->set_patient_ref("MRN-123");
  EventBatch cycle = Batch("R-1", {2});
  cycle.mutable_events(0)->mutable_sterilisation_cycle()->set_cycle_number(1);
  CommandResult r = Append({b, cycle});
  ASSERT_EQ(r.rejections.size(), 2u);
  EXPECT_EQ(r.rejections[0].reason(), "unpseudonymised");
  EXPECT_EQ(r.rejections[1].reason(), "wrong_device_kind");
  EXPECT_EQ(store_->audit().History("R-1", 1, 0)->events_size(), 0);
}

TEST_F(EventStoreTest, KeepsEventsAndStateAcrossReopen) {
  Append({Batch("R-1", {1, 2, 3, 5})});
  Reopen();
  auto record = store_->audit().GetDevice("R-1");
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->state().events_stored(), 4u);
  EXPECT_EQ(record->state().open_gaps_size(), 1);
  CommandResult r = Append({Batch("R-1", {3, 4})});
  EXPECT_EQ(r.duplicates, 1u);
  EXPECT_EQ(r.acks[0].contiguous_through(), 5u);
}

TEST_F(EventStoreTest, StateAlwaysMatchesTheStoredEvents) {
  // Many groups, many devices, repeats and gaps: the device record written in
  // the same batch must agree with the events actually present.
  ASSERT_TRUE(store::Register(*store_, Roller("R-2"), 100).ok());
  for (uint64_t round = 0; round < 20; ++round) {
    Append({Batch("R-1", {round * 3 + 1, round * 3 + 2}), Batch("R-2", {round + 1, round + 1}),
            Batch("R-1", {round * 3 + 3, round * 3 + 1})});
  }
  Reopen();
  for (const char* id : {"R-1", "R-2"}) {
    auto history = store_->audit().History(id, 1, 0);
    auto record = store_->audit().GetDevice(id);
    EXPECT_EQ(static_cast<uint64_t>(history->events_size()), record->state().events_stored()) << id;
    EXPECT_EQ(record->state().highest_sequence(), record->state().events_stored()) << id;
    for (int i = 0; i < history->events_size(); ++i) {
      EXPECT_EQ(history->events(i).event().sequence(), static_cast<uint64_t>(i + 1));
    }
  }
}

TEST_F(EventStoreTest, EndsASessionStartedInTheSameBatch) {
  EventBatch b;
  b.set_device_id("R-1");
  auto* start = b.add_events();
  start->set_device_id("R-1");
  start->set_sequence(1);
  start->set_device_time_unix_ms(1000);
  start->mutable_session_started()->set_session_id("s1");
  start->mutable_session_started()->set_patient_pseudonym("p-x");
  auto* end = b.add_events();
  end->set_device_id("R-1");
  end->set_sequence(2);
  end->set_device_time_unix_ms(2000);
  end->mutable_session_ended()->set_session_id("s1");
  Append({b});
  auto sessions = store_->audit().Sessions("R-1");
  ASSERT_TRUE(sessions.ok());
  ASSERT_EQ(sessions->size(), 1u);
  EXPECT_EQ((*sessions)[0].start_unix_ms(), 1000);
  EXPECT_EQ((*sessions)[0].end_unix_ms(), 2000);
}

TEST_F(EventStoreTest, PagesThroughHistory) {
  std::vector<uint64_t> seqs;
  for (uint64_t s = 1; s <= 25; ++s) seqs.push_back(s);
  Append({Batch("R-1", seqs)});
  auto page = store_->audit().History("R-1", 1, 10);
  ASSERT_EQ(page->events_size(), 10);
  EXPECT_EQ(page->next_sequence(), 11u);
  page = store_->audit().History("R-1", 21, 10);
  ASSERT_EQ(page->events_size(), 5);
  EXPECT_EQ(page->next_sequence(), 0u);
  EXPECT_EQ(page->events(0).event().sequence(), 21u);
  EXPECT_EQ(page->events(0).receive_unix_ms(), 5000);
}

TEST_F(EventStoreTest, RefusesRegistrationsOutsideTheDomain) {
  auto r = store::Register(*store_, Roller("R-9", 540, 3.1), 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(r.status().message()).find("needle length 3.1 mm is outside 0.25-2.5 mm"),
            std::string::npos)
      << r.status();
  EXPECT_EQ(store::Register(*store_, Roller("R-1"), 1).status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(EventStoreTest, RetiresForGood) {
  auto retired = store::Retire(*store_, "R-1", "course finished", 9000);
  ASSERT_TRUE(retired.ok());
  EXPECT_EQ(retired->lifecycle(), rollertrace::v1::LIFECYCLE_RETIRED);
  EXPECT_EQ(store::Retire(*store_, "R-1", "again", 9001).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store::Retire(*store_, "NOPE", "x", 1).status().code(), absl::StatusCode::kNotFound);
  auto list = store_->audit().ListDevices(rollertrace::v1::DEVICE_KIND_ROLLER);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].device().retired_reason(), "course finished");
}

}  // namespace
}  // namespace rollertrace::store

#include <rocksdb/db.h>

#include "store/keys.h"
#include "store/signer.h"

#include <map>

namespace rollertrace::store {
namespace {

// Tampering done the way an intruder with disk access would: straight into
// RocksDB, with ingestd's store closed.
class TamperTest : public EventStoreTest {
 protected:
  void SetUp() override {
    EventStoreTest::SetUp();
    Append({Batch("R-1", {1, 2, 3, 4, 5, 6})});
    Append({Batch("R-1", {8})});
    Append({Batch("R-1", {7})});  // late: commit order differs from sequence order
    store_.reset();
  }
  template <typename Change>
  void Tamper(Change change) {
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir_.string(), &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir_.string(), cfs, &handles, &db).ok());
    std::map<std::string, rocksdb::ColumnFamilyHandle*> by_name;
    for (size_t i = 0; i < names.size(); ++i) by_name[names[i]] = handles[i];
    cfs_ = by_name;
    change(db, by_name["events"]);
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
    Reopen();
  }
  std::map<std::string, rocksdb::ColumnFamilyHandle*> cfs_;  // valid inside Tamper's change only
  rollertrace::v1::ChainBreak FirstBreak(std::string_view key = {}) {
    auto report = store_->verifier().Verify("", key);
    EXPECT_TRUE(report.ok());
    EXPECT_FALSE(report->intact());
    EXPECT_EQ(report->breaks_size(), 1) << report->ShortDebugString();
    return report->breaks_size() ? report->breaks(0) : rollertrace::v1::ChainBreak();
  }
};

TEST_F(TamperTest, AnUntouchedStoreVerifies) {
  Reopen();
  auto report = store_->verifier().Verify("");
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->intact()) << report->ShortDebugString();
  // 8 events; the registration's log entry and device definition; the closed gap of sequence 7.
  EXPECT_EQ(report->records_checked(), 11u);
}

TEST_F(TamperTest, NamesAChangedRecord) {
  Tamper([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events) {
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), events, DeviceSequenceKey("R-1", 5), &value).ok());
    rollertrace::v1::StoredEvent e;
    ASSERT_TRUE(e.ParseFromString(value));
    e.mutable_event()->mutable_usage_sample()->set_revolutions(1);  // fewer revolutions, less wear
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), events, DeviceSequenceKey("R-1", 5), e.SerializeAsString()).ok());
  });
  auto b = FirstBreak();
  EXPECT_EQ(b.device_id(), "R-1");
  EXPECT_EQ(b.sequence(), 5u);
  EXPECT_EQ(b.problem(), "changed");
}

TEST_F(TamperTest, NamesADeletedRecord) {
  Tamper([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events) {
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), events, DeviceSequenceKey("R-1", 3)).ok());
  });
  auto b = FirstBreak();
  EXPECT_EQ(b.problem(), "deleted");
  EXPECT_EQ(b.chain_index(), 3u);
  EXPECT_EQ(b.sequence(), 4u) << b.detail();  // the record after the gap
}

TEST_F(TamperTest, NamesTheLatestRecordDeleted) {
  Tamper([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events) {
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), events, DeviceSequenceKey("R-1", 7)).ok());  // committed last
  });
  auto b = FirstBreak();
  EXPECT_EQ(b.problem(), "deleted");
  EXPECT_EQ(b.chain_index(), 8u);
}

TEST_F(TamperTest, NamesTwoRecordsSwapped) {
  Tamper([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events) {
    std::string a, b;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), events, DeviceSequenceKey("R-1", 2), &a).ok());
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), events, DeviceSequenceKey("R-1", 4), &b).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), events, DeviceSequenceKey("R-1", 2), b).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), events, DeviceSequenceKey("R-1", 4), a).ok());
  });
  auto b = FirstBreak();
  EXPECT_EQ(b.problem(), "reordered");
  EXPECT_EQ(b.sequence(), 2u);
}

TEST_F(TamperTest, NamesTwoRecordsSwappedWithTheirSequencesRewritten) {
  // A careful intruder also swaps the sequence numbers inside: the hashes catch it.
  Tamper([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events) {
    std::string a, b;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), events, DeviceSequenceKey("R-1", 2), &a).ok());
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), events, DeviceSequenceKey("R-1", 4), &b).ok());
    rollertrace::v1::StoredEvent ea, eb;
    ea.ParseFromString(a);
    eb.ParseFromString(b);
    ea.mutable_event()->set_sequence(4);
    eb.mutable_event()->set_sequence(2);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), events, DeviceSequenceKey("R-1", 2), eb.SerializeAsString()).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), events, DeviceSequenceKey("R-1", 4), ea.SerializeAsString()).ok());
  });
  auto b = FirstBreak();
  EXPECT_EQ(b.problem(), "changed");
  EXPECT_EQ(b.sequence(), 2u);
}

}  // namespace
}  // namespace rollertrace::store

namespace rollertrace::store {
namespace {

TEST_F(TamperTest, ASignedCheckpointCatchesARewrittenTail) {
  // Cut the latest record and rewrite the device's head to match: the chain on
  // its own still verifies, the signed checkpoint does not.
  const std::string key_file = (dir_.parent_path() / ("signing-" + std::to_string(getpid()) + ".pem")).string();
  std::filesystem::remove(key_file);
  auto signer = Signer::LoadOrCreate(key_file);
  ASSERT_TRUE(signer.ok()) << signer.status();
  Reopen();
  ASSERT_TRUE(store::WriteCheckpoint(*store_, *signer, 9000).ok());
  ASSERT_TRUE(store_->verifier().Verify("", signer->public_key())->intact());
  store_.reset();
  Tamper([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events) {
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), events, DeviceSequenceKey("R-1", 8), &value).ok());
    rollertrace::v1::StoredEvent seventh;  // chain position 7 is sequence 8 (7 arrived late)
    ASSERT_TRUE(seventh.ParseFromString(value));
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), events, DeviceSequenceKey("R-1", 7)).ok());
    std::string device;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs_["devices"], "R-1", &device).ok());
    rollertrace::v1::DeviceRecord record;
    ASSERT_TRUE(record.ParseFromString(device));
    record.mutable_state()->set_chain_length(7);
    record.mutable_state()->set_chain_head(seventh.hash());
    // A thorough intruder makes the state agree with the shorter chain too.
    record.mutable_state()->set_events_stored(7);
    record.mutable_state()->set_total_revolutions(record.state().total_revolutions() - 10);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs_["devices"], "R-1", record.SerializeAsString()).ok());
  });
  EXPECT_TRUE(store_->verifier().Verify("")->intact()) << "without the checkpoint the cut is invisible";
  auto b = FirstBreak(signer->public_key());
  EXPECT_EQ(b.device_id(), "R-1");
  EXPECT_EQ(b.problem(), "deleted");
  EXPECT_EQ(b.chain_index(), 8u);
  std::filesystem::remove(key_file);
}

TEST_F(TamperTest, AForgedCheckpointIsRefused) {
  const std::string key_file = (dir_.parent_path() / ("signing2-" + std::to_string(getpid()) + ".pem")).string();
  std::filesystem::remove(key_file);
  auto signer = Signer::LoadOrCreate(key_file);
  ASSERT_TRUE(signer.ok());
  Reopen();
  ASSERT_TRUE(store::WriteCheckpoint(*store_, *signer, 9000).ok());
  store_.reset();
  Tamper([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle*) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cfs_["checkpoints"]));
    it->SeekToLast();
    ASSERT_TRUE(it->Valid());
    rollertrace::v1::Checkpoint cp;
    ASSERT_TRUE(cp.ParseFromString(it->value().ToString()));
    cp.mutable_heads(0)->set_length(3);  // pretend the chain was shorter
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs_["checkpoints"], it->key(), cp.SerializeAsString()).ok());
  });
  auto b = FirstBreak(signer->public_key());
  EXPECT_EQ(b.device_id(), "(checkpoint)");
  // The key survives a restart: loading it again gives the same public key.
  auto again = Signer::LoadOrCreate(key_file);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->public_key(), signer->public_key());
  std::filesystem::remove(key_file);
}

}  // namespace
}  // namespace rollertrace::store

namespace rollertrace::store {
namespace {

// ingestd's own records (sessions, violations, decisions, the device log)
// are chained too: the same intruder changes them.
class RecordTamperTest : public TamperTest {
 protected:
  void SetUp() override {
    EventStoreTest::SetUp();
    // Two sessions on a roller never sterilised: each is a violation, the first locks it.
    EventBatch b;
    b.set_device_id("R-1");
    for (uint64_t seq : {1, 2, 3, 4}) {
      auto* e = b.add_events();
      e->set_device_id("R-1");
      e->set_sequence(seq);
      e->set_device_time_unix_ms(1000 * seq);
      const std::string session = seq <= 2 ? "s1" : "s2";
      if (seq % 2 == 1) {
        e->mutable_session_started()->set_session_id(session);
        e->mutable_session_started()->set_patient_pseudonym("p-x");
        e->mutable_session_started()->set_operator_id(seq == 1 ? "op-a" : "op-b");
      } else {
        e->mutable_session_ended()->set_session_id(session);
      }
    }
    Append({b});
    rollertrace::v1::AuthorizeRequest ask;
    ask.set_device_id("R-1");
    ask.mutable_session()->set_patient_pseudonym("p-x");
    ASSERT_TRUE(store::Authorize(*store_, ask, 6000).ok());
    store_.reset();
  }
  // R-1's device record, changed by `change` straight in RocksDB.
  template <typename Change>
  void RewriteDevice(Change change) {
    Tamper([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle*) {
      std::string value;
      ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs_["devices"], "R-1", &value).ok());
      rollertrace::v1::DeviceRecord r;
      ASSERT_TRUE(r.ParseFromString(value));
      change(&r);
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs_["devices"], "R-1", r.SerializeAsString()).ok());
    });
  }
  // The key of the first record of `cf` belonging to R-1 whose key contains `part`.
  std::string FindKey(rocksdb::DB* db, const char* cf, const std::string& part = "R-1") {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cfs_[cf]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().ToString().find(part) != std::string::npos) return it->key().ToString();
    }
    ADD_FAILURE() << "no " << cf << " record with " << part;
    return {};
  }
};

TEST_F(RecordTamperTest, AnUntouchedStoreVerifies) {
  Reopen();
  auto report = store_->verifier().Verify("");
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->intact()) << report->ShortDebugString();
}

TEST_F(RecordTamperTest, NamesAChangedViolation) {
  Tamper([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle*) {
    const std::string key = FindKey(db, "violations");
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs_["violations"], key, &value).ok());
    rollertrace::v1::Violation v;
    ASSERT_TRUE(v.ParseFromString(value));
    v.set_severity(rollertrace::v1::SEVERITY_WARN);  // play it down
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs_["violations"], key, v.SerializeAsString()).ok());
  });
  auto b = FirstBreak();
  EXPECT_EQ(b.device_id(), "R-1");
  EXPECT_EQ(b.chain(), "records");
  EXPECT_EQ(b.problem(), "changed");
  EXPECT_EQ(b.sequence(), 1u);
  EXPECT_NE(b.record().find("violation"), std::string::npos) << b.record();
}

TEST_F(RecordTamperTest, NamesADeletedSession) {
  Tamper([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle*) {
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), cfs_["sessions"], DeviceSequenceKey("R-1", 3)).ok());
  });
  auto b = FirstBreak();
  EXPECT_EQ(b.problem(), "deleted");
  EXPECT_EQ(b.sequence(), 3u);
  EXPECT_EQ(b.record(), "session starting at sequence 3");
}

TEST_F(RecordTamperTest, NamesTwoSessionsSwapped) {
  Tamper([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle*) {
    std::string a, b;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs_["sessions"], DeviceSequenceKey("R-1", 1), &a).ok());
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs_["sessions"], DeviceSequenceKey("R-1", 3), &b).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs_["sessions"], DeviceSequenceKey("R-1", 1), b).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs_["sessions"], DeviceSequenceKey("R-1", 3), a).ok());
  });
  auto b = FirstBreak();
  EXPECT_EQ(b.problem(), "reordered");
  EXPECT_EQ(b.sequence(), 1u);
  EXPECT_NE(b.detail().find("session starting at sequence 3"), std::string::npos) << b.detail();
}

TEST_F(RecordTamperTest, NamesAChangedDecisionAndLogEntry) {
  Tamper([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle*) {
    const std::string key = FindKey(db, "decisions");
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs_["decisions"], key, &value).ok());
    rollertrace::v1::Decision d;
    ASSERT_TRUE(d.ParseFromString(value));
    d.set_allowed(true);
    d.clear_hits();
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs_["decisions"], key, d.SerializeAsString()).ok());
  });
  auto b = FirstBreak();
  EXPECT_EQ(b.problem(), "changed");
  EXPECT_NE(b.record().find("decision made at unix ms 6000"), std::string::npos) << b.record();
}

TEST_F(RecordTamperTest, NamesAnUnlockWrittenAroundIngestd) {
  // Releasing the lock by hand: the device's definition no longer matches.
  RewriteDevice([](rollertrace::v1::DeviceRecord* r) {
    ASSERT_EQ(r->device().lifecycle(), rollertrace::v1::LIFECYCLE_LOCKED);
    r->mutable_device()->set_lifecycle(rollertrace::v1::LIFECYCLE_STERILE);
  });
  auto b = FirstBreak();
  EXPECT_EQ(b.problem(), "changed");
  EXPECT_EQ(b.record(), "the definition of device R-1");
}

TEST_F(RecordTamperTest, NamesARecordNoChainHolds) {
  Tamper([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle*) {
    rollertrace::v1::Violation v;
    v.set_device_id("R-1");
    v.set_rule("worn_needles");
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs_["violations"], TimeKey(7000, "R-1", 9, "worn_needles"),
                        v.SerializeAsString())
                    .ok());
  });
  auto b = FirstBreak();
  EXPECT_EQ(b.problem(), "unchained");
  EXPECT_EQ(b.device_id(), "R-1");
  EXPECT_EQ(b.record(), "violation worn_needles at sequence 9");
}

TEST_F(RecordTamperTest, NamesADeletedChainEntry) {
  Tamper([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle*) {
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), cfs_["ledger"], DeviceSequenceKey("R-1", 3)).ok());
  });
  // The chain's hole is named first; the record the removed entry vouched for is now unchained too.
  auto report = store_->verifier().Verify("");
  ASSERT_TRUE(report.ok());
  ASSERT_GE(report->breaks_size(), 1);
  EXPECT_EQ(report->breaks(0).chain(), "records");
  EXPECT_EQ(report->breaks(0).problem(), "deleted");
  EXPECT_EQ(report->breaks(0).chain_index(), 3u);
}

}  // namespace
}  // namespace rollertrace::store

namespace rollertrace::store {
namespace {

// The state the rules read (wear, sessions, the bound patient) is derived from
// the events; rewriting it to let a worn roller through is caught.
TEST_F(RecordTamperTest, NamesAStateRewrittenToHideWear) {
  RewriteDevice([](rollertrace::v1::DeviceRecord* r) {
    r->mutable_state()->set_sessions_started(1);  // as if the roller had more sessions left
  });
  auto b = FirstBreak();
  EXPECT_EQ(b.device_id(), "R-1");
  EXPECT_EQ(b.chain(), "state");
  EXPECT_NE(b.detail().find("sessions started 1 on record, 2 from the events"), std::string::npos) << b.detail();
}

TEST_F(RecordTamperTest, NamesARebindingToAnotherPatient) {
  RewriteDevice([](rollertrace::v1::DeviceRecord* r) {
    r->mutable_state()->mutable_roller()->set_bound_patient("p-someone-else");
  });
  auto b = FirstBreak();
  EXPECT_NE(b.detail().find("bound to patient p-someone-else"), std::string::npos) << b.detail();
}

}  // namespace
}  // namespace rollertrace::store

