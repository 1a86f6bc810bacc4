#include "store/chain.h"

#include <gtest/gtest.h>

#include <string>

namespace rollertrace::store {
namespace {

rollertrace::v1::Event Sample(uint64_t sequence) {
  rollertrace::v1::Event event;
  event.set_device_id("R-0001");
  event.set_sequence(sequence);
  event.set_device_time_unix_ms(1767225600000 + static_cast<int64_t>(sequence));
  event.mutable_usage_sample()->set_session_id("S-1");
  event.mutable_usage_sample()->set_revolutions(12);
  event.mutable_usage_sample()->set_pressure_kpa(3.5);
  return event;
}

// What EncodeStoredEvent must equal: protobuf's own serialisation of the
// StoredEvent it stands for, with the hash the chain's definition gives.
std::string ByProtobuf(const rollertrace::v1::Event& event, int64_t receive_unix_ms, uint64_t index,
                       const std::string& prev_hash) {
  rollertrace::v1::StoredEvent stored;
  *stored.mutable_event() = event;
  stored.set_receive_unix_ms(receive_unix_ms);
  stored.set_chain_index(index);
  stored.set_prev_hash(prev_hash);
  stored.set_hash(ChainHash(stored));
  return stored.SerializeAsString();
}

TEST(ChainTest, AStoredEventIsWrittenAsProtobufWouldWriteIt) {
  rollertrace::v1::DeviceState state;
  std::string prev;
  // The first event (no previous hash: field 4 absent), then a chain; the
  // clock at 0, negative (a ten-byte varint) and ordinary.
  const int64_t clocks[] = {0, -5, 1767225600123, 1767225600124};
  for (uint64_t i = 0; i < 4; ++i) {
    const rollertrace::v1::Event event = Sample(i + 1);
    std::string value;
    EncodeStoredEvent(event, clocks[i], &state, &value);
    ASSERT_EQ(value, ByProtobuf(event, clocks[i], i + 1, prev)) << "event " << i + 1;
    rollertrace::v1::StoredEvent parsed;
    ASSERT_TRUE(parsed.ParseFromString(value));
    EXPECT_EQ(parsed.hash(), ChainHash(parsed));
    EXPECT_EQ(state.chain_head(), parsed.hash());
    EXPECT_EQ(state.chain_length(), i + 1);
    prev = parsed.hash();
  }
}

TEST(ChainTest, TheHashCoversEveryPartOfTheDefinition) {
  rollertrace::v1::StoredEvent a;
  *a.mutable_event() = Sample(1);
  a.set_receive_unix_ms(10);
  a.set_chain_index(1);
  const std::string base = ChainHash(a);
  rollertrace::v1::StoredEvent b = a;
  b.set_receive_unix_ms(11);
  EXPECT_NE(ChainHash(b), base);
  b = a;
  b.set_chain_index(2);
  EXPECT_NE(ChainHash(b), base);
  b = a;
  b.set_prev_hash(std::string(32, 'x'));
  EXPECT_NE(ChainHash(b), base);
  b = a;
  b.mutable_event()->set_sequence(2);
  EXPECT_NE(ChainHash(b), base);
  // SHA-256 of the empty string, to pin the digest itself.
  EXPECT_EQ(Sha256("").size(), 32u);
  EXPECT_EQ(static_cast<unsigned char>(Sha256("")[0]), 0xe3);
  EXPECT_EQ(static_cast<unsigned char>(Sha256("")[31]), 0x55);
}

}  // namespace
}  // namespace rollertrace::store
