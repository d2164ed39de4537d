// The `rotor` program itself, run as a user would: help, version, usage errors and exit codes
// (docs/daemon.md), and `rotor serve` with its HTTP API on the embedded cluster (librdkafka's
// mock cluster inside the process): no broker is needed.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/client.h"

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
  // Every usage error of a command: exit 2, what is wrong, then the command's usage line.
  for (const std::vector<std::string>& args : {
           std::vector<std::string>{"serve", "--config", "x.yaml", "--nope", "1"},
           {"consume", "--config", "x.yaml", "--json", "yes"},
           {"consume", "--config", "x.yaml", "--max", "12x"},
           {"inspect", "--url", "http://127.0.0.1:1", "--all"},
           {"produce", "--config", "x.yaml"},
           {"replay", "--config", "x.yaml", "--file", "e", "--partitions", "0"},
       }) {
    const Outcome o = Rotor(args);
    EXPECT_EQ(o.exit_code, 2) << args[0] << ": " << o.err;
    EXPECT_THAT(o.err, StartsWith("rotor " + args[0] + ": "));
    EXPECT_THAT(o.err, HasSubstr("\nusage: rotor " + args[0]));
    EXPECT_THAT(o.out, IsEmpty());
  }
  EXPECT_THAT(Rotor({"serve", "--config", "x.yaml", "--nope", "1"}).err, HasSubstr("--nope"));
  const Outcome no_config = Rotor({"topics"});
  EXPECT_EQ(no_config.exit_code, 2);
  EXPECT_THAT(no_config.err, StartsWith("rotor topics: --config FILE is required"));
  const Outcome no_value = Rotor({"consume", "--config"});
  EXPECT_EQ(no_value.exit_code, 2);
  EXPECT_THAT(no_value.err, StartsWith("rotor consume: --config: "));
}

// A config with an embedded cluster (nothing to reach), the given bundle and the API on a free
// port (unless `extra` has an api section).
std::string WriteConfig(const TempDir& dir, const std::string& bundle,
                        std::string_view extra = "") {
  const std::filesystem::path path = dir.path() / "rotor.yaml";
  std::ofstream(path) << fmt::format(
      "model: {{bundle: \"{}\"}}\nkafka: {{embedded: true}}\nstate: {{dir: \"{}\"}}\n{}{}", bundle,
      (dir.path() / "state").string(),
      extra.find("api:") == std::string_view::npos ? "api: {listen: \"127.0.0.1:0\"}\n" : "",
      extra);
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
  EXPECT_THAT(o.err, StartsWith(fmt::format("rotor inspect: state.dir '{}': ",
                                            (dir.path() / "state").string())));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "state" / "CURRENT")) << "not created";
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

// `replay --kafka` refuses a bad range, partition list or the embedded cluster with exit 2,
// naming what is wrong, before it creates a state directory.
TEST(RotorTest, ReplayFromKafkaRefusesBadRangesBeforeTouchingTheState) {
  const TempDir dir;
  const std::string config = (dir.path() / "replay.yaml").string();
  std::ofstream(config) << fmt::format(
      "model: {{bundle: \"{}/siren.bundle.safetensors\"}}\nkafka: {{embedded: true}}\n"
      "state: {{dir: \"{}\"}}\n",
      ROTOR_GOLDEN_DIR, (dir.path() / "state").string());
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--start", "3:soon"}, "--start 'soon': expected earliest, latest, an offset"},
      {{"--end", "@2026-13-01T00:00:00Z"}, "--end '@2026-13-01T00:00:00Z': expected"},
      {{"--start", "x:5"}, "--start x:5: expected [PARTITION:]SPEC"},
      {{"--start", "1:5", "--start", "1:6"}, "--start is given twice for partition 1"},
      {{"--partition", "1,x"}, "--partition 1,x: expected partition numbers"},
      {{}, "kafka.embedded is true"},
  };
  for (const auto& [extra, want] : cases) {
    std::vector<std::string> args = {"replay", "--config", config, "--kafka"};
    args.insert(args.end(), extra.begin(), extra.end());
    const Outcome refused = Rotor(args);
    EXPECT_EQ(refused.exit_code, 2) << refused.err;
    EXPECT_THAT(refused.err, HasSubstr(want));
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "state"));
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

