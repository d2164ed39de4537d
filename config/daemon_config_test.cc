#include "config/daemon_config.h"

#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rotor::config {
namespace {

using ::testing::AnyOf;
using ::testing::StartsWith;

// Every field of the file, as "section.key"; the tests below check that the parser, the shipped
// configs and docs/configuration.md all know exactly these.
constexpr std::array<std::string_view, 38> kAllFields = {
    "model.bundle",
    "kafka.embedded",
    "kafka.embedded_partitions",
    "kafka.bootstrap_servers",
    "kafka.group_id",
    "kafka.client_id",
    "kafka.input_topic",
    "kafka.output_topic",
    "kafka.dead_letter_topic",
    "kafka.changelog_topic",
    "kafka.standby_replicas",
    "kafka.standby_refresh_ms",
    "kafka.session_timeout_ms",
    "kafka.consumer_properties",
    "kafka.producer_properties",
    "delivery.mode",
    "delivery.transactional_id",
    "delivery.transaction_timeout_ms",
    "delivery.commit_interval_ms",
    "pipeline.max_batch_events",
    "pipeline.max_batch_wait_ms",
    "pipeline.max_inflight_batches",
    "pipeline.max_message_bytes",
    "pipeline.dedupe_ids_per_user",
    "pipeline.max_future_ms",
    "output.dtype",
    "output.deltas",
    "output.snapshot_interval_ms",
    "state.dir",
    "state.block_cache_bytes",
    "state.write_buffer_bytes",
    "state.sync_writes",
    "state.window_cache_bytes",
    "state.kv_dtype",
    "state.user_ttl_ms",
    "state.ttl_sweep_users_per_batch",
    "log.level",
    "log.stats_interval_ms",
};

// The fields a real-broker config must set; every test document starts from these.
const std::map<std::string, std::string>& RequiredFields() {
  static const auto* const kRequired = new std::map<std::string, std::string>{
      {"model.bundle", "m.safetensors"},
      {"kafka.bootstrap_servers", "broker:9092"},
  };
  return *kRequired;
}

// A YAML document from "section.key" -> YAML value text, grouped by section. `overrides` replace
// (or, with an empty value, add a null for) the required fields.
std::string Doc(const std::map<std::string, std::string>& overrides) {
  std::map<std::string, std::string> fields = RequiredFields();
  for (const auto& [path, value] : overrides) {
    fields[path] = value;
  }
  std::map<std::string, std::vector<std::string>> sections;
  for (const auto& [path, value] : fields) {
    const std::size_t dot = path.find('.');
    sections[path.substr(0, dot)].push_back(
        fmt::format("  {}:{}{}", path.substr(dot + 1), value.empty() ? "" : " ", value));
  }
  std::string out;
  for (const auto& [section, lines] : sections) {
    out += section + ":\n";
    for (const std::string& line : lines) {
      out += line + "\n";
    }
  }
  return out;
}

// "OK", or the message of the InvalidArgument that parsing `yaml` returns.
std::string ErrorOf(std::string_view yaml, const EnvLookup& env = {}) {
  auto config = ParseDaemonConfig(yaml, env);
  if (config.ok()) {
    return "OK";
  }
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument) << config.status().ToString();
  return std::string(config.status().message());
}

std::string ValidationErrorOf(const DaemonConfig& config) {
  const Status status = ValidateDaemonConfig(config);
  if (status.ok()) {
    return "OK";
  }
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
  return std::string(status.message());
}

// A config that passes validation: the defaults plus the required fields.
DaemonConfig MinimalConfig() {
  DaemonConfig config;
  config.model.bundle = "m.safetensors";
  config.kafka.bootstrap_servers = "broker:9092";
  return config;
}

void ExpectSameConfig(const DaemonConfig& got, const DaemonConfig& want) {
  EXPECT_EQ(got.model.bundle, want.model.bundle);
  EXPECT_EQ(got.kafka.embedded, want.kafka.embedded);
  EXPECT_EQ(got.kafka.embedded_partitions, want.kafka.embedded_partitions);
  EXPECT_EQ(got.kafka.bootstrap_servers, want.kafka.bootstrap_servers);
  EXPECT_EQ(got.kafka.group_id, want.kafka.group_id);
  EXPECT_EQ(got.kafka.client_id, want.kafka.client_id);
  EXPECT_EQ(got.kafka.input_topic, want.kafka.input_topic);
  EXPECT_EQ(got.kafka.output_topic, want.kafka.output_topic);
  EXPECT_EQ(got.kafka.dead_letter_topic, want.kafka.dead_letter_topic);
  EXPECT_EQ(got.kafka.changelog_topic, want.kafka.changelog_topic);
  EXPECT_EQ(got.kafka.session_timeout_ms, want.kafka.session_timeout_ms);
  EXPECT_EQ(got.kafka.consumer_properties, want.kafka.consumer_properties);
  EXPECT_EQ(got.kafka.producer_properties, want.kafka.producer_properties);
  EXPECT_EQ(DeliveryModeName(got.delivery.mode), DeliveryModeName(want.delivery.mode));
  EXPECT_EQ(got.delivery.transactional_id, want.delivery.transactional_id);
  EXPECT_EQ(got.delivery.transaction_timeout_ms, want.delivery.transaction_timeout_ms);
  EXPECT_EQ(got.delivery.commit_interval_ms, want.delivery.commit_interval_ms);
  EXPECT_EQ(got.pipeline.max_batch_events, want.pipeline.max_batch_events);
  EXPECT_EQ(got.pipeline.max_batch_wait_ms, want.pipeline.max_batch_wait_ms);
  EXPECT_EQ(got.pipeline.max_inflight_batches, want.pipeline.max_inflight_batches);
  EXPECT_EQ(got.pipeline.max_message_bytes, want.pipeline.max_message_bytes);
  EXPECT_EQ(got.pipeline.dedupe_ids_per_user, want.pipeline.dedupe_ids_per_user);
  EXPECT_EQ(got.pipeline.max_future_ms, want.pipeline.max_future_ms);
  EXPECT_EQ(OutputDtypeName(got.output.dtype), OutputDtypeName(want.output.dtype));
  EXPECT_EQ(got.output.deltas, want.output.deltas);
  EXPECT_EQ(got.output.snapshot_interval_ms, want.output.snapshot_interval_ms);
  EXPECT_EQ(got.state.dir, want.state.dir);
  EXPECT_EQ(got.state.block_cache_bytes, want.state.block_cache_bytes);
  EXPECT_EQ(got.state.write_buffer_bytes, want.state.write_buffer_bytes);
  EXPECT_EQ(got.state.sync_writes, want.state.sync_writes);
  EXPECT_EQ(got.state.window_cache_bytes, want.state.window_cache_bytes);
  EXPECT_EQ(KvDtypeName(got.state.kv_dtype), KvDtypeName(want.state.kv_dtype));
  EXPECT_EQ(got.state.user_ttl_ms, want.state.user_ttl_ms);
  EXPECT_EQ(got.state.ttl_sweep_users_per_batch, want.state.ttl_sweep_users_per_batch);
  EXPECT_EQ(LogLevelName(got.log.level), LogLevelName(want.log.level));
  EXPECT_EQ(got.log.stats_interval_ms, want.log.stats_interval_ms);
}

// The repository root, found from this file's path (config/daemon_config_test.cc).
std::filesystem::path RepoRoot() {
  return std::filesystem::path(__FILE__).parent_path().parent_path();
}

