#include "app/cli.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "app/print.h"

namespace rotor::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr std::string_view kNotUtf8 = "\xff\xfe k";

TEST(CliTest, ExitCodesComeFromOneMapping) {
  EXPECT_EQ(ExitCodeFor(Status::OK()), 0);
  EXPECT_EQ(ExitCodeFor(Status::ResourceExhausted("no space left")), 75);
  EXPECT_EQ(ExitCodeFor(Status::InvalidArgument("config x: bad")), 2);
  EXPECT_EQ(ExitCodeFor(Status::Corruption("bundle: bad tensor")), 2);
  EXPECT_EQ(ExitCodeFor(Status::IOError("rocksdb: lock held")), 1);
  EXPECT_EQ(ExitCodeFor(Status::NotFound("topic 'x' does not exist")), 1);
  EXPECT_EQ(ExitCodeFor(Status::Unavailable("broker down")), 1);
  EXPECT_EQ(ExitCodeFor(Status::FailedPrecondition("model mismatch")), 1);
  EXPECT_EQ(ExitCodeFor(Status::Internal("bug")), 1);
}

Invocation Parse(std::vector<std::string_view> args) {
  return ParseCommandLine(args, "9.9.9");
}

TEST(CliTest, FlagsStandAloneAndStillTakeTrueOrFalse) {
  auto bare = Parse({"consume", "--config", "c.yaml", "--json"});
  ASSERT_FALSE(bare.exit_code) << bare.err;
  EXPECT_EQ(bare.command->name, "consume");
  EXPECT_EQ(bare.flags.config, "c.yaml");
  EXPECT_TRUE(bare.flags.json);

  EXPECT_FALSE(Parse({"consume", "--config", "c.yaml"}).flags.json);  // Absent.
  // As scripts of old wrote them.
  EXPECT_TRUE(Parse({"consume", "--config", "c", "--json", "true"}).flags.json);
  auto off = Parse({"consume", "--json", "false", "--topic", "t", "--config", "c"});
  ASSERT_FALSE(off.exit_code) << off.err;
  EXPECT_FALSE(off.flags.json);
  EXPECT_EQ(off.flags.topic, "t");
  EXPECT_TRUE(Parse({"inspect", "--config", "c", "--all", "true"}).flags.all);

  // A bare flag followed by another flag.
  auto followed = Parse({"consume", "--json", "--topic", "t", "--config", "c"});
  ASSERT_FALSE(followed.exit_code) << followed.err;
  EXPECT_TRUE(followed.flags.json);
  EXPECT_EQ(followed.flags.topic, "t");
}

TEST(CliTest, ValuesAreParsedAndTyped) {
  auto serve = Parse({"serve", "--config", "c.yaml", "--exit-when-idle-ms", "3000", "--feed",
                      "e.jsonl", "--show-user", "u1"});
  ASSERT_FALSE(serve.exit_code) << serve.err;
  EXPECT_EQ(serve.flags.exit_when_idle_ms, 3000);
  EXPECT_EQ(serve.flags.feed, "e.jsonl");
  EXPECT_EQ(serve.flags.show_user, "u1");
  auto produce = Parse({"produce", "--config=c.yaml", "--file", "e", "--rate", "-0", "--limit",
                        "9223372036854775807"});
  ASSERT_FALSE(produce.exit_code) << produce.err;
  EXPECT_EQ(produce.flags.config, "c.yaml");
  EXPECT_EQ(produce.flags.limit, INT64_MAX);
  EXPECT_EQ(produce.flags.rate, 0);
  EXPECT_EQ(Parse({"replay", "--config", "c", "--file", "e"}).flags.partitions, std::nullopt);
  const Flags kafka = Parse({"replay", "--config", "c", "--kafka", "--partition", "0,2", "--start",
                             "@2026-01-01T00:00:00Z", "--start", "2:15", "--end", "latest",
                             "--publish", "--jobs", "2"})
                          .flags;
  EXPECT_TRUE(kafka.kafka);
  EXPECT_EQ(kafka.partition_list, "0,2");
  EXPECT_EQ(kafka.start, (std::vector<std::string>{"@2026-01-01T00:00:00Z", "2:15"}));
  EXPECT_EQ(kafka.end, (std::vector<std::string>{"latest"}));
  EXPECT_TRUE(kafka.publish);
  EXPECT_EQ(kafka.jobs, 2);
  EXPECT_EQ(Parse({"replay", "--config", "c", "--file", "e", "--partitions", "3"}).flags.partitions,
            3);
  auto url = Parse({"inspect", "--url", "http://127.0.0.1:1", "--user", "u"});
  ASSERT_FALSE(url.exit_code) << url.err;
  EXPECT_EQ(url.flags.url, "http://127.0.0.1:1");
  EXPECT_TRUE(url.flags.config.empty());
}

