// DaemonConfig: everything `rotor serve` reads from its YAML file (configs/rotor.yaml documents
// every field). The one place that knows YAML: other modules receive these typed structs.

#ifndef ROTOR_CONFIG_DAEMON_CONFIG_H_
#define ROTOR_CONFIG_DAEMON_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/status.h"

namespace rotor::config {

// Environment variables that override the file (applied after parsing, before validation).
inline constexpr std::string_view kEnvBootstrapServers = "ROTOR_KAFKA_BOOTSTRAP_SERVERS";
inline constexpr std::string_view kEnvStateDir = "ROTOR_STATE_DIR";

// model:
struct ModelOptions {
  std::string bundle;  // Path of the model bundle (safetensors). Required.
};

// kafka:
struct KafkaOptions {
  // true: host librdkafka's mock cluster in-process (no external broker; no transactions).
  bool embedded = false;
  // Partitions of every topic the embedded cluster creates. In [1, 1024].
  int32_t embedded_partitions = 4;
  // Comma-separated host:port list. Required unless embedded. Env: ROTOR_KAFKA_BOOTSTRAP_SERVERS.
  std::string bootstrap_servers;
  std::string group_id = "rotor";
  std::string client_id = "rotor";
  std::string input_topic = "rotor.events";
  std::string output_topic = "rotor.tensors";
  std::string dead_letter_topic = "rotor.dead-letter";
  // The compacted state changelog, partitioned like the input (docs/daemon.md, "State
  // changelog"): every committed state change is written to it, and a partition assigned with
  // no local state is restored from it. Empty: no changelog (a new owner replays the input).
  // A config file that does not set it gets "<group_id>.changelog" (ParseDaemonConfig).
  std::string changelog_topic = "rotor.changelog";
  // Standby replicas (docs/daemon.md, "Standby replicas"): this instance keeps warm copies of
  // the partitions owned by the `standby_replicas` members before it in the group (members
  // sorted by id), by tailing their changelog partitions, so taking one over re-applies only
  // the last moments of input. 0: none. In [0, 16]; > 0 needs changelog_topic.
  int32_t standby_replicas = 0;
  // How often the group's membership and assignment are read to choose what to tail. In
  // [500, 600000].
  int32_t standby_refresh_ms = 5000;
  int32_t session_timeout_ms = 10000;  // In [1000, 3600000].
  // Start-up fails when no broker answers (or a topic is missing) within this. In [100, 600000].
  int32_t connect_timeout_ms = 30000;
  // Extra librdkafka properties, passed through verbatim (e.g. security.protocol), except those
  // rotor's guarantees rest on (refused; docs/configuration.md lists them). A whole value
  // `${env:NAME}` or `${file:PATH}` is replaced when the file is parsed, so secrets need not be
  // in the YAML.
  std::map<std::string, std::string> consumer_properties;
  std::map<std::string, std::string> producer_properties;
};

enum class DeliveryMode : unsigned char {
  kAtLeastOnce,  // "at_least_once": idempotent producer; repeats carry the same pos.
  kExactlyOnce,  // "exactly_once": Kafka transactions; consumers read with read_committed.
};

// delivery:
struct DeliveryOptions {
  DeliveryMode mode = DeliveryMode::kAtLeastOnce;
  // exactly_once: the producer's transactional.id; must be stable across restarts of one
  // instance and unique per instance. Default (empty): "<group_id>-<instance id>", the id made once
  // per state directory and kept in it.
  std::string transactional_id;
  int32_t transaction_timeout_ms = 60000;  // In [1000, 900000].
  // exactly_once: the longest a transaction stays open; it spans the batches consumed meanwhile
  // (like Kafka Streams' commit.interval.ms). 0 = one transaction per batch. Ignored in
  // at_least_once. In [0, 60000].
  int32_t commit_interval_ms = 100;
  // On SIGTERM: the longest the batches in flight may take to be delivered (or their
  // transaction committed) before they are dropped uncommitted (a restart redoes them), so a
  // stop ends within an orchestrator's grace period. In [0, 600000].
  int32_t shutdown_timeout_ms = 15000;
};

// pipeline:
struct PipelineOptions {
  int32_t max_batch_events = 2048;  // Events per micro-batch. In [1, 1000000].
  int32_t max_batch_wait_ms = 5;    // Longest wait to fill a batch. In [0, 60000].
  // Micro-batches decoded and handed to the producer whose delivery (or transaction) is not yet
  // confirmed; the next batch is decoded while earlier ones are in flight. 1 = one batch at a
  // time. In [1, 1024].
  int32_t max_inflight_batches = 8;
  int64_t max_message_bytes = 65536;  // Larger input messages go to the dead-letter topic.
  // Memory of the batches in flight: the windows of the users they touched plus their
  // WriteBatches. Filling a batch stops, and no new batch starts, while this is spent (one
  // user's window may go over). In [1 MiB, 1 TiB].
  int64_t max_inflight_bytes = int64_t{64} << 20;
  int32_t dedupe_ids_per_user = 64;  // Recent event ids remembered per user. In [0, 100000].
  // Threads that decode and encode a batch's users (sharded by user; the state is the same
  // for any count). In [1, 64].
  int32_t workers = 2;
  // Events with ts_ms more than this ahead of the daemon's clock are refused. >= 0.
  int64_t max_future_ms = 86400000;
  // A partition with no state whose log no longer starts at offset 0 (retention deleted the
  // start) is stopped unless this is true; then users' positions count from their first
  // retained event.
  bool allow_history_gaps = false;
};

enum class OutputDtype : unsigned char { kF32, kBF16, kF16 };  // "f32", "bf16", "f16"
// The precision of the K/V rows rotor keeps (state.kv_dtype): computed in float32, then rounded
// to nearest even to this dtype as each row is written, and stored in it.
enum class KvDtype : unsigned char { kF32, kBF16, kF16 };  // "f32", "bf16", "f16"

// output:
struct OutputOptions {
  OutputDtype dtype = OutputDtype::kF32;
  bool deltas = true;  // Publish one delta per user per batch.
  // Publish a user's whole window at most once per interval (0 = no snapshots). >= 0.
  int64_t snapshot_interval_ms = 60000;
};

// state:
struct StateOptions {
  std::string dir = "data/state";                  // RocksDB directory. Env: ROTOR_STATE_DIR.
  int64_t block_cache_bytes = int64_t{256} << 20;  // > 0.
  int64_t write_buffer_bytes = int64_t{64} << 20;  // In (0, block_cache_bytes].
  bool sync_writes = true;
  // RocksDB's write-ahead log (storage::StoreOptions::wal). false: commits skip it and a crash
  // rolls the state back to its last flush, rebuilt from the input by the re-apply rule.
  bool wal = true;
  int64_t window_cache_bytes = int64_t{512} << 20;  // >= 0 (0 = no hot-window cache).
  // K/V rows in float32, or rounded to bfloat16 / float16 and stored in 16 bits (half the
  // bytes written, stored and read back; docs/kv-dtype.md for what it does to the model's
  // quality). A state directory keeps the dtype it was made with.
  KvDtype kv_dtype = KvDtype::kF32;
  // A user whose last event is more than this older than its partition's event-time watermark
  // is expired: its next event starts a fresh history at position 0, and a sweep deletes its
  // state (docs/daemon.md, "User state expiry"). Event time, never the wall clock, so a
  // replay expires exactly what streaming did. 0 = never expire; otherwise in
  // [60000, 3153600000000] (one minute to 100 years).
  int64_t user_ttl_ms = 0;
  // Users the expiry sweep visits per micro-batch (a cursor over every user that wraps
  // around); 0 = no sweep (expired users are then dropped only when they return). Only with
  // user_ttl_ms > 0. In [0, 1000000].
  int32_t ttl_sweep_users_per_batch = 256;
};

enum class LogLevel : unsigned char { kDebug, kInfo, kWarn, kError };

// log:
struct LogOptions {
  LogLevel level = LogLevel::kInfo;
  int64_t stats_interval_ms = 10000;  // Throughput/lag line every interval (0 = never).
};

// api.forward: a request for a user another instance owns is proxied to it (one hop), answered
// with a 307 redirect to it, or answered here marked stale.
enum class ApiForward : unsigned char { kProxy, kRedirect, kOff };
std::string_view ApiForwardName(ApiForward forward);  // "proxy", "redirect", "off".

// api: the HTTP API (docs/api.md) that `rotor serve` runs beside the pipeline.
struct ApiOptions {
  bool enabled = true;
  // "host:port" to listen on: an IPv4 address, or an IPv6 address in brackets ("[::1]:8470");
  // port 0 takes a free port. Loopback by default: the API has no authentication.
  std::string listen = "127.0.0.1:8470";
  int32_t threads = 2;              // Server threads (each with its own decoder). In [1, 64].
  int32_t max_connections = 256;    // Open connections; more get 503 and are closed. [1, 100000].
  int32_t read_timeout_ms = 5000;   // Longest a request may take to arrive. In [1, 600000].
  int32_t write_timeout_ms = 5000;  // Longest a response may take to be sent. In [1, 600000].
  int32_t idle_timeout_ms = 60000;  // Keep-alive connection idle between requests. [1, 3600000].
  int64_t max_body_bytes = int64_t{8} << 20;  // Larger request bodies get 413. In [1 KiB, 1 GiB].
  int32_t max_candidates = 1000;              // Per user of a score request. In [1, 100000].
  int32_t max_users_per_request = 100;        // Users of one POST /v1/score. In [1, 10000].
  // Candidates of one POST /v1/score, all users together. In [1, 1000000], and at least
  // max_candidates.
  int32_t max_total_candidates = 10000;
  // Several instances (docs/api.md, "Several instances"): a request for a user whose partition
  // another member of the group owns is sent on to it. The URL other instances reach this one's
  // API at ("http://host:port", carried in the group consumer's client.id); empty: derived from
  // api.listen (the bound port; a wildcard address becomes the host the broker sees this
  // instance connect from).
  std::string advertised_url;
  ApiForward forward = ApiForward::kProxy;
  int32_t forward_timeout_ms = 2000;  // The owner's whole answer, proxied. In [1, 60000].
  // How often the group's assignment is described to find the owners. In [100, 600000].
  int32_t owners_refresh_ms = 1000;
};

struct DaemonConfig {
  ModelOptions model;
  KafkaOptions kafka;
  DeliveryOptions delivery;
  PipelineOptions pipeline;
  OutputOptions output;
  StateOptions state;
  LogOptions log;
  ApiOptions api;
};

// Reads the environment through this (tests pass a map instead of the real environment).
using EnvLookup = std::map<std::string, std::string, std::less<>>;
// The process's environment variables that are set and non-empty: the overrides
// (kEnvBootstrapServers, kEnvStateDir) and the variables `${env:NAME}` property values name.
EnvLookup ProcessEnv();

// Parses YAML text. Every error is InvalidArgument starting "config <path>: " where <path>
// names the field ("config kafka.session_timeout_ms: expected an integer in [1000, 3600000],
// got 5"; "config pipeline.max_batch_event: unknown field"; "config: not YAML: ..."). Unknown
// fields are errors; missing fields take the defaults above. Then applies `env` overrides,
// replaces `${env:NAME}` (from `env`) and `${file:PATH}` property values, then validates the
// whole (ValidateDaemonConfig). No message shows a secret property's value (IsSecretProperty).
Result<DaemonConfig> ParseDaemonConfig(std::string_view yaml_text, const EnvLookup& env);
// Reads the file and parses it; relative paths inside (model.bundle, state.dir) stay relative
// to the process's working directory. Errors are InvalidArgument and do not name the file (the
// caller does: "rotor.yaml: config: cannot read: No such file or directory", "rotor.yaml:
// config kafka.group_id: ...").
Result<DaemonConfig> LoadDaemonConfig(const std::string& path, const EnvLookup& env);

// Cross-field and range checks, with the same "config <path>: " messages.
Status ValidateDaemonConfig(const DaemonConfig& config);

// True for the librdkafka properties whose values are secrets: names containing "password"
// or "secret" (any case: sasl.password, ssl.key.password, sasl.oauthbearer.client.secret, ...),
// plus ssl.key.pem (a private key) and sasl.oauthbearer.config (may hold a client secret).
// Their values must never reach a message or a log line.
bool IsSecretProperty(std::string_view name);
// A property's value as messages show it: quoted (and cut after 60 bytes), or
// "(secret, not shown)" for a secret property.
std::string MaskedValue(std::string_view name, std::string_view value);

// Spellings used in YAML and logs.
std::string_view DeliveryModeName(DeliveryMode mode);
std::string_view OutputDtypeName(OutputDtype dtype);
std::string_view KvDtypeName(KvDtype dtype);
std::string_view LogLevelName(LogLevel level);

}  // namespace rotor::config

#endif  // ROTOR_CONFIG_DAEMON_CONFIG_H_
