#include "encoders/internal/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "encoders/internal/golden_testing.h"

namespace rotor::encoders::internal {
namespace {

using ::rotor::encoders::testing::AsBytes;
using ::rotor::encoders::testing::ReadGolden;
using ::testing::HasSubstr;

// A file with `header` as its JSON text, followed by `data`.
std::string Raw(std::string_view header, std::string_view data = {}) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out += header;
  out += data;
  return out;
}

std::string Zeros(std::size_t n) {
  return std::string(n, '\0');
}

// The parse error message of `bytes` (empty when it parses).
std::string ErrorOf(std::string_view bytes) {
  auto file = ParseSafetensors(AsBytes(bytes));
  if (file.ok()) {
    return "";
  }
  EXPECT_EQ(file.status().code(), StatusCode::kCorruption);
  return std::string(file.status().message());
}

std::vector<std::byte> Bytes(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (const int v : values) {
    out.push_back(static_cast<std::byte>(v));
  }
  return out;
}

std::vector<std::byte> FromHex(std::string_view hex) {
  std::vector<std::byte> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::byte>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

TEST(SafetensorsTest, GoldenFilesReEncodeToTheirExactBytes) {
  auto manifest = testing::GoldenManifest();
  std::vector<std::string> files;
  for (const auto& [name, info] : manifest["bundles"].items()) {
    files.push_back(info["file"].get<std::string>());
  }
  for (const std::string& c : testing::GoldenCaseNames()) {
    files.push_back(c + ".expected.safetensors");
  }
  ASSERT_EQ(files.size(), 20U);  // 5 bundles, 5 x 3 cases
  for (const std::string& name : files) {
    const std::string bytes = ReadGolden(name);
    auto file = ParseSafetensors(AsBytes(bytes));
    ASSERT_TRUE(file.ok()) << name << ": " << file.status().ToString();
    EXPECT_FALSE(file->metadata.empty()) << name;
    auto again = EncodeSafetensors(file->tensors, file->metadata);
    ASSERT_TRUE(again.ok()) << name << ": " << again.status().ToString();
    EXPECT_TRUE(*again == bytes) << name << " re-encodes to different bytes";
  }
}

TEST(SafetensorsTest, ViewsPointIntoTheParsedBufferWithoutCopying) {
  const std::string bytes = ReadGolden("siren.short.expected.safetensors");
  auto file = ParseSafetensors(AsBytes(bytes));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const TensorView* pos = file->Find("pos");
  ASSERT_NE(pos, nullptr);
  EXPECT_EQ(pos->dtype, Dtype::kI64);
  EXPECT_EQ(pos->shape, std::vector<int64_t>{5});
  const auto* begin = reinterpret_cast<const std::byte*>(bytes.data());
  EXPECT_GE(pos->data.data(), begin);
  EXPECT_LE(pos->data.data() + pos->data.size(), begin + bytes.size());
  std::vector<int64_t> values(5);
  std::memcpy(values.data(), pos->data.data(), pos->data.size());
  EXPECT_EQ(values, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(file->metadata.at("case"), "short");
  EXPECT_EQ(file->Find("no such tensor"), nullptr);
}

TEST(SafetensorsTest, EveryDtypeRoundTripsAndMatchesPythonsBytes) {
  // Python: encode({"Zed": arange(3, f32), "a": [[1, -2]] i64, "s": f16 scalar 3.0,
  //   "e": zeros((0, 4), i32), "u": [7] u8, "d": [1.5] f64, "é": [1] u8},
  //   {"k": "v", "ü": "\n"}).hex()
  const std::vector<std::byte> want = FromHex(
      "b0010000000000007b225a6564223a7b22646174615f6f666673657473223a5b302c31325d2c2264747970"
      "65223a22463332222c227368617065223a5b335d7d2c225f5f6d657461646174615f5f223a7b226b223a22"
      "76222c225c7530306663223a225c6e227d2c2261223a7b22646174615f6f666673657473223a5b31322c32"
      "385d2c226474797065223a22493634222c227368617065223a5b312c325d7d2c2264223a7b22646174615f"
      "6f666673657473223a5b32382c33365d2c226474797065223a22463634222c227368617065223a5b315d7d"
      "2c2265223a7b22646174615f6f666673657473223a5b33362c33365d2c226474797065223a22493332222c"
      "227368617065223a5b302c345d7d2c2273223a7b22646174615f6f666673657473223a5b33362c33385d2c"
      "226474797065223a22463136222c227368617065223a5b5d7d2c2275223a7b22646174615f6f6666736574"
      "73223a5b33382c33395d2c226474797065223a225538222c227368617065223a5b315d7d2c225c75303065"
      "39223a7b22646174615f6f666673657473223a5b33392c34305d2c226474797065223a225538222c227368"
      "617065223a5b315d7d7d000000000000803f000000400100000000000000feffffffffffffff0000000000"
      "00f83f00420701");
  const float zed[3] = {0.0F, 1.0F, 2.0F};
  const int64_t a[2] = {1, -2};
  const double d[1] = {1.5};
  const auto s = Bytes({0x00, 0x42});  // float16 3.0
  const auto u = Bytes({7});
  const auto e_acute = Bytes({1});
  // Given in an order other than the sorted one: the output must not depend on it.
  const std::vector<TensorView> tensors = {
      {"u", Dtype::kU8, {1}, u},
      {"\xc3\xa9", Dtype::kU8, {1}, e_acute},
      {"a", Dtype::kI64, {1, 2}, std::as_bytes(std::span(a))},
      {"Zed", Dtype::kF32, {3}, std::as_bytes(std::span(zed))},
      {"s", Dtype::kF16, {}, s},
      {"e", Dtype::kI32, {0, 4}, {}},
      {"d", Dtype::kF64, {1}, std::as_bytes(std::span(d))},
  };
  const SafetensorsMetadata metadata = {{"k", "v"}, {"\xc3\xbc", "\n"}};
  auto encoded = EncodeSafetensors(tensors, metadata);
  ASSERT_TRUE(encoded.ok()) << encoded.status().ToString();
  ASSERT_EQ(encoded->size(), want.size());
  EXPECT_EQ(std::memcmp(encoded->data(), want.data(), want.size()), 0);

  uint64_t header_len = 0;
  std::memcpy(&header_len, encoded->data(), 8);
  EXPECT_EQ(header_len % 8, 0U);

  auto file = ParseSafetensors(AsBytes(*encoded));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->metadata, metadata);
  ASSERT_EQ(file->tensors.size(), tensors.size());
  for (const TensorView& t : tensors) {
    const TensorView* got = file->Find(t.name);
    ASSERT_NE(got, nullptr) << t.name;
    EXPECT_EQ(got->dtype, t.dtype);
    EXPECT_EQ(got->shape, t.shape);
    ASSERT_EQ(got->data.size(), t.data.size());
    EXPECT_TRUE(std::equal(got->data.begin(), got->data.end(), t.data.begin())) << t.name;
  }
}

TEST(SafetensorsTest, EmptyMetadataIsLeftOutAndAnEmptyFileIsValid) {
  auto encoded = EncodeSafetensors({}, {});
  ASSERT_TRUE(encoded.ok());
  EXPECT_EQ(*encoded, Raw("{}      "));
  auto file = ParseSafetensors(AsBytes(*encoded));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_TRUE(file->tensors.empty());
  EXPECT_TRUE(file->metadata.empty());
}

TEST(SafetensorsTest, MalformedFilesAreRefusedWithPythonsReasons) {
  const std::string f32x2 = R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";
  struct Case {
    std::string bytes;
    std::string message;
  };
  std::string header_len_only(8, '\0');
  const uint64_t big = uint64_t{1} << 40;
  std::memcpy(header_len_only.data(), &big, 8);
  std::string claims_100(8, '\0');
  claims_100[0] = 100;
  claims_100 += "{}";
  const std::vector<Case> cases = {
      {"", "truncated: file is 0 bytes, the header length needs 8"},
      {std::string("\x01\x00", 2), "truncated: file is 2 bytes, the header length needs 8"},
      {claims_100, "truncated: header claims 100 bytes but only 2 follow"},
      {header_len_only, "header length 1099511627776 exceeds the 104857600-byte limit"},
      {Raw("[1, 2]"), "header must be a JSON object"},
      {Raw("{{{{"), "header is not valid UTF-8 JSON: "},
      {Raw("{\"\xff\": 1}"), "header is not valid UTF-8 JSON: invalid UTF-8 at byte 2"},
      {Raw(f32x2, Zeros(4)), "truncated: tensor 't' ends at byte 8 of a 4-byte data region"},
      {Raw(R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", Zeros(8)),
       "tensor 't': 8 bytes for shape [3] of F32 (12 expected)"},
      {Raw(R"({"t": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}})", Zeros(8)),
       "tensor 't': unsupported dtype 'Q7'"},
      {Raw(R"({"t": {"dtype": 5, "shape": [2], "data_offsets": [0, 8]}})", Zeros(8)),
       "tensor 't': unsupported dtype 5"},
      {Raw(R"({"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", Zeros(8)),
       "tensor 't': shape must be a list of non-negative integers"},
      {Raw(R"({"t": {"dtype": "F32", "shape": [true], "data_offsets": [0, 8]}})", Zeros(8)),
       "tensor 't': shape must be a list of non-negative integers"},
      {Raw(R"({"t": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}})", Zeros(8)),
       "tensor 't': shape must be a list of non-negative integers"},
      {Raw(R"({"t": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}})", Zeros(8)),
       "tensor 't': shape must be a list of non-negative integers"},
      {Raw(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", Zeros(8)),
       "tensor 't': data_offsets [8, 0] are not ordered"},
      {Raw(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", Zeros(8)),
       "tensor 't': data_offsets [-8, 0] are not ordered"},
      {Raw(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", Zeros(8)),
       "tensor 't': data_offsets must be two integers"},
      {Raw(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}})", Zeros(8)),
       "tensor 't': data_offsets must be two integers"},
      {Raw(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [false, 8]}})", Zeros(8)),
       "tensor 't': data_offsets must be two integers"},
      {Raw(R"({"t": {"dtype": "F32", "shape": [2]}})", Zeros(8)),
       "tensor 't': entry needs exactly dtype, shape, data_offsets"},
      {Raw(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}})", Zeros(8)),
       "tensor 't': entry needs exactly dtype, shape, data_offsets"},
      {Raw(R"({"t": [1, 2, 3]})"), "tensor 't': entry needs exactly dtype, shape, data_offsets"},
      {Raw(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
           Zeros(12)),
       "tensor 'b': data starts at 4, expected 8 (gap or overlap)"},
      {Raw(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", Zeros(8)),
       "tensor 'a': data starts at 4, expected 0 (gap or overlap)"},
      {Raw(R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", Zeros(9)),
       "data region has 5 trailing bytes past the last tensor"},
      {Raw("", Zeros(4)), "header is not valid UTF-8 JSON: "},
      {Raw("\xEF\xBB\xBF{}"), "header is not valid UTF-8 JSON: Unexpected UTF-8 BOM"},
      {Raw(R"({"t\ud800": 1})"), "header is not valid UTF-8 JSON: "},  // Python accepts.
      {Raw(R"({"__metadata__": {"k": 1}})"), "__metadata__ must map strings to strings"},
      {Raw(R"({"__metadata__": [1]})"), "__metadata__ must map strings to strings"},
      {Raw(R"({"__metadata__": "x"})"), "__metadata__ must map strings to strings"},
      {Raw(std::string(65, '[') + std::string(65, ']')),
       "header is not valid UTF-8 JSON: nesting deeper than 64 levels"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ErrorOf(c.bytes), HasSubstr(c.message)) << c.message;
  }
}

TEST(SafetensorsTest, SizesThatOverflowSixtyFourBitsAreRefused) {
  // numel * itemsize overflows uint64: numpy would wrap around silently; we refuse.
  EXPECT_THAT(
      ErrorOf(Raw(R"({"t": {"dtype": "F32", "shape": [4294967296, 4294967296],
                           "data_offsets": [0, 0]}})")),
      HasSubstr("tensor 't': shape [4294967296, 4294967296] of F32 does not fit in 64-bit"));
  EXPECT_THAT(ErrorOf(Raw(R"({"t": {"dtype": "U8", "shape": [18446744073709551615],
                                    "data_offsets": [0, 0]}})")),
              HasSubstr("does not fit in 64-bit"));
  // Offsets far past the data region, up to the largest uint64.
  EXPECT_THAT(ErrorOf(Raw(R"({"t": {"dtype": "U8", "shape": [1],
                                    "data_offsets": [0, 18446744073709551615]}})")),
              HasSubstr("truncated: tensor 't' ends at byte 18446744073709551615"));
  EXPECT_THAT(ErrorOf(Raw(R"({"t": {"dtype": "U8", "shape": [1],
                                    "data_offsets": [0, 1e30]}})")),
              HasSubstr("data_offsets must be two integers"));
  // A zero in the shape makes an empty tensor whatever the other dimensions.
  EXPECT_EQ(ErrorOf(Raw(R"({"t": {"dtype": "F64", "shape": [0, 9223372036854775807],
                                   "data_offsets": [0, 0]}})")),
            "");
}

