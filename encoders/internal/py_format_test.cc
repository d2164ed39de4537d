#include "encoders/internal/py_format.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "encoders/internal/json_util.h"

namespace rotor::encoders::internal {
namespace {

TEST(PyFloatReprTest, MatchesPythonReprIncludingTheNotationSwitches) {
  // Expected strings printed by Python's repr() for the same bit patterns.
  const std::vector<std::pair<double, std::string>> cases = {
      {std::bit_cast<double>(uint64_t{0x0000000000000000}), "0.0"},
      {std::bit_cast<double>(uint64_t{0x8000000000000000}), "-0.0"},
      {std::bit_cast<double>(uint64_t{0x3ff0000000000000}), "1.0"},
      {std::bit_cast<double>(uint64_t{0xbff8000000000000}), "-1.5"},
      {std::bit_cast<double>(uint64_t{0x3fb999999999999a}), "0.1"},
      {std::bit_cast<double>(uint64_t{0x3ee4f8b588e368f1}), "1e-05"},
      {std::bit_cast<double>(uint64_t{0x3f1a36e2eb1c432d}), "0.0001"},
      {std::bit_cast<double>(uint64_t{0x3f202e4b6ce5dc68}), "0.00012345"},
      {std::bit_cast<double>(uint64_t{0x430c6bf526340000}), "1000000000000000.0"},
      {std::bit_cast<double>(uint64_t{0x4341c37937e08000}), "1e+16"},
      {std::bit_cast<double>(uint64_t{0x4341c37937e07fff}), "9999999999999998.0"},
      {std::bit_cast<double>(uint64_t{0x4345ee2a2eb5a5c4}), "1.2345678901234568e+16"},
      {std::bit_cast<double>(uint64_t{0x437b69b4ba630f35}), "1.2345678901234568e+17"},
      {std::bit_cast<double>(uint64_t{0x0000000000000001}), "5e-324"},
      {std::bit_cast<double>(uint64_t{0x7fefffffffffffff}), "1.7976931348623157e+308"},
      {std::bit_cast<double>(uint64_t{0x40f86a0000000000}), "100000.0"},
      {std::bit_cast<double>(uint64_t{0x417e133800000000}), "31536000.0"},
      {std::bit_cast<double>(uint64_t{0x4480f0cf064dd592}), "1e+22"},
      {std::bit_cast<double>(uint64_t{0x3e90c6f7a0b5ed8d}), "2.5e-07"},
      {std::bit_cast<double>(uint64_t{0xd4cb6e83b85f253b}), "-3e+100"},
      {std::bit_cast<double>(uint64_t{0x3fd5555555555555}), "0.3333333333333333"},
      {std::bit_cast<double>(uint64_t{0x4340000000000000}), "9007199254740992.0"},
      {std::bit_cast<double>(uint64_t{0x3f9999999999999a}), "0.025"},
      {std::bit_cast<double>(uint64_t{0x4164d8399f767c45}), "10928588.983213553"},
      {std::bit_cast<double>(uint64_t{0x5bc8fbbcbde5c099}), "1.4186613525849614e+134"},
      {std::bit_cast<double>(uint64_t{0xb0c11fdecb91ce37}), "-7.571968556055867e-74"},
      {std::bit_cast<double>(uint64_t{0xa6eb8c9ebd69fe29}), "-3.3339745473042614e-121"},
      {std::bit_cast<double>(uint64_t{0x87b0b125ec1d7da0}), "-1.2342180766211395e-271"},
      {std::bit_cast<double>(uint64_t{0xc6a5387777330bdb}), "-2.1520217579844227e+32"},
      {std::bit_cast<double>(uint64_t{0x3fc1ea36f17fd374}), "0.1399601630397701"},
      {std::bit_cast<double>(uint64_t{0x0d464138a6233255}), "1.01853664031722e-244"},
  };
  for (const auto& [value, want] : cases) {
    EXPECT_EQ(PyFloatRepr(value), want);
  }
  EXPECT_EQ(PyFloatRepr(std::numeric_limits<double>::quiet_NaN()), "nan");
  EXPECT_EQ(PyFloatRepr(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(PyFloatRepr(-std::numeric_limits<double>::infinity()), "-inf");
}

TEST(PyStrReprTest, QuotesAndEscapesLikePython) {
  EXPECT_EQ(PyStrRepr("click"), "'click'");
  EXPECT_EQ(PyStrRepr(""), "''");
  EXPECT_EQ(PyStrRepr("it's"), "\"it's\"");
  EXPECT_EQ(PyStrRepr("a\"b'c"), "'a\"b\\'c'");
  EXPECT_EQ(PyStrRepr("a\\b\tc\nd\re\x01\x7f"), "'a\\\\b\\tc\\nd\\re\\x01\\x7f'");
  EXPECT_EQ(PyStrRepr("\xc2\x80\xc3\xa9"), "'\\x80\xc3\xa9'");  // U+0080 escaped, é kept.
  EXPECT_EQ(PyStrRepr("\xff"), "'\\xff'");                      // Not UTF-8: the byte.
}

TEST(PyIntListTest, FormatsLikeStrOfAList) {
  EXPECT_EQ(PyIntList(std::vector<int64_t>{}), "[]");
  EXPECT_EQ(PyIntList(std::vector<int64_t>{32, 31}), "[32, 31]");
}

TEST(Utf8Test, StrictDecoderRules) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));  // é € 😀
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // Overlong '/'.
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // Overlong, 3 bytes.
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // Surrogate U+D800.
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // U+110000.
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));          // Truncated.
  EXPECT_FALSE(IsValidUtf8("\x80"));              // Lone continuation byte.
  EXPECT_EQ(FirstInvalidUtf8("ab\xc3\xa9\xff"), 4U);
  EXPECT_EQ(FirstInvalidUtf8("ok"), std::string_view::npos);
}

