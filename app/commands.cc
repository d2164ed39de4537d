#include "app/commands.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "api/client.h"
#include "api/router.h"
#include "api/server.h"
#include "app/print.h"
#include "app/runtime.h"
#include "config/daemon_config.h"
#include "encoders/ready_tensors.h"
#include "pipeline/daemon.h"
#include "pipeline/kafka_tools.h"
#include "pipeline/replay.h"
#include "storage/user_state_store.h"

namespace rotor::app {
namespace {

using cli::Flags;
using Config = config::DaemonConfig;

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
  if (status.code() == StatusCode::kResourceExhausted) {
    fmt::print(stderr,
               "rotor {}: state.dir '{}' is out of space; the state there is the last complete "
               "commit. Free space (or move state.dir to a bigger disk) and run again: it "
               "resumes from there. Exit status {}.\n",
               command, state_dir, cli::kExitDiskFull);
  }
  return cli::ExitCodeFor(status);
}

// The config, with its log level applied. Errors are "<file>: config <field>: ..."
// (tools/compose_check.sh tells config errors by this shape).
Result<Config> LoadConfig(const std::string& path) {
  auto config = config::LoadDaemonConfig(path, config::ProcessEnv());
  if (!config.ok()) {
    return std::move(config).status().WithContext(path);
  }
  switch (config->log.level) {
    case config::LogLevel::kDebug:
      spdlog::set_level(spdlog::level::debug);
      break;
    case config::LogLevel::kInfo:
      spdlog::set_level(spdlog::level::info);
      break;
    case config::LogLevel::kWarn:
      spdlog::set_level(spdlog::level::warn);
      break;
    case config::LogLevel::kError:
      spdlog::set_level(spdlog::level::err);
      break;
  }
  return config;
}

// A partition's phase as the API names it.
api::PartitionState StateOf(pipeline::PartitionPhase phase) {
  switch (phase) {
    case pipeline::PartitionPhase::kRestoring:
      return api::PartitionState::kRestoring;
    case pipeline::PartitionPhase::kConsuming:
      return api::PartitionState::kConsuming;
    case pipeline::PartitionPhase::kStopped:
      return api::PartitionState::kStopped;
  }
  return api::PartitionState::kStopped;
}

// The daemon's readiness as the API reports it: ready once serving and every assigned
// partition is consuming.
api::Readiness ReadinessOf(const pipeline::DaemonStatus& status) {
  api::Readiness out;
  out.ready = status.ready();
  out.reason = status.reason;
  for (const pipeline::PartitionReport& p : status.partitions) {
    api::PartitionStatus s;
    s.topic = p.partition.topic;
    s.partition = p.partition.partition;
    s.state = StateOf(p.phase);
    s.lag = p.lag;
    out.partitions.push_back(std::move(s));
  }
  if (!out.ready && out.reason.empty()) {
    out.reason = "not serving";
  }
  return out;
}

// Where a partition is served from, for the API: here (with its phase) when assigned to this
// instance, else at the owner the group's description names, else unknown (why).
api::Placement Locate(const pipeline::Daemon* d, int32_t partition) {
  api::Placement out;
  if (d == nullptr) {
    out.where = api::Placement::Where::kUnknown;
    out.reason = "this instance is starting";
    return out;
  }
  const pipeline::DaemonStatus status = d->status();
  for (const pipeline::PartitionReport& p : status.partitions) {
    if (p.partition.partition != partition) {
      continue;
    }
    out.lag = p.lag;
    out.state = StateOf(p.phase);
    if (p.phase != pipeline::PartitionPhase::kConsuming) {
      out.reason = fmt::format("partition {} of '{}' is {} here{}{}", partition, p.partition.topic,
                               pipeline::PartitionPhaseName(p.phase), p.reason.empty() ? "" : ": ",
                               p.reason);
    }
    return out;
  }
  if (!status.serving) {
    out.where = api::Placement::Where::kUnknown;
    out.reason = status.reason.empty() ? "not serving" : status.reason;
    return out;
  }
  pipeline::PartitionOwner owner = d->OwnerOf(partition);
  if (owner.api_url.empty()) {
    out.where = api::Placement::Where::kUnknown;
    out.reason = std::move(owner.reason);
    return out;
  }
  out.where = api::Placement::Where::kOwner;
  out.owner_url = std::move(owner.api_url);
  return out;
}

api::ForwardMode ForwardModeOf(config::ApiForward forward) {
  switch (forward) {
    case config::ApiForward::kProxy:
      return api::ForwardMode::kProxy;
    case config::ApiForward::kRedirect:
      return api::ForwardMode::kRedirect;
    case config::ApiForward::kOff:
      return api::ForwardMode::kOff;
  }
  return api::ForwardMode::kProxy;
}

// The URL the group is told this instance's API answers at: api.advertised_url, else the bound
// address and port ("http://*:PORT" for a wildcard address: the other members put in the host
// the group coordinator saw this instance connect from).
std::string AdvertisedUrl(const config::ApiOptions& api, const std::string& address,
                          uint16_t port) {
  if (!api.advertised_url.empty()) {
    return api.advertised_url;
  }
  if (address == "0.0.0.0" || address == "::") {
    return fmt::format("http://*:{}", port);
  }
  const bool v6 = address.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}", v6 ? "[" : "", address, v6 ? "]" : "", port);
}

