#include "cluster/shard_map.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "util/cat.h"

namespace rollertrace::cluster {

absl::StatusOr<ShardMap> ShardMap::Parse(const std::string& text) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(util::Cat("shard map: not YAML: ", e.what()));
  }
  if (!root.IsMap() || !root["shards"] || !root["shards"].IsSequence() || root["shards"].size() == 0) {
    return absl::InvalidArgumentError("shard map: needs a non-empty list 'shards'");
  }
  ShardMap map;
  std::set<std::string> names;
  int defaults = 0;
  try {
    for (const YAML::Node& n : root["shards"]) {
      Shard s;
      if (!n.IsMap() || !n["name"] || !n["address"]) {
        return absl::InvalidArgumentError("shard map: every shard needs 'name' and 'address'");
      }
      s.name = n["name"].as<std::string>();
      s.address = n["address"].as<std::string>();
      if (s.name.empty() || s.name.find_first_of(". *>\t") != std::string::npos) {
        return absl::InvalidArgumentError(util::Cat("shard map: bad shard name '", s.name, "'"));
      }
      if (!names.insert(s.name).second) return absl::InvalidArgumentError(util::Cat("shard map: shard '", s.name, "' twice"));
      if (n["clinics"]) {
        for (const YAML::Node& c : n["clinics"]) s.clinics.push_back(c.as<std::string>());
      }
      const size_t index = map.shards_.size();
      for (const auto& c : s.clinics) {
        if (!map.by_clinic_.emplace(c, index).second) {
          return absl::InvalidArgumentError(util::Cat("shard map: clinic '", c, "' is on two shards"));
        }
      }
      if (n["default"] && n["default"].as<bool>()) {
        map.default_ = index;
        ++defaults;
      }
      map.shards_.push_back(std::move(s));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(util::Cat("shard map: ", e.what()));
  }
  if (defaults > 1) return absl::InvalidArgumentError("shard map: more than one shard is 'default: true'");
  return map;
}

absl::StatusOr<ShardMap> ShardMap::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(util::Cat("cannot read the shard map ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<ShardMap> map = Parse(text.str());
  if (!map.ok()) return absl::InvalidArgumentError(util::Cat(path, ": ", map.status().message()));
  return map;
}

size_t ShardMap::ShardOf(const std::string& clinic) const {
  auto it = by_clinic_.find(clinic);
  return it != by_clinic_.end() ? it->second : default_;
}

}  // namespace rollertrace::cluster
