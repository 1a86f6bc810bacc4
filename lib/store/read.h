// Reading one stored record inside the store library.
#pragma once

#include <rocksdb/db.h>

#include <string>

#include "absl/status/statusor.h"
#include "util/cat.h"

namespace rollertrace::store {

// False when `key` is absent; DataLoss when the bytes do not parse.
template <typename Message>
absl::StatusOr<bool> Read(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, const std::string& key, Message* out) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf, key, &value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return absl::InternalError(util::Cat("read: ", s.ToString()));
  if (!out->ParseFromString(value)) return absl::DataLossError("a stored record is corrupt");
  return true;
}

}  // namespace rollertrace::store
