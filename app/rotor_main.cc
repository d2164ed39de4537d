// rotor: the streaming SIREN-RoPE encoder daemon and its companion commands.
//
//   rotor serve   --config FILE [--exit-when-idle-ms N] [--feed EVENTS.jsonl] [--show-user ID]
//   rotor produce --config FILE --file EVENTS.jsonl [--rate N] [--limit N] [--topic NAME]
//   rotor consume --config FILE [--topic NAME] [--max N] [--idle-ms N] [--json true]
//   rotor inspect --config FILE (--user ID | --all true)
//   rotor replay  --config FILE --file EVENTS.jsonl
//   rotor topics  --config FILE [--partitions N]
//
// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration, 75 the state disk is full.

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "config/daemon_config.h"
#include "encoders/featurizer.h"
#include "encoders/ready_tensors.h"
#include "pipeline/daemon.h"
#include "pipeline/kafka_tools.h"
#include "pipeline/replay.h"
#include "storage/user_state_store.h"

namespace {

using rotor::Status;

constexpr std::string_view kUsage =
    "usage:\n"
    "  rotor serve   --config FILE [--exit-when-idle-ms N] [--feed EVENTS.jsonl] [--show-user "
    "ID]\n"
    "  rotor produce --config FILE --file EVENTS.jsonl [--rate N] [--limit N] [--topic NAME]\n"
    "  rotor consume --config FILE [--topic NAME] [--max N] [--idle-ms N] [--json true]\n"
    "  rotor inspect --config FILE (--user ID | --all true)\n"
    "  rotor replay  --config FILE --file EVENTS.jsonl\n"
    "  rotor topics  --config FILE [--partitions N]\n";

// Exit status when the state directory's disk is full (sysexits.h EX_TEMPFAIL: retry later).
// The state on disk is whole (every commit entirely or not at all); once there is space, a
// restart resumes after the last commit (docs/daemon.md, Disk full).
constexpr int kExitDiskFull = 75;

// Reports a failure of `command` on stderr; returns its exit status: kExitDiskFull when
// `state_dir` ran out of space, else `otherwise`.
int Fail(std::string_view command, const Status& status, const std::string& state_dir,
         int otherwise = 1) {
  fmt::print(stderr, "rotor {}: {}\n", command, status.message());
  if (status.code() != rotor::StatusCode::kResourceExhausted) {
    return otherwise;
  }
  fmt::print(stderr,
             "rotor {}: state.dir '{}' is out of space; the state there is the last complete "
             "commit. Free space (or move state.dir to a bigger disk) and run again: it resumes "
             "from there. Exit status {}.\n",
             command, state_dir, kExitDiskFull);
  return kExitDiskFull;
}

std::atomic<bool> g_stop{false};
std::atomic<int> g_signals{0};

extern "C" void OnSignal(int /*sig*/) {
  if (g_signals.fetch_add(1) >= 1) {
    // Second signal: leave now. RocksDB commits are atomic WriteBatches with a WAL, so the
    // state on disk is whatever the last commit left; nothing half-written survives.
    _exit(130);
  }
  g_stop.store(true);
}

void InstallSignals() {
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

// --flag value pairs after the command.
struct Args {
  std::map<std::string, std::string> values;

  std::optional<std::string> Get(const std::string& name) const {
    const auto it = values.find(name);
    return it == values.end() ? std::nullopt : std::optional<std::string>(it->second);
  }
  int64_t GetInt(const std::string& name, int64_t fallback) const {
    const auto v = Get(name);
    if (!v) {
      return fallback;
    }
    char* end = nullptr;
    const int64_t parsed = std::strtoll(v->c_str(), &end, 10);
    if (end == v->c_str() || *end != '\0') {
      fmt::print(stderr, "rotor: --{} expects an integer, got '{}'\n", name, *v);
      std::exit(2);
    }
    return parsed;
  }
};

std::optional<Args> ParseArgs(int argc, char** argv, const std::vector<std::string>& allowed) {
  Args args;
  for (int i = 2; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.substr(0, 2) != "--" || i + 1 >= argc) {
      fmt::print(stderr, "rotor: unexpected argument '{}'\n{}", arg, kUsage);
      return std::nullopt;
    }
    const std::string name(arg.substr(2));
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      fmt::print(stderr, "rotor {}: unknown option '--{}'\n{}", argv[1], name, kUsage);
      return std::nullopt;
    }
    args.values[name] = argv[++i];
  }
  return args;
}

