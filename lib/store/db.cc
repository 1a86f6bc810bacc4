#include "store/db.h"

#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "store/keys.h"
#include "process/priority.h"
#include "store/memtable.h"
#include "util/cat.h"

namespace rollertrace::store {

absl::Status ReadView::Corrupt(Family family, std::string_view key) {
  std::string who;
  if (auto owner = KeyOwner(key)) who = util::Cat(" of ", *owner);
  return absl::DataLossError(util::Cat("a ", Info(family).name, " record", who, " is corrupt"));
}

absl::StatusOr<uint64_t> ReadView::ReadCounter(std::string_view key, uint64_t otherwise) const {
  std::string value;
  absl::StatusOr<bool> found = Get(Family::kMeta, key, &value);
  if (!found.ok()) return found.status();
  if (!*found) return otherwise;
  if (value.size() != 8) return Corrupt(Family::kMeta, key);
  return ReadBigEndian64(value);
}

absl::Status ReadView::Scan(Family family, std::string_view prefix, const Visitor& visit,
                            std::string_view start) const {
  std::unique_ptr<rocksdb::Iterator> it = Iterate(family);
  const rocksdb::Slice from = start.empty() ? rocksdb::Slice(prefix.data(), prefix.size())
                                            : rocksdb::Slice(start.data(), start.size());
  if (from.empty()) {
    it->SeekToFirst();
  } else {
    it->Seek(from);
  }
  const rocksdb::Slice want(prefix.data(), prefix.size());
  for (; it->Valid() && it->key().starts_with(want); it->Next()) {
    absl::StatusOr<bool> more = visit(std::string_view(it->key().data(), it->key().size()),
                                      std::string_view(it->value().data(), it->value().size()));
    if (!more.ok()) return more.status();
    if (!*more) return absl::OkStatus();
  }
  if (!it->status().ok()) {
    return absl::InternalError(util::Cat("read ", Info(family).name, ": ", it->status().ToString()));
  }
  return absl::OkStatus();
}

namespace {

// Lowers the priority of the thread that runs a flush or a compaction, once
// per thread, as its first job begins (RocksDB starts its pool threads itself).
class BackgroundPriority final : public rocksdb::EventListener {
 public:
  explicit BackgroundPriority(int nice) : nice_(nice) {}
  const char* Name() const override { return "rollertrace.BackgroundPriority"; }
  void OnFlushBegin(rocksdb::DB*, const rocksdb::FlushJobInfo&) override { Lower(); }
  void OnCompactionBegin(rocksdb::DB*, const rocksdb::CompactionJobInfo&) override { Lower(); }

