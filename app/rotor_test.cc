// The `rotor` program itself, run as a user would: help, version, usage errors and exit codes
// (docs/daemon.md). Nothing here needs Kafka: every run stops before connecting.

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

struct Outcome {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// A fresh directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "rotor_cli_XXXXXX").string();
    EXPECT_NE(mkdtemp(pattern.data()), nullptr);
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string Quote(std::string_view arg) {
  std::string out = "'";
  for (const char c : arg) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

// Runs `rotor args...` with the environment's config overrides cleared.
Outcome Rotor(const std::vector<std::string>& args) {
  const TempDir io;
  std::string command =
      "env -u ROTOR_KAFKA_BOOTSTRAP_SERVERS -u ROTOR_STATE_DIR " + Quote(ROTOR_BIN);
  for (const std::string& a : args) {
    command += " " + Quote(a);
  }
  command += fmt::format(" >{} 2>{}", Quote((io.path() / "out").string()),
                         Quote((io.path() / "err").string()));
  const int status = std::system(command.c_str());
  Outcome o;
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  o.out = ReadFile(io.path() / "out");
  o.err = ReadFile(io.path() / "err");
  return o;
}

std::size_t Count(std::string_view text, std::string_view what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string_view::npos;
       at = text.find(what, at + what.size())) {
    ++n;
  }
  return n;
}

const std::vector<std::string> kCommands = {"serve",   "produce", "consume",
                                            "inspect", "replay",  "topics"};

TEST(RotorTest, EveryCommandPrintsItsUsageOnHelpAndExitsZero) {
  for (const std::string& command : kCommands) {
    for (const std::string flag : {"--help", "-h"}) {
      const Outcome o = Rotor({command, flag});
      EXPECT_EQ(o.exit_code, 0) << command << " " << flag << ": " << o.err;
      EXPECT_THAT(o.out, StartsWith("usage: rotor " + command)) << command << " " << flag;
      EXPECT_THAT(o.out, HasSubstr("--config FILE"));
      EXPECT_THAT(o.err, IsEmpty());
    }
    // Help wins over everything else on the line, even a missing or broken config.
    const Outcome o = Rotor({command, "--config", "/nonexistent/rotor.yaml", "--help"});
    EXPECT_EQ(o.exit_code, 0) << command << ": " << o.err;
  }
}

TEST(RotorTest, HelpAndVersion) {
  for (const std::string flag : {"--help", "-h", "help"}) {
    const Outcome o = Rotor({flag});
    EXPECT_EQ(o.exit_code, 0) << flag;
    EXPECT_THAT(o.out, StartsWith("usage:\n"));
    for (const std::string& command : kCommands) {
      EXPECT_THAT(o.out, HasSubstr("rotor " + command));
    }
  }
  const Outcome version = Rotor({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out, fmt::format("rotor {}\n", ROTOR_VERSION));
  EXPECT_THAT(version.err, IsEmpty());
}

TEST(RotorTest, BadUsageExitsTwo) {
  const Outcome none = Rotor({});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, StartsWith("usage:"));
  const Outcome unknown = Rotor({"serv"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, StartsWith("rotor: unknown command 'serv'"));
  const Outcome option = Rotor({"serve", "--config", "x.yaml", "--nope", "1"});
  EXPECT_EQ(option.exit_code, 2);
  EXPECT_THAT(option.err, StartsWith("rotor serve: unknown option '--nope'\nusage: rotor serve"));
  const Outcome no_config = Rotor({"topics"});
  EXPECT_EQ(no_config.exit_code, 2);
  EXPECT_THAT(no_config.err, StartsWith("rotor topics: --config FILE is required"));
  const Outcome no_value = Rotor({"consume", "--config"});
  EXPECT_EQ(no_value.exit_code, 2);
  EXPECT_THAT(no_value.err, StartsWith("rotor consume: --config needs a value"));
}

// A config with an embedded cluster (nothing to reach) and the given bundle.
std::string WriteConfig(const TempDir& dir, const std::string& bundle,
                        std::string_view extra = "") {
  const std::filesystem::path path = dir.path() / "rotor.yaml";
  std::ofstream(path) << fmt::format(
      "model: {{bundle: \"{}\"}}\nkafka: {{embedded: true}}\nstate: {{dir: \"{}\"}}\n{}", bundle,
      (dir.path() / "state").string(), extra);
  return path.string();
}

TEST(RotorTest, BadConfigExitsTwoNamingTheField) {
  const TempDir dir;
  const std::string config = WriteConfig(dir, "m.safetensors", "pipeline: {max_batch_events: 0}\n");
  const Outcome o = Rotor({"serve", "--config", config});
  EXPECT_EQ(o.exit_code, 2) << o.err;
  EXPECT_THAT(o.err, HasSubstr(": config pipeline.max_batch_events: "));
  const Outcome missing = Rotor({"serve", "--config", (dir.path() / "none.yaml").string()});
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  EXPECT_THAT(missing.err, HasSubstr("none.yaml"));
}

TEST(RotorTest, MissingBundleExitsTwoNamingItsPathOnce) {
  const TempDir dir;
  const std::string bundle = (dir.path() / "no-such.bundle.safetensors").string();
  const std::string config = WriteConfig(dir, bundle);
  const std::string events = (dir.path() / "events.jsonl").string();
  std::ofstream(events) << "{}\n";
  for (const std::vector<std::string>& args : {
           std::vector<std::string>{"serve", "--config", config},
           {"inspect", "--config", config, "--user", "u1"},
           {"inspect", "--config", config, "--all"},
           {"replay", "--config", config, "--file", events},
       }) {
    const Outcome o = Rotor(args);
    EXPECT_EQ(o.exit_code, 2) << args[0] << ": " << o.err;
    EXPECT_EQ(Count(o.err, bundle), 1U) << args[0] << ": " << o.err;
    EXPECT_THAT(o.err, HasSubstr(fmt::format("model.bundle '{}': ", bundle))) << args[0];
    EXPECT_THAT(o.err, HasSubstr("No such file or directory")) << args[0];
  }
  // A directory where the bundle should be, and a file that is not a bundle, alike.
  const std::string not_a_bundle = (dir.path() / "junk.safetensors").string();
  std::ofstream(not_a_bundle) << "not a bundle";
  for (const std::string& path : {dir.path().string(), not_a_bundle}) {
    const Outcome o = Rotor({"serve", "--config", WriteConfig(dir, path)});
    EXPECT_EQ(o.exit_code, 2) << path << ": " << o.err;
    EXPECT_EQ(Count(o.err, "'" + path + "'"), 1U) << o.err;
  }
}

TEST(RotorTest, InspectOfAnEmptyStateDirectoryIsARuntimeFailure) {
  // The image's smoke test (Dockerfile) relies on this: the bundle loads, then exit 1.
  const TempDir dir;
  const std::string config =
      WriteConfig(dir, std::string(ROTOR_GOLDEN_DIR) + "/siren.bundle.safetensors");
  const Outcome o = Rotor({"inspect", "--config", config, "--user", "probe"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, StartsWith("rotor inspect: state.dir: "));
}

// With a TTL, replay must place events in their partitions: it refuses without a count (exit 2,
// saying how to give one), refuses a count below 1, and replays with --partitions.
TEST(RotorTest, ReplayWithATtlNeedsThePartitionCount) {
  const TempDir dir;
  const std::string config = (dir.path() / "ttl.yaml").string();
  std::ofstream(config) << fmt::format(
      "model: {{bundle: \"{}/siren.bundle.safetensors\"}}\nkafka: {{embedded: true}}\n"
      "state: {{dir: \"{}\", user_ttl_ms: 3600000}}\n",
      ROTOR_GOLDEN_DIR, (dir.path() / "state").string());
  const std::string events = (dir.path() / "events.jsonl").string();
  {
    std::ofstream out(events);
    std::ifstream golden(std::string(ROTOR_GOLDEN_DIR) + "/siren.long.events.jsonl");
    std::string line;
    for (int i = 0; i < 5 && std::getline(golden, line); ++i) {
      out << line << "\n";
    }
  }
  const Outcome refused = Rotor({"replay", "--config", config, "--file", events});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("pass --partitions N")) << refused.err;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "state" / "CURRENT"));
  const Outcome zero = Rotor({"replay", "--config", config, "--file", events, "--partitions", "0"});
  EXPECT_EQ(zero.exit_code, 2) << zero.err;
  EXPECT_THAT(zero.err, HasSubstr("--partitions 0: expected a partition count >= 1"));
  const Outcome replayed =
      Rotor({"replay", "--config", config, "--file", events, "--partitions", "3"});
  EXPECT_EQ(replayed.exit_code, 0) << replayed.err;
  EXPECT_THAT(replayed.out, HasSubstr("5 events"));
  EXPECT_THAT(replayed.out, HasSubstr("histories restarted"));
  // The count is recorded: a later replay there needs no flag.
  const Outcome again = Rotor({"replay", "--config", config, "--file", events});
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

// consume, produce and topics connect with the same librdkafka properties as serve (a broker
// behind SASL_SSL needs them all). A value librdkafka refuses shows that the property reached
// it: the command fails at once naming it, instead of trying the (unreachable) broker.
TEST(RotorTest, EveryKafkaCommandUsesTheConfiguredProperties) {
  const TempDir dir;
  const std::string events = (dir.path() / "events.jsonl").string();
  std::ofstream(events) << "{}\n";
  for (const std::string map : {"consumer_properties", "producer_properties"}) {
    const std::filesystem::path config = dir.path() / (map + ".yaml");
    std::ofstream(config) << fmt::format(
        "model: {{bundle: m}}\nkafka: {{bootstrap_servers: \"127.0.0.1:1\", {}: "
        "{{security.protocol: bogus}}}}\n",
        map);
    std::vector<std::vector<std::string>> runs;
    if (map == "consumer_properties") {
      runs = {{"consume", "--config", config.string(), "--idle-ms", "100"}};
    } else {
      runs = {{"produce", "--config", config.string(), "--file", events},
              {"topics", "--config", config.string()}};
    }
    for (const std::vector<std::string>& args : runs) {
      const Outcome o = Rotor(args);
      EXPECT_EQ(o.exit_code, 2) << args[0] << ": " << o.err;
      EXPECT_THAT(o.err, HasSubstr("kafka property 'security.protocol' = 'bogus'")) << args[0];
    }
  }
}

}  // namespace