// A usage error: exit 2, "rotor CMD: <what>\nusage: <the command's usage line>\n" on stderr.
void ExpectUsageError(const std::vector<std::string_view>& args, std::string_view what) {
  const Invocation got = Parse(args);
  ASSERT_TRUE(got.exit_code) << args[0];
  EXPECT_EQ(*got.exit_code, kExitUsage);
  EXPECT_THAT(got.out, ::testing::IsEmpty());
  EXPECT_THAT(got.err, StartsWith(fmt::format("rotor {}: ", args[0])));
  EXPECT_THAT(got.err, HasSubstr(std::string(what)));
  EXPECT_THAT(got.err, HasSubstr(fmt::format("\nusage: {}\n", FindCommand(args[0])->usage)));
}

TEST(CliTest, BadArgumentsAreUsageErrorsNamingThem) {
  ExpectUsageError({"serve", "--config", "c", "--nope", "1"}, "--nope");
  ExpectUsageError({"serve", "--config"}, "--config");
  ExpectUsageError({"serve", "config"}, "config");
  ExpectUsageError({"consume", "--config", "c", "--json", "yes"}, "yes");
  ExpectUsageError({"consume", "--config", "c", "--max", "12x"}, "expected an integer, got '12x'");
  ExpectUsageError({"consume", "--config", "c", "--max", "0x10"}, "0x10");
  ExpectUsageError({"consume", "--config", "c", "--max", "99999999999999999999"},
                   "99999999999999999999");
  ExpectUsageError({"topics"}, "--config FILE is required");
  ExpectUsageError({"produce", "--config", "c"}, "--file EVENTS.jsonl is required");
  ExpectUsageError({"replay", "--config", "c"}, "give one source");
  ExpectUsageError({"replay", "--config", "c", "--file", "e", "--kafka"}, "give one source");
  ExpectUsageError({"replay", "--config", "c", "--file", "e", "--publish"}, "need --kafka");
  ExpectUsageError({"replay", "--config", "c", "--kafka", "--partitions", "4"},
                   "--partitions N is for --file");
  ExpectUsageError({"replay", "--config", "c", "--kafka", "--jobs", "-1"}, "--jobs -1");
  ExpectUsageError({"replay", "--config", "c", "--file", "e", "--partitions", "0"},
                   "--partitions 0: expected a partition count >= 1");
  ExpectUsageError({"topics", "--config", "c", "--partitions", "-1"}, "--partitions -1");
  ExpectUsageError({"inspect", "--config", "c"}, "--user ID or --all is required");
  ExpectUsageError({"inspect", "--user", "u"}, "--config FILE (or --url URL) is required");
  ExpectUsageError({"inspect", "--url", "http://h:1", "--all"}, "--all reads every user");
  ExpectUsageError({"inspect", "--url", "http://h:1", "--config", "c", "--user", "u"}, "give one");
  // A flag of another command.
  ExpectUsageError({"serve", "--config", "c", "--json"}, "--json");
}

TEST(CliTest, TopLevelHelpVersionAndUnknownCommands) {
  for (const std::vector<std::string_view>& args :
       {std::vector<std::string_view>{"--help"}, {"-h"}, {"help"}}) {
    const Invocation got = Parse(args);
    EXPECT_EQ(got.exit_code, kExitOk);
    EXPECT_EQ(got.out, Usage());
  }
  EXPECT_EQ(Parse({"--version"}).out, "rotor 9.9.9\n");
  EXPECT_EQ(Parse({"--version"}).exit_code, kExitOk);
  const Invocation none = Parse({});
  EXPECT_EQ(none.exit_code, kExitUsage);
  EXPECT_EQ(none.err, Usage());
  const Invocation unknown = Parse({"serv"});
  EXPECT_EQ(unknown.exit_code, kExitUsage);
  EXPECT_THAT(unknown.err, StartsWith("rotor: unknown command 'serv'\nusage:\n"));
}

