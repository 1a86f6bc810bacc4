#include "router/command_indexes.h"

namespace rollertrace::router {

uint64_t CommandIndexes::Number(size_t shard, uint64_t shard_index) {
  auto [it, fresh] = numbers_.try_emplace({shard, shard_index}, next_);
  if (fresh) owners_[next_++] = Owner{shard, shard_index};
  return it->second;
}

std::optional<CommandIndexes::Owner> CommandIndexes::Confirm(uint64_t number) {
  auto it = owners_.find(number);
  if (it == owners_.end()) return std::nullopt;
  const Owner owner = it->second;
  owners_.erase(it);
  numbers_.erase({owner.shard, owner.index});
  return owner;
}

}  // namespace rollertrace::router
