// Db: RocksDB, its column families (opened by name, from schema.h) and the
// store's format. ReadView: what every other part of the store reads
// through, either a snapshot of what is committed (SnapshotView) or a write
// in progress, pending batch included (WriteTxn, write_txn.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "store/schema.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Iterator;
class Snapshot;
class WriteBatch;
struct WriteOptions;
}  // namespace rocksdb

namespace rollertrace::store {

// The format this build writes (docs/ARCHITECTURE.md, "Format"). 1: stores
// from before the command log (no format recorded).
inline constexpr uint32_t kStoreFormat = 2;

class ReadView {
 public:
  virtual ~ReadView() = default;
  // False when `key` is absent.
  virtual absl::StatusOr<bool> Get(Family family, std::string_view key, std::string* value) const = 0;
  // An unpositioned iterator over `family`.
  virtual std::unique_ptr<rocksdb::Iterator> Iterate(Family family) const = 0;

  // Get and parse; DataLoss naming the family when the bytes do not parse.
  template <typename Message>
  absl::StatusOr<bool> Read(Family family, std::string_view key, Message* out) const {
    std::string value;
    absl::StatusOr<bool> found = Get(family, key, &value);
    if (!found.ok() || !*found) return found;
    if (!out->ParseFromString(value)) return Corrupt(family, key);
    return true;
  }
  // visit(key, value) for each key from `start` (default: `prefix`) on, while
  // it begins with `prefix`; visit returns false to stop. The iterator's own
  // status is checked at the end.
  using Visitor = std::function<absl::StatusOr<bool>(std::string_view key, std::string_view value)>;
  absl::Status Scan(Family family, std::string_view prefix, const Visitor& visit, std::string_view start = {}) const;
  // Scan, parsing each value as a Message.
  template <typename Message>
  absl::Status ScanRecords(Family family, std::string_view prefix,
                           const std::function<absl::StatusOr<bool>(std::string_view key, Message& m)>& visit) const {
    return Scan(family, prefix, [&](std::string_view key, std::string_view value) -> absl::StatusOr<bool> {
      Message m;
      if (!m.ParseFromArray(value.data(), static_cast<int>(value.size()))) return Corrupt(family, key);
      return visit(key, m);
    });
  }
  static absl::Status Corrupt(Family family, std::string_view key);
  // A meta counter (keys.h, CounterValue); `otherwise` when absent.
  absl::StatusOr<uint64_t> ReadCounter(std::string_view key, uint64_t otherwise) const;
};

class Db {
 public:
  enum class Mode {
    kServe,    // refuse a store of another format
    kMigrate,  // bring an older format to kStoreFormat
  };
  // Opens (creating if missing) the store in directory `path`. `sync`: sync
  // the WAL with every write (only benchmarks turn it off). `background_nice`
  // (0 = off): the nice value RocksDB's flush and compaction threads take as
  // they begin a job (process/priority.h), bulk work behind the decisions.
  static absl::StatusOr<std::unique_ptr<Db>> Open(const std::string& path, bool sync, Mode mode = Mode::kServe,
                                                  int background_nice = 0);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  rocksdb::DB* raw() const { return db_.get(); }
  rocksdb::ColumnFamilyHandle* handle(Family family) const { return handles_[static_cast<size_t>(family)]; }
  // Writes a batch through the write-ahead log, synced when the store syncs.
  // `what` names the write in errors.
  absl::Status Write(rocksdb::WriteBatch* batch, std::string_view what) const;
  // Writes a batch into the memtables only, without the write-ahead log: for
  // a command's effects, which the logged command restores after a crash
  // (docs/ARCHITECTURE.md, "The log is the WAL"). The DB flushes all families
  // together (atomic_flush), so what is on disk is one prefix of the writes.
  absl::Status WriteWithoutLog(rocksdb::WriteBatch* batch, std::string_view what) const;
  // RocksDB integer properties summed over the families, for metrics.
  std::map<std::string, uint64_t> Properties() const;
  const std::string& path() const { return path_; }
  // After a background error (a write that failed for lack of space):
  // RocksDB's Resume(). OK when the store takes writes again.
  absl::Status Resume();

 private:
  Db(std::string path, bool sync);
  absl::Status CheckFormat(Mode mode);
  absl::Status Migrate(uint32_t from);
  absl::Status WriteWith(const rocksdb::WriteOptions& options, rocksdb::WriteBatch* batch, std::string_view what) const;

  std::string path_;
  bool sync_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // by Family
  std::vector<rocksdb::ColumnFamilyHandle*> owned_;    // every handle opened; destroyed before db_
};

// The committed store at one moment: every read of one query sees the same state.
// Use it for a query of more than one read (a Get then a Scan, two Gets).
class SnapshotView final : public ReadView {
 public:
  explicit SnapshotView(const Db& db);
  ~SnapshotView() override;
  SnapshotView(const SnapshotView&) = delete;
  SnapshotView& operator=(const SnapshotView&) = delete;
  absl::StatusOr<bool> Get(Family family, std::string_view key, std::string* value) const override;
  std::unique_ptr<rocksdb::Iterator> Iterate(Family family) const override;

 private:
  const Db& db_;
  const rocksdb::Snapshot* snapshot_;
};

// The committed store as each read finds it when it starts: for a query of
// exactly one read (one Get, or one Scan, which RocksDB serves from a
// consistent state of its own). It registers no snapshot. Releasing one makes
// RocksDB rewrite every bottom-level file written since (compaction reason
// BottommostFiles), which on a young store is each freshly flushed file:
// readers that run every second (the fleet gauges, the outbox) would cost the
// writer that much compaction under a burst (docs/BENCHMARKS.md, twelfth
// session).
class LatestView final : public ReadView {
 public:
  explicit LatestView(const Db& db) : db_(db) {}
  absl::StatusOr<bool> Get(Family family, std::string_view key, std::string* value) const override;
  std::unique_ptr<rocksdb::Iterator> Iterate(Family family) const override;

 private:
  const Db& db_;
};

}  // namespace rollertrace::store