// One user's committed state from the store, with the input it covers (the same read path
// as GET /v1/users/{id}). nullopt: the user has no state.
Result<std::optional<cli::UserSummary>> ReadUser(const Runtime& runtime, const std::string& user,
                                                 int32_t partition) {
  const encoders::ModelConfig& cfg = runtime.bundle().config();
  const std::string& topic = runtime.config().kafka.input_topic;
  ROTOR_ASSIGN_OR_RETURN(
      storage::CommittedUser committed,
      runtime.store().LoadCommittedUser(user, cfg.n_blocks(), cfg.window, cfg.d_model, topic,
                                        partition < 0 ? 0 : partition));
  if (!committed.state) {
    return std::optional<cli::UserSummary>();
  }
  if (partition < 0) {
    committed.next_offset.reset();
  }
  return std::optional<cli::UserSummary>(cli::SummarizeUser(user, committed, topic, partition));
}

int Serve(const Flags& flags, const Config& config) {
  pipeline::RunOptions run;
  run.exit_when_idle_ms = flags.exit_when_idle_ms;
  run.feed_file = flags.feed;
  if (!run.feed_file.empty() && !config.kafka.embedded) {
    return Fail("serve", Status::InvalidArgument(
                             "--feed is for the embedded cluster (kafka.embedded: true); use "
                             "`rotor produce` against a real broker"));
  }
  auto runtime = Runtime::Open(config);
  if (!runtime.ok()) {
    return Fail("serve", runtime.status(), config.state.dir);
  }
  Runtime& rt = **runtime;
  // The API starts first: its bound port is part of the address the daemon advertises to the
  // group (api.advertised_url, else derived from api.listen), and /healthz is up and /readyz
  // says why it is not ready while the daemon connects and restores. Until the daemon exists
  // every data request gets 503 not_ready. The context outlives the server.
  std::atomic<pipeline::Daemon*> live{nullptr};
  const api::ApiContext context{
      .store = rt.store(),
      .committed_view = &rt.committed_view(),
      .bundle = rt.bundle(),
      .metrics = rt.metrics(),
      .input_topic = config.kafka.input_topic,
      .partition_of =
          [&live](std::string_view user) {
            const pipeline::Daemon* d = live.load();
            return d == nullptr ? -1 : d->PartitionOf(user);
          },
      .readiness =
          [&live] {
            const pipeline::Daemon* d = live.load();
            if (d == nullptr) {
              return api::Readiness{.ready = false, .reason = "starting", .partitions = {}};
            }
            return ReadinessOf(d->status());
          },
      .now_ms = {},
      .limits = api::ApiLimitsFromConfig(config.api),
      .locate = [&live](int32_t partition) { return Locate(live.load(), partition); },
      .forward_mode = ForwardModeOf(config.api.forward),
      // At most api.threads - 1 forwards at once: a frozen owner keeps one thread free for the
      // probes and this instance's own users.
      .forward = api::HttpForwarder(
          {.timeout = std::chrono::milliseconds(config.api.forward_timeout_ms),
           .max_in_flight = std::max(1, config.api.threads - 1),
           .cooldown = std::chrono::milliseconds(config.api.owners_refresh_ms)})};
  std::unique_ptr<api::Server> server;
  if (config.api.enabled) {
    const api::ServerOptions options = api::ServerOptionsFromConfig(config.api);
    auto started = api::Server::Start(options, context);
    if (!started.ok()) {
      // An address in use is Unavailable (exit 1: retry once it is free); a bad address
      // InvalidArgument (exit 2).
      return Fail("serve", std::move(started).status().WithContext(
                               fmt::format("api.listen '{}'", config.api.listen)));
    }
    server = std::move(started).value();
    const bool v6 = options.address.find(':') != std::string::npos;
    spdlog::info("rotor serve: API listening on {}{}{}:{}", v6 ? "[" : "", options.address,
                 v6 ? "]" : "", server->port());
    run.api_url = AdvertisedUrl(config.api, options.address, server->port());
  }
  auto daemon = pipeline::Daemon::Create(config,
                                         {.bundle = &rt.bundle(),
                                          .store = &rt.store(),
                                          .metrics = &rt.metrics(),
                                          .committed_view = &rt.committed_view()},
                                         run);
  if (!daemon.ok()) {
    if (server) {
      server->Stop();
    }
    return Fail("serve", daemon.status(), config.state.dir);
  }
  pipeline::Daemon& d = **daemon;
  live.store(&d);

  InstallSignals();
  const Status served = d.Run(g_stop);
  if (server) {
    server->Stop();  // Before the daemon and the store go: the API reads them.
    server.reset();
  }
  const pipeline::DaemonStats stats = d.stats();
  fmt::print(
      "rotor serve: {} events in {:.2f} s busy = {:.0f} events/s; {} dead letters, {} "
      "duplicates, {} deltas, {} snapshots published; {} expired users deleted, {} histories "
      "restarted\n",
      stats.events, stats.busy_seconds,
      stats.busy_seconds > 0 ? static_cast<double>(stats.events) / stats.busy_seconds : 0.0,
      stats.dead_letters, stats.duplicates, stats.deltas, stats.snapshots, stats.expired_users,
      stats.restarted_histories);
  if (!flags.show_user.empty()) {
    auto user = ReadUser(rt, flags.show_user, d.PartitionOf(flags.show_user));
    if (!user.ok()) {
      fmt::print(stderr, "rotor serve: {}\n", user.status().message());
    } else if (!user->has_value()) {
      fmt::print("user '{}': no state\n", flags.show_user);
    } else {
      fmt::print("{}", cli::FormatUserSummary(**user));
    }
  }
  live.store(nullptr);
  daemon->reset();
  Status closed = rt.Close();
  if (!served.ok()) {
    return Fail("serve", served, config.state.dir);
  }
  if (!closed.ok()) {
    return Fail("serve", std::move(closed).WithContext("closing state.dir"), config.state.dir);
  }
  return cli::kExitOk;
}

