// rotor: the streaming SIREN-RoPE encoder daemon and its companion commands.
//
//   rotor serve   --config FILE [--exit-when-idle-ms N] [--feed EVENTS.jsonl] [--show-user ID]
//   rotor produce --config FILE --file EVENTS.jsonl [--rate N] [--limit N] [--topic NAME]
//   rotor consume --config FILE [--topic NAME] [--max N] [--idle-ms N] [--json]
//   rotor inspect --config FILE (--user ID | --all)
//   rotor replay  --config FILE --file EVENTS.jsonl [--partitions N]
//   rotor topics  --config FILE [--partitions N]
//   rotor --version
//
// `rotor COMMAND --help` prints a command's usage. Exit codes (cli::ExitCodeFor): 0 ok,
// 1 a runtime failure, 2 bad usage, a bad config or a bad model bundle, 75 the state disk is
// full.

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "app/cli.h"
#include "config/daemon_config.h"
#include "encoders/bundle.h"
#include "encoders/featurizer.h"
#include "encoders/ready_tensors.h"
#include "pipeline/daemon.h"
#include "pipeline/kafka_tools.h"
#include "pipeline/replay.h"
#include "storage/user_state_store.h"

namespace {

using rotor::Result;
using rotor::Status;
using rotor::cli::Args;
using rotor::cli::ExitCodeFor;

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

// Prints "rotor <command>: <message>" and returns the error's exit code (cli::ExitCodeFor).
// A full disk under `state_dir` (the state there is whole: every commit entirely or not at
// all) also says how to go on.
int Fail(std::string_view command, const Status& status, std::string_view state_dir = {}) {
  fmt::print(stderr, "rotor {}: {}\n", command, status.message());
  if (status.code() == rotor::StatusCode::kResourceExhausted) {
    fmt::print(stderr,
               "rotor {}: state.dir '{}' is out of space; the state there is the last complete "
               "commit. Free space (or move state.dir to a bigger disk) and run again: it "
               "resumes from there. Exit status {}.\n",
               command, state_dir, rotor::cli::kExitDiskFull);
  }
  return ExitCodeFor(status);
}

Result<rotor::config::DaemonConfig> LoadConfig(const Args& args) {
  const auto path = args.Get("config");
  if (!path) {
    return Status::InvalidArgument("--config FILE is required");
  }
  auto config = rotor::config::LoadDaemonConfig(*path, rotor::config::ProcessEnv());
  if (!config.ok()) {
    // "<file>: config <field>: ...": tools/compose_check.sh tells config errors by this shape.
    return std::move(config).status().WithContext(*path);
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
  return config;
}

// The model bundle the config names; its errors say so ("model.bundle '<path>': bundle: ..."),
// the path once, as Daemon::Create's do.
Result<rotor::encoders::Bundle> LoadBundle(const rotor::config::DaemonConfig& config) {
  auto bundle = rotor::encoders::Bundle::Load(config.model.bundle);
  if (!bundle.ok()) {
    return std::move(bundle).status().WithContext(
        fmt::format("model.bundle '{}'", config.model.bundle));
  }
  return bundle;
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

using Config = rotor::config::DaemonConfig;

int Serve(const Args& args, const Config& config) {
  rotor::pipeline::RunOptions run;
  auto idle = args.GetInt("exit-when-idle-ms", 0);
  if (!idle.ok()) {
    return Fail("serve", idle.status());
  }
  run.exit_when_idle_ms = *idle;
  run.feed_file = args.Get("feed").value_or("");
  if (!run.feed_file.empty() && !config.kafka.embedded) {
    return Fail("serve", Status::InvalidArgument(
                             "--feed is for the embedded cluster (kafka.embedded: true); use "
                             "`rotor produce` against a real broker"));
  }
  auto daemon = rotor::pipeline::Daemon::Create(config, run);
  if (!daemon.ok()) {
    return Fail("serve", daemon.status(), config.state.dir);
  }
  InstallSignals();
  const Status served = (*daemon)->Run(g_stop);
  const rotor::pipeline::DaemonStats stats = (*daemon)->stats();
  fmt::print(
      "rotor serve: {} events in {:.2f} s busy = {:.0f} events/s; {} dead letters, {} "
      "duplicates, {} deltas, {} snapshots published; {} expired users deleted, {} histories "
      "restarted\n",
      stats.events, stats.busy_seconds,
      stats.busy_seconds > 0 ? static_cast<double>(stats.events) / stats.busy_seconds : 0.0,
      stats.dead_letters, stats.duplicates, stats.deltas, stats.snapshots, stats.expired_users,
      stats.restarted_histories);
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
  return rotor::cli::kExitOk;
}

int Produce(const Args& args, const Config& config) {
  const auto file = args.Get("file");
  if (!file) {
    return Fail("produce", Status::InvalidArgument("--file EVENTS.jsonl is required"));
  }
  if (config.kafka.embedded) {
    return Fail("produce",
                Status::InvalidArgument("the embedded cluster lives inside `rotor serve`; use "
                                        "`rotor serve --feed FILE` with it"));
  }
  rotor::pipeline::ProduceOptions options;
  options.bootstrap_servers = config.kafka.bootstrap_servers;
  options.topic = args.Get("topic").value_or(config.kafka.input_topic);
  const auto rate = args.GetInt("rate", 0);
  const auto limit = args.GetInt("limit", -1);
  if (!rate.ok() || !limit.ok()) {
    return Fail("produce", rate.ok() ? limit.status() : rate.status());
  }
  options.rate_per_s = static_cast<double>(*rate);
  options.limit = *limit;
  options.properties = config.kafka.producer_properties;
  InstallSignals();
  options.stop = &g_stop;
  auto result = rotor::pipeline::ProduceJsonLines(*file, options);
  if (!result.ok()) {
    return Fail("produce", result.status());
  }
  fmt::print("rotor produce: {} events to '{}' in {:.2f} s ({:.0f}/s), {} failed\n", result->sent,
             options.topic, result->seconds,
             result->seconds > 0 ? static_cast<double>(result->sent) / result->seconds : 0.0,
             result->failed);
  return result->failed == 0 ? rotor::cli::kExitOk : rotor::cli::kExitFailure;
}

int Consume(const Args& args, const Config& config) {
  rotor::pipeline::ReadOptions options;
  options.bootstrap_servers = config.kafka.bootstrap_servers;
  options.topic = args.Get("topic").value_or(config.kafka.output_topic);
  options.properties = config.kafka.consumer_properties;
  const auto max = args.GetInt("max", -1);
  const auto idle = args.GetInt("idle-ms", 2000);
  const auto json = args.GetBool("json");
  for (const Status& s : {max.status(), idle.status(), json.status()}) {
    if (!s.ok()) {
      return Fail("consume", s);
    }
  }
  options.max_messages = *max;
  options.idle_ms = *idle;
  options.on_message = [json = *json](const rotor::pipeline::TopicMessage& m) {
    if (json) {
      fmt::print("{}\n", rotor::cli::ConsumeJsonLine(m));
      return;
    }
    // The summary line is for people: {:?} would quote and escape, but '{}' keeps the old
    // look; a key that is not UTF-8 prints as its bytes either way.
    const std::string key = m.key ? fmt::format("'{}'", *m.key) : std::string("(none)");
    auto tensors = rotor::encoders::DecodeReadyTensors(m.value);
    if (tensors.ok()) {
      fmt::print("p{} o{} key={} {} rows {} next_pos {} d_model {} blocks {}\n", m.partition,
                 m.offset, key, rotor::encoders::ReadyKindName(tensors->header.kind),
                 tensors->rows(), tensors->header.next_pos, tensors->d_model, tensors->k.size());
      return;
    }
    std::string headers;
    for (const auto& [name, value] : m.headers) {
      headers += fmt::format(" {}={}", name, value);
    }
    fmt::print("p{} o{} key={} {} bytes{}\n", m.partition, m.offset, key, m.value.size(), headers);
  };
  auto result = rotor::pipeline::ReadTopic(options);
  if (!result.ok()) {
    return Fail("consume", result.status());
  }
  return rotor::cli::kExitOk;
}

int Inspect(const Args& args, const Config& config) {
  const auto user = args.Get("user");
  const auto all = args.GetBool("all");
  if (!all.ok()) {
    return Fail("inspect", all.status());
  }
  if (!user && !*all) {
    return Fail("inspect", Status::InvalidArgument("--user ID or --all is required"));
  }
  auto bundle = LoadBundle(config);
  if (!bundle.ok()) {
    return Fail("inspect", bundle.status());
  }
  auto store = rotor::storage::UserStateStore::Open({.path = config.state.dir,
                                                     .block_cache_bytes = 64 << 20,
                                                     .write_buffer_bytes = 16 << 20,
                                                     .sync_writes = false,
                                                     .create_if_missing = false});
  if (!store.ok()) {
    return Fail("inspect", std::move(store).status().WithContext("state.dir"));
  }
  const auto& cfg = bundle->config();
  if (*all) {
    // One JSON line per user: positions, the recent ids count and the rows' digest.
    auto users = (*store)->ListUsers();
    if (!users.ok()) {
      return Fail("inspect", users.status());
    }
    for (const std::string& u : *users) {
      auto s = (*store)->LoadUserState(u, cfg.n_blocks(), cfg.window, cfg.d_model);
      if (!s.ok()) {
        return Fail("inspect", std::move(s).status().WithContext(fmt::format("user '{}'", u)));
      }
      if (!s->has_value()) {
        return Fail("inspect", Status::Internal("user '{}': vanished", u));
      }
      const rotor::encoders::KvWindow& w = (*s)->window;
      const nlohmann::json line = {{"user", u},
                                   {"next_pos", w.next_pos},
                                   {"rows", w.rows},
                                   {"last_ts_ms", w.last_ts_ms},
                                   {"recent_event_ids", (*s)->recent_event_ids.size()},
                                   {"digest", fmt::format("{:016x}", WindowDigest(w))}};
      // replace: a user id that is not UTF-8 prints with U+FFFD instead of throwing.
      fmt::print("{}\n", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    return rotor::cli::kExitOk;
  }
  auto state = (*store)->LoadUserState(*user, cfg.n_blocks(), cfg.window, cfg.d_model);
  if (!state.ok()) {
    return Fail("inspect", state.status());
  }
  if (!state->has_value()) {
    fmt::print("user '{}': no state\n", *user);
    return rotor::cli::kExitFailure;
  }
  PrintUser(*user, **state, bundle->model_id());
  return rotor::cli::kExitOk;
}

int Replay(const Args& args, const Config& config) {
  const auto file = args.Get("file");
  if (!file) {
    return Fail("replay", Status::InvalidArgument("--file EVENTS.jsonl is required"));
  }
  const auto partitions = args.GetInt("partitions", 0);
  if (!partitions.ok()) {
    return Fail("replay", partitions.status());
  }
  if (args.Get("partitions") &&
      (*partitions < 1 || *partitions > std::numeric_limits<int32_t>::max())) {
    return Fail("replay", Status::InvalidArgument(
                              "--partitions {}: expected a partition count >= 1", *partitions));
  }
  auto bundle = LoadBundle(config);
  if (!bundle.ok()) {
    return Fail("replay", bundle.status());
  }
  auto stats = rotor::pipeline::ReplayFile(config, *bundle, *file,
                                           {.partitions = static_cast<int32_t>(*partitions)});
  if (!stats.ok()) {
    return Fail("replay", stats.status(), config.state.dir);
  }
  fmt::print(
      "rotor replay: {} records, {} events into '{}' in {:.2f} s; {} dead letters, {} "
      "duplicates; {} expired users deleted, {} histories restarted\n",
      stats->records, stats->events, config.state.dir, stats->seconds, stats->dead_letters,
      stats->duplicates, stats->expired_users, stats->restarted_histories);
  return rotor::cli::kExitOk;
}

int Topics(const Args& args, const Config& config) {
  const auto partitions = args.GetInt("partitions", 8);
  if (!partitions.ok()) {
    return Fail("topics", partitions.status());
  }
  const auto& k = config.kafka;
  // The admin client is a producer handle: it connects with kafka.producer_properties.
  const Status s = rotor::pipeline::CreateTopics(
      k.bootstrap_servers, {k.input_topic, k.output_topic, k.dead_letter_topic},
      static_cast<int32_t>(*partitions), k.producer_properties);
  if (!s.ok()) {
    return Fail("topics", s);
  }
  return rotor::cli::kExitOk;
}

// The body of each command of cli::Commands().
int Run(std::string_view command, const Args& args, const Config& config) {
  if (command == "serve") {
    return Serve(args, config);
  }
  if (command == "produce") {
    return Produce(args, config);
  }
  if (command == "consume") {
    return Consume(args, config);
  }
  if (command == "inspect") {
    return Inspect(args, config);
  }
  if (command == "replay") {
    return Replay(args, config);
  }
  return Topics(args, config);
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr, "{}", rotor::cli::Usage());
    return rotor::cli::kExitUsage;
  }
  const std::string_view first = argv[1];
  if (first == "-h" || first == "--help" || first == "help") {
    fmt::print("{}", rotor::cli::Usage());
    return rotor::cli::kExitOk;
  }
  if (first == "--version") {
    fmt::print("rotor {}\n", ROTOR_VERSION);
    return rotor::cli::kExitOk;
  }
  const rotor::cli::Command* command = rotor::cli::FindCommand(first);
  if (command == nullptr) {
    fmt::print(stderr, "rotor: unknown command '{}'\n{}", first, rotor::cli::Usage());
    return rotor::cli::kExitUsage;
  }
  const std::vector<std::string_view> rest(argv + 2, argv + argc);
  auto args = rotor::cli::ParseArgs(*command, rest);
  if (!args.ok()) {
    fmt::print(stderr, "rotor {}: {}\nusage: {}\n", first, args.status().message(), command->usage);
    return ExitCodeFor(args.status());
  }
  if (args->help) {
    fmt::print("{}", rotor::cli::CommandHelp(*command));
    return rotor::cli::kExitOk;
  }
  auto config = LoadConfig(*args);
  if (!config.ok()) {
    if (!args->Get("config")) {
      fmt::print(stderr, "rotor {}: {}\nusage: {}\n", first, config.status().message(),
                 command->usage);
      return ExitCodeFor(config.status());
    }
    fmt::print(stderr, "rotor: {}\n", config.status().message());
    return ExitCodeFor(config.status());
  }
  return Run(command->name, *args, *config);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "rotor: internal error: {}\n", e.what());
    return rotor::cli::kExitFailure;
  }
}
