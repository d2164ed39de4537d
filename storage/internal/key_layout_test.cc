#include "storage/internal/key_layout.h"

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace rotor::storage::internal {
namespace {

using namespace std::string_view_literals;  // NOLINT(google-build-using-namespace)

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

UserMetadata SampleMetadata() {
  return {.model_id = "sha256:abc",
          .first_pos = 7,
          .next_pos = (int64_t{1} << 31) + 5,
          .rows = 200,
          .last_ts_ms = 1'700'000'000'000,
          .capacity = 200,
          .d_model = 64,
          .n_blocks = 3,
          .recent_event_ids = {"e-1", "", std::string("e\0x", 3)}};
}

TEST(KeyLayoutTest, RowPrefixesOfDifferentUsersNeverNest) {
  const std::vector<std::string> users = {"u1",
                                          "u10",
                                          std::string("u1\0x", 4),
                                          "u",
                                          "u1\xff",
                                          std::string(300, 'a'),
                                          std::string(301, 'a')};
  for (const std::string& a : users) {
    for (const std::string& b : users) {
      if (a == b) {
        continue;
      }
      EXPECT_FALSE(StartsWith(RowKey(b, 0), RowPrefix(a)))
          << PrintableBytes(a) << " vs " << PrintableBytes(b);
      // b's rows sort entirely outside [RowPrefix(a), RowPrefixEnd(a)).
      const std::string key = RowKey(b, int64_t{1} << 40);
      EXPECT_TRUE(key < RowPrefix(a) || key >= RowPrefixEnd(a));
    }
  }
}

TEST(KeyLayoutTest, RowKeysSortByPositionAndRoundTrip) {
  const std::string user("u1\0x", 4);
  const std::vector<int64_t> positions = {0,
                                          1,
                                          255,
                                          256,
                                          (int64_t{1} << 31) - 1,
                                          int64_t{1} << 31,
                                          (int64_t{1} << 32) + 1,
                                          std::numeric_limits<int64_t>::max()};
  for (std::size_t i = 0; i < positions.size(); ++i) {
    const std::string key = RowKey(user, positions[i]);
    EXPECT_GE(key, RowPrefix(user));
    EXPECT_LT(key, RowPrefixEnd(user));
    if (i > 0) {
      EXPECT_LT(RowKey(user, positions[i - 1]), key);
    }
    const auto decoded = DecodeRowKey(key);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(decoded->first, user);
    EXPECT_EQ(decoded->second, positions[i]);
  }
}

TEST(KeyLayoutTest, MalformedRowKeysAreCorruption) {
  const std::string good = RowKey("u1", 5);
  for (const std::string& bad :
       {std::string(), good.substr(0, good.size() - 1), good + "x", std::string("\x80\x80", 2),
        std::string("\x05u1", 3) + std::string(8, '\0'),
        RowPrefix("u1") + std::string("\x80\0\0\0\0\0\0\0", 8)}) {
    const auto decoded = DecodeRowKey(bad);
    ASSERT_FALSE(decoded.ok()) << PrintableBytes(bad);
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
    EXPECT_NE(decoded.status().message().find("rows key"), std::string_view::npos);
  }
}

TEST(KeyLayoutTest, MetadataRoundTrips) {
  const UserMetadata meta = SampleMetadata();
  const auto decoded = DecodeUserMetadata("u1", EncodeUserMetadata(meta));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, meta);
}

TEST(KeyLayoutTest, CorruptMetadataIsCorruptionNamingTheKey) {
  const std::string good = EncodeUserMetadata(SampleMetadata());
  std::vector<std::string> bad;
  for (std::size_t n = 0; n < good.size(); ++n) {
    bad.push_back(good.substr(0, n));  // Every truncation.
  }
  bad.push_back(good + "x");
  std::string version = good;
  version[0] = 9;
  bad.push_back(version);
  auto broken = [](auto mutate) {
    UserMetadata meta = SampleMetadata();
    mutate(meta);
    return EncodeUserMetadata(meta);
  };
  bad.push_back(broken([](UserMetadata& m) { m.capacity = 0; }));
  bad.push_back(broken([](UserMetadata& m) { m.d_model = -1; }));
  bad.push_back(broken([](UserMetadata& m) { m.n_blocks = 0; }));
  bad.push_back(broken([](UserMetadata& m) { m.first_pos = -1; }));
  bad.push_back(broken([](UserMetadata& m) { m.next_pos = m.first_pos - 1; }));
  bad.push_back(broken([](UserMetadata& m) { m.rows = m.capacity + 1; }));
  bad.push_back(broken([](UserMetadata& m) { m.rows = -1; }));
  bad.push_back(broken([](UserMetadata& m) {
    m.next_pos = m.first_pos + 3;
    m.rows = 4;
  }));
  bad.push_back(broken([](UserMetadata& m) {
    m.recent_event_ids.assign(1, std::string(kMaxEventIdBytes + 1, 'x'));
  }));
  for (const std::string& value : bad) {
    const auto decoded = DecodeUserMetadata("user\x01", value);
    ASSERT_FALSE(decoded.ok()) << value.size();
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
    EXPECT_NE(decoded.status().message().find("users key 'user\\x01'"), std::string_view::npos)
        << decoded.status().ToString();
  }
}

TEST(KeyLayoutTest, OffsetsRoundTripAndCorruptOnesAreRefused) {
  const std::string key = OffsetKey("events", 12);
  const auto topic_partition = DecodeOffsetKey(key);
  ASSERT_TRUE(topic_partition.ok()) << topic_partition.status().ToString();
  EXPECT_EQ(topic_partition->topic, "events");
  EXPECT_EQ(topic_partition->partition, 12);
  const auto offset = DecodeOffsetValue(key, EncodeOffsetValue(int64_t{1} << 40));
  ASSERT_TRUE(offset.ok()) << offset.status().ToString();
  EXPECT_EQ(*offset, int64_t{1} << 40);

  EXPECT_LT(OffsetKey("a", 1), OffsetKey("a", 2));
  EXPECT_FALSE(StartsWith(OffsetKey("a1", 0), OffsetKey("a", 0).substr(0, 2)));

  for (const std::string& bad : {std::string(), key + "x", key.substr(0, key.size() - 1),
                                 OffsetKey("", 1), OffsetKey("t", -1)}) {
    const auto decoded = DecodeOffsetKey(bad);
    ASSERT_FALSE(decoded.ok()) << PrintableBytes(bad);
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
  }
  for (const std::string& bad :
       {std::string(), std::string("1234567"), std::string("123456789"), EncodeOffsetValue(-1)}) {
    const auto decoded = DecodeOffsetValue(key, bad);
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
    EXPECT_NE(decoded.status().message().find("offsets key"), std::string_view::npos);
  }
}

TEST(KeyLayoutTest, WatermarksRoundTripApartFromInfoKeys) {
  const std::string key = WatermarkKey("events", 12);
  EXPECT_TRUE(StartsWith(key, WatermarkPrefix()));
  EXPECT_FALSE(StartsWith(InfoKey("watermark"), WatermarkPrefix()));
  const auto topic_partition = DecodeWatermarkKey(key);
  ASSERT_TRUE(topic_partition.ok()) << topic_partition.status().ToString();
  EXPECT_EQ(topic_partition->topic, "events");
  EXPECT_EQ(topic_partition->partition, 12);
  const auto ts = DecodeWatermarkValue(key, EncodeWatermarkValue(1767600000000));
  ASSERT_TRUE(ts.ok()) << ts.status().ToString();
  EXPECT_EQ(*ts, 1767600000000);
  for (const std::string& bad :
       {std::string(), OffsetKey("events", 12), key + "x", std::string(WatermarkPrefix())}) {
    const auto decoded = DecodeWatermarkKey(bad);
    ASSERT_FALSE(decoded.ok()) << PrintableBytes(bad);
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
  }
  for (const std::string& bad : {std::string(), std::string("1234567"), EncodeWatermarkValue(-1)}) {
    const auto decoded = DecodeWatermarkValue(key, bad);
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
    EXPECT_NE(decoded.status().message().find("watermark key"), std::string_view::npos);
  }
}

TEST(KeyLayoutTest, PrintableBytesEscapesEverythingElse) {
  EXPECT_EQ(PrintableBytes("ab"), "ab");
  EXPECT_EQ(PrintableBytes("a\0b\xff'\\"sv), "a\\x00b\\xff\\x27\\x5c");
}

TEST(KeyLayoutTest, FloatsRoundTripBitExactly) {
  const std::vector<float> floats = {0.0F, -0.0F, 1.5F, -3.25e-30F, 3.4e38F};
  std::string bytes;
  AppendFloatsLe(floats.data(), floats.size(), &bytes);
  ASSERT_EQ(bytes.size(), floats.size() * 4);
  EXPECT_EQ(bytes.substr(8, 4), std::string("\x00\x00\xc0\x3f", 4));  // 1.5F, little-endian.
  std::vector<float> back(floats.size());
  ReadFloatsLe(bytes.data(), back.size(), back.data());
  EXPECT_EQ(std::memcmp(back.data(), floats.data(), bytes.size()), 0);
  EXPECT_EQ(RowValueBytes(3, 64), std::size_t{3} * 2 * 64 * 4);
}

// Rows in bf16 / f16: 2 bytes a value, little-endian, rounded to nearest even; float32 rows are
// AppendFloatsLe's bytes.
TEST(KeyLayoutTest, SixteenBitRowsAreTwoBytesAValueRoundedToNearestEven) {
  using encoders::KvDtype;
  const std::vector<float> floats = {1.5F, -2.0F, 1.0F + 0x1p-9F, 65504.0F};
  std::string bytes;
  AppendRowLe(floats.data(), floats.size(), KvDtype::kBF16, &bytes);
  ASSERT_EQ(bytes.size(), floats.size() * 2);
  EXPECT_EQ(bytes.substr(0, 2), std::string("\xc0\x3f", 2));  // 1.5 in bf16 is 0x3fc0.
  std::vector<float> back(floats.size());
  ReadRowLe(bytes.data(), back.size(), KvDtype::kBF16, back.data());
  EXPECT_EQ(back[0], 1.5F);
  EXPECT_EQ(back[1], -2.0F);
  EXPECT_EQ(back[2], 1.0F);  // 1 + 2^-9 is a tie between 1 and 1 + 2^-7: even, 1.
  EXPECT_EQ(back[3], 65536.0F);
  bytes.clear();
  AppendRowLe(floats.data(), floats.size(), KvDtype::kF16, &bytes);
  ASSERT_EQ(bytes.size(), floats.size() * 2);
  EXPECT_EQ(bytes.substr(0, 2), std::string("\x00\x3e", 2));  // 1.5 in f16 is 0x3e00.
  ReadRowLe(bytes.data(), back.size(), KvDtype::kF16, back.data());
  EXPECT_EQ(back[2], 1.0F + 0x1p-9F);  // f16 keeps 10 bits: exact.
  EXPECT_EQ(back[3], 65504.0F);
  bytes.clear();
  AppendRowLe(floats.data(), floats.size(), KvDtype::kF32, &bytes);
  std::string plain;
  AppendFloatsLe(floats.data(), floats.size(), &plain);
  EXPECT_EQ(bytes, plain);
  EXPECT_EQ(RowValueBytes(3, 64, KvDtype::kBF16), std::size_t{3} * 2 * 64 * 2);
  EXPECT_EQ(RowValueBytes(3, 64, KvDtype::kF16), std::size_t{3} * 2 * 64 * 2);
}

}  // namespace
}  // namespace rotor::storage::internal