int Produce(const Flags& flags, const Config& config) {
  if (config.kafka.embedded) {
    return Fail("produce",
                Status::InvalidArgument("the embedded cluster lives inside `rotor serve`; use "
                                        "`rotor serve --feed FILE` with it"));
  }
  pipeline::ProduceOptions options;
  options.bootstrap_servers = config.kafka.bootstrap_servers;
  options.topic = flags.topic.empty() ? config.kafka.input_topic : flags.topic;
  options.rate_per_s = static_cast<double>(flags.rate);
  options.limit = flags.limit;
  options.properties = config.kafka.producer_properties;
  InstallSignals();
  options.stop = &g_stop;
  auto result = pipeline::ProduceJsonLines(flags.file, options);
  if (!result.ok()) {
    return Fail("produce", result.status());
  }
  fmt::print("rotor produce: {} events to '{}' in {:.2f} s ({:.0f}/s), {} failed\n", result->sent,
             options.topic, result->seconds,
             result->seconds > 0 ? static_cast<double>(result->sent) / result->seconds : 0.0,
             result->failed);
  return result->failed == 0 ? cli::kExitOk : cli::kExitFailure;
}

int Consume(const Flags& flags, const Config& config) {
  pipeline::ReadOptions options;
  options.bootstrap_servers = config.kafka.bootstrap_servers;
  options.topic = flags.topic.empty() ? config.kafka.output_topic : flags.topic;
  options.properties = config.kafka.consumer_properties;
  options.max_messages = flags.max;
  options.idle_ms = flags.idle_ms;
  options.on_message = [json = flags.json](const pipeline::TopicMessage& m) {
    if (json) {
      fmt::print("{}\n", cli::ConsumeJsonLine(m));
      return;
    }
    // The summary line is for people: {:?} would quote and escape, but '{}' keeps the old
    // look; a key that is not UTF-8 prints as its bytes either way.
    const std::string key = m.key ? fmt::format("'{}'", *m.key) : std::string("(none)");
    auto tensors = encoders::DecodeReadyTensors(m.value);
    if (tensors.ok()) {
      fmt::print("p{} o{} key={} {} rows {} next_pos {} d_model {} blocks {}\n", m.partition,
                 m.offset, key, encoders::ReadyKindName(tensors->header.kind), tensors->rows(),
                 tensors->header.next_pos, tensors->d_model, tensors->k.size());
      return;
    }
    std::string headers;
    for (const auto& [name, value] : m.headers) {
      headers += fmt::format(" {}={}", name, value);
    }
    fmt::print("p{} o{} key={} {} bytes{}\n", m.partition, m.offset, key, m.value.size(), headers);
  };
  auto result = pipeline::ReadTopic(options);
  if (!result.ok()) {
    return Fail("consume", result.status());
  }
  return cli::kExitOk;
}