 private:
  void Lower() const {
    thread_local int lowered_to = 0;
    if (lowered_to == nice_) return;
    lowered_to = nice_;
    // A refusal (a sandbox without setpriority) leaves the thread as it was.
    (void)process::LowerThisThread(nice_);
  }
  int nice_;
};

rocksdb::CompressionType BottomCompression() {
  const std::vector<rocksdb::CompressionType> supported = rocksdb::GetSupportedCompressions();
  for (rocksdb::CompressionType t : {rocksdb::kLZ4Compression, rocksdb::kSnappyCompression}) {
    if (std::find(supported.begin(), supported.end(), t) != supported.end()) return t;
  }
  return rocksdb::kNoCompression;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Db>> Db::Open(const std::string& path, bool sync, Mode mode, int background_nice) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.IncreaseParallelism(2);
  // The store's own memtable (memtable.h: Debian's RocksDB checks its own
  // skip list on every insert); it takes one inserting thread at a time.
  options.allow_concurrent_memtable_write = false;
  // Effects are written without the WAL (WriteWithoutLog): every flush must
  // take all families at one sequence number, or a crash could leave one
  // family ahead of another on disk.
  options.atomic_flush = true;
  if (background_nice > 0) options.listeners.push_back(std::make_shared<BackgroundPriority>(background_nice));
  rocksdb::ColumnFamilyOptions cf_options;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf_options.memtable_factory = NewSkipListMemTable();
  // Memtables of 32 MiB, not RocksDB's 64: the memtables are most of
  // ingestd's memory, and its first pass over each fresh page costs a page
  // fault and zeroing (12 % of ingestd's CPU in a 1M-event burst on a virtual
  // machine). Five interleaved pairs of bench/ingestd_alone.sh: 64 MiB 2.01-2.32
  // us an event (median 2.12), 32 MiB 1.87-2.08 (1.95), 16 MiB 2.30-2.68 (more
  // flushes and compactions than it saves); peak RSS 237-247, 175-185 and
  // 154-162 MiB (docs/BENCHMARKS.md, ninth session).
  cf_options.write_buffer_size = 32 << 20;
  // Flushes write uncompressed: under a burst, compressing each flushed block
  // was a quarter of the flush thread (snappy), about 4 % of ingestd's CPU.
  // Compactions into the bottom level, where the store's bulk ends up,
  // compress with LZ4 (snappy where this RocksDB lacks it).
  cf_options.compression = rocksdb::kNoCompression;
  cf_options.bottommost_compression = BottomCompression();
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return absl::UnavailableError(util::Cat("cannot create the store directory ", path, ": ", ec.message()));

  // Every family of the schema, and any other the store already has (RocksDB
  // opens all or none).
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  std::set<std::string> known;
  for (const FamilyInfo& f : Families()) {
    descriptors.emplace_back(std::string(f.name), cf_options);
    known.insert(std::string(f.name));
  }
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(options, path, &existing).ok()) {
    for (const std::string& name : existing) {
      if (!known.count(name)) descriptors.emplace_back(name, cf_options);
    }
  }
  std::unique_ptr<Db> db(new Db(path, sync));
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, descriptors, &db->owned_, &raw);
  if (!s.ok()) return absl::UnavailableError(util::Cat("cannot open store at ", path, ": ", s.ToString()));
  db->db_.reset(raw);
  db->handles_.assign(kFamilyCount, nullptr);
  for (rocksdb::ColumnFamilyHandle* h : db->owned_) {
    for (const FamilyInfo& f : Families()) {
      if (h->GetName() == f.name) db->handles_[static_cast<size_t>(f.family)] = h;
    }
  }
  if (absl::Status f = db->CheckFormat(mode); !f.ok()) return f;
  return db;
}

Db::Db(std::string path, bool sync) : path_(std::move(path)), sync_(sync) {}

Db::~Db() {
  if (!db_) return;
  for (auto* h : owned_) db_->DestroyColumnFamilyHandle(h);
  db_->Close();
}

absl::Status Db::CheckFormat(Mode mode) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handle(Family::kMeta), std::string(kMetaFormat), &value);
  if (!s.ok() && !s.IsNotFound()) return absl::UnavailableError(util::Cat("read the store's format: ", s.ToString()));
  uint32_t format = 0;
  if (s.ok()) {
    format = static_cast<uint32_t>(std::strtoul(value.c_str(), nullptr, 10));
  } else {
    // No format recorded: a new store, or one from before formats (1).
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle(Family::kDevices)));
    it->SeekToFirst();
    format = it->Valid() ? 1 : 0;
  }
  if (format == kStoreFormat) return absl::OkStatus();
  if (format > kStoreFormat) {
    return absl::FailedPreconditionError(util::Cat("the store at ", path_, " is format ", format,
                                                   ", newer than this build reads (", kStoreFormat,
                                                   "): run the ingestd that wrote it, or a newer one"));
  }
  if (format != 0 && mode != Mode::kMigrate) {
    return absl::FailedPreconditionError(util::Cat(
        "the store at ", path_, " is format ", format, " (before the command log); this build reads format ",
        kStoreFormat, ". Back it up, then migrate it with: rollertrace-store migrate --data-dir ", path_));
  }
  return Migrate(format);
}

