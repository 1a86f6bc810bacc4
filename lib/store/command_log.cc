#include "store/command_log.h"

#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/util/delimited_message_util.h>

#include <istream>
#include <ostream>

#include "store/keys.h"
#include "util/cat.h"

namespace rollertrace::store {

absl::StatusOr<uint64_t> CommandLog::NextIndex() const {
  return LatestView(db_).ReadCounter(kMetaNextCommand, 1);
}

absl::StatusOr<bool> CommandLog::Complete() const {
  std::string value;
  absl::StatusOr<bool> migrated = LatestView(db_).Get(Family::kMeta, kMetaMigratedFrom, &value);
  if (!migrated.ok()) return migrated.status();
  return !*migrated;
}

absl::Status CommandLog::ForEach(
    uint64_t from_index, const std::function<absl::StatusOr<bool>(const rollertrace::v1::StoreCommand&)>& visit) const {
  SnapshotView view(db_);
  uint64_t expected = from_index;
  rollertrace::v1::StoreCommand command;
  return view.Scan(
      Family::kCommands, {},
      [&](std::string_view key, std::string_view value) -> absl::StatusOr<bool> {
        if (key.size() != 8) return ReadView::Corrupt(Family::kCommands, key);
        const uint64_t index = ReadBigEndian64(key);
        if (index != expected) {
          return absl::DataLossError(util::Cat("the command log misses command ", expected, " (next is ", index, ")"));
        }
        ++expected;
        command.Clear();
        if (!command.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          return ReadView::Corrupt(Family::kCommands, key);
        }
        command.set_index(index);
        return visit(command);
      },
      CommandKey(from_index));
}

absl::StatusOr<uint64_t> CommandLog::WriteLogFile(std::ostream& out) const {
  uint64_t written = 0;
  absl::Status s = ForEach(1, [&](const rollertrace::v1::StoreCommand& c) -> absl::StatusOr<bool> {
    if (!google::protobuf::util::SerializeDelimitedToOstream(c, &out)) {
      return absl::InternalError("cannot write the log file");
    }
    ++written;
    return true;
  });
  if (!s.ok()) return s;
  out.flush();
  if (!out) return absl::InternalError("cannot write the log file");
  return written;
}

absl::Status ReadLogFile(std::istream& in,
                         const std::function<absl::Status(const rollertrace::v1::StoreCommand&)>& visit) {
  google::protobuf::io::IstreamInputStream input(&in);
  rollertrace::v1::StoreCommand command;
  bool clean_eof = false;
  uint64_t read = 0;
  while ((command.Clear(), google::protobuf::util::ParseDelimitedFromZeroCopyStream(&command, &input, &clean_eof))) {
    ++read;
    if (absl::Status s = visit(command); !s.ok()) return s;
  }
  if (!clean_eof) {
    return absl::DataLossError(util::Cat("the log file is cut short or corrupt after command ", read));
  }
  return absl::OkStatus();
}

}  // namespace rollertrace::store