TEST(SafetensorsTest, FalsyMetadataMeansNoneLikePython) {
  // Python: header.pop("__metadata__", {}) or {}.
  for (const char* value : {"null", "{}", "[]", "\"\"", "0", "false"}) {
    auto file = ParseSafetensors(AsBytes(Raw(std::string(R"({"__metadata__": )") + value + "}")));
    ASSERT_TRUE(file.ok()) << value << ": " << file.status().ToString();
    EXPECT_TRUE(file->metadata.empty());
  }
}

TEST(SafetensorsTest, ZeroSizedTensorsMayShareAnOffset) {
  const std::string bytes = Raw(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "c": {"dtype": "I64", "shape": [0, 3], "data_offsets": [4, 4]}})",
                                Zeros(4));
  EXPECT_EQ(ErrorOf(bytes), "");
}

TEST(SafetensorsTest, RandomCorruptionIsRefusedNeverCrashes) {
  const float a[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  const int64_t b[5] = {0, 1, 2, 3, 4};
  const std::vector<TensorView> tensors = {{"a", Dtype::kF32, {3, 4}, std::as_bytes(std::span(a))},
                                           {"b", Dtype::kI64, {5}, std::as_bytes(std::span(b))}};
  auto base = EncodeSafetensors(tensors, {{"m", "x"}});
  ASSERT_TRUE(base.ok());
  std::mt19937_64 rng(0);
  int refused = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string buf = *base;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) {
      buf[rng() % buf.size()] = static_cast<char>(rng() % 256);
    }
    buf.resize(rng() % (buf.size() + 1));
    auto file = ParseSafetensors(AsBytes(buf));
    if (!file.ok()) {
      EXPECT_EQ(file.status().code(), StatusCode::kCorruption);
      ++refused;
    }
  }
  EXPECT_GT(refused, 1900);
}