std::optional<rotor::config::DaemonConfig> LoadConfig(const Args& args) {
  const auto path = args.Get("config");
  if (!path) {
    fmt::print(stderr, "rotor: --config FILE is required\n{}", kUsage);
    return std::nullopt;
  }
  auto config = rotor::config::LoadDaemonConfig(*path, rotor::config::ProcessEnv());
  if (!config.ok()) {
    fmt::print(stderr, "rotor: {}: {}\n", *path, config.status().message());
    return std::nullopt;
  }
  switch (config->log.level) {
    case rotor::config::LogLevel::kDebug:
      spdlog::set_level(spdlog::level::debug);
      break;
    case rotor::config::LogLevel::kInfo:
      spdlog::set_level(spdlog::level::info);
      break;
    case rotor::config::LogLevel::kWarn:
      spdlog::set_level(spdlog::level::warn);
      break;
    case rotor::config::LogLevel::kError:
      spdlog::set_level(spdlog::level::err);
      break;
  }
  return std::move(config).value();
}

std::string Base64(std::string_view bytes) {
  static constexpr std::string_view kDigits =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size()) {
      n |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    }
    if (i + 2 < bytes.size()) {
      n |= static_cast<unsigned char>(bytes[i + 2]);
    }
    out.push_back(kDigits[(n >> 18) & 63]);
    out.push_back(kDigits[(n >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? kDigits[(n >> 6) & 63] : '=');
    out.push_back(i + 2 < bytes.size() ? kDigits[n & 63] : '=');
  }
  return out;
}

// FNV-1a 64 over the window's rows oldest first, each position's K row then V row per block
// as little-endian float32: a digest tests compare across state directories and outputs.
uint64_t WindowDigest(const rotor::encoders::KvWindow& w) {
  std::string bytes;
  for (int64_t p = w.next_pos - w.rows; p < w.next_pos; ++p) {
    for (int64_t b = 0; b < w.n_blocks(); ++b) {
      const auto k = w.KRow(b, w.SlotOf(p));
      const auto v = w.VRow(b, w.SlotOf(p));
      bytes.append(reinterpret_cast<const char*>(k.data()), k.size_bytes());
      bytes.append(reinterpret_cast<const char*>(v.data()), v.size_bytes());
    }
  }
  return rotor::encoders::Fnv1a64(bytes);
}

// A command's flags (always including --config) and its loaded config, or nullopt after
// printing why not.
struct Invocation {
  Args args;
  rotor::config::DaemonConfig config;
};

std::optional<Invocation> Begin(int argc, char** argv, std::vector<std::string> allowed) {
  allowed.emplace_back("config");
  auto args = ParseArgs(argc, argv, allowed);
  if (!args) {
    return std::nullopt;
  }
  auto config = LoadConfig(*args);
  if (!config) {
    return std::nullopt;
  }
  return Invocation{std::move(*args), std::move(*config)};
}

double Norm(std::span<const float> row) {
  double sum = 0;
  for (const float x : row) {
    sum += static_cast<double>(x) * x;
  }
  return std::sqrt(sum);
}