// `rotor inspect --url`: GET /v1/users/{id} and its tensors, summarized as from state.dir.
int InspectOverHttp(const Flags& flags) {
  auto url = api::ParseHttpUrl(flags.url);
  if (!url.ok()) {
    return Fail("inspect", std::move(url).status().WithContext("--url"));
  }
  const std::string path = "/v1/users/" + api::PercentEncodeSegment(flags.user);
  auto meta = api::HttpRequest(*url, "GET", path);
  if (!meta.ok()) {
    return Fail("inspect", meta.status());
  }
  if (meta->status == 404) {
    fmt::print("user '{}': no state\n", flags.user);
    return cli::kExitFailure;
  }
  const nlohmann::json j = nlohmann::json::parse(meta->body, nullptr, /*allow_exceptions=*/false);
  if (meta->status != 200 || !j.is_object()) {
    return Fail("inspect", Status::Unavailable("GET {}{} on {}: HTTP {}: {}", url->prefix, path,
                                               flags.url, meta->status, meta->body));
  }
  cli::UserSummary s;
  s.user = flags.user;
  try {
    s.model_id = j.at("model_id").get<std::string>();
    s.next_pos = j.at("next_pos").get<int64_t>();
    s.rows = j.at("rows").get<int64_t>();
    s.window = j.at("window").get<int64_t>();
    s.last_ts_ms = j.at("last_event_ts_ms").get<int64_t>();
    const nlohmann::json& input = j.at("input");
    s.input_topic = input.at("topic").get<std::string>();
    s.partition = input.at("partition").get<int32_t>();
    if (!input.at("next_offset").is_null()) {
      s.next_offset = input.at("next_offset").get<int64_t>();
    }
  } catch (const nlohmann::json::exception& e) {
    return Fail("inspect", Status::Corruption("GET {}{}: unexpected answer ({}): {}", url->prefix,
                                              path, e.what(), meta->body));
  }
  // The newest rows come from the window itself (the snapshot message); a state committed
  // between the two requests is newer than the metadata: the tensors' own header says so.
  auto tensors_body = api::HttpRequest(*url, "GET", path + "/tensors");
  if (!tensors_body.ok()) {
    return Fail("inspect", tensors_body.status());
  }
  if (tensors_body->status == 200) {
    auto tensors = encoders::DecodeReadyTensors(tensors_body->body);
    if (!tensors.ok()) {
      return Fail("inspect", std::move(tensors).status().WithContext(path + "/tensors"));
    }
    if (tensors->header.next_pos == s.next_pos && tensors->rows() > 0) {
      const int64_t d = tensors->d_model;
      const int64_t last = (tensors->rows() - 1) * d;
      for (std::size_t b = 0; b < tensors->k.size(); ++b) {
        s.newest_k.emplace_back(tensors->k[b].begin() + last, tensors->k[b].begin() + last + d);
        s.newest_v.emplace_back(tensors->v[b].begin() + last, tensors->v[b].begin() + last + d);
      }
    }
  }
  fmt::print("{}", cli::FormatUserSummary(s));
  return cli::kExitOk;
}