TEST(PyJsonStringTest, EnsureAsciiEscapesLikeJsonDumps) {
  std::string out;
  // Python: json.dumps("é\x7f\x01😀/\\\"") == '"\\u00e9\\u007f\\u0001\\ud83d\\ude00/\\\\\\""'
  ASSERT_TRUE(AppendPyJsonString(out, "\xc3\xa9\x7f\x01\xf0\x9f\x98\x80/\\\""));
  EXPECT_EQ(out, R"("\u00e9\u007f\u0001\ud83d\ude00/\\\"")");
  out.clear();
  ASSERT_TRUE(AppendPyJsonString(out, "\b\f\n\r\t"));
  EXPECT_EQ(out, R"("\b\f\n\r\t")");
  out.clear();
  EXPECT_FALSE(AppendPyJsonString(out, "\xff"));
}

TEST(PyJsonDumpsTest, DefaultSeparatorsAndTruncation) {
  const Json v = Json::parse(R"({"a": [1, 2.5, "x", null, true, {"b": {}}], "c": -3})");
  // Python: json.dumps(...) keeps insertion order and uses ", " and ": ".
  EXPECT_EQ(PyJsonDumps(v, 1000), R"({"a": [1, 2.5, "x", null, true, {"b": {}}], "c": -3})");
  EXPECT_EQ(PyJsonDumps(v, 10), R"({"a": [1, )");
  EXPECT_EQ(PyJsonDumps(Json("big"), 60), "\"big\"");
  EXPECT_EQ(PyJsonDumps(Json(1.0), 60), "1.0");
}

TEST(PyReprTest, PythonObjectSpelling) {
  EXPECT_EQ(PyRepr(Json("F8")), "'F8'");
  EXPECT_EQ(PyRepr(Json(nullptr)), "None");
  EXPECT_EQ(PyRepr(Json(true)), "True");
  EXPECT_EQ(PyRepr(Json::parse(R"({"k": [1, "a"]})")), "{'k': [1, 'a']}");
}

TEST(ParseJsonTest, RefusesDeepNestingAndSyntaxErrors) {
  EXPECT_TRUE(ParseJson(std::string(64, '[') + std::string(64, ']')).ok());
  const auto deep = ParseJson(std::string(65, '[') + std::string(65, ']'));
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.status().message(), "nesting deeper than 64 levels");
  // Brackets inside strings do not count.
  EXPECT_TRUE(ParseJson("[\"" + std::string(100, '[') + "\"]").ok());
  const auto bom = ParseJson("\xEF\xBB\xBF{}");
  ASSERT_FALSE(bom.ok());
  EXPECT_EQ(bom.status().message(), "Unexpected UTF-8 BOM: line 1 column 1 (char 0)");
  const auto bad = ParseJson("{not json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("parse error"), std::string_view::npos)
      << bad.status().message();
}

TEST(GetInt64Test, AcceptsIntegersThatFitOnly) {
  int64_t v = 0;
  EXPECT_TRUE(GetInt64(Json::parse("-5"), v));
  EXPECT_EQ(v, -5);
  EXPECT_TRUE(GetInt64(Json::parse("9223372036854775807"), v));
  EXPECT_FALSE(GetInt64(Json::parse("9223372036854775808"), v));
  EXPECT_FALSE(GetInt64(Json::parse("1.0"), v));
  EXPECT_FALSE(GetInt64(Json::parse("true"), v));
}

}  // namespace
}  // namespace rotor::encoders::internal