TEST(CliTest, HelpWinsAnywhere) {
  for (const Command& c : Commands()) {
    for (const std::vector<std::string_view>& rest : {std::vector<std::string_view>{"--help"},
                                                      {"-h"},
                                                      {"--config", "x", "--help"},
                                                      {"--nope", "-h"}}) {
      std::vector<std::string_view> args = {c.name};
      args.insert(args.end(), rest.begin(), rest.end());
      const Invocation got = Parse(args);
      EXPECT_EQ(got.exit_code, kExitOk) << c.name << ": " << got.err;
      EXPECT_EQ(got.out, CommandHelp(c));
    }
  }
  EXPECT_FALSE(Parse({"topics", "--config", "x"}).exit_code);
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
    EXPECT_THAT(help, StartsWith(fmt::format("usage: {}\n\n", c.usage)));
    EXPECT_THAT(help, HasSubstr("--config FILE"));
    EXPECT_THAT(help, HasSubstr("-h,--help"));
    EXPECT_THAT(help, HasSubstr("Exit codes: 0 ok"));
  }
  EXPECT_EQ(names, (std::vector<std::string>{"serve", "produce", "consume", "inspect", "replay",
                                             "topics"}));
  EXPECT_EQ(FindCommand("nope"), nullptr);
  EXPECT_THAT(std::string(FindCommand("consume")->usage), HasSubstr("[--json]"));
  EXPECT_THAT(std::string(FindCommand("inspect")->usage), HasSubstr("(--user ID | --all)"));
  EXPECT_THAT(std::string(FindCommand("inspect")->usage), HasSubstr("--url URL"));
}

// The flags a usage line and a help text name are exactly those the parser accepts.
TEST(CliTest, UsageHelpAndParserAgreeOnFlags) {
  for (const Command& c : Commands()) {
    const std::vector<std::string> flags = FlagNames(c);
    EXPECT_THAT(flags, ::testing::Contains("--config")) << c.name;
    EXPECT_THAT(flags, ::testing::Contains("--help")) << c.name;
    const std::string help = CommandHelp(c);
    for (const std::string& f : flags) {
      EXPECT_THAT(help, HasSubstr(f)) << c.name;
      if (f != "--help") {
        EXPECT_THAT(std::string(c.usage), HasSubstr(f)) << c.name;
      }
    }
    std::string_view usage = c.usage;
    for (std::size_t at = usage.find("--"); at != std::string_view::npos;
         at = usage.find("--", at + 2)) {
      const std::size_t end = usage.find_first_of(" ]|)", at);
      const std::string flag(usage.substr(at, end == std::string_view::npos ? end : end - at));
      EXPECT_THAT(flags, ::testing::Contains(flag)) << c.name << " usage names " << flag;
    }
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

TEST(CliTest, ReplayProgressIsABarOnATerminalAndPlainLinesElsewhere) {
  pipeline::ReplayProgress p{.partitions = 8,
                             .partitions_done = 3,
                             .records_total = 2000,
                             .records_done = 500,
                             .events = 41300,
                             .seconds = 10,
                             .finished = false};
  EXPECT_EQ(FormatReplayProgress(p, false),
            "replay: 25.0% (500 of 2000 records), 4130 events/s, ETA 30 s, 3 of 8 partitions done");
  EXPECT_EQ(FormatReplayProgress(p, true),
            "[#####...............]  25.0%  500/2000 records  4.1k events/s  ETA 0:30  3/8 "
            "partitions");
  p.records_done = 0;
  EXPECT_THAT(FormatReplayProgress(p, false), HasSubstr("ETA unknown"));
  p.records_done = 2000;
  p.partitions_done = 8;
  p.finished = true;
  EXPECT_EQ(FormatReplayProgress(p, false),
            "replay: 100.0% (2000 of 2000 records), 4130 events/s, ETA 0 s, 8 of 8 partitions "
            "done");
  p.records_total = 0;  // Nothing to replay: done.
  p.records_done = 0;
  EXPECT_THAT(FormatReplayProgress(p, true), HasSubstr("[####################] 100.0%"));
}

}  // namespace
}  // namespace rotor::cli