int InspectAll(const Runtime& rt) {
  const encoders::ModelConfig& cfg = rt.bundle().config();
  // One JSON line per user: positions, the recent ids count and the rows' digest.
  auto users = rt.store().ListUsers();
  if (!users.ok()) {
    return Fail("inspect", users.status());
  }
  for (const std::string& u : *users) {
    auto s = rt.store().LoadUserState(u, cfg.n_blocks(), cfg.window, cfg.d_model);
    if (!s.ok()) {
      return Fail("inspect", std::move(s).status().WithContext(fmt::format("user '{}'", u)));
    }
    if (!s->has_value()) {
      return Fail("inspect", Status::Internal("user '{}': vanished", u));
    }
    const encoders::KvWindow& w = (*s)->window;
    const nlohmann::json line = {{"user", u},
                                 {"next_pos", w.next_pos},
                                 {"rows", w.rows},
                                 {"last_ts_ms", w.last_ts_ms},
                                 {"recent_event_ids", (*s)->recent_event_ids.size()},
                                 {"digest", fmt::format("{:016x}", cli::WindowDigest(w))}};
    // replace: a user id that is not UTF-8 prints with U+FFFD instead of throwing.
    fmt::print("{}\n", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  return cli::kExitOk;
}

int Inspect(const Flags& flags, const Config& config) {
  auto runtime = Runtime::Open(config, {.create_state_dir = false});
  if (!runtime.ok()) {
    return Fail("inspect", runtime.status(), config.state.dir);
  }
  const Runtime& rt = **runtime;
  if (flags.all) {
    return InspectAll(rt);
  }
  // The user's input partition by the partition count the daemon recorded (-1 when none was:
  // a state.dir only replayed without --partitions).
  auto partitions = rt.RecordedInputPartitions();
  if (!partitions.ok()) {
    return Fail("inspect", partitions.status());
  }
  const int32_t partition = pipeline::JavaPartitionOf(flags.user, *partitions);
  auto user = ReadUser(rt, flags.user, partition);
  if (!user.ok()) {
    return Fail("inspect", user.status());
  }
  if (!user->has_value()) {
    fmt::print("user '{}': no state\n", flags.user);
    return cli::kExitFailure;
  }
  fmt::print("{}", cli::FormatUserSummary(**user));
  return cli::kExitOk;
}

// "0,3,5": the partitions to replay.
Result<std::vector<int32_t>> ParsePartitionList(std::string_view text) {
  std::vector<int32_t> out;
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    const std::string_view item = text.substr(at, comma - at);
    int32_t p = -1;
    const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), p);
    if (item.empty() || error != std::errc() || end != item.data() + item.size() || p < 0) {
      return Status::InvalidArgument("--partition {}: expected partition numbers, as 0,3,5", text);
    }
    out.push_back(p);
    at = comma + 1;
  }
  return out;
}

