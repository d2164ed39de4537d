#include "app/cli.h"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace rotor::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr std::string_view kNotUtf8 = "\xff\xfe k";

TEST(CliTest, ExitCodesComeFromOneMapping) {
  EXPECT_EQ(ExitCodeFor(Status::OK()), 0);
  EXPECT_EQ(ExitCodeFor(Status::InvalidArgument("config x: bad")), 2);
  EXPECT_EQ(ExitCodeFor(Status::Corruption("bundle: bad tensor")), 2);
  EXPECT_EQ(ExitCodeFor(Status::IOError("rocksdb: lock held")), 1);
  EXPECT_EQ(ExitCodeFor(Status::NotFound("topic 'x' does not exist")), 1);
  EXPECT_EQ(ExitCodeFor(Status::Unavailable("broker down")), 1);
  EXPECT_EQ(ExitCodeFor(Status::FailedPrecondition("model mismatch")), 1);
  EXPECT_EQ(ExitCodeFor(Status::Internal("bug")), 1);
}

Result<Args> Parse(std::vector<std::string_view> args) {
  static const Command kCommand{.name = "test",
                                .usage = "",
                                .help = "",
                                .value_flags = {"config", "topic", "max"},
                                .bool_flags = {"json", "all"}};
  return ParseArgs(kCommand, args);
}

TEST(CliTest, BooleanFlagsStandAloneOrTakeTrueOrFalse) {
  auto bare = Parse({"--config", "c.yaml", "--json"});
  ASSERT_TRUE(bare.ok()) << bare.status().ToString();
  EXPECT_EQ(bare->Get("config"), "c.yaml");
  EXPECT_EQ(*bare->GetBool("json"), true);
  EXPECT_EQ(*bare->GetBool("all"), false);  // Absent.

  auto given = Parse({"--json", "true", "--all", "false", "--topic", "t"});
  ASSERT_TRUE(given.ok()) << given.status().ToString();
  EXPECT_EQ(*given->GetBool("json"), true);
  EXPECT_EQ(*given->GetBool("all"), false);
  EXPECT_EQ(given->Get("topic"), "t");

  // A bare flag followed by another flag.
  auto followed = Parse({"--json", "--topic", "t"});
  ASSERT_TRUE(followed.ok()) << followed.status().ToString();
  EXPECT_EQ(*followed->GetBool("json"), true);
  EXPECT_EQ(followed->Get("topic"), "t");
}

TEST(CliTest, BadArgumentsAreInvalidArgumentsNamingThem) {
  EXPECT_EQ(Parse({"--nope", "1"}).status().message(), "unknown option '--nope'");
  EXPECT_EQ(Parse({"--config"}).status().message(), "--config needs a value");
  EXPECT_EQ(Parse({"config"}).status().message(), "unexpected argument 'config'");
  EXPECT_EQ(Parse({"--"}).status().message(), "unexpected argument '--'");
  // A bool flag followed by a word that is not true/false: the word is a stray argument.
  EXPECT_EQ(Parse({"--json", "yes"}).status().message(), "unexpected argument 'yes'");
  EXPECT_EQ(Parse({"--nope"}).status().code(), StatusCode::kInvalidArgument);

  auto args = Parse({"--max", "12x"});
  ASSERT_TRUE(args.ok());
  EXPECT_EQ(args->GetInt("max", 5).status().message(), "--max expects an integer, got '12x'");
  EXPECT_EQ(args->GetInt("max", 5).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*args->GetInt("other", 5), 5);
  auto big = Parse({"--max", "99999999999999999999"});
  ASSERT_TRUE(big.ok());
  EXPECT_FALSE(big->GetInt("max", 0).ok());
  auto word = Parse({"--json", "true"});
  ASSERT_TRUE(word.ok());
  word->values["json"] = "maybe";
  EXPECT_EQ(word->GetBool("json").status().message(),
            "--json expects true or false (or nothing), got 'maybe'");
}

TEST(CliTest, HelpWinsAnywhere) {
  for (const std::vector<std::string_view>& args : {std::vector<std::string_view>{"--help"},
                                                    {"-h"},
                                                    {"--config", "x", "--help"},
                                                    {"--nope", "-h"}}) {
    auto parsed = Parse(args);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_TRUE(parsed->help);
  }
  EXPECT_FALSE(Parse({"--config", "x"})->help);
}

