// The shard map file, and how the router merges the shards' reports.
#include <gtest/gtest.h>

#include <fstream>

#include "cluster/shard_map.h"
#include "router/router.h"

namespace rollertrace {
namespace {

TEST(ShardMap, ClinicsGoToTheirShardAndTheRestToTheDefault) {
  auto map = cluster::ShardMap::Parse(R"(
shards:
  - name: north
    address: 10.0.0.1:50051
    clinics: [clinic-1, clinic-2]
  - name: south
    address: 10.0.0.2:50051
    clinics: [clinic-3]
    default: true
)");
  ASSERT_TRUE(map.ok()) << map.status();
  ASSERT_EQ(map->shards().size(), 2u);
  EXPECT_EQ(map->ShardOf("clinic-2"), 0u);
  EXPECT_EQ(map->ShardOf("clinic-3"), 1u);
  EXPECT_EQ(map->ShardOf("clinic-unknown"), 1u);
  EXPECT_EQ(map->shards()[0].address, "10.0.0.1:50051");
}

TEST(ShardMap, ItsDeploymentFileParses) {
  auto map = cluster::ShardMap::Load(std::string(ROLLERTRACE_SOURCE_DIR) + "/deploy/cluster/shards.yaml");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_GE(map->shards().size(), 2u);
}

TEST(ShardMap, MistakesAreNamed) {
  struct Case {
    const char* yaml;
    const char* says;
  } cases[] = {
      {"shards: []", "non-empty list"},
      {"shards:\n  - name: a\n", "'name' and 'address'"},
      {"shards:\n  - {name: a, address: x:1}\n  - {name: a, address: y:1}\n", "twice"},
      {"shards:\n  - {name: a, address: x:1, clinics: [c]}\n  - {name: b, address: y:1, clinics: [c]}\n",
       "on two shards"},
      {"shards:\n  - {name: a.b, address: x:1}\n", "bad shard name"},
      {"shards:\n  - {name: a, address: x:1, default: true}\n  - {name: b, address: y:1, default: true}\n",
       "more than one"},
      {"shards: [", "not YAML"},
  };
  for (const auto& c : cases) {
    auto map = cluster::ShardMap::Parse(c.yaml);
    ASSERT_FALSE(map.ok()) << c.yaml;
    EXPECT_NE(std::string(map.status().message()).find(c.says), std::string::npos) << map.status();
  }
}

TEST(Router, ReportsOfTwoShardsAddUpByBucketAndRule) {
  v1::PeriodReport a, b;
  a.set_from_unix_ms(1000);
  a.set_to_unix_ms(5000);
  a.set_sessions(3);
  a.set_violations(1);
  b.set_from_unix_ms(1000);
  b.set_to_unix_ms(5000);
  b.set_sessions(4);
  auto* ba = a.add_buckets();
  ba->set_start_unix_ms(1000);
  ba->set_sessions(3);
  auto* bb = b.add_buckets();
  bb->set_start_unix_ms(1000);
  bb->set_sessions(4);
  auto* bb2 = b.add_buckets();
  bb2->set_start_unix_ms(2000);
  bb2->set_sessions(1);
  auto* ra = a.add_violations_by_rule();
  ra->set_rule("SINGLE_PATIENT");
  ra->set_count(1);
  auto* rb = b.add_violations_by_rule();
  rb->set_rule("SINGLE_PATIENT");
  rb->set_count(2);
  a.add_violation_list()->set_rule("SINGLE_PATIENT");
  b.add_violation_list()->set_rule("SINGLE_PATIENT");

  v1::PeriodReport merged;
  router::MergeReport(a, &merged);
  router::MergeReport(b, &merged);
  EXPECT_EQ(merged.from_unix_ms(), 1000);
  EXPECT_EQ(merged.to_unix_ms(), 5000);
  EXPECT_EQ(merged.sessions(), 7u);
  EXPECT_EQ(merged.violations(), 1u);
  ASSERT_EQ(merged.buckets_size(), 2);
  EXPECT_EQ(merged.buckets(0).sessions(), 7u);
  EXPECT_EQ(merged.buckets(1).sessions(), 1u);
  ASSERT_EQ(merged.violations_by_rule_size(), 1);
  EXPECT_EQ(merged.violations_by_rule(0).count(), 3u);
  EXPECT_EQ(merged.violation_list_size(), 2);
}

}  // namespace
}  // namespace rollertrace
