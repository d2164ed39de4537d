#include "encoders/ready_tensors.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <gtest/gtest.h>

namespace rotor::encoders {
namespace {

// A window of 2 blocks, capacity 3, d_model 4 that has seen `events` events from position 5,
// each row's values distinct and exactly representable in bf16 and f16.
KvWindow Filled(int64_t events) {
  KvWindow w(2, 3, 4, 5);
  for (int64_t e = 0; e < events; ++e) {
    const int64_t slot = w.NextSlot();
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t j = 0; j < 4; ++j) {
        const auto i = static_cast<std::size_t>(slot * 4 + j);
        w.k[static_cast<std::size_t>(b)][i] = static_cast<float>(w.next_pos * 8 + b * 4 + j);
        w.v[static_cast<std::size_t>(b)][i] = -0.5F * static_cast<float>(w.next_pos + j);
      }
    }
    w.pos[static_cast<std::size_t>(slot)] = w.next_pos;
    ++w.next_pos;
    w.rows = std::min<int64_t>(w.rows + 1, w.capacity);
    w.last_ts_ms = 1000 + e;
  }
  return w;
}

ReadyHeader Header(ReadyKind kind, WireDtype dtype) {
  return {.kind = kind,
          .model_id = "abc",
          .user_id = "u\x01",
          .source_topic = "events",
          .source_partition = 3,
          .source_offset = 77,
          .dtype = dtype};
}

TEST(ReadyTensorsTest, DeltasAndSnapshotsRoundTripInEveryDtype) {
  const KvWindow w = Filled(5);  // Wrapped: positions 7, 8, 9 held.
  for (const WireDtype dtype : {WireDtype::kF32, WireDtype::kBF16, WireDtype::kF16}) {
    for (const ReadyKind kind : {ReadyKind::kDelta, ReadyKind::kSnapshot}) {
      const auto bytes = EncodeReadyTensors(w, 2, Header(kind, dtype));
      ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
      const auto got = DecodeReadyTensors(*bytes);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      ReadyHeader want = Header(kind, dtype);
      want.next_pos = 10;
      want.last_ts_ms = 1004;
      EXPECT_EQ(got->header, want);
      const int64_t rows = kind == ReadyKind::kSnapshot ? 3 : 2;
      ASSERT_EQ(got->rows(), rows);
      EXPECT_EQ(got->d_model, 4);
      ASSERT_EQ(got->k.size(), 2U);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t p = 10 - rows + r;
        EXPECT_EQ(got->pos[static_cast<std::size_t>(r)], p);
        for (int64_t b = 0; b < 2; ++b) {
          for (int64_t j = 0; j < 4; ++j) {
            const auto i = static_cast<std::size_t>(r * 4 + j);
            EXPECT_EQ(got->k[static_cast<std::size_t>(b)][i],
                      w.KRow(b, w.SlotOf(p))[static_cast<std::size_t>(j)]);
            EXPECT_EQ(got->v[static_cast<std::size_t>(b)][i],
                      w.VRow(b, w.SlotOf(p))[static_cast<std::size_t>(j)]);
          }
        }
      }
    }
  }
}

TEST(ReadyTensorsTest, EmptyDeltaAndBadRowCounts) {
  const KvWindow w = Filled(2);
  const auto empty = EncodeReadyTensors(w, 0, Header(ReadyKind::kDelta, WireDtype::kF32));
  ASSERT_TRUE(empty.ok());
  const auto got = DecodeReadyTensors(*empty);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->rows(), 0);
  EXPECT_EQ(EncodeReadyTensors(w, 3, Header(ReadyKind::kDelta, WireDtype::kF32)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeReadyTensors(w, -1, Header(ReadyKind::kDelta, WireDtype::kF32)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ReadyTensorsTest, DecodeRefusesBrokenMessagesNamingTheProblem) {
  const auto good = EncodeReadyTensors(Filled(2), 2, Header(ReadyKind::kDelta, WireDtype::kF32));
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(DecodeReadyTensors("").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(DecodeReadyTensors(good->substr(0, good->size() - 1)).status().code(),
            StatusCode::kCorruption);
  std::string bad_kind = *good;
  const auto at = bad_kind.find("\"delta\"");
  ASSERT_NE(at, std::string::npos);
  bad_kind.replace(at, 7, "\"delto\"");
  const auto refused = DecodeReadyTensors(bad_kind);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("rotor.kind 'delto'"), std::string_view::npos)
      << refused.status().ToString();
}

TEST(ReadyTensorsTest, HalfConversionsRoundTripEveryHalfAndRoundToNearestEven) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float f = F16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToFloat(FloatToF16(f))));
      continue;
    }
    EXPECT_EQ(FloatToF16(f), h) << std::hex << h;
    const float b = Bf16ToFloat(static_cast<uint16_t>(h));
    if (!std::isnan(b)) {
      EXPECT_EQ(FloatToBf16(b), h) << std::hex << h;
    }
  }
  EXPECT_EQ(FloatToF16(1.0F), 0x3C00);
  EXPECT_EQ(FloatToF16(65504.0F), 0x7BFF);
  EXPECT_EQ(FloatToF16(65519.0F), 0x7BFF);
  EXPECT_EQ(FloatToF16(65520.0F), 0x7C00);
  EXPECT_EQ(FloatToF16(std::ldexp(1.0F, -24)), 0x0001);
  EXPECT_EQ(FloatToF16(std::ldexp(1.0F, -25)), 0x0000);         // Tie to even (0).
  EXPECT_EQ(FloatToF16(std::ldexp(3.0F, -25)), 0x0002);         // Tie to even (2).
  EXPECT_EQ(FloatToF16(1.0F + std::ldexp(1.0F, -11)), 0x3C00);  // Tie to even.
  EXPECT_EQ(FloatToF16(1.0F + std::ldexp(3.0F, -11)), 0x3C02);
  EXPECT_EQ(FloatToF16(-2.0F), 0xC000);
  EXPECT_EQ(FloatToBf16(1.0F), 0x3F80);
  EXPECT_EQ(FloatToBf16(1.0F + std::ldexp(1.0F, -8)), 0x3F80);  // Tie to even.
  EXPECT_EQ(FloatToBf16(1.0F + std::ldexp(3.0F, -8)), 0x3F82);
  EXPECT_EQ(FloatToBf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
}

}  // namespace
}  // namespace rotor::encoders