// Flags are flags: `--json` and `--all` stand alone, and still take true/false after them (as
// scripts of old wrote). What follows the parse shows that it passed: consume reaches
// librdkafka (which refuses the bogus property), inspect --all prints the replayed users.
TEST(RotorTest, BooleanFlagsStandAloneOrTakeTrueOrFalse) {
  const TempDir dir;
  const std::filesystem::path kafka = dir.path() / "kafka.yaml";
  std::ofstream(kafka) << "model: {bundle: m}\nkafka: {bootstrap_servers: \"127.0.0.1:1\", "
                          "consumer_properties: {security.protocol: bogus}}\n";
  for (const std::vector<std::string>& json :
       {std::vector<std::string>{"--json"}, {"--json", "true"}, {"--json", "false"}}) {
    std::vector<std::string> args = {"consume", "--config", kafka.string(), "--idle-ms", "100"};
    args.insert(args.end(), json.begin(), json.end());
    const Outcome o = Rotor(args);
    EXPECT_EQ(o.exit_code, 2) << o.err;
    EXPECT_THAT(o.err, HasSubstr("kafka property 'security.protocol' = 'bogus'")) << json.size();
  }

  const std::string config =
      WriteConfig(dir, std::string(ROTOR_GOLDEN_DIR) + "/siren.bundle.safetensors");
  const Outcome replayed = Rotor({"replay", "--config", config, "--file",
                                  std::string(ROTOR_GOLDEN_DIR) + "/siren.long.events.jsonl"});
  ASSERT_EQ(replayed.exit_code, 0) << replayed.err;
  const Outcome bare = Rotor({"inspect", "--config", config, "--all"});
  EXPECT_EQ(bare.exit_code, 0) << bare.err;
  EXPECT_THAT(bare.out, HasSubstr("\"next_pos\":43,"));
  EXPECT_THAT(bare.out, HasSubstr("\"user\":\"u-long\"}\n"));
  const Outcome given = Rotor({"inspect", "--config", config, "--all", "true"});
  EXPECT_EQ(given.out, bare.out);
  // Stopped-daemon mode of one user: the same read path as HTTP, saying what input it covers
  // (a replay without --partitions records no partition count and no input offset).
  const Outcome one = Rotor({"inspect", "--config", config, "--user", "u-long"});
  EXPECT_EQ(one.exit_code, 0) << one.err;
  EXPECT_THAT(one.out, StartsWith("user 'u-long': model "));
  EXPECT_THAT(one.out, HasSubstr("next position 43, 8 rows cached (window 8)"));
  EXPECT_THAT(one.out, HasSubstr("\n  covers rotor.events: partition unknown\n"));
}