// A human-readable summary of one user's cached state.
void PrintUser(const std::string& user, const rotor::storage::UserState& state,
               const std::string& model_id) {
  const rotor::encoders::KvWindow& w = state.window;
  fmt::print(
      "user '{}': model {}, next position {}, {} rows cached (window {}), last event at "
      "ts_ms {}, {} recent event ids remembered\n",
      user, model_id.substr(0, 12), w.next_pos, w.rows, w.capacity, w.last_ts_ms,
      state.recent_event_ids.size());
  if (w.rows == 0) {
    return;
  }
  const int64_t newest = w.SlotOf(w.next_pos - 1);
  for (int64_t b = 0; b < w.n_blocks(); ++b) {
    const auto k = w.KRow(b, newest);
    const auto v = w.VRow(b, newest);
    fmt::print(
        "  block {} (position {}): |K| = {:.4f}, |V| = {:.4f}, K[0:4] = [{:.4f}, {:.4f}, "
        "{:.4f}, {:.4f}]\n",
        b, w.next_pos - 1, Norm(k), Norm(v), k[0], k[1], k[2], k[3]);
  }
}

int Serve(int argc, char** argv) {
  const auto call = Begin(argc, argv, {"exit-when-idle-ms", "feed", "show-user"});
  if (!call) {
    return 2;
  }
  const Args& args = call->args;
  const rotor::config::DaemonConfig& config = call->config;
  rotor::pipeline::RunOptions run;
  run.exit_when_idle_ms = args.GetInt("exit-when-idle-ms", 0);
  run.feed_file = args.Get("feed").value_or("");
  if (!run.feed_file.empty() && !config.kafka.embedded) {
    fmt::print(stderr,
               "rotor serve: --feed is for the embedded cluster (kafka.embedded: true); "
               "use `rotor produce` against a real broker\n");
    return 2;
  }
  auto daemon = rotor::pipeline::Daemon::Create(config, run);
  if (!daemon.ok()) {
    return Fail("serve", daemon.status(), config.state.dir,
                daemon.status().code() == rotor::StatusCode::kInvalidArgument ||
                        daemon.status().code() == rotor::StatusCode::kCorruption
                    ? 2
                    : 1);
  }
  InstallSignals();
  const Status served = (*daemon)->Run(g_stop);
  const rotor::pipeline::DaemonStats stats = (*daemon)->stats();
  fmt::print(
      "rotor serve: {} events in {:.2f} s busy = {:.0f} events/s; {} dead letters, {} "
      "duplicates, {} deltas, {} snapshots published\n",
      stats.events, stats.busy_seconds,
      stats.busy_seconds > 0 ? static_cast<double>(stats.events) / stats.busy_seconds : 0.0,
      stats.dead_letters, stats.duplicates, stats.deltas, stats.snapshots);
  if (const auto user = args.Get("show-user")) {
    auto state = (*daemon)->LoadUser(*user);
    if (!state.ok()) {
      fmt::print(stderr, "rotor serve: {}\n", state.status().message());
    } else if (!state->has_value()) {
      fmt::print("user '{}': no state\n", *user);
    } else {
      PrintUser(*user, **state, (*daemon)->bundle().model_id());
    }
  }
  if (!served.ok()) {
    return Fail("serve", served, config.state.dir);
  }
  return 0;
}

int Produce(int argc, char** argv) {
  const auto call = Begin(argc, argv, {"file", "rate", "limit", "topic"});
  if (!call) {
    return 2;
  }
  const Args& args = call->args;
  const rotor::config::DaemonConfig& config = call->config;
  const auto file = args.Get("file");
  if (!file) {
    fmt::print(stderr, "rotor produce: --file EVENTS.jsonl is required\n");
    return 2;
  }
  if (config.kafka.embedded) {
    fmt::print(stderr,
               "rotor produce: the embedded cluster lives inside `rotor serve`; use "
               "`rotor serve --feed FILE` with it\n");
    return 2;
  }
  rotor::pipeline::ProduceOptions options;
  options.bootstrap_servers = config.kafka.bootstrap_servers;
  options.topic = args.Get("topic").value_or(config.kafka.input_topic);
  options.rate_per_s = static_cast<double>(args.GetInt("rate", 0));
  options.limit = args.GetInt("limit", -1);
  options.properties = config.kafka.producer_properties;
  InstallSignals();
  options.stop = &g_stop;
  auto result = rotor::pipeline::ProduceJsonLines(*file, options);
  if (!result.ok()) {
    fmt::print(stderr, "rotor produce: {}\n", result.status().message());
    return 1;
  }
  fmt::print("rotor produce: {} events to '{}' in {:.2f} s ({:.0f}/s), {} failed\n", result->sent,
             options.topic, result->seconds,
             result->seconds > 0 ? static_cast<double>(result->sent) / result->seconds : 0.0,
             result->failed);
  return result->failed == 0 ? 0 : 1;
}