TEST(CliTest, EveryCommandHasUsageAndHelp) {
  const std::string usage = Usage();
  EXPECT_THAT(usage, StartsWith("usage:\n"));
  std::vector<std::string> names;
  for (const Command& c : Commands()) {
    names.emplace_back(c.name);
    EXPECT_THAT(usage, HasSubstr(std::string(c.usage))) << c.name;
    EXPECT_THAT(c.usage, StartsWith("rotor " + std::string(c.name))) << c.name;
    EXPECT_EQ(FindCommand(c.name), &c);
    const std::string help = CommandHelp(c);
    EXPECT_THAT(help, StartsWith("usage: rotor " + std::string(c.name)));
    EXPECT_THAT(help, HasSubstr("--config FILE"));
    EXPECT_THAT(help, HasSubstr("--help, -h"));
  }
  EXPECT_EQ(names, (std::vector<std::string>{"serve", "produce", "consume", "inspect", "replay",
                                             "topics"}));
  EXPECT_EQ(FindCommand("nope"), nullptr);
  EXPECT_EQ(FindCommand("consume")->bool_flags, (std::vector<std::string_view>{"json"}));
  EXPECT_EQ(FindCommand("inspect")->bool_flags, (std::vector<std::string_view>{"all"}));
  EXPECT_THAT(std::string(FindCommand("consume")->usage), HasSubstr("[--json]"));
  EXPECT_THAT(std::string(FindCommand("inspect")->usage), HasSubstr("(--user ID | --all)"));
}

// The flags a usage line and a help text name are exactly those the parser accepts.
TEST(CliTest, UsageHelpAndParserAgreeOnFlags) {
  for (const Command& c : Commands()) {
    std::vector<std::string> flags;
    for (const auto& list : {c.value_flags, c.bool_flags}) {
      for (const std::string_view f : list) {
        flags.push_back("--" + std::string(f));
        EXPECT_THAT(std::string(c.usage), HasSubstr(flags.back())) << c.name;
        EXPECT_THAT(std::string(c.help), HasSubstr(flags.back())) << c.name;
      }
    }
    EXPECT_THAT(c.value_flags, ::testing::Contains("config")) << c.name;
    std::string_view usage = c.usage;
    for (std::size_t at = usage.find("--"); at != std::string_view::npos;
         at = usage.find("--", at + 2)) {
      const std::size_t end = usage.find_first_of(" ]|)", at);
      const std::string flag(usage.substr(at, end == std::string_view::npos ? end : end - at));
      EXPECT_THAT(flags, ::testing::Contains(flag)) << c.name << " usage names " << flag;
    }
    // Every flag parses: value flags with a value, bool flags bare.
    std::vector<std::string> words;
    for (const std::string_view f : c.value_flags) {
      words.push_back("--" + std::string(f));
      words.emplace_back("1");
    }
    for (const std::string_view f : c.bool_flags) {
      words.push_back("--" + std::string(f));
    }
    const std::vector<std::string_view> views(words.begin(), words.end());
    EXPECT_TRUE(ParseArgs(c, views).ok()) << c.name;
  }
}

TEST(CliTest, Utf8IsCheckedStrictly) {
  EXPECT_TRUE(IsUtf8(""));
  EXPECT_TRUE(IsUtf8("plain"));
  EXPECT_TRUE(IsUtf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));  // é € 😀
  EXPECT_TRUE(IsUtf8(std::string_view("a\0b", 3)));             // NUL is UTF-8.
  EXPECT_TRUE(IsUtf8("\xf4\x8f\xbf\xbf"));                      // U+10FFFF.
  EXPECT_FALSE(IsUtf8("\xff"));
  EXPECT_FALSE(IsUtf8("\x80"));              // A lone continuation byte.
  EXPECT_FALSE(IsUtf8("\xc3"));              // Cut short.
  EXPECT_FALSE(IsUtf8("\xe2\x82"));          // Cut short.
  EXPECT_FALSE(IsUtf8("\xc0\xaf"));          // Overlong '/'.
  EXPECT_FALSE(IsUtf8("\xe0\x80\xaf"));      // Overlong.
  EXPECT_FALSE(IsUtf8("\xed\xa0\x80"));      // A surrogate.
  EXPECT_FALSE(IsUtf8("\xf4\x90\x80\x80"));  // Above U+10FFFF.
  EXPECT_FALSE(IsUtf8("\xf5\x80\x80\x80"));
  EXPECT_FALSE(IsUtf8("ok\xc3("));
}

