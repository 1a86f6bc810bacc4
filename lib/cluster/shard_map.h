// The shard map: which shard holds which clinic, and where each shard
// serves (deploy/cluster/shards.yaml documents the file). One shard is the
// default: it takes every clinic not listed.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rollertrace::cluster {

struct Shard {
  std::string name;
  std::string address;  // host:port of its ingestd
  std::vector<std::string> clinics;
};

class ShardMap {
 public:
  static absl::StatusOr<ShardMap> Parse(const std::string& yaml);
  static absl::StatusOr<ShardMap> Load(const std::string& path);

  const std::vector<Shard>& shards() const { return shards_; }
  // The index in shards() of the shard holding `clinic`.
  size_t ShardOf(const std::string& clinic) const;

 private:
  std::vector<Shard> shards_;
  std::map<std::string, size_t> by_clinic_;
  size_t default_ = 0;
};

}  // namespace rollertrace::cluster
