// The router's numbering of the device commands it owes a bridge stream.
#include "router/command_indexes.h"

#include <gtest/gtest.h>

namespace rollertrace::router {
namespace {

TEST(CommandIndexes, EachShardsCommandGetsANumberOfItsOwnAndItsConfirmationGoesBack) {
  CommandIndexes owed;
  // Two shards both raise their outbox index 1.
  const uint64_t a = owed.Number(0, 1);
  const uint64_t b = owed.Number(1, 1);
  EXPECT_NE(a, b);
  std::optional<CommandIndexes::Owner> back = owed.Confirm(b);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->shard, 1u);
  EXPECT_EQ(back->index, 1u);
  EXPECT_FALSE(owed.Confirm(b).has_value()) << "confirmed once";
  EXPECT_FALSE(owed.Confirm(12345).has_value()) << "never owed";
  EXPECT_EQ(owed.owed(), 1u);
}

TEST(CommandIndexes, AResentCommandKeepsItsNumberAndOneEntry) {
  // A shard hands out a command again every 10 s until a bridge confirms it;
  // a command no bridge can confirm must not grow the router's map.
  CommandIndexes owed;
  const uint64_t first = owed.Number(0, 7);
  for (int resend = 0; resend < 1000; ++resend) EXPECT_EQ(owed.Number(0, 7), first);
  EXPECT_EQ(owed.owed(), 1u);
  ASSERT_TRUE(owed.Confirm(first).has_value());
  EXPECT_EQ(owed.owed(), 0u);
  // Sent again after its confirmation (the shard's confirmation was lost with
  // its stream): owed again, under a new number.
  const uint64_t again = owed.Number(0, 7);
  EXPECT_NE(again, first);
  EXPECT_EQ(owed.owed(), 1u);
}

}  // namespace
}  // namespace rollertrace::router
