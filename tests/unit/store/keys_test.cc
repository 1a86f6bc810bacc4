#include "store/keys.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace rollertrace::store {
namespace {

TEST(Keys, ByteOrderIsSequenceOrder) {
  std::vector<uint64_t> seqs = {1, 2, 255, 256, 65535, 65536, 1ull << 40, ~0ull};
  for (size_t i = 1; i < seqs.size(); ++i) {
    EXPECT_LT(DeviceSequenceKey("R-1", seqs[i - 1]), DeviceSequenceKey("R-1", seqs[i])) << seqs[i];
  }
}

TEST(Keys, OneDevicesKeysDoNotInterleaveWithAnothers) {
  // "R-1" is a prefix of "R-10": the separator keeps their ranges apart.
  const std::string prefix = DevicePrefix("R-1");
  EXPECT_NE(DeviceSequenceKey("R-10", 1).rfind(prefix, 0), 0u);
  EXPECT_LT(DeviceSequenceKey("R-1", ~0ull), DeviceSequenceKey("R-10", 0));
}

TEST(Keys, DecodeInvertsEncode) {
  for (uint64_t seq : {0ull, 1ull, 123456789ull, ~0ull}) {
    auto d = DecodeDeviceSequenceKey(DeviceSequenceKey("S-01", seq));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->device_id, "S-01");
    EXPECT_EQ(d->sequence, seq);
  }
}

TEST(Keys, DecodeRefusesForeignKeys) {
  EXPECT_FALSE(DecodeDeviceSequenceKey("short").has_value());
  EXPECT_FALSE(DecodeDeviceSequenceKey("no-separator-at-all").has_value());
}

TEST(Keys, BigEndianRoundTrips) {
  std::string s;
  AppendBigEndian64(&s, 0x0102030405060708ull);
  EXPECT_EQ(s, std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  EXPECT_EQ(ReadBigEndian64(s), 0x0102030405060708ull);
}

}  // namespace
}  // namespace rollertrace::store