// One --start or --end: "SPEC" for every partition, "P:SPEC" for partition P.
Status AddOffsetSpec(std::string_view flag, std::string_view given, pipeline::OffsetSpec& all,
                     std::map<int32_t, pipeline::OffsetSpec>& of) {
  std::string_view spec = given;
  std::optional<int32_t> partition;
  const std::size_t colon = given.find(':');
  if (colon != std::string_view::npos && !given.starts_with('@')) {
    int32_t p = -1;
    const auto [end, error] = std::from_chars(given.data(), given.data() + colon, p);
    if (colon == 0 || error != std::errc() || end != given.data() + colon || p < 0) {
      return Status::InvalidArgument("{} {}: expected [PARTITION:]SPEC", flag, given);
    }
    partition = p;
    spec = given.substr(colon + 1);
  }
  auto parsed = pipeline::ParseOffsetSpec(spec);
  if (!parsed.ok()) {
    return Status::InvalidArgument("{} {}", flag, parsed.status().message());
  }
  if (partition) {
    if (!of.emplace(*partition, *parsed).second) {
      return Status::InvalidArgument("{} is given twice for partition {}", flag, *partition);
    }
  } else {
    all = *parsed;
  }
  return Status::OK();
}

// `rotor replay --kafka`: kafka.input_topic into state.dir (docs/operations.md, Backfill).
int ReplayKafka(const Flags& flags, const Config& config) {
  pipeline::KafkaReplayOptions options;
  if (!flags.partition_list.empty()) {
    auto partitions = ParsePartitionList(flags.partition_list);
    if (!partitions.ok()) {
      return Fail("replay", partitions.status());
    }
    options.partitions = std::move(partitions).value();
  }
  for (const std::string& given : flags.start) {
    if (const Status s = AddOffsetSpec("--start", given, options.start, options.start_of);
        !s.ok()) {
      return Fail("replay", s);
    }
  }
  for (const std::string& given : flags.end) {
    if (const Status s = AddOffsetSpec("--end", given, options.end, options.end_of); !s.ok()) {
      return Fail("replay", s);
    }
  }
  options.end_given = !flags.end.empty();
  options.publish = flags.publish;
  if (flags.jobs > 1024) {
    return Fail("replay", Status::InvalidArgument("--jobs {}: at most 1024", flags.jobs));
  }
  options.jobs = static_cast<int32_t>(flags.jobs);
  if (config.kafka.embedded) {
    return Fail("replay", Status::InvalidArgument(
                              "kafka.embedded is true: the embedded cluster lives inside `rotor "
                              "serve` and holds nothing to replay; set kafka.embedded: false and "
                              "kafka.bootstrap_servers to the cluster whose topic to replay"));
  }
  auto runtime = Runtime::Open(config, {.create_state_dir = true, .sync_writes = false});
  if (!runtime.ok()) {
    return Fail("replay", runtime.status(), config.state.dir);
  }
  Runtime& rt = **runtime;
  InstallSignals();
  options.stop = &g_stop;
  // A bar redrawn in place on a terminal; plain lines every log.stats_interval_ms elsewhere.
  const bool bar = isatty(STDERR_FILENO) == 1;
  if (bar || config.log.stats_interval_ms > 0) {
    options.progress_interval_ms = bar ? 250 : config.log.stats_interval_ms;
    options.on_progress = [bar](const pipeline::ReplayProgress& progress) {
      if (bar) {
        fmt::print(stderr, "\r{}{}", cli::FormatReplayProgress(progress, true),
                   progress.finished ? "\n" : "");
      } else {
        fmt::print(stderr, "{}\n", cli::FormatReplayProgress(progress, false));
      }
      std::fflush(stderr);
    };
  }
  auto stats = pipeline::ReplayKafka(config, rt.bundle(), rt.store(), options);
  const Status closed = rt.Close();
  if (!stats.ok()) {
    return Fail("replay", stats.status(), config.state.dir);
  }
  if (!closed.ok()) {
    return Fail("replay", closed, config.state.dir);
  }
  fmt::print(
      "rotor replay: {} records, {} events of '{}' ({} partitions, {} resumed) into '{}' in "
      "{:.2f} s ({:.0f} events/s); {} dead letters, {} duplicates; {} messages published; {} "
      "expired users deleted, {} histories restarted\n",
      stats->records, stats->events, config.kafka.input_topic, stats->partitions,
      stats->resumed_partitions, config.state.dir, stats->seconds,
      stats->seconds > 0 ? static_cast<double>(stats->events) / stats->seconds : 0.0,
      stats->dead_letters, stats->duplicates, stats->published, stats->expired_users,
      stats->restarted_histories);
  return cli::kExitOk;
}