TEST(SafetensorsTest, EncoderRefusesWhatItCannotWrite) {
  const float one[1] = {1.0F};
  const auto data = std::as_bytes(std::span(one));
  const auto error = [](const std::vector<TensorView>& tensors, const SafetensorsMetadata& m) {
    auto out = EncodeSafetensors(tensors, m);
    EXPECT_FALSE(out.ok());
    return out.ok() ? std::string() : std::string(out.status().message());
  };
  EXPECT_THAT(error({{"__metadata__", Dtype::kF32, {1}, data}}, {}), HasSubstr("reserved"));
  EXPECT_THAT(error({{"x", Dtype::kF32, {1}, data}, {"x", Dtype::kF32, {1}, data}}, {}),
              HasSubstr("tensor 'x': name given twice"));
  EXPECT_THAT(error({{"x", Dtype::kF32, {2}, data}}, {}),
              HasSubstr("tensor 'x': 4 bytes for shape [2] of F32"));
  EXPECT_THAT(error({{"x", Dtype::kF32, {-1}, data}}, {}), HasSubstr("tensor 'x'"));
  EXPECT_THAT(error({{"\xff", Dtype::kF32, {1}, data}}, {}), HasSubstr("not UTF-8"));
  EXPECT_THAT(error({}, {{"k", "\xc0\xaf"}}), HasSubstr("not UTF-8"));
}

}  // namespace
}  // namespace rotor::encoders::internal