std::string ReadRepoFile(const std::string& relative) {
  const std::filesystem::path path = RepoRoot() / relative;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// ---- defaults and round trips ---------------------------------------------------------------

TEST(DaemonConfigTest, EmptyDocumentTakesDefaultsThenNeedsTheModelBundle) {
  // Parsing succeeds with every default; validation then asks for the first required field.
  for (const std::string_view yaml : {"", "# only a comment\n", "---\n", "~\n"}) {
    EXPECT_EQ(ErrorOf(yaml), R"(config model.bundle: expected a non-empty string, got "")") << yaml;
  }
}

TEST(DaemonConfigTest, MissingFieldsTakeTheHeaderDefaults) {
  auto config = ParseDaemonConfig(Doc({}), {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ExpectSameConfig(*config, MinimalConfig());
  // The defaults themselves, spelled out once so a changed default is a conscious change.
  const DaemonConfig& c = *config;
  EXPECT_FALSE(c.kafka.embedded);
  EXPECT_EQ(c.kafka.embedded_partitions, 4);
  EXPECT_EQ(c.kafka.group_id, "rotor");
  EXPECT_EQ(c.kafka.client_id, "rotor");
  EXPECT_EQ(c.kafka.input_topic, "rotor.events");
  EXPECT_EQ(c.kafka.output_topic, "rotor.tensors");
  EXPECT_EQ(c.kafka.dead_letter_topic, "rotor.dead-letter");
  EXPECT_EQ(c.kafka.changelog_topic, "rotor.changelog");  // <group_id>.changelog.
  EXPECT_EQ(c.kafka.session_timeout_ms, 10000);
  EXPECT_TRUE(c.kafka.consumer_properties.empty());
  EXPECT_TRUE(c.kafka.producer_properties.empty());
  EXPECT_EQ(c.delivery.mode, DeliveryMode::kAtLeastOnce);
  EXPECT_EQ(c.delivery.transactional_id, "");
  EXPECT_EQ(c.delivery.transaction_timeout_ms, 60000);
  EXPECT_EQ(c.delivery.commit_interval_ms, 100);
  EXPECT_EQ(c.pipeline.max_batch_events, 2048);
  EXPECT_EQ(c.pipeline.max_batch_wait_ms, 5);
  EXPECT_EQ(c.pipeline.max_inflight_batches, 8);
  EXPECT_EQ(c.pipeline.max_message_bytes, 65536);
  EXPECT_EQ(c.pipeline.dedupe_ids_per_user, 64);
  EXPECT_EQ(c.pipeline.max_future_ms, 86400000);
  EXPECT_EQ(c.output.dtype, OutputDtype::kF32);
  EXPECT_TRUE(c.output.deltas);
  EXPECT_EQ(c.output.snapshot_interval_ms, 60000);
  EXPECT_EQ(c.state.dir, "data/state");
  EXPECT_EQ(c.state.block_cache_bytes, 268435456);
  EXPECT_EQ(c.state.write_buffer_bytes, 67108864);
  EXPECT_TRUE(c.state.sync_writes);
  EXPECT_EQ(c.state.window_cache_bytes, 536870912);
  EXPECT_EQ(c.state.user_ttl_ms, 0);
  EXPECT_EQ(c.state.ttl_sweep_users_per_batch, 256);
  EXPECT_EQ(c.log.level, LogLevel::kInfo);
  EXPECT_EQ(c.log.stats_interval_ms, 10000);
}

TEST(DaemonConfigTest, EmptySectionsAndPropertyMappingsMeanDefaults) {
  for (const std::string_view empty : {"", "{}"}) {
    std::map<std::string, std::string> fields = {
        {"kafka.consumer_properties", std::string(empty)},
        {"kafka.producer_properties", std::string(empty)},
    };
    std::string yaml = Doc(fields);
    for (const std::string_view section : {"delivery", "pipeline", "output", "state", "log"}) {
      yaml += fmt::format("{}:{}{}\n", section, empty.empty() ? "" : " ", empty);
    }
    auto config = ParseDaemonConfig(yaml, {});
    ASSERT_TRUE(config.ok()) << config.status().ToString() << "\n" << yaml;
    ExpectSameConfig(*config, MinimalConfig());
  }
}

TEST(DaemonConfigTest, FullDocumentSetsEveryField) {
  constexpr std::string_view kYaml = R"(# Every field, none at its default.
model:
  bundle: models/m.safetensors
kafka:
  embedded: false
  embedded_partitions: 16
  bootstrap_servers: "k1:9092,k2:9092"
  group_id: g
  client_id: c
  input_topic: in
  output_topic: out
  dead_letter_topic: dlq
  changelog_topic: cl
  session_timeout_ms: 45000
  consumer_properties:
    security.protocol: SSL
    fetch.wait.max.ms: 100
    check.crcs: false
    "quoted.key": 'x: y'
  producer_properties:
    linger.ms: 2.5
    compression.type: lz4
delivery:
  mode: exactly_once
  transactional_id: rotor-0
  transaction_timeout_ms: 30000
  commit_interval_ms: 0
pipeline:
  max_batch_events: 100
  max_batch_wait_ms: 0
  max_inflight_batches: 1
  max_message_bytes: 1MiB
  dedupe_ids_per_user: 0
  max_future_ms: 0
output:
  dtype: bf16
  deltas: false
  snapshot_interval_ms: 0
state:
  dir: /var/lib/rotor
  block_cache_bytes: 1GiB
  write_buffer_bytes: "128MiB"
  sync_writes: false
  window_cache_bytes: 0
  kv_dtype: f16
  user_ttl_ms: 2592000000
  ttl_sweep_users_per_batch: 0
log:
  level: debug
  stats_interval_ms: 0
)";
  DaemonConfig want;
  want.model.bundle = "models/m.safetensors";
  want.kafka.embedded = false;
  want.kafka.embedded_partitions = 16;
  want.kafka.bootstrap_servers = "k1:9092,k2:9092";
  want.kafka.group_id = "g";
  want.kafka.client_id = "c";
  want.kafka.input_topic = "in";
  want.kafka.output_topic = "out";
  want.kafka.dead_letter_topic = "dlq";
  want.kafka.changelog_topic = "cl";
  want.kafka.session_timeout_ms = 45000;
  want.kafka.consumer_properties = {{"security.protocol", "SSL"},
                                    {"fetch.wait.max.ms", "100"},
                                    {"check.crcs", "false"},
                                    {"quoted.key", "x: y"}};
  want.kafka.producer_properties = {{"linger.ms", "2.5"}, {"compression.type", "lz4"}};
  want.delivery.mode = DeliveryMode::kExactlyOnce;
  want.delivery.transactional_id = "rotor-0";
  want.delivery.transaction_timeout_ms = 30000;
  want.delivery.commit_interval_ms = 0;
  want.pipeline.max_batch_events = 100;
  want.pipeline.max_batch_wait_ms = 0;
  want.pipeline.max_inflight_batches = 1;
  want.pipeline.max_message_bytes = 1 << 20;
  want.pipeline.dedupe_ids_per_user = 0;
  want.pipeline.max_future_ms = 0;
  want.output.dtype = OutputDtype::kBF16;
  want.output.deltas = false;
  want.output.snapshot_interval_ms = 0;
  want.state.dir = "/var/lib/rotor";
  want.state.block_cache_bytes = int64_t{1} << 30;
  want.state.write_buffer_bytes = int64_t{128} << 20;
  want.state.sync_writes = false;
  want.state.window_cache_bytes = 0;
  want.state.kv_dtype = KvDtype::kF16;
  want.state.user_ttl_ms = 2592000000;
  want.state.ttl_sweep_users_per_batch = 0;
  want.log.level = LogLevel::kDebug;
  want.log.stats_interval_ms = 0;

  auto config = ParseDaemonConfig(kYaml, {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ExpectSameConfig(*config, want);
}

TEST(DaemonConfigTest, EnumNamesAreTheYamlSpellingsAndParseBack) {
  const std::array<DeliveryMode, 2> modes = {DeliveryMode::kAtLeastOnce,
                                             DeliveryMode::kExactlyOnce};
  EXPECT_EQ(DeliveryModeName(modes[0]), "at_least_once");
  EXPECT_EQ(DeliveryModeName(modes[1]), "exactly_once");
  for (const DeliveryMode mode : modes) {
    auto config =
        ParseDaemonConfig(Doc({{"delivery.mode", std::string(DeliveryModeName(mode))}}), {});
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    EXPECT_EQ(config->delivery.mode, mode);
  }

  const std::array<OutputDtype, 3> dtypes = {OutputDtype::kF32, OutputDtype::kBF16,
                                             OutputDtype::kF16};
  EXPECT_EQ(OutputDtypeName(dtypes[0]), "f32");
  EXPECT_EQ(OutputDtypeName(dtypes[1]), "bf16");
  EXPECT_EQ(OutputDtypeName(dtypes[2]), "f16");
  for (const OutputDtype dtype : dtypes) {
    auto config =
        ParseDaemonConfig(Doc({{"output.dtype", std::string(OutputDtypeName(dtype))}}), {});
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    EXPECT_EQ(config->output.dtype, dtype);
  }

  const std::array<LogLevel, 4> levels = {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn,
                                          LogLevel::kError};
  EXPECT_EQ(LogLevelName(levels[0]), "debug");
  EXPECT_EQ(LogLevelName(levels[1]), "info");
  EXPECT_EQ(LogLevelName(levels[2]), "warn");
  EXPECT_EQ(LogLevelName(levels[3]), "error");
  for (const LogLevel level : levels) {
    auto config = ParseDaemonConfig(Doc({{"log.level", std::string(LogLevelName(level))}}), {});
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    EXPECT_EQ(config->log.level, level);
  }

  EXPECT_EQ(OutputDtypeName(static_cast<OutputDtype>(9)), "?");
}

// ---- one bad value per field ----------------------------------------------------------------

struct BadValue {
  std::string path;   // "section.key".
  std::string value;  // YAML text ("" = null).
  std::string error;  // The whole message.
};

TEST(DaemonConfigTest, EveryFieldRefusesBadTypesAndOutOfRangeValues) {
  const std::vector<BadValue> cases = {
      {"model.bundle", "", "config model.bundle: expected a string, got null"},
      {"model.bundle", "[a]", "config model.bundle: expected a string, got a sequence"},
      {"model.bundle", R"("")", R"(config model.bundle: expected a non-empty string, got "")"},

      {"kafka.embedded", "1", "config kafka.embedded: expected true or false, got 1"},
      {"kafka.embedded", R"("true")",
       R"(config kafka.embedded: expected true or false, got "true")"},
      {"kafka.embedded_partitions", "0",
       "config kafka.embedded_partitions: expected an integer in [1, 1024], got 0"},
      {"kafka.embedded_partitions", "1025",
       "config kafka.embedded_partitions: expected an integer in [1, 1024], got 1025"},
      {"kafka.embedded_partitions", "1.5",
       "config kafka.embedded_partitions: expected an integer in [1, 1024], got 1.5"},
      {"kafka.embedded_partitions", R"("4")",
       R"(config kafka.embedded_partitions: expected an integer in [1, 1024], got "4")"},
      {"kafka.bootstrap_servers", "{a: 1}",
       "config kafka.bootstrap_servers: expected a string, got a mapping"},
      {"kafka.bootstrap_servers", R"("")",
       "config kafka.bootstrap_servers: expected a non-empty string unless kafka.embedded is true "
       R"((or set ROTOR_KAFKA_BOOTSTRAP_SERVERS in the environment), got "")"},
      {"kafka.group_id", "[g]", "config kafka.group_id: expected a string, got a sequence"},
      {"kafka.group_id", R"('')", R"(config kafka.group_id: expected a non-empty string, got "")"},
      {"kafka.client_id", "", "config kafka.client_id: expected a string, got null"},
      {"kafka.client_id", R"("")",
       R"(config kafka.client_id: expected a non-empty string, got "")"},
      {"kafka.input_topic", "[t]", "config kafka.input_topic: expected a string, got a sequence"},
      {"kafka.input_topic", R"("a b")",
       "config kafka.input_topic: expected a Kafka topic name (1 to 249 characters of a-z A-Z "
       R"(0-9 . _ -, not "." or ".."), got "a b")"},
      {"kafka.output_topic", R"("..")",
       "config kafka.output_topic: expected a Kafka topic name (1 to 249 characters of a-z A-Z "
       R"(0-9 . _ -, not "." or ".."), got "..")"},
      {"kafka.output_topic", "rotor.events",
       "config kafka.output_topic: expected a topic different from kafka.input_topic, got "
       R"("rotor.events" for both)"},
      {"kafka.changelog_topic", R"("a b")",
       "config kafka.changelog_topic: expected a Kafka topic name (1 to 249 characters of a-z "
       R"(A-Z 0-9 . _ -, not "." or ".."), got "a b")"},
      {"kafka.standby_replicas", "17",
       "config kafka.standby_replicas: expected an integer in [0, 16], got 17"},
      {"kafka.standby_refresh_ms", "100",
       "config kafka.standby_refresh_ms: expected an integer in [500, 600000], got 100"},
      {"kafka.changelog_topic", "rotor.events",
       "config kafka.changelog_topic: expected a topic different from kafka.input_topic, got "
       R"("rotor.events" for both)"},
      {"kafka.dead_letter_topic", R"("")",
       "config kafka.dead_letter_topic: expected a Kafka topic name (1 to 249 characters of a-z "
       R"(A-Z 0-9 . _ -, not "." or ".."), got "")"},
      {"kafka.dead_letter_topic", "rotor.tensors",
       "config kafka.dead_letter_topic: expected a topic different from kafka.output_topic, got "
       R"("rotor.tensors" for both)"},
      {"kafka.session_timeout_ms", "5",
       "config kafka.session_timeout_ms: expected an integer in [1000, 3600000], got 5"},
      {"kafka.session_timeout_ms", "3600001",
       "config kafka.session_timeout_ms: expected an integer in [1000, 3600000], got 3600001"},
      {"kafka.session_timeout_ms", "true",
       "config kafka.session_timeout_ms: expected an integer in [1000, 3600000], got true"},
      {"kafka.consumer_properties", "5",
       "config kafka.consumer_properties: expected a mapping, got 5"},
      {"kafka.consumer_properties", "{a: [1]}",
       "config kafka.consumer_properties.a: expected a string, got a sequence"},
      {"kafka.producer_properties", "[a]",
       "config kafka.producer_properties: expected a mapping, got a sequence"},
      {"kafka.producer_properties", "{linger.ms: }",
       "config kafka.producer_properties.linger.ms: expected a string, got null"},

      {"delivery.mode", "exactly",
       R"(config delivery.mode: expected one of at_least_once, exactly_once, got "exactly")"},
      {"delivery.mode", "1",
       "config delivery.mode: expected one of at_least_once, exactly_once, got 1"},
      {"delivery.transactional_id", "{}",
       "config delivery.transactional_id: expected a string, got a mapping"},
      {"delivery.transaction_timeout_ms", "999",
       "config delivery.transaction_timeout_ms: expected an integer in [1000, 900000], got 999"},
      {"delivery.transaction_timeout_ms", "900001",
       "config delivery.transaction_timeout_ms: expected an integer in [1000, 900000], got 900001"},
      {"delivery.commit_interval_ms", "-1",
       "config delivery.commit_interval_ms: expected an integer in [0, 60000], got -1"},
      {"delivery.commit_interval_ms", "60001",
       "config delivery.commit_interval_ms: expected an integer in [0, 60000], got 60001"},

      {"pipeline.max_batch_events", "0",
       "config pipeline.max_batch_events: expected an integer in [1, 1000000], got 0"},
      {"pipeline.max_batch_events", "1000001",
       "config pipeline.max_batch_events: expected an integer in [1, 1000000], got 1000001"},
      {"pipeline.max_batch_events", "12abc",
       "config pipeline.max_batch_events: expected an integer in [1, 1000000], got 12abc"},
      {"pipeline.max_batch_wait_ms", "-1",
       "config pipeline.max_batch_wait_ms: expected an integer in [0, 60000], got -1"},
      {"pipeline.max_batch_wait_ms", "60001",
       "config pipeline.max_batch_wait_ms: expected an integer in [0, 60000], got 60001"},
      {"pipeline.max_inflight_batches", "0",
       "config pipeline.max_inflight_batches: expected an integer in [1, 1024], got 0"},
      {"pipeline.max_inflight_batches", "1025",
       "config pipeline.max_inflight_batches: expected an integer in [1, 1024], got 1025"},
      {"pipeline.max_message_bytes", "0",
       "config pipeline.max_message_bytes: expected an integer in [1, 1073741824] or a size like "
       R"("256MiB", got 0)"},
      {"pipeline.max_message_bytes", "2GiB",
       "config pipeline.max_message_bytes: expected an integer in [1, 1073741824] or a size like "
       R"("256MiB", got 2GiB)"},
      {"pipeline.max_message_bytes", "64KB",
       "config pipeline.max_message_bytes: expected an integer in [1, 1073741824] or a size like "
       R"("256MiB", got 64KB)"},
      {"pipeline.dedupe_ids_per_user", "-1",
       "config pipeline.dedupe_ids_per_user: expected an integer in [0, 100000], got -1"},
      {"pipeline.dedupe_ids_per_user", "100001",
       "config pipeline.dedupe_ids_per_user: expected an integer in [0, 100000], got 100001"},
      {"pipeline.workers", "0", "config pipeline.workers: expected an integer in [1, 64], got 0"},
      {"pipeline.workers", "65", "config pipeline.workers: expected an integer in [1, 64], got 65"},
      {"pipeline.max_future_ms", "-1",
       "config pipeline.max_future_ms: expected an integer >= 0, got -1"},
      {"pipeline.max_future_ms", "1e3",
       "config pipeline.max_future_ms: expected an integer >= 0, got 1e3"},
      {"pipeline.max_future_ms", "99999999999999999999",
       "config pipeline.max_future_ms: expected an integer >= 0, got 99999999999999999999"},

      {"output.dtype", "fp8", R"(config output.dtype: expected one of f32, bf16, f16, got "fp8")"},
      {"output.dtype", "[f32]",
       "config output.dtype: expected one of f32, bf16, f16, got a sequence"},
      {"state.kv_dtype", "f64",
       R"(config state.kv_dtype: expected one of f32, bf16, f16, got "f64")"},
      {"output.deltas", "", "config output.deltas: expected true or false, got null"},
      {"output.deltas", "on", "config output.deltas: expected true or false, got on"},
      {"output.snapshot_interval_ms", "-5",
       "config output.snapshot_interval_ms: expected an integer >= 0, got -5"},
      {"output.snapshot_interval_ms", "soon",
       R"(config output.snapshot_interval_ms: expected an integer >= 0, got "soon")"},

      {"state.dir", "[a]", "config state.dir: expected a string, got a sequence"},
      {"state.dir", R"("")", R"(config state.dir: expected a non-empty string, got "")"},
      {"state.block_cache_bytes", "0",
       R"(config state.block_cache_bytes: expected an integer >= 1 or a size like "256MiB", got 0)"},
      {"state.block_cache_bytes", "1.5GiB",
       "config state.block_cache_bytes: expected an integer >= 1 or a size like \"256MiB\", got "
       "1.5GiB"},
      {"state.write_buffer_bytes", "0MiB",
       "config state.write_buffer_bytes: expected an integer >= 1 or a size like \"256MiB\", got "
       "0MiB"},
      {"state.write_buffer_bytes", "512MiB",
       "config state.write_buffer_bytes: expected at most state.block_cache_bytes (268435456), got "
       "536870912"},
      {"state.sync_writes", "no", "config state.sync_writes: expected true or false, got no"},
      {"state.wal", "off", "config state.wal: expected true or false, got off"},
      {"state.sync_writes", "False", "config state.sync_writes: expected true or false, got False"},
      {"state.window_cache_bytes", "-1",
       "config state.window_cache_bytes: expected an integer >= 0 or a size like \"256MiB\", got "
       "-1"},
      {"state.window_cache_bytes", "{}",
       "config state.window_cache_bytes: expected an integer >= 0 or a size like \"256MiB\", got a "
       "mapping"},
      {"state.user_ttl_ms", "59999",
       "config state.user_ttl_ms: expected 0 (never expire) or an integer in [60000, "
       "3153600000000], got 59999"},
      {"state.user_ttl_ms", "-1",
       "config state.user_ttl_ms: expected 0 (never expire) or an integer in [60000, "
       "3153600000000], got -1"},
      {"state.user_ttl_ms", "3153600000001",
       "config state.user_ttl_ms: expected 0 (never expire) or an integer in [60000, "
       "3153600000000], got 3153600000001"},
      {"state.user_ttl_ms", "30d",
       "config state.user_ttl_ms: expected 0 (never expire) or an integer in [60000, "
       "3153600000000], got 30d"},
      {"state.ttl_sweep_users_per_batch", "-1",
       "config state.ttl_sweep_users_per_batch: expected an integer in [0, 1000000], got -1"},
      {"state.ttl_sweep_users_per_batch", "1000001",
       "config state.ttl_sweep_users_per_batch: expected an integer in [0, 1000000], got 1000001"},

      {"log.level", "verbose",
       R"(config log.level: expected one of debug, info, warn, error, got "verbose")"},
      {"log.level", "INFO",
       R"(config log.level: expected one of debug, info, warn, error, got "INFO")"},
      {"log.stats_interval_ms", "-1",
       "config log.stats_interval_ms: expected an integer >= 0, got -1"},
      {"log.stats_interval_ms", "[]",
       "config log.stats_interval_ms: expected an integer >= 0, got a sequence"},
  };
  std::map<std::string, int> cases_per_field;
  for (const BadValue& c : cases) {
    const std::string yaml = Doc({{c.path, c.value}});
    EXPECT_EQ(ErrorOf(yaml), c.error) << yaml;
    // The message names the field (or, for properties, an entry under it).
    EXPECT_THAT(c.error,
                AnyOf(StartsWith("config " + c.path + ": "), StartsWith("config " + c.path + ".")))
        << "a typo in the case table";
    ++cases_per_field[c.path];
  }
  for (const std::string_view field : kAllFields) {
    EXPECT_GE(cases_per_field[std::string(field)], 1) << field << " has no bad-value case";
  }
}

TEST(DaemonConfigTest, ValidateChecksRangesOfConfigsBuiltInCode) {
  // The parser refuses these before validation; ValidateDaemonConfig must catch them too, with
  // the same messages, for configs that never came from YAML.
  DaemonConfig c = MinimalConfig();
  EXPECT_EQ(ValidationErrorOf(c), "OK");
  c.kafka.session_timeout_ms = 5;
  EXPECT_EQ(ValidationErrorOf(c),
            "config kafka.session_timeout_ms: expected an integer in [1000, 3600000], got 5");
  c = MinimalConfig();
  c.kafka.embedded_partitions = 0;
  EXPECT_EQ(ValidationErrorOf(c),
            "config kafka.embedded_partitions: expected an integer in [1, 1024], got 0");
  c = MinimalConfig();
  c.delivery.transaction_timeout_ms = 900001;
  EXPECT_EQ(ValidationErrorOf(c),
            "config delivery.transaction_timeout_ms: expected an integer in [1000, 900000], got "
            "900001");
  c = MinimalConfig();
  c.delivery.commit_interval_ms = 60001;
  EXPECT_EQ(ValidationErrorOf(c),
            "config delivery.commit_interval_ms: expected an integer in [0, 60000], got 60001");
  c = MinimalConfig();
  c.pipeline.max_batch_events = 0;
  EXPECT_EQ(ValidationErrorOf(c),
            "config pipeline.max_batch_events: expected an integer in [1, 1000000], got 0");
  c = MinimalConfig();
  c.pipeline.max_batch_wait_ms = -1;
  EXPECT_EQ(ValidationErrorOf(c),
            "config pipeline.max_batch_wait_ms: expected an integer in [0, 60000], got -1");
  c = MinimalConfig();
  c.pipeline.max_inflight_batches = 0;
  EXPECT_EQ(ValidationErrorOf(c),
            "config pipeline.max_inflight_batches: expected an integer in [1, 1024], got 0");
  c = MinimalConfig();
  c.pipeline.max_message_bytes = (int64_t{1} << 30) + 1;
  EXPECT_EQ(ValidationErrorOf(c),
            "config pipeline.max_message_bytes: expected an integer in [1, 1073741824] or a size "
            "like \"256MiB\", got 1073741825");
  c = MinimalConfig();
  c.pipeline.dedupe_ids_per_user = 100001;
  EXPECT_EQ(ValidationErrorOf(c),
            "config pipeline.dedupe_ids_per_user: expected an integer in [0, 100000], got 100001");
  c = MinimalConfig();
  c.pipeline.max_future_ms = -1;
  EXPECT_EQ(ValidationErrorOf(c),
            "config pipeline.max_future_ms: expected an integer >= 0, got -1");
  c = MinimalConfig();
  c.output.snapshot_interval_ms = -1;
  EXPECT_EQ(ValidationErrorOf(c),
            "config output.snapshot_interval_ms: expected an integer >= 0, got -1");
  c = MinimalConfig();
  c.output.dtype = static_cast<OutputDtype>(7);
  EXPECT_EQ(ValidationErrorOf(c), "config output.dtype: expected one of f32, bf16, f16, got 7");
  c = MinimalConfig();
  c.state.kv_dtype = static_cast<KvDtype>(3);
  EXPECT_EQ(ValidationErrorOf(c), "config state.kv_dtype: expected one of f32, bf16, f16, got 3");
  c = MinimalConfig();
  c.delivery.mode = static_cast<DeliveryMode>(2);
  EXPECT_EQ(ValidationErrorOf(c),
            "config delivery.mode: expected one of at_least_once, exactly_once, got 2");
  c = MinimalConfig();
  c.log.level = static_cast<LogLevel>(4);
  EXPECT_EQ(ValidationErrorOf(c),
            "config log.level: expected one of debug, info, warn, error, got 4");
  c = MinimalConfig();
  c.state.block_cache_bytes = 0;
  EXPECT_EQ(
      ValidationErrorOf(c),
      R"(config state.block_cache_bytes: expected an integer >= 1 or a size like "256MiB", got 0)");
  c = MinimalConfig();
  c.state.write_buffer_bytes = c.state.block_cache_bytes;  // Equal is allowed.
  EXPECT_EQ(ValidationErrorOf(c), "OK");
  c.state.write_buffer_bytes = c.state.block_cache_bytes + 1;
  EXPECT_EQ(ValidationErrorOf(c),
            "config state.write_buffer_bytes: expected at most state.block_cache_bytes "
            "(268435456), got 268435457");
  c = MinimalConfig();
  c.state.window_cache_bytes = -1;
  EXPECT_EQ(
      ValidationErrorOf(c),
      R"(config state.window_cache_bytes: expected an integer >= 0 or a size like "256MiB", got -1)");
  c = MinimalConfig();
  c.state.user_ttl_ms = 1000;
  EXPECT_EQ(ValidationErrorOf(c),
            "config state.user_ttl_ms: expected 0 (never expire) or an integer in [60000, "
            "3153600000000], got 1000");
  c.state.user_ttl_ms = 0;
  EXPECT_EQ(ValidationErrorOf(c), "OK");
  c = MinimalConfig();
  c.state.ttl_sweep_users_per_batch = -1;
  EXPECT_EQ(ValidationErrorOf(c),
            "config state.ttl_sweep_users_per_batch: expected an integer in [0, 1000000], got -1");
  c = MinimalConfig();
  c.log.stats_interval_ms = -1;
  EXPECT_EQ(ValidationErrorOf(c), "config log.stats_interval_ms: expected an integer >= 0, got -1");
  c = MinimalConfig();
  c.kafka.consumer_properties[""] = "x";
  EXPECT_EQ(ValidationErrorOf(c),
            R"(config kafka.consumer_properties: expected non-empty property names, got "")");
}

TEST(DaemonConfigTest, RangeBoundsAreInclusive) {
  auto config = ParseDaemonConfig(Doc({
                                      {"kafka.embedded_partitions", "1024"},
                                      {"kafka.session_timeout_ms", "1000"},
                                      {"delivery.transaction_timeout_ms", "900000"},
                                      {"delivery.commit_interval_ms", "60000"},
                                      {"pipeline.max_batch_events", "1000000"},
                                      {"pipeline.max_batch_wait_ms", "60000"},
                                      {"pipeline.max_inflight_batches", "1024"},
                                      {"pipeline.max_message_bytes", "1GiB"},
                                      {"pipeline.dedupe_ids_per_user", "100000"},
                                      {"pipeline.max_future_ms", "9223372036854775807"},
                                      {"state.block_cache_bytes", "1"},
                                      {"state.write_buffer_bytes", "1"},
                                      {"state.user_ttl_ms", "60000"},
                                      {"state.ttl_sweep_users_per_batch", "1000000"},
                                  }),
                                  {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->kafka.embedded_partitions, 1024);
  EXPECT_EQ(config->kafka.session_timeout_ms, 1000);
  EXPECT_EQ(config->delivery.transaction_timeout_ms, 900000);
  EXPECT_EQ(config->delivery.commit_interval_ms, 60000);
  EXPECT_EQ(config->pipeline.max_batch_events, 1000000);
  EXPECT_EQ(config->pipeline.max_batch_wait_ms, 60000);
  EXPECT_EQ(config->pipeline.max_inflight_batches, 1024);
  EXPECT_EQ(config->pipeline.max_message_bytes, int64_t{1} << 30);
  EXPECT_EQ(config->pipeline.dedupe_ids_per_user, 100000);
  EXPECT_EQ(config->pipeline.max_future_ms, INT64_MAX);
  EXPECT_EQ(config->state.block_cache_bytes, 1);
  EXPECT_EQ(config->state.write_buffer_bytes, 1);
  EXPECT_EQ(config->state.user_ttl_ms, 60000);
  EXPECT_EQ(config->state.ttl_sweep_users_per_batch, 1000000);
  config = ParseDaemonConfig(Doc({{"state.user_ttl_ms", "3153600000000"}}), {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->state.user_ttl_ms, 3153600000000);
}

// ---- structure ------------------------------------------------------------------------------

TEST(DaemonConfigTest, UnknownFieldsAndSectionsAreErrors) {
  EXPECT_EQ(ErrorOf("pipeline:\n  max_batch_event: 5\n"),
            "config pipeline.max_batch_event: unknown field");
  EXPECT_EQ(ErrorOf(Doc({{"kafka.bootstrap.servers", "x"}})),
            "config kafka.bootstrap.servers: unknown field");
  EXPECT_EQ(ErrorOf("pipelines:\n  max_batch_events: 5\n"),
            "config pipelines: unknown section; expected model, kafka, delivery, pipeline, output, "
            "state, log, api");
  // Merge keys are not understood: they are unknown fields, not silently merged.
  EXPECT_EQ(ErrorOf("log:\n  <<: {level: info}\n"), "config log.<<: unknown field");
}

TEST(DaemonConfigTest, SectionsMustBeMappings) {
  EXPECT_EQ(ErrorOf("kafka: 5\n"), "config kafka: expected a mapping, got 5");
  EXPECT_EQ(ErrorOf("kafka: [a, b]\n"), "config kafka: expected a mapping, got a sequence");
  EXPECT_EQ(ErrorOf("kafka: broker\n"), R"(config kafka: expected a mapping, got "broker")");
  EXPECT_EQ(ErrorOf("hello\n"), R"(config: expected a mapping of sections, got "hello")");
  EXPECT_EQ(ErrorOf("- model\n"), "config: expected a mapping of sections, got a sequence");
  EXPECT_EQ(ErrorOf("[a]: 1\n"), "config: expected string keys, got a sequence");
  EXPECT_EQ(ErrorOf("log:\n  ? [a]\n  : 1\n"), "config log: expected string keys, got a sequence");
}

TEST(DaemonConfigTest, NullValuesAreErrorsNotDefaults) {
  for (const std::string_view null : {"", "~", "null", "Null", "NULL"}) {
    EXPECT_EQ(ErrorOf(Doc({{"pipeline.max_batch_events", std::string(null)}})),
              "config pipeline.max_batch_events: expected an integer in [1, 1000000], got null")
        << null;
    EXPECT_EQ(ErrorOf(Doc({{"kafka.group_id", std::string(null)}})),
              "config kafka.group_id: expected a string, got null")
        << null;
  }
  // Quoted, "null" is just a string.
  auto config = ParseDaemonConfig(Doc({{"kafka.group_id", R"("null")"}}), {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->kafka.group_id, "null");
}

TEST(DaemonConfigTest, DuplicateKeysAreErrors) {
  EXPECT_EQ(ErrorOf("log:\n  level: info\n  level: debug\n"), "config log.level: duplicate field");
  EXPECT_EQ(ErrorOf("log: {}\nlog: {}\n"), "config log: duplicate field");
  EXPECT_EQ(ErrorOf("kafka:\n  consumer_properties:\n    a: 1\n    a: 2\n"),
            "config kafka.consumer_properties.a: duplicate field");
}

TEST(DaemonConfigTest, MalformedYamlNamesLineAndColumn) {
  EXPECT_EQ(ErrorOf("kafka:\n  group_id: [a\n"),
            "config: not YAML: line 3, column 1: end of sequence flow not found");
  EXPECT_THAT(ErrorOf("log: *nowhere\n"),
              StartsWith("config: not YAML: line 1, column 6: the referenced anchor"));
  EXPECT_THAT(ErrorOf("log:\n  level: info\n level: debug\n"),
              StartsWith("config: not YAML: line 3, column "));
  EXPECT_EQ(ErrorOf("log: {}\n---\nlog: {}\n"), "config: expected one YAML document, got 2");
}

// ---- scalar syntax --------------------------------------------------------------------------

TEST(DaemonConfigTest, BooleansAreOnlyTrueAndFalse) {
  for (const std::string_view bad : {"yes", "no", "on", "off", "y", "n", "True", "FALSE", "0"}) {
    EXPECT_EQ(ErrorOf(Doc({{"output.deltas", std::string(bad)}})),
              fmt::format("config output.deltas: expected true or false, got {}", bad));
  }
  auto config = ParseDaemonConfig(
      Doc({{"output.deltas", "false"}, {"state.sync_writes", "!!bool true"}}), {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_FALSE(config->output.deltas);
  EXPECT_TRUE(config->state.sync_writes);
}

TEST(DaemonConfigTest, IntegersAreDecimalYamlIntegers) {
  auto config = ParseDaemonConfig(
      Doc({{"pipeline.max_batch_events", "+7"}, {"pipeline.max_batch_wait_ms", "!!int 9"}}), {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->pipeline.max_batch_events, 7);
  EXPECT_EQ(config->pipeline.max_batch_wait_ms, 9);
  for (const std::string_view bad : {"0x10", "1_000", "10.0", "+-3", "!!str 5", "'5'"}) {
    EXPECT_THAT(ErrorOf(Doc({{"pipeline.max_batch_events", std::string(bad)}})),
                StartsWith("config pipeline.max_batch_events: expected an integer in [1, 1000000], "
                           "got "))
        << bad;
  }
}

TEST(DaemonConfigTest, ByteFieldsTakeIntegersAndBinarySuffixes) {
  const std::vector<std::pair<std::string, int64_t>> good = {
      {"512B", 512},
      {"64KiB", int64_t{64} << 10},
      {"256MiB", int64_t{256} << 20},
      {"1GiB", int64_t{1} << 30},
      {"3TiB", int64_t{3} << 40},
      {R"("256MiB")", int64_t{256} << 20},
      {"'8KiB'", int64_t{8} << 10},
      {"1048576", 1048576},
      {"0", 0},
      {"0GiB", 0},
  };
  for (const auto& [text, want] : good) {
    auto config = ParseDaemonConfig(Doc({{"state.window_cache_bytes", text}}), {});
    ASSERT_TRUE(config.ok()) << text << ": " << config.status().ToString();
    EXPECT_EQ(config->state.window_cache_bytes, want) << text;
  }
  for (const std::string_view bad :
       {"256MB", "256 MiB", "256mib", "MiB", "-1MiB", "+1MiB", "1.5GiB", R"("1024")", "8388608TiB",
        "99999999999999999999B", R"(" 1GiB")"}) {
    EXPECT_THAT(
        ErrorOf(Doc({{"state.window_cache_bytes", std::string(bad)}})),
        StartsWith(
            R"(config state.window_cache_bytes: expected an integer >= 0 or a size like "256MiB", got )"))
        << bad;
  }
  // The largest size that fits int64.
  auto config = ParseDaemonConfig(Doc({{"state.window_cache_bytes", "8388607TiB"}}), {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->state.window_cache_bytes, int64_t{8388607} << 40);
}

TEST(DaemonConfigTest, StringsTakeAnyScalarAsText) {
  auto config = ParseDaemonConfig(Doc({{"kafka.group_id", "123"},
                                       {"kafka.client_id", "true"},
                                       {"model.bundle", "|\n    m.st"}}),
                                  {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->kafka.group_id, "123");
  EXPECT_EQ(config->kafka.client_id, "true");
  EXPECT_EQ(config->model.bundle, "m.st\n");
  EXPECT_EQ(ErrorOf(Doc({{"kafka.group_id", R"("a\0b")"}})),
            R"(config kafka.group_id: expected a string without NUL characters, got "a\x00b")");
}

TEST(DaemonConfigTest, LongAndOddValuesAreQuotedAndCutInMessages) {
  const std::string long_value(100, 'x');
  EXPECT_EQ(ErrorOf(Doc({{"output.dtype", long_value}})),
            fmt::format(R"(config output.dtype: expected one of f32, bf16, f16, got "{}...")",
                        std::string(60, 'x')));
  EXPECT_EQ(ErrorOf(Doc({{"output.dtype", R"("a\"b\\c\td")"}})),
            R"(config output.dtype: expected one of f32, bf16, f16, got "a\"b\\c\td")");
}

// ---- Kafka rules ----------------------------------------------------------------------------

TEST(DaemonConfigTest, TopicNamesFollowKafkasRules) {
  for (const std::string& good :
       {std::string("a"), std::string("A.b_c-9"), std::string("..."), std::string(249, 't')}) {
    EXPECT_EQ(ErrorOf(Doc({{"kafka.input_topic", fmt::format("\"{}\"", good)}})), "OK") << good;
  }
  for (const std::string& bad :
       {std::string("."), std::string("a/b"), std::string("tópico"), std::string(250, 't')}) {
    EXPECT_THAT(ErrorOf(Doc({{"kafka.input_topic", fmt::format("\"{}\"", bad)}})),
                StartsWith("config kafka.input_topic: expected a Kafka topic name"))
        << bad;
  }
  EXPECT_EQ(
      ErrorOf(Doc({{"kafka.input_topic", "x"}, {"kafka.dead_letter_topic", "x"}})),
      R"(config kafka.dead_letter_topic: expected a topic different from kafka.input_topic, got "x" for both)");
}

TEST(DaemonConfigTest, TheChangelogTopicFollowsTheGroupUnlessGivenAndEmptyTurnsItOff) {
  const auto parsed = [](std::string_view yaml) {
    auto c = ParseDaemonConfig(
        fmt::format("model: {{bundle: m}}\nkafka: {{embedded: true, {}}}\n", yaml), {});
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? c->kafka.changelog_topic : std::string("?");
  };
  EXPECT_EQ(parsed("group_id: blue"), "blue.changelog");
  EXPECT_EQ(parsed("group_id: green, changelog_topic: shared.log"), "shared.log");
  EXPECT_EQ(parsed(R"(changelog_topic: "")"), "");
  EXPECT_THAT(ErrorOf(Doc({{"kafka.changelog_topic", R"("a/b")"}})),
              StartsWith("config kafka.changelog_topic: expected a Kafka topic name"));
  EXPECT_EQ(
      ErrorOf(Doc({{"kafka.output_topic", "x"}, {"kafka.changelog_topic", "x"}})),
      R"(config kafka.changelog_topic: expected a topic different from kafka.output_topic, got "x" for both)");
  // Standby replicas tail the changelog: without one they are refused, naming the field.
  EXPECT_EQ(
      ErrorOf(Doc({{"kafka.changelog_topic", R"("")"}, {"kafka.standby_replicas", "1"}})),
      R"(config kafka.standby_replicas: standby replicas tail the state changelog, and kafka.changelog_topic is "" (none))");
  EXPECT_EQ(ErrorOf(Doc({{"kafka.changelog_topic", R"("")"}, {"kafka.standby_replicas", "0"}})),
            "OK");
}

TEST(DaemonConfigTest, BootstrapServersAreOptionalOnlyWhenEmbedded) {
  EXPECT_THAT(ErrorOf("model: {bundle: m}\n"),
              StartsWith("config kafka.bootstrap_servers: expected a non-empty string unless "
                         "kafka.embedded is true"));
  EXPECT_EQ(ErrorOf("model: {bundle: m}\nkafka: {embedded: true}\n"), "OK");
}

TEST(DaemonConfigTest, BootstrapServersAreHostPortLists) {
  const std::string expected =
      "config kafka.bootstrap_servers: expected host:port entries separated by commas (port in "
      "[1, 65535], an IPv6 address in brackets, an optional scheme:// prefix), got ";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"nohost:99999", R"("nohost:99999")"},
      {"broker", R"("broker")"},  // No port (librdkafka would guess 9092).
      {"broker:0", R"("broker:0")"},
      {"broker:", R"("broker:")"},
      {":9092", R"(":9092")"},
      {"broker:90x", R"("broker:90x")"},
      {"broker:+9092", R"("broker:+9092")"},
      {"broker:-1", R"("broker:-1")"},
      {"broker:1234567", R"("broker:1234567")"},
      {"bro ker:9092", R"("bro ker:9092")"},
      {"broker/x:9092", R"("broker/x:9092")"},
      {"::1:9092", R"("::1:9092")"},  // IPv6 needs brackets.
      {"[::1]", R"("[::1]")"},
      {"[::1]9092", R"("[::1]9092")"},
      {"[]:9092", R"("[]:9092")"},
      {"[::1:9092", R"("[::1:9092")"},
      {"PLAINTEXT://", R"("PLAINTEXT://")"},
      {"://broker:9092", R"("://broker:9092")"},
      {"1x://broker:9092", R"("1x://broker:9092")"},
      {"a:1,,b:2", R"("" in "a:1,,b:2")"},
      {"a:1,", R"("" in "a:1,")"},
      {"a:1,nohost:99999", R"("nohost:99999" in "a:1,nohost:99999")"},
  };
  for (const auto& [value, got] : bad) {
    EXPECT_EQ(ErrorOf(Doc({{"kafka.bootstrap_servers", fmt::format("\"{}\"", value)}})),
              expected + got)
        << value;
  }
  for (const std::string_view good : {
           "broker:9092",
           "k1:9092,k2:9092",
           "127.0.0.1:1",
           "localhost:65535",
           "my_broker-1.example.com:9093",
           "PLAINTEXT://broker:9092",
           "SASL_SSL://b1:9093,SASL_SSL://b2:9093",
           "[::1]:9092",
           "[fe80::1%eth0]:9092",
           " k1:9092 , k2:9092 ",
       }) {
    EXPECT_EQ(ErrorOf(Doc({{"kafka.bootstrap_servers", fmt::format("\"{}\"", good)}})), "OK")
        << good;
  }
  // The environment's value is checked too.
  EXPECT_EQ(ErrorOf(Doc({}), {{std::string(kEnvBootstrapServers), "broker"}}),
            expected + R"("broker")");
  // Embedded: unused, but a value given is still checked.
  EXPECT_EQ(ErrorOf(Doc({{"kafka.embedded", "true"}, {"kafka.bootstrap_servers", "x"}})),
            expected + R"("x")");
}

TEST(DaemonConfigTest, ExactlyOnceNeedsARealBroker) {
  EXPECT_EQ(ErrorOf(Doc({{"kafka.embedded", "true"}, {"delivery.mode", "exactly_once"}})),
            "config delivery.mode: exactly_once needs a real Kafka broker; the embedded mock "
            "cluster (kafka.embedded: true) has no transactions");
  EXPECT_EQ(ErrorOf(Doc({{"kafka.embedded", "false"}, {"delivery.mode", "exactly_once"}})), "OK");
  EXPECT_EQ(ErrorOf(Doc({{"kafka.embedded", "true"}, {"delivery.mode", "at_least_once"}})), "OK");
}

TEST(DaemonConfigTest, PropertiesRotorOwnsAreRefused) {
  // Each with the config field to set instead, or why rotor fixes it.
  const std::vector<std::pair<std::string, std::string>> consumer = {
      {"bootstrap.servers", "set kafka.bootstrap_servers"},
      {"metadata.broker.list", "set kafka.bootstrap_servers"},  // librdkafka's alias.
      {"client.id", "set kafka.client_id"},
      {"group.id", "set kafka.group_id"},
      {"session.timeout.ms", "set kafka.session_timeout_ms"},
      {"auto.offset.reset",
       "rotor resumes from the offsets stored with its state (state.dir), else from the earliest"},
      {"isolation.level", "rotor reads committed messages only (read_committed)"},
      {"enable.auto.commit", "input offsets are committed with the state (state.dir)"},
      {"auto.commit.enable", "input offsets are committed with the state (state.dir)"},
      {"enable.auto.offset.store", "input offsets are committed with the state (state.dir)"},
      {"partition.assignment.strategy", "rotor's rebalance handling needs cooperative-sticky"},
      {"enable.partition.eof", "rotor's consume loop expects no end-of-partition events"},
  };
  const std::vector<std::pair<std::string, std::string>> producer = {
      {"bootstrap.servers", "set kafka.bootstrap_servers"},
      {"metadata.broker.list", "set kafka.bootstrap_servers"},
      {"client.id", "set kafka.client_id"},
      {"enable.idempotence", "rotor's producer is always idempotent"},
      {"transactional.id", "set delivery.transactional_id"},
      {"transaction.timeout.ms", "set delivery.transaction_timeout_ms"},
      {"partitioner",
       "rotor places keys like Kafka's Java client (murmur2_random), so that one user's events "
       "share a partition whichever client produced them"},
  };
  for (const auto& [key, hint] : consumer) {
    EXPECT_EQ(ErrorOf(Doc({{"kafka.consumer_properties", fmt::format("{{{}: x}}", key)}})),
              fmt::format("config kafka.consumer_properties.{}: reserved; {}", key, hint));
  }
  for (const auto& [key, hint] : producer) {
    EXPECT_EQ(ErrorOf(Doc({{"kafka.producer_properties", fmt::format("{{{}: x}}", key)}})),
              fmt::format("config kafka.producer_properties.{}: reserved; {}", key, hint));
  }
  EXPECT_EQ(ErrorOf(Doc({{"kafka.producer_properties", "{transactional.id: my-id}"}})),
            "config kafka.producer_properties.transactional.id: reserved; set "
            "delivery.transactional_id");
  // Anything else passes through verbatim, including keys the other client ignores.
  EXPECT_EQ(ErrorOf(Doc({{"kafka.consumer_properties", "{security.protocol: SSL, client.rack: r1}"},
                         {"kafka.producer_properties", "{linger.ms: 5, group.id: g}"}})),
            "OK");
}

TEST(DaemonConfigTest, ProducerPropertiesTheGuaranteeBoundsTakeOnlyValuesThatKeepIt) {
  // The idempotent producer needs acks=all and keeps order with at most 5 requests in flight.
  for (const std::string_view key : {"acks", "request.required.acks"}) {
    for (const std::string_view ok : {"all", "-1"}) {
      EXPECT_EQ(ErrorOf(Doc({{"kafka.producer_properties", fmt::format("{{{}: {}}}", key, ok)}})),
                "OK")
          << key << " " << ok;
    }
    EXPECT_EQ(ErrorOf(Doc({{"kafka.producer_properties", fmt::format("{{{}: 1}}", key)}})),
              fmt::format("config kafka.producer_properties.{}: reserved unless all or -1 (the "
                          "idempotent producer needs acks=all), got \"1\"",
                          key));
  }
  for (const std::string_view key : {"max.in.flight.requests.per.connection", "max.in.flight"}) {
    for (const std::string_view ok : {"1", "5"}) {
      EXPECT_EQ(ErrorOf(Doc({{"kafka.producer_properties", fmt::format("{{{}: {}}}", key, ok)}})),
                "OK")
          << key << " " << ok;
    }
    for (const std::string_view bad : {"0", "6", "1000000", "x", "+3", "05"}) {
      EXPECT_EQ(
          ErrorOf(Doc({{"kafka.producer_properties", fmt::format("{{{}: \"{}\"}}", key, bad)}})),
          fmt::format("config kafka.producer_properties.{}: reserved unless 1 to 5 (the "
                      "idempotent producer keeps order with at most 5 requests in flight), got "
                      "\"{}\"",
                      key, bad));
    }
  }
}

TEST(DaemonConfigTest, CommitIntervalMustBeShorterThanTheTransactionTimeout) {
  EXPECT_EQ(ErrorOf(Doc({{"delivery.mode", "exactly_once"},
                         {"delivery.transaction_timeout_ms", "10000"},
                         {"delivery.commit_interval_ms", "10000"}})),
            "config delivery.commit_interval_ms: expected less than "
            "delivery.transaction_timeout_ms (10000) with delivery.mode exactly_once, got 10000");
  EXPECT_EQ(ErrorOf(Doc({{"delivery.mode", "exactly_once"},
                         {"delivery.transaction_timeout_ms", "10000"},
                         {"delivery.commit_interval_ms", "9999"}})),
            "OK");
  // at_least_once has no transactions: the interval is ignored, so not checked.
  EXPECT_EQ(ErrorOf(Doc({{"delivery.mode", "at_least_once"},
                         {"delivery.transaction_timeout_ms", "1000"},
                         {"delivery.commit_interval_ms", "60000"}})),
            "OK");
  DaemonConfig c = MinimalConfig();
  c.delivery.mode = DeliveryMode::kExactlyOnce;
  c.delivery.transaction_timeout_ms = 1000;
  c.delivery.commit_interval_ms = 2000;
  EXPECT_EQ(ValidationErrorOf(c),
            "config delivery.commit_interval_ms: expected less than "
            "delivery.transaction_timeout_ms (1000) with delivery.mode exactly_once, got 2000");
}

// ---- secrets --------------------------------------------------------------------------------

TEST(DaemonConfigTest, SecretPropertiesAreRecognisedByName) {
  for (const std::string_view key :
       {"sasl.password", "ssl.key.password", "ssl.keystore.password", "ssl.truststore.password",
        "sasl.oauthbearer.client.secret", "SASL.PASSWORD", "my.Secret.thing", "ssl.key.pem",
        "sasl.oauthbearer.config"}) {
    EXPECT_TRUE(IsSecretProperty(key)) << key;
  }
  for (const std::string_view key :
       {"sasl.username", "security.protocol", "linger.ms", "ssl.key.location", "ssl.ca.pem"}) {
    EXPECT_FALSE(IsSecretProperty(key)) << key;
  }
  EXPECT_EQ(MaskedValue("sasl.password", "hunter2"), "(secret, not shown)");
  EXPECT_EQ(MaskedValue("linger.ms", "5"), "\"5\"");
}

// A secret's value appears in no message, whatever is wrong with it.
TEST(DaemonConfigTest, SecretValuesAreNeverEchoedInErrors) {
  const std::string yaml =
      "model: {bundle: m}\nkafka:\n  bootstrap_servers: b:1\n"
      "  producer_properties:\n    sasl.password: \"hunter2\\0x\"\n";
  EXPECT_EQ(ErrorOf(yaml),
            "config kafka.producer_properties.sasl.password: expected a string without NUL "
            "characters, got (secret, not shown)");
  EXPECT_EQ(ErrorOf(Doc({{"kafka.consumer_properties", "{sasl.password: \"${vault:hunter2}\"}"}})),
            "config kafka.consumer_properties.sasl.password: expected ${env:NAME} or "
            "${file:PATH} in a value of the form ${...}, got (secret, not shown)");
  // Not secret: shown, so the mistake can be found.
  EXPECT_EQ(ErrorOf(Doc({{"kafka.consumer_properties", "{sasl.username: \"${vault:me}\"}"}})),
            "config kafka.consumer_properties.sasl.username: expected ${env:NAME} or "
            "${file:PATH} in a value of the form ${...}, got \"${vault:me}\"");
}

TEST(DaemonConfigTest, PropertyValuesComeFromTheEnvironment) {
  const std::string yaml =
      Doc({{"kafka.producer_properties",
            R"({sasl.password: "${env:ROTOR_TEST_PW}", sasl.username: me, x.y: "a${env:B}"})"},
           {"kafka.consumer_properties", "{sasl.password: \"${env:ROTOR_TEST_PW}\"}"}});
  auto config = ParseDaemonConfig(yaml, {{"ROTOR_TEST_PW", "s3cr3t\n"}});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->kafka.producer_properties.at("sasl.password"), "s3cr3t\n");  // Verbatim.
  EXPECT_EQ(config->kafka.consumer_properties.at("sasl.password"), "s3cr3t\n");
  EXPECT_EQ(config->kafka.producer_properties.at("sasl.username"), "me");
  EXPECT_EQ(config->kafka.producer_properties.at("x.y"), "a${env:B}");  // Whole values only.

  // The consumer's properties are resolved first.
  const std::string unset =
      "config kafka.consumer_properties.sasl.password: ${env:ROTOR_TEST_PW}: "
      "the environment variable is not set (or empty)";
  EXPECT_EQ(ErrorOf(yaml), unset);
  EXPECT_EQ(ErrorOf(yaml, {{"ROTOR_TEST_PW", ""}}), unset);
  EXPECT_EQ(ErrorOf(Doc({{"kafka.producer_properties", "{a: \"${env:1X}\"}"}})),
            "config kafka.producer_properties.a: expected ${env:NAME} with NAME of letters, "
            "digits and _ (not starting with a digit), got \"${env:1X}\"");
  EXPECT_EQ(ErrorOf(Doc({{"kafka.producer_properties", "{a: \"${env:}\"}"}})),
            "config kafka.producer_properties.a: expected ${env:NAME} with NAME of letters, "
            "digits and _ (not starting with a digit), got \"${env:}\"");
}

TEST(DaemonConfigTest, PropertyValuesComeFromFiles) {
  const std::string dir = ::testing::TempDir();
  const std::string path = fmt::format("{}rotor_secret_{}", dir, getpid());
  const auto write = [&](const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
  };
  const std::string yaml = Doc(
      {{"kafka.producer_properties", fmt::format("{{ssl.key.password: \"${{file:{}}}\"}}", path)}});
  const auto value = [&]() -> std::string {
    auto config = ParseDaemonConfig(yaml, {});
    EXPECT_TRUE(config.ok()) << config.status().ToString();
    return config.ok() ? config->kafka.producer_properties.at("ssl.key.password") : "";
  };
  write("pass word\n");
  EXPECT_EQ(value(), "pass word");  // One trailing newline stripped (what `echo` writes).
  write("pass\r\n");
  EXPECT_EQ(value(), "pass");
  write("pass\n\n");
  EXPECT_EQ(value(), "pass\n");  // Only one.
  write("  pass  ");
  EXPECT_EQ(value(), "  pass  ");

  write(std::string("pa\0ss", 5));
  EXPECT_EQ(ErrorOf(yaml), fmt::format("config kafka.producer_properties.ssl.key.password: "
                                       "${{file:{}}}: the file holds a NUL character",
                                       path));
  write(std::string(65537, 'x'));
  EXPECT_EQ(ErrorOf(yaml), fmt::format("config kafka.producer_properties.ssl.key.password: "
                                       "${{file:{}}}: the file is larger than 65536 bytes",
                                       path));
  std::filesystem::remove(path);
  EXPECT_EQ(ErrorOf(yaml), fmt::format("config kafka.producer_properties.ssl.key.password: "
                                       "${{file:{}}}: cannot read: No such file or directory",
                                       path));
  EXPECT_EQ(ErrorOf(Doc({{"kafka.producer_properties", "{a: \"${file:}\"}"}})),
            "config kafka.producer_properties.a: expected ${file:PATH} with a non-empty PATH, "
            "got \"${file:}\"");
  EXPECT_EQ(
      ErrorOf(Doc({{"kafka.producer_properties", fmt::format("{{a: \"${{file:{}}}\"}}", dir)}})),
      fmt::format("config kafka.producer_properties.a: ${{file:{}}}: cannot read: Is a "
                  "directory",
                  dir));
}

// ---- environment ----------------------------------------------------------------------------

TEST(DaemonConfigTest, EnvironmentOverridesWinOverTheFile) {
  const std::string yaml =
      Doc({{"kafka.bootstrap_servers", "file:9092"}, {"state.dir", "file-dir"}});
  const EnvLookup env = {
      {std::string(kEnvBootstrapServers), "env:9092"},
      {std::string(kEnvStateDir), "env-dir"},
      {"ROTOR_UNRELATED", "ignored"},
  };
  auto config = ParseDaemonConfig(yaml, env);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->kafka.bootstrap_servers, "env:9092");
  EXPECT_EQ(config->state.dir, "env-dir");
}

TEST(DaemonConfigTest, EmptyEnvironmentValuesAreIgnored) {
  const std::string yaml =
      Doc({{"kafka.bootstrap_servers", "file:9092"}, {"state.dir", "file-dir"}});
  const EnvLookup env = {{std::string(kEnvBootstrapServers), ""}, {std::string(kEnvStateDir), ""}};
  auto config = ParseDaemonConfig(yaml, env);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->kafka.bootstrap_servers, "file:9092");
  EXPECT_EQ(config->state.dir, "file-dir");
}

TEST(DaemonConfigTest, EnvironmentCanSupplyRequiredFieldsBeforeValidation) {
  const EnvLookup env = {{std::string(kEnvBootstrapServers), "env:9092"}};
  auto config = ParseDaemonConfig(
      "model: {bundle: m}\nstate: {dir: ''}\n",
      {{std::string(kEnvBootstrapServers), "env:9092"}, {std::string(kEnvStateDir), "env-dir"}});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->kafka.bootstrap_servers, "env:9092");
  EXPECT_EQ(config->state.dir, "env-dir");
  // Parsing errors still come first: the environment cannot hide a bad file.
  EXPECT_EQ(ErrorOf("kafka: {bootstrap_servers: [x]}\n", env),
            "config kafka.bootstrap_servers: expected a string, got a sequence");
}

TEST(DaemonConfigTest, ProcessEnvHoldsTheVariablesThatAreSetAndNonEmpty) {
  // Each test runs in its own process under ctest; restore anyway for --gtest_repeat.
  ASSERT_EQ(setenv(std::string(kEnvStateDir).c_str(), "/srv/rotor", 1), 0);
  ASSERT_EQ(setenv(std::string(kEnvBootstrapServers).c_str(), "", 1), 0);
  ASSERT_EQ(setenv("ROTOR_TEST_SECRET", "pw", 1), 0);
  EnvLookup env = ProcessEnv();
  EXPECT_EQ(env.at(std::string(kEnvStateDir)), "/srv/rotor");
  EXPECT_FALSE(env.contains(std::string(kEnvBootstrapServers)));
  EXPECT_EQ(env.at("ROTOR_TEST_SECRET"), "pw");  // For ${env:NAME} property values.

  ASSERT_EQ(setenv(std::string(kEnvBootstrapServers).c_str(), "h:1", 1), 0);
  ASSERT_EQ(unsetenv(std::string(kEnvStateDir).c_str()), 0);
  env = ProcessEnv();
  EXPECT_EQ(env.at(std::string(kEnvBootstrapServers)), "h:1");
  EXPECT_FALSE(env.contains(std::string(kEnvStateDir)));
  ASSERT_EQ(unsetenv(std::string(kEnvBootstrapServers).c_str()), 0);
  ASSERT_EQ(unsetenv("ROTOR_TEST_SECRET"), 0);
  env = ProcessEnv();
  EXPECT_FALSE(env.contains(std::string(kEnvBootstrapServers)));
  EXPECT_FALSE(env.contains("ROTOR_TEST_SECRET"));
}

// ---- files ----------------------------------------------------------------------------------

// An unreadable file is a bad config like any other (rotor exits 2); the caller names the file,
// as it does for the field errors, so the message does not.
TEST(DaemonConfigTest, LoadReportsUnreadableFilesAsInvalidArguments) {
  const std::string missing = "/nonexistent-rotor-dir/rotor.yaml";
  auto config = LoadDaemonConfig(missing, {});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(config.status().message(), "config: cannot read: No such file or directory");

  const std::string dir = ::testing::TempDir();
  config = LoadDaemonConfig(dir, {});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(config.status().message(), "config: cannot read: Is a directory");
}

TEST(DaemonConfigTest, LoadParsesTheFile) {
  const std::string path =
      fmt::format("{}rotor_daemon_config_test_{}.yaml", ::testing::TempDir(), getpid());
  {
    std::ofstream out(path);
    out << Doc({{"log.level", "warn"}});
  }
  auto config = LoadDaemonConfig(path, {{std::string(kEnvStateDir), "env-dir"}});
  std::filesystem::remove(path);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->log.level, LogLevel::kWarn);
  EXPECT_EQ(config->state.dir, "env-dir");
}

TEST(DaemonConfigTest, ShippedRotorYamlHasEveryFieldAtItsDefault) {
  const std::string path = (RepoRoot() / "configs/rotor.yaml").string();
  auto config = LoadDaemonConfig(path, {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  DaemonConfig want;
  want.model.bundle = "data/default.bundle.safetensors";
  want.kafka.bootstrap_servers = "127.0.0.1:9092";
  ExpectSameConfig(*config, want);

  // Every field is written out (with its section above it), so the file documents them all.
  const std::string text = ReadRepoFile("configs/rotor.yaml");
  for (const std::string_view field : kAllFields) {
    const std::size_t dot = field.find('.');
    const std::size_t section = text.find(fmt::format("\n{}:\n", field.substr(0, dot)));
    ASSERT_NE(section, std::string::npos) << field;
    EXPECT_NE(text.find(fmt::format("\n  {}:", field.substr(dot + 1)), section), std::string::npos)
        << field << " is missing from configs/rotor.yaml";
  }
}

TEST(DaemonConfigTest, ShippedEmbeddedYamlIsTheDemoConfig) {
  const std::string path = (RepoRoot() / "configs/embedded.yaml").string();
  auto config = LoadDaemonConfig(path, {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  DaemonConfig want;
  want.model.bundle = "data/default.bundle.safetensors";
  want.kafka.embedded = true;
  want.kafka.embedded_partitions = 4;
  want.state.dir = "data/demo-state";
  want.state.sync_writes = false;
  ExpectSameConfig(*config, want);
}

TEST(DaemonConfigTest, ConfigurationDocsListEveryField) {
  const std::string text = ReadRepoFile("docs/configuration.md");
  for (const std::string_view field : kAllFields) {
    EXPECT_NE(text.find(fmt::format("| `{}` |", field)), std::string::npos)
        << field << " has no row in docs/configuration.md";
  }
  EXPECT_NE(text.find(kEnvBootstrapServers), std::string::npos);
  EXPECT_NE(text.find(kEnvStateDir), std::string::npos);
}

// ---- api ----------------------------------------------------------------------------------

// The api section's fields (kept apart from kAllFields so that sections added in parallel
// merge without touching each other's lists).
constexpr std::array<std::string_view, 15> kApiFields = {
    "api.enabled",
    "api.listen",
    "api.threads",
    "api.max_connections",
    "api.read_timeout_ms",
    "api.write_timeout_ms",
    "api.idle_timeout_ms",
    "api.max_body_bytes",
    "api.max_candidates",
    "api.max_users_per_request",
    "api.max_total_candidates",
    "api.advertised_url",
    "api.forward",
    "api.forward_timeout_ms",
    "api.owners_refresh_ms",
};

void ExpectSameApi(const ApiOptions& got, const ApiOptions& want) {
  EXPECT_EQ(got.enabled, want.enabled);
  EXPECT_EQ(got.listen, want.listen);
  EXPECT_EQ(got.threads, want.threads);
  EXPECT_EQ(got.max_connections, want.max_connections);
  EXPECT_EQ(got.read_timeout_ms, want.read_timeout_ms);
  EXPECT_EQ(got.write_timeout_ms, want.write_timeout_ms);
  EXPECT_EQ(got.idle_timeout_ms, want.idle_timeout_ms);
  EXPECT_EQ(got.max_body_bytes, want.max_body_bytes);
  EXPECT_EQ(got.max_candidates, want.max_candidates);
  EXPECT_EQ(got.max_users_per_request, want.max_users_per_request);
  EXPECT_EQ(got.max_total_candidates, want.max_total_candidates);
  EXPECT_EQ(got.advertised_url, want.advertised_url);
  EXPECT_EQ(got.forward, want.forward);
  EXPECT_EQ(got.forward_timeout_ms, want.forward_timeout_ms);
  EXPECT_EQ(got.owners_refresh_ms, want.owners_refresh_ms);
}

TEST(DaemonConfigApiTest, MissingFieldsTakeTheHeaderDefaults) {
  auto config = ParseDaemonConfig(Doc({}), {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const ApiOptions& a = config->api;
  EXPECT_TRUE(a.enabled);
  EXPECT_EQ(a.listen, "127.0.0.1:8470");
  EXPECT_EQ(a.threads, 2);
  EXPECT_EQ(a.max_connections, 256);
  EXPECT_EQ(a.read_timeout_ms, 5000);
  EXPECT_EQ(a.write_timeout_ms, 5000);
  EXPECT_EQ(a.idle_timeout_ms, 60000);
  EXPECT_EQ(a.max_body_bytes, int64_t{8} << 20);
  EXPECT_EQ(a.max_candidates, 1000);
  EXPECT_EQ(a.max_users_per_request, 100);
  EXPECT_EQ(a.max_total_candidates, 10000);
  EXPECT_EQ(a.advertised_url, "");
  EXPECT_EQ(a.forward, ApiForward::kProxy);
  EXPECT_EQ(a.forward_timeout_ms, 2000);
  EXPECT_EQ(a.owners_refresh_ms, 1000);
}

TEST(DaemonConfigApiTest, FullSectionSetsEveryField) {
  auto config = ParseDaemonConfig(Doc({
                                      {"api.enabled", "false"},
                                      {"api.listen", "\"[::1]:0\""},
                                      {"api.threads", "64"},
                                      {"api.max_connections", "100000"},
                                      {"api.read_timeout_ms", "1"},
                                      {"api.write_timeout_ms", "600000"},
                                      {"api.idle_timeout_ms", "3600000"},
                                      {"api.max_body_bytes", "1KiB"},
                                      {"api.max_candidates", "100000"},
                                      {"api.max_users_per_request", "10000"},
                                      {"api.max_total_candidates", "1000000"},
                                      {"api.advertised_url", "\"http://rotor-0.rotor:8470\""},
                                      {"api.forward", "redirect"},
                                      {"api.forward_timeout_ms", "60000"},
                                      {"api.owners_refresh_ms", "100"},
                                  }),
                                  {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ApiOptions want;
  want.enabled = false;
  want.listen = "[::1]:0";
  want.threads = 64;
  want.max_connections = 100000;
  want.read_timeout_ms = 1;
  want.write_timeout_ms = 600000;
  want.idle_timeout_ms = 3600000;
  want.max_body_bytes = 1024;
  want.max_candidates = 100000;
  want.max_users_per_request = 10000;
  want.max_total_candidates = 1000000;
  want.advertised_url = "http://rotor-0.rotor:8470";
  want.forward = ApiForward::kRedirect;
  want.forward_timeout_ms = 60000;
  want.owners_refresh_ms = 100;
  ExpectSameApi(config->api, want);
}

TEST(DaemonConfigApiTest, EveryFieldRefusesBadValuesNamingIt) {
  const std::vector<BadValue> cases = {
      {"api.enabled", "yes", "config api.enabled: expected true or false, got yes"},
      {"api.listen", "[a]", "config api.listen: expected a string, got a sequence"},
      {"api.threads", "0", "config api.threads: expected an integer in [1, 64], got 0"},
      {"api.threads", "65", "config api.threads: expected an integer in [1, 64], got 65"},
      {"api.max_connections", "0",
       "config api.max_connections: expected an integer in [1, 100000], got 0"},
      {"api.read_timeout_ms", "0",
       "config api.read_timeout_ms: expected an integer in [1, 600000], got 0"},
      {"api.write_timeout_ms", "600001",
       "config api.write_timeout_ms: expected an integer in [1, 600000], got 600001"},
      {"api.idle_timeout_ms", "-5",
       "config api.idle_timeout_ms: expected an integer in [1, 3600000], got -5"},
      {"api.max_body_bytes", "1023",
       "config api.max_body_bytes: expected an integer in [1024, 1073741824] or a size like "
       "\"256MiB\", got 1023"},
      {"api.max_body_bytes", "2GiB",
       "config api.max_body_bytes: expected an integer in [1024, 1073741824] or a size like "
       "\"256MiB\", got 2GiB"},
      {"api.max_candidates", "100001",
       "config api.max_candidates: expected an integer in [1, 100000], got 100001"},
      {"api.max_users_per_request", "0",
       "config api.max_users_per_request: expected an integer in [1, 10000], got 0"},
      {"api.max_total_candidates", "0",
       "config api.max_total_candidates: expected an integer in [1, 1000000], got 0"},
      {"api.forward", "always",
       "config api.forward: expected one of proxy, redirect, off, got \"always\""},
      {"api.forward_timeout_ms", "0",
       "config api.forward_timeout_ms: expected an integer in [1, 60000], got 0"},
      {"api.owners_refresh_ms", "99",
       "config api.owners_refresh_ms: expected an integer in [100, 600000], got 99"},
  };
  for (const BadValue& c : cases) {
    EXPECT_EQ(ErrorOf(Doc({{c.path, c.value}})), c.error) << c.path << ": " << c.value;
  }
}

TEST(DaemonConfigApiTest, AdvertisedUrlIsHttpHostAndPort) {
  for (const std::string_view good : {"", "http://rotor-0.rotor:8470", "http://10.0.0.5:1",
                                      "http://[fe80::1]:8470", "http://localhost:65535"}) {
    EXPECT_EQ(ErrorOf(Doc({{"api.advertised_url", fmt::format("\"{}\"", good)}})), "OK") << good;
  }
  for (const std::string_view bad :
       {"rotor-0:8470", "https://a:1", "http://a", "http://a:0", "http://a:65536", "http://:80",
        "http://a:80/x", "http://u@a:80", "http://a b:80"}) {
    const std::string error = ErrorOf(Doc({{"api.advertised_url", fmt::format("\"{}\"", bad)}}));
    EXPECT_TRUE(error.starts_with("config api.advertised_url: expected http://<host>:<port>"))
        << bad << ": " << error;
  }
}

TEST(DaemonConfigApiTest, ListenIsAnAddressAndAPort) {
  for (const std::string_view good : {"127.0.0.1:8470", "0.0.0.0:0", "10.1.2.3:65535", "[::1]:8470",
                                      "[::]:1", "[fe80::1:2]:80"}) {
    EXPECT_EQ(ErrorOf(Doc({{"api.listen", fmt::format("\"{}\"", good)}})), "OK") << good;
  }
  for (const std::string_view bad :
       {"", "8470", "localhost:8470", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
        "127.0.0.1:84a0", "127.0.0.1:123456", "::1:8470", "[::1]", "[::1:8470", "256.0.0.1:80",
        "[127.0.0.1]:80", " 127.0.0.1:80"}) {
    EXPECT_EQ(ErrorOf(Doc({{"api.listen", fmt::format("\"{}\"", bad)}})),
              fmt::format("config api.listen: expected <IPv4>:<port> or [<IPv6>]:<port> with the "
                          "port in [0, 65535] (127.0.0.1:8470, [::1]:8470), got \"{}\"",
                          bad))
        << bad;
  }
}

TEST(DaemonConfigApiTest, TotalCandidatesHoldAtLeastOneUsersCandidates) {
  EXPECT_EQ(ErrorOf(Doc({{"api.max_candidates", "500"}, {"api.max_total_candidates", "499"}})),
            "config api.max_total_candidates: expected at least api.max_candidates (500), got "
            "499");
  EXPECT_EQ(ErrorOf(Doc({{"api.max_candidates", "500"}, {"api.max_total_candidates", "500"}})),
            "OK");
}

TEST(DaemonConfigApiTest, ValidateChecksConfigsBuiltInCode) {
  DaemonConfig c = MinimalConfig();
  c.api.listen = "nowhere";
  EXPECT_EQ(ValidationErrorOf(c),
            "config api.listen: expected <IPv4>:<port> or [<IPv6>]:<port> with the port in "
            "[0, 65535] (127.0.0.1:8470, [::1]:8470), got \"nowhere\"");
  c = MinimalConfig();
  c.api.threads = 0;
  EXPECT_EQ(ValidationErrorOf(c), "config api.threads: expected an integer in [1, 64], got 0");
  c = MinimalConfig();
  c.api.max_body_bytes = 10;
  EXPECT_EQ(ValidationErrorOf(c),
            "config api.max_body_bytes: expected an integer in [1024, 1073741824] or a size like "
            "\"256MiB\", got 10");
  c = MinimalConfig();
  c.api.max_total_candidates = 5;
  EXPECT_EQ(ValidationErrorOf(c),
            "config api.max_total_candidates: expected at least api.max_candidates (1000), got 5");
}

TEST(DaemonConfigApiTest, ShippedConfigsAndDocsHaveEveryField) {
  auto config = LoadDaemonConfig((RepoRoot() / "configs/rotor.yaml").string(), {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ExpectSameApi(config->api, ApiOptions{});
  const std::string yaml = ReadRepoFile("configs/rotor.yaml");
  const std::string docs = ReadRepoFile("docs/configuration.md");
  const std::size_t section = yaml.find("\napi:\n");
  ASSERT_NE(section, std::string::npos);
  for (const std::string_view field : kApiFields) {
    const std::size_t dot = field.find('.');
    EXPECT_NE(yaml.find(fmt::format("\n  {}:", field.substr(dot + 1)), section), std::string::npos)
        << field << " is missing from configs/rotor.yaml";
    EXPECT_NE(docs.find(fmt::format("| `{}` |", field)), std::string::npos)
        << field << " has no row in docs/configuration.md";
  }
}

}  // namespace
}  // namespace rotor::config