int Replay(const Flags& flags, const Config& config) {
  if (flags.kafka) {
    return ReplayKafka(flags, config);
  }
  // With a TTL and no count given, only a state directory that recorded one can do: opening
  // does not create one just to refuse it.
  const bool needs_recorded_count = config.state.user_ttl_ms > 0 && !flags.partitions;
  auto runtime =
      Runtime::Open(config, {.create_state_dir = !needs_recorded_count, .sync_writes = false});
  if (!runtime.ok() && needs_recorded_count && runtime.status().code() == StatusCode::kNotFound) {
    return Fail("replay",
                Status::InvalidArgument(
                    "state.user_ttl_ms = {} expires users against the event-time watermark of "
                    "their input partition, so a replay must put each event in the partition "
                    "Kafka gives its user: pass --partitions N, the partition count of "
                    "kafka.input_topic '{}'",
                    config.state.user_ttl_ms, config.kafka.input_topic));
  }
  if (!runtime.ok()) {
    return Fail("replay", runtime.status(), config.state.dir);
  }
  Runtime& rt = **runtime;
  const int64_t partitions = flags.partitions.value_or(0);
  if (partitions > std::numeric_limits<int32_t>::max()) {
    return Fail("replay", Status::InvalidArgument("--partitions {}: too many", partitions));
  }
  auto stats = pipeline::ReplayFile(config, rt.bundle(), rt.store(), flags.file,
                                    {.partitions = static_cast<int32_t>(partitions)});
  if (!stats.ok()) {
    return Fail("replay", stats.status(), config.state.dir);
  }
  if (const Status closed = rt.Close(); !closed.ok()) {
    return Fail("replay", closed, config.state.dir);
  }
  fmt::print(
      "rotor replay: {} records, {} events into '{}' in {:.2f} s; {} dead letters, {} "
      "duplicates; {} expired users deleted, {} histories restarted\n",
      stats->records, stats->events, config.state.dir, stats->seconds, stats->dead_letters,
      stats->duplicates, stats->expired_users, stats->restarted_histories);
  return cli::kExitOk;
}

int Topics(const Flags& flags, const Config& config) {
  const int64_t partitions = flags.partitions.value_or(8);
  if (partitions > std::numeric_limits<int32_t>::max()) {
    return Fail("topics", Status::InvalidArgument("--partitions {}: too many", partitions));
  }
  const config::KafkaOptions& k = config.kafka;
  // The admin client is a producer handle: it connects with kafka.producer_properties.
  std::vector<std::string> topics = {k.input_topic, k.output_topic, k.dead_letter_topic};
  std::map<std::string, std::map<std::string, std::string>> configs;
  if (!k.changelog_topic.empty()) {
    topics.push_back(k.changelog_topic);  // Partitioned like the input: the same count.
    configs[k.changelog_topic] = pipeline::ChangelogTopicConfigs();
  }
  const Status s =
      pipeline::CreateTopics(k.bootstrap_servers, topics, static_cast<int32_t>(partitions),
                             k.producer_properties, configs);
  if (!s.ok()) {
    return Fail("topics", s);
  }
  return cli::kExitOk;
}

}  // namespace

int RunCommand(const cli::Command& command, const cli::Flags& flags) {
  const std::string_view name = command.name;
  if (name == "inspect" && !flags.url.empty()) {
    return InspectOverHttp(flags);  // No config: the daemon has it.
  }
  auto config = LoadConfig(flags.config);
  if (!config.ok()) {
    fmt::print(stderr, "rotor: {}\n", config.status().message());
    return cli::ExitCodeFor(config.status());
  }
  if (name == "serve") {
    return Serve(flags, *config);
  }
  if (name == "produce") {
    return Produce(flags, *config);
  }
  if (name == "consume") {
    return Consume(flags, *config);
  }
  if (name == "inspect") {
    return Inspect(flags, *config);
  }
  if (name == "replay") {
    return Replay(flags, *config);
  }
  return Topics(flags, *config);
}

}  // namespace rotor::app