int Consume(int argc, char** argv) {
  const auto call = Begin(argc, argv, {"topic", "max", "idle-ms", "json"});
  if (!call) {
    return 2;
  }
  const Args& args = call->args;
  const rotor::config::DaemonConfig& config = call->config;
  rotor::pipeline::ReadOptions options;
  options.bootstrap_servers = config.kafka.bootstrap_servers;
  options.topic = args.Get("topic").value_or(config.kafka.output_topic);
  options.max_messages = args.GetInt("max", -1);
  options.idle_ms = args.GetInt("idle-ms", 2000);
  const bool json = args.Get("json").value_or("false") == "true";
  options.on_message = [json](const rotor::pipeline::TopicMessage& m) {
    if (json) {
      nlohmann::json headers = nlohmann::json::object();
      for (const auto& [name, value] : m.headers) {
        headers[name] = value;
      }
      const nlohmann::json line = {{"partition", m.partition},
                                   {"offset", m.offset},
                                   {"timestamp_ms", m.timestamp_ms},
                                   {"key", m.key},
                                   {"headers", headers},
                                   {"value_b64", Base64(m.value)}};
      fmt::print("{}\n", line.dump());
      return;
    }
    auto tensors = rotor::encoders::DecodeReadyTensors(m.value);
    if (tensors.ok()) {
      fmt::print("p{} o{} key='{}' {} rows {} next_pos {} d_model {} blocks {}\n", m.partition,
                 m.offset, m.key, rotor::encoders::ReadyKindName(tensors->header.kind),
                 tensors->rows(), tensors->header.next_pos, tensors->d_model, tensors->k.size());
      return;
    }
    std::string headers;
    for (const auto& [name, value] : m.headers) {
      headers += fmt::format(" {}={}", name, value);
    }
    fmt::print("p{} o{} key='{}' {} bytes{}\n", m.partition, m.offset, m.key, m.value.size(),
               headers);
  };
  auto result = rotor::pipeline::ReadTopic(options);
  if (!result.ok()) {
    fmt::print(stderr, "rotor consume: {}\n", result.status().message());
    return 1;
  }
  return 0;
}

