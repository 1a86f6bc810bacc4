// The command log: every command the store applied, by index, written in the
// same batch as its effects (docs/ARCHITECTURE.md, "The command log"). Read
// here; written only by the applier. As a file: varint-length-delimited
// StoreCommands in index order, each with its index set (WriteLogFile).
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>

#include "absl/status/statusor.h"
#include "rollertrace/v1/commands.pb.h"
#include "store/db.h"

namespace rollertrace::store {

class CommandLog {
 public:
  explicit CommandLog(const Db& db) : db_(db) {}

  // The index the next applied command gets.
  absl::StatusOr<uint64_t> NextIndex() const;
  // False for a store migrated from format 1: its history before the
  // migration is not in the log, and a replay cannot rebuild it.
  absl::StatusOr<bool> Complete() const;
  // Every logged command from `from_index` on, in order, with its index set;
  // visit returns false to stop. Reads one snapshot.
  absl::Status ForEach(uint64_t from_index,
                       const std::function<absl::StatusOr<bool>(const rollertrace::v1::StoreCommand&)>& visit) const;
  // Writes the whole log to `out` in the file format above; the number written.
  absl::StatusOr<uint64_t> WriteLogFile(std::ostream& out) const;

 private:
  const Db& db_;
};

// Reads a log file, calling visit for each command in order.
absl::Status ReadLogFile(std::istream& in,
                         const std::function<absl::Status(const rollertrace::v1::StoreCommand&)>& visit);

}  // namespace rollertrace::store
