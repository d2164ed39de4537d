#include "api/internal/json_writer.h"

#include <cmath>
#include <limits>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace rotor::api::internal {
namespace {

std::string Quoted(std::string_view text) {
  std::string out;
  AppendJsonString(out, text);
  return out;
}

TEST(JsonWriterTest, WritesNestedDocuments) {
  JsonWriter json;
  json.BeginObject();
  json.Key("a").Int(-3);
  json.Key("b").BeginArray().Float(0.5F).Bool(true).Null().String("x").EndArray();
  json.Key("c").BeginObject().EndObject();
  json.Key("d").Raw(R"({"z":1})");
  json.Key("e").BeginArray().EndArray();
  json.EndObject();
  EXPECT_EQ(json.Take(), R"({"a":-3,"b":[0.5,true,null,"x"],"c":{},"d":{"z":1},"e":[]})");
}

TEST(JsonWriterTest, FloatsAreShortestAndNonFiniteIsNull) {
  JsonWriter json;
  json.BeginArray()
      .Float(0.1F)
      .Float(1e-7F)
      .Float(3.0F)
      .Float(std::numeric_limits<float>::infinity())
      .Float(std::nanf(""))
      .EndArray();
  const std::string text = json.Take();
  EXPECT_EQ(text, "[0.1,1e-07,3,null,null]");
  const nlohmann::json parsed = nlohmann::json::parse(text);
  EXPECT_EQ(static_cast<float>(parsed[1].get<double>()), 1e-7F);
}

TEST(JsonWriterTest, StringsAreEscapedAndInvalidUtf8Replaced) {
  EXPECT_EQ(Quoted("plain"), R"("plain")");
  EXPECT_EQ(Quoted("q\"b\\"), R"("q\"b\\")");
  EXPECT_EQ(Quoted(std::string("\0\n\x1f\x7f", 4)), R"("\u0000\u000a\u001f\u007f")");
  EXPECT_EQ(Quoted("\u00e9\u20ac\U0001F600"), "\"\u00e9\u20ac\U0001F600\"");
  // Stray continuation, overlong, surrogate, truncated sequences, bytes above F4.
  EXPECT_EQ(Quoted("a\x80z"), R"("a\ufffdz")");
  EXPECT_EQ(Quoted("\xc0\xaf"), R"("\ufffd\ufffd")");
  EXPECT_EQ(Quoted("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");
  EXPECT_EQ(Quoted("\xe2\x82"), R"("\ufffd\ufffd")");
  EXPECT_EQ(Quoted("\xf5\x80\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd")");
  // Whatever the bytes, the result is valid JSON.
  std::string all;
  for (int b = 0; b < 256; ++b) {
    all.push_back(static_cast<char>(b));
  }
  EXPECT_TRUE(nlohmann::json::parse(Quoted(all), nullptr, /*allow_exceptions=*/false).is_string());
}

}  // namespace
}  // namespace rotor::api::internal