absl::Status Db::Migrate(uint32_t from) {
  rocksdb::WriteBatch wb;
  rocksdb::ColumnFamilyHandle* meta = handle(Family::kMeta);
  if (from == 1) {
    // Format 1 kept the decision counter in memory: resume after the highest stored.
    uint64_t counter = 0;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle(Family::kDecisions)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (auto k = DecodeTimedKey(std::string_view(it->key().data(), it->key().size()))) {
        counter = std::max(counter, k->n);
      }
    }
    if (!it->status().ok()) return absl::InternalError(util::Cat("migrate: ", it->status().ToString()));
    wb.Put(meta, std::string(kMetaDecisionCounter), CounterValue(counter));
    // Its history is not in the command log: a replay of the log cannot rebuild it.
    wb.Put(meta, std::string(kMetaMigratedFrom), "1");
  }
  wb.Put(meta, std::string(kMetaNextCommand), CounterValue(1));
  wb.Put(meta, std::string(kMetaFormat), std::to_string(kStoreFormat));
  return Write(&wb, from == 0 ? "create the store" : "migrate the store");
}

absl::Status Db::Write(rocksdb::WriteBatch* batch, std::string_view what) const {
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return WriteWith(wo, batch, what);
}

absl::Status Db::WriteWithoutLog(rocksdb::WriteBatch* batch, std::string_view what) const {
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;
  return WriteWith(wo, batch, what);
}

absl::Status Db::WriteWith(const rocksdb::WriteOptions& options, rocksdb::WriteBatch* batch,
                           std::string_view what) const {
  rocksdb::Status s = db_->Write(options, batch);
  if (s.ok()) return absl::OkStatus();
  return absl::InternalError(util::Cat(what, ": ", s.ToString()));
}

absl::Status Db::Resume() {
  rocksdb::Status s = db_->Resume();
  if (s.ok()) return absl::OkStatus();
  return absl::UnavailableError(util::Cat("the store at ", path_, " did not resume: ", s.ToString()));
}

std::map<std::string, uint64_t> Db::Properties() const {
  std::map<std::string, uint64_t> out;
  for (const char* name : {"rocksdb.estimate-live-data-size", "rocksdb.estimate-pending-compaction-bytes",
                           "rocksdb.is-write-stopped", "rocksdb.actual-delayed-write-rate",
                           "rocksdb.total-sst-files-size", "rocksdb.cur-size-all-mem-tables"}) {
    uint64_t total = 0;
    for (auto* h : owned_) {
      uint64_t v = 0;
      if (db_->GetIntProperty(h, name, &v)) total += v;
    }
    out[name] = total;
  }
  return out;
}

SnapshotView::SnapshotView(const Db& db) : db_(db), snapshot_(db.raw()->GetSnapshot()) {}
SnapshotView::~SnapshotView() { db_.raw()->ReleaseSnapshot(snapshot_); }

namespace {

absl::StatusOr<bool> GetAt(const Db& db, const rocksdb::Snapshot* snapshot, Family family, std::string_view key,
                           std::string* value) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  rocksdb::Status s = db.raw()->Get(ro, db.handle(family), rocksdb::Slice(key.data(), key.size()), value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return absl::InternalError(util::Cat("read ", Info(family).name, ": ", s.ToString()));
  return true;
}

std::unique_ptr<rocksdb::Iterator> IterateAt(const Db& db, const rocksdb::Snapshot* snapshot, Family family) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  return std::unique_ptr<rocksdb::Iterator>(db.raw()->NewIterator(ro, db.handle(family)));
}

}  // namespace

absl::StatusOr<bool> SnapshotView::Get(Family family, std::string_view key, std::string* value) const {
  return GetAt(db_, snapshot_, family, key, value);
}

std::unique_ptr<rocksdb::Iterator> SnapshotView::Iterate(Family family) const {
  return IterateAt(db_, snapshot_, family);
}

absl::StatusOr<bool> LatestView::Get(Family family, std::string_view key, std::string* value) const {
  return GetAt(db_, nullptr, family, key, value);
}

std::unique_ptr<rocksdb::Iterator> LatestView::Iterate(Family family) const {
  return IterateAt(db_, nullptr, family);
}

}  // namespace rollertrace::store
