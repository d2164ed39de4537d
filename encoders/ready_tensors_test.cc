#include "encoders/ready_tensors.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "encoders/internal/safetensors.h"

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

// The message as the general safetensors encoder makes it of the same tensors and metadata:
// the reference EncodeReadyTensors's one-pass writer must match byte for byte (the general
// encoder is the one checked against Python's safetensors).
std::string GeneralEncoding(const KvWindow& window, int64_t rows, ReadyHeader header) {
  if (header.kind == ReadyKind::kSnapshot) {
    rows = window.rows;
  }
  const auto d = static_cast<std::size_t>(window.d_model);
  const auto n_blocks = static_cast<std::size_t>(window.n_blocks());
  std::vector<std::string> buffers(2 * n_blocks + 1);
  for (int64_t p = window.next_pos - rows; p < window.next_pos; ++p) {
    const auto offset = static_cast<std::size_t>(window.SlotOf(p)) * d;
    for (std::size_t b = 0; b < n_blocks; ++b) {
      for (std::size_t kv = 0; kv < 2; ++kv) {
        const float* row = (kv == 0 ? window.k[b] : window.v[b]).data() + offset;
        for (std::size_t j = 0; j < d; ++j) {
          if (header.dtype == WireDtype::kF32) {
            buffers[2 * b + kv].append(reinterpret_cast<const char*>(row + j), sizeof(float));
          } else {
            const uint16_t h =
                header.dtype == WireDtype::kBF16 ? FloatToBf16(row[j]) : FloatToF16(row[j]);
            buffers[2 * b + kv].append(reinterpret_cast<const char*>(&h), sizeof(h));
          }
        }
      }
    }
    buffers.back().append(reinterpret_cast<const char*>(&p), sizeof(p));
  }
  const internal::Dtype dtype = header.dtype == WireDtype::kF32    ? internal::Dtype::kF32
                                : header.dtype == WireDtype::kBF16 ? internal::Dtype::kBF16
                                                                   : internal::Dtype::kF16;
  std::vector<internal::TensorView> views;
  for (std::size_t b = 0; b < n_blocks; ++b) {
    for (std::size_t kv = 0; kv < 2; ++kv) {
      const std::string& buf = buffers[2 * b + kv];
      views.push_back({.name = fmt::format("{}.{}", kv == 0 ? 'k' : 'v', b),
                       .dtype = dtype,
                       .shape = {rows, window.d_model},
                       .data = std::as_bytes(std::span<const char>(buf.data(), buf.size()))});
    }
  }
  views.push_back(
      {.name = "pos",
       .dtype = internal::Dtype::kI64,
       .shape = {rows},
       .data = std::as_bytes(std::span<const char>(buffers.back().data(), buffers.back().size()))});
  internal::SafetensorsMetadata meta;
  meta.emplace("rotor.format", kReadyTensorsFormat);
  meta.emplace("rotor.kind", ReadyKindName(header.kind));
  meta.emplace("rotor.model_id", header.model_id);
  meta.emplace("rotor.user_id", header.user_id);
  meta.emplace("rotor.next_pos", fmt::format("{}", window.next_pos));
  meta.emplace("rotor.last_ts_ms", fmt::format("{}", window.last_ts_ms));
  meta.emplace("rotor.source_topic", header.source_topic);
  meta.emplace("rotor.source_partition", fmt::format("{}", header.source_partition));
  meta.emplace("rotor.source_offset", fmt::format("{}", header.source_offset));
  meta.emplace("rotor.dtype", WireDtypeName(header.dtype));
  auto bytes = internal::EncodeSafetensors(views, meta);
  EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
  return bytes.ok() ? *bytes : std::string();
}

// Every shape of message the daemon makes, byte for byte as the general encoder: 1, 3 and 12
// blocks (k.10 sorts before k.2), empty to full and wrapped windows, every dtype and kind, ids
// that JSON must escape, numbers at their extremes.
TEST(ReadyTensorsTest, TheOnePassWriterMatchesTheGeneralSafetensorsEncoder) {
  int cases = 0;
  for (const int64_t n_blocks : {int64_t{1}, int64_t{3}, int64_t{12}}) {
    for (const int64_t events : {int64_t{0}, int64_t{1}, int64_t{4}, int64_t{9}}) {
      KvWindow w(n_blocks, 4, 6, 3);
      for (int64_t e = 0; e < events; ++e) {
        w.EnsureSlots(w.NextSlot() + 1);
        const int64_t slot = w.NextSlot();
        for (int64_t b = 0; b < n_blocks; ++b) {
          for (int64_t j = 0; j < 6; ++j) {
            const auto i = static_cast<std::size_t>(slot * 6 + j);
            const float x = std::sin(static_cast<float>(e * 31 + b * 7 + j)) * 1e3F;
            w.k[static_cast<std::size_t>(b)][i] = x;
            w.v[static_cast<std::size_t>(b)][i] = -x / 3.0F;
          }
        }
        w.pos[static_cast<std::size_t>(slot)] = w.next_pos;
        ++w.next_pos;
        w.rows = std::min<int64_t>(w.rows + 1, w.capacity);
        w.last_ts_ms = events == 9 ? std::numeric_limits<int64_t>::max() : -1 + e;
      }
      for (const WireDtype dtype : {WireDtype::kF32, WireDtype::kBF16, WireDtype::kF16}) {
        for (const ReadyKind kind : {ReadyKind::kDelta, ReadyKind::kSnapshot}) {
          for (int64_t rows = 0; rows <= w.rows; ++rows) {
            ReadyHeader h{.kind = kind,
                          .model_id = "m\"\\\u00e9",
                          .user_id = events % 2 == 0 ? "u\x01\n\t/\u2028" : "plain",
                          .source_topic = "t\u00ff",
                          .source_partition = n_blocks == 12 ? 2147483647 : 0,
                          .source_offset = events == 9 ? std::numeric_limits<int64_t>::max() : 5,
                          .dtype = dtype};
            const auto got = EncodeReadyTensors(w, rows, h);
            ASSERT_TRUE(got.ok()) << got.status().ToString();
            EXPECT_EQ(*got, GeneralEncoding(w, rows, h))
                << "blocks " << n_blocks << " events " << events << " rows " << rows;
            ++cases;
          }
        }
      }
    }
  }
  EXPECT_GT(cases, 100);
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