// `rotor serve` in the background, its stdout and stderr in files.
class Daemon {
 public:
  Daemon(const TempDir& dir, const std::vector<std::string>& args)
      : log_(dir.path() / "serve"), pid_(fork()) {
    if (pid_ == 0) {
      const std::string out = log_.string() + ".out";
      const std::string err = log_.string() + ".err";
      if (freopen(out.c_str(), "w", stdout) == nullptr ||
          freopen(err.c_str(), "w", stderr) == nullptr) {
        _exit(126);
      }
      std::vector<char*> argv = {const_cast<char*>(ROTOR_BIN)};
      for (const std::string& a : args) {
        argv.push_back(const_cast<char*>(a.c_str()));
      }
      argv.push_back(nullptr);
      unsetenv("ROTOR_STATE_DIR");
      unsetenv("ROTOR_KAFKA_BOOTSTRAP_SERVERS");
      execv(ROTOR_BIN, argv.data());
      _exit(127);
    }
  }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  ~Daemon() {
    if (pid_ > 0 && exit_code_ < 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  std::string out() const { return ReadFile(log_.string() + ".out"); }
  std::string err() const { return ReadFile(log_.string() + ".err"); }

  // The port of "API listening on 127.0.0.1:<port>" once logged; 0 when the daemon exits first
  // or nothing comes within 60 s.
  int WaitForPort() {
    static const std::regex kListening(R"(API listening on 127\.0\.0\.1:([0-9]+))");
    for (int i = 0; i < 600; ++i) {
      std::smatch m;
      const std::string text = out();
      if (std::regex_search(text, m, kListening)) {
        return std::stoi(m[1].str());
      }
      if (Exited()) {
        return 0;
      }
      usleep(100 * 1000);
    }
    return 0;
  }

  bool Exited() {
    if (exit_code_ >= 0) {
      return true;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return true;
    }
    return false;
  }

  // SIGTERM, then the exit code (-1 when it did not exit within 60 s).
  int Stop() {
    kill(pid_, SIGTERM);
    for (int i = 0; i < 600 && !Exited(); ++i) {
      usleep(100 * 1000);
    }
    return exit_code_;
  }

  // The exit code once it exits by itself (-1 after 60 s).
  int Wait() {
    for (int i = 0; i < 600 && !Exited(); ++i) {
      usleep(100 * 1000);
    }
    return exit_code_;
  }

 private:
  std::filesystem::path log_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

nlohmann::json Json(const rotor::api::HttpResponse& r) {
  return nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
}

// The whole path of issue 11 on the embedded cluster: serve with the API on a free port,
// /healthz at once, /readyz 200 once consuming, a fed user's metadata and scores over HTTP,
// `rotor inspect --url` against it, a clean stop on SIGTERM; then inspect of the stopped
// state says the same.
TEST(RotorTest, ServeAnswersTheHttpApiAndInspectReadsThroughIt) {
  const TempDir dir;
  const std::string config =
      WriteConfig(dir, std::string(ROTOR_GOLDEN_DIR) + "/siren.bundle.safetensors",
                  "log: {stats_interval_ms: 0}\n");
  Daemon serve(dir, {"serve", "--config", config, "--feed",
                     std::string(ROTOR_GOLDEN_DIR) + "/siren.long.events.jsonl"});
  const int port = serve.WaitForPort();
  ASSERT_GT(port, 0) << serve.out() << serve.err();
  const rotor::api::HttpUrl url{
      .host = "127.0.0.1", .port = static_cast<uint16_t>(port), .prefix = ""};

  auto health = rotor::api::HttpRequest(url, "GET", "/healthz");
  ASSERT_TRUE(health.ok()) << health.status().ToString();
  EXPECT_EQ(health->status, 200);

  // Ready, and the fed user's 43 events committed (the feed is done within moments).
  nlohmann::json user;
  for (int i = 0; i < 600; ++i) {
    auto ready = rotor::api::HttpRequest(url, "GET", "/readyz");
    ASSERT_TRUE(ready.ok()) << ready.status().ToString();
    if (ready->status == 200) {
      auto got = rotor::api::HttpRequest(url, "GET", "/v1/users/u-long");
      ASSERT_TRUE(got.ok());
      if (got->status == 200 && Json(*got).value("next_pos", 0) == 43) {
        user = Json(*got);
        break;
      }
    } else {
      EXPECT_EQ(ready->status, 503) << ready->body;
      EXPECT_EQ(Json(*ready)["error"], "not_ready") << ready->body;
    }
    usleep(100 * 1000);
  }
  ASSERT_FALSE(user.is_null()) << serve.out() << serve.err();
  EXPECT_EQ(user["user_id"], "u-long");
  EXPECT_EQ(user["rows"], 8);
  EXPECT_EQ(user["input"]["topic"], "rotor.events");
  EXPECT_EQ(user["input"]["next_offset"], 43);  // Its partition holds its 43 events alone.
  const int partition = user["input"]["partition"].get<int>();

  // Two golden candidates, scored from the cached window.
  std::ifstream candidates(std::string(ROTOR_GOLDEN_DIR) + "/siren.long.candidates.jsonl");
  std::string c0;
  std::string c1;
  ASSERT_TRUE(std::getline(candidates, c0) && std::getline(candidates, c1));
  auto scored = rotor::api::HttpRequest(
      url, "POST", "/v1/users/u-long/score",
      fmt::format(R"({{"ts_ms": 1768034920517, "candidates": [{}, {}]}})", c0, c1));
  ASSERT_TRUE(scored.ok());
  ASSERT_EQ(scored->status, 200) << scored->body;
  const nlohmann::json scores = Json(*scored);
  EXPECT_EQ(scores["known"], true);
  EXPECT_EQ(scores["next_pos"], 43);
  ASSERT_EQ(scores["scores"].size(), 2U);
  for (const auto& per_label : scores["scores"]) {
    ASSERT_FALSE(per_label.empty());
    for (const auto& [label, p] : per_label.items()) {
      EXPECT_GT(p.get<double>(), 0.0) << label;
      EXPECT_LT(p.get<double>(), 1.0) << label;
    }
  }
  // A request is counted once its response's last byte is written, which may be just after
  // the client has read it: ask again until the count shows (bounded).
  std::string metrics_body;
  for (int attempt = 0; attempt < 50; ++attempt) {
    auto metrics = rotor::api::HttpRequest(url, "GET", "/metrics");
    ASSERT_TRUE(metrics.ok());
    metrics_body = metrics->body;
    if (metrics_body.find("rotor_api_requests_total{route=\"user_score\"") != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_THAT(metrics_body, HasSubstr("rotor_api_requests_total{route=\"user_score\""));

  // inspect --url: the same read over HTTP, no config needed.
  const std::string api_url = fmt::format("http://127.0.0.1:{}", port);
  const Outcome live = Rotor({"inspect", "--url", api_url, "--user", "u-long"});
  EXPECT_EQ(live.exit_code, 0) << live.err;
  EXPECT_THAT(live.out, StartsWith("user 'u-long': model "));
  EXPECT_THAT(live.out, HasSubstr("next position 43, 8 rows cached (window 8)"));
  EXPECT_THAT(live.out,
              HasSubstr(fmt::format("\n  covers rotor.events/{} before offset 43\n", partition)));
  EXPECT_THAT(live.out, HasSubstr("\n  block 0 (position 42): |K| = "));
  const Outcome unknown = Rotor({"inspect", "--url", api_url, "--user", "nobody"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.out, "user 'nobody': no state\n");

  EXPECT_EQ(serve.Stop(), 0) << serve.out() << serve.err();
  EXPECT_THAT(serve.out(), HasSubstr("rotor serve: 43 events in "));
  // The API is gone with the daemon.
  const Outcome gone = Rotor({"inspect", "--url", api_url, "--user", "u-long"});
  EXPECT_EQ(gone.exit_code, 1) << gone.err;
  EXPECT_THAT(gone.err, HasSubstr(fmt::format("127.0.0.1:{}", port)));

  // Stopped-daemon mode: the same summary (plus what only state.dir knows).
  const Outcome stopped = Rotor({"inspect", "--config", config, "--user", "u-long"});
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
  const auto first_line_end = live.out.find('\n');
  EXPECT_THAT(stopped.out, StartsWith(live.out.substr(0, first_line_end) +
                                      ", 43 recent event ids remembered\n"));
  EXPECT_EQ(stopped.out.substr(stopped.out.find('\n')), live.out.substr(first_line_end));
}

// An API address already taken stops start-up, naming api.listen: a runtime failure (exit 1),
// since it may succeed once the address is free.
TEST(RotorTest, ServeStopsWhenTheApiAddressIsInUse) {
  const TempDir dir;
  const int holder = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(holder, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  ASSERT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(holder, 1), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(getsockname(holder, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const int port = ntohs(address.sin_port);
  const std::string config =
      WriteConfig(dir, std::string(ROTOR_GOLDEN_DIR) + "/siren.bundle.safetensors",
                  fmt::format("api: {{listen: \"127.0.0.1:{}\"}}\n", port));
  const Outcome o = Rotor({"serve", "--config", config});
  close(holder);
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, StartsWith(fmt::format("rotor serve: api.listen '127.0.0.1:{}': ", port)));
}

}  // namespace