TEST(CliTest, Base64MatchesRfc4648) {
  EXPECT_EQ(Base64(""), "");
  EXPECT_EQ(Base64("f"), "Zg==");
  EXPECT_EQ(Base64("fo"), "Zm8=");
  EXPECT_EQ(Base64("foo"), "Zm9v");
  EXPECT_EQ(Base64("foob"), "Zm9vYg==");
  EXPECT_EQ(Base64("fooba"), "Zm9vYmE=");
  EXPECT_EQ(Base64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64(kNotUtf8), "//4gaw==");
}

pipeline::TopicMessage Message(std::optional<std::string> key, std::string value,
                               std::vector<std::pair<std::string, std::string>> headers = {}) {
  pipeline::TopicMessage m;
  m.key = std::move(key);
  m.value = std::move(value);
  m.headers = std::move(headers);
  return m;
}

nlohmann::json LineOf(const pipeline::TopicMessage& m) {
  const std::string line = ConsumeJsonLine(m);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  return nlohmann::json::parse(line);
}

TEST(CliTest, ConsumeJsonLineCarriesAKeyThatIsUtf8AsAString) {
  pipeline::TopicMessage m =
      Message("user-\xc3\xa9", std::string("\x00\x01", 2), {{"rotor.error", "schema"}});
  m.partition = 3;
  m.offset = 17;
  m.timestamp_ms = 1767600000000;
  const nlohmann::json j = LineOf(m);
  EXPECT_EQ(j["partition"], 3);
  EXPECT_EQ(j["offset"], 17);
  EXPECT_EQ(j["timestamp_ms"], 1767600000000);
  EXPECT_EQ(j["key"], "user-\xc3\xa9");
  EXPECT_FALSE(j.contains("key_b64"));
  EXPECT_EQ(j["headers"], nlohmann::json({{"rotor.error", "schema"}}));
  EXPECT_FALSE(j.contains("headers_b64"));
  EXPECT_EQ(j["value_b64"], "AAE=");
}

TEST(CliTest, ConsumeJsonLineOfAMessageWithoutKeyHasANullKey) {
  const nlohmann::json j = LineOf(Message(std::nullopt, "v"));
  ASSERT_TRUE(j.contains("key"));
  EXPECT_TRUE(j["key"].is_null());
  EXPECT_FALSE(j.contains("key_b64"));
  // An empty key is a key.
  EXPECT_EQ(LineOf(Message(std::string(), "v"))["key"], "");
}

TEST(CliTest, ConsumeJsonLineCarriesAKeyThatIsNotUtf8AsBase64) {
  // Such a key made `rotor consume --json` exit with an internal error (nlohmann's dump
  // throws on invalid UTF-8), so rotor could not read its own dead-letter topic.
  const nlohmann::json j = LineOf(Message(std::string(kNotUtf8), "v"));
  EXPECT_FALSE(j.contains("key"));
  EXPECT_EQ(j["key_b64"], "//4gaw==");
}

TEST(CliTest, ConsumeJsonLineCarriesHeaderValuesThatAreNotUtf8AsBase64) {
  const nlohmann::json j = LineOf(Message("k", "v",
                                          {{"rotor.error", "invalid_json"},
                                           {"raw", std::string(kNotUtf8)},
                                           {"twice", std::string(kNotUtf8)},
                                           {"twice", "last"}}));
  EXPECT_EQ(j["headers"], nlohmann::json({{"rotor.error", "invalid_json"}, {"twice", "last"}}));
  EXPECT_EQ(j["headers_b64"], nlohmann::json({{"raw", "//4gaw=="}}));
}

TEST(CliTest, ConsumeJsonLineNeverThrowsOnAHeaderNameThatIsNotUtf8) {
  const nlohmann::json j = LineOf(Message("k", "v", {{std::string(kNotUtf8), "x"}}));
  EXPECT_EQ(j["headers"].size(), 1U);
  EXPECT_EQ(j["headers"].begin().value(), "x");
}

}  // namespace
}  // namespace rotor::cli