int Inspect(int argc, char** argv) {
  const auto call = Begin(argc, argv, {"user", "all"});
  if (!call) {
    return 2;
  }
  const Args& args = call->args;
  const rotor::config::DaemonConfig& config = call->config;
  const auto user = args.Get("user");
  const bool all = args.Get("all").value_or("false") == "true";
  if (!user && !all) {
    fmt::print(stderr, "rotor inspect: --user ID or --all true is required\n");
    return 2;
  }
  auto bundle = rotor::encoders::Bundle::Load(config.model.bundle);
  if (!bundle.ok()) {
    fmt::print(stderr, "rotor inspect: model.bundle: {}\n", bundle.status().message());
    return 2;
  }
  auto store = rotor::storage::UserStateStore::Open({.path = config.state.dir,
                                                     .block_cache_bytes = 64 << 20,
                                                     .write_buffer_bytes = 16 << 20,
                                                     .sync_writes = false,
                                                     .create_if_missing = false});
  if (!store.ok()) {
    fmt::print(stderr, "rotor inspect: state.dir: {}\n", store.status().message());
    return 1;
  }
  const auto& cfg = bundle->config();
  if (all) {
    // One JSON line per user: positions, the recent ids count and the rows' digest.
    auto users = (*store)->ListUsers();
    if (!users.ok()) {
      fmt::print(stderr, "rotor inspect: {}\n", users.status().message());
      return 1;
    }
    for (const std::string& u : *users) {
      auto s = (*store)->LoadUserState(u, cfg.n_blocks(), cfg.window, cfg.d_model);
      if (!s.ok() || !s->has_value()) {
        fmt::print(stderr, "rotor inspect: user '{}': {}\n", u,
                   s.ok() ? "vanished" : std::string(s.status().message()));
        return 1;
      }
      const rotor::encoders::KvWindow& w = (*s)->window;
      const nlohmann::json line = {{"user", u},
                                   {"next_pos", w.next_pos},
                                   {"rows", w.rows},
                                   {"last_ts_ms", w.last_ts_ms},
                                   {"recent_event_ids", (*s)->recent_event_ids.size()},
                                   {"digest", fmt::format("{:016x}", WindowDigest(w))}};
      fmt::print("{}\n", line.dump());
    }
    return 0;
  }
  auto state = (*store)->LoadUserState(*user, cfg.n_blocks(), cfg.window, cfg.d_model);
  if (!state.ok()) {
    fmt::print(stderr, "rotor inspect: {}\n", state.status().message());
    return 1;
  }
  if (!state->has_value()) {
    fmt::print("user '{}': no state\n", *user);
    return 1;
  }
  PrintUser(*user, **state, bundle->model_id());
  return 0;
}

int Replay(int argc, char** argv) {
  const auto call = Begin(argc, argv, {"file"});
  if (!call) {
    return 2;
  }
  const Args& args = call->args;
  const rotor::config::DaemonConfig& config = call->config;
  const auto file = args.Get("file");
  if (!file) {
    fmt::print(stderr, "rotor replay: --file EVENTS.jsonl is required\n");
    return 2;
  }
  auto stats = rotor::pipeline::ReplayFile(config, *file);
  if (!stats.ok()) {
    return Fail("replay", stats.status(), config.state.dir);
  }
  fmt::print(
      "rotor replay: {} records, {} events into '{}' in {:.2f} s; {} dead letters, {} "
      "duplicates\n",
      stats->records, stats->events, config.state.dir, stats->seconds, stats->dead_letters,
      stats->duplicates);
  return 0;
}

int Topics(int argc, char** argv) {
  const auto call = Begin(argc, argv, {"partitions"});
  if (!call) {
    return 2;
  }
  const Args& args = call->args;
  const rotor::config::DaemonConfig& config = call->config;
  const auto& k = config.kafka;
  const Status s = rotor::pipeline::CreateTopics(
      k.bootstrap_servers, {k.input_topic, k.output_topic, k.dead_letter_topic},
      static_cast<int32_t>(args.GetInt("partitions", 8)));
  if (!s.ok()) {
    fmt::print(stderr, "rotor topics: {}\n", s.message());
    return 1;
  }
  return 0;
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr, "{}", kUsage);
    return 2;
  }
  const std::string_view command = argv[1];
  if (command == "serve") {
    return Serve(argc, argv);
  }
  if (command == "produce") {
    return Produce(argc, argv);
  }
  if (command == "consume") {
    return Consume(argc, argv);
  }
  if (command == "inspect") {
    return Inspect(argc, argv);
  }
  if (command == "replay") {
    return Replay(argc, argv);
  }
  if (command == "topics") {
    return Topics(argc, argv);
  }
  if (command == "-h" || command == "--help" || command == "help") {
    fmt::print("{}", kUsage);
    return 0;
  }
  fmt::print(stderr, "rotor: unknown command '{}'\n{}", command, kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "rotor: internal error: {}\n", e.what());
    return 1;
  }
}
