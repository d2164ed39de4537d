// api_bench: the CPU one POST /v1/users/{id}/score request costs inside rotor (no sockets), and
// its parts, in thread CPU time per request:
//
//   build/release/bench/api_bench --bundle=build/bench-bundles/default-w50.bundle.safetensors
//
// (bench/run.py makes that bundle: the `default` model at window 50 is the one the API load run
// serves). The user has a full window committed in a real RocksDB store in a temporary
// directory; the body is 100 candidates shaped as bench/api_load.py sends them (item id and
// features, attrs topic / surface / publisher, in json.dumps' spacing). Cases:
//
//   route/store  Router::Route of the whole request, the state read from RocksDB (what the load
//                run of docs/performance.md measured).
//   route/hot    the same with the user in the hot-window cache's committed view.
//   parse        EventParser::ParseScoreRequest of the body (JSON, checks, featurisation).
//   load         UserStateStore::LoadCommittedUser of the user (one snapshot, full window).
//   score        Decoder::ScoreCandidates of the parsed candidates against the window.
//   write        the response's JSON as score.cc writes it (sigmoid, JsonWriter, 3 floats per
//                candidate).
//
// --dump_responses=DIR writes the routers' responses to this request and a few others into DIR
// instead of measuring, to compare two builds' output byte for byte. Route's cost is about the
// sum of the parts plus the target parsing and dispatch. The source
// lives in api/ because `write` needs api/internal/json_writer.h; it is built in bench/.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/core.h>

#include "api/internal/json_writer.h"
#include "api/internal/resources.h"
#include "api/router.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/topic_partition.h"
#include "encoders/bundle.h"
#include "encoders/decoder.h"
#include "encoders/event_parser.h"
#include "encoders/featurizer.h"
#include "storage/committed_view.h"
#include "storage/user_state_store.h"
#include "storage/window_cache.h"

namespace rotor::api {
namespace {

constexpr int kCandidates = 100;
constexpr std::string_view kTopic = "rotor.events";
constexpr std::string_view kUser = "user-0001";
constexpr std::string_view kHotUser = "user-0002";

// A float as Python's json.dumps writes round(x, 4) (repr: the shortest round-trip form).
std::string PyFloat(double x) {
  const double r = std::round(x * 1e4) / 1e4 + 0.0;
  std::string s = fmt::format("{}", r);
  if (s.find_first_of(".e") == std::string::npos) {
    s += ".0";
  }
  return s;
}

// One value of categorical field `spec`: a vocab value, or "<first 3 letters><n>" ("pub17", as
// the synthetic publishers are named) for a hash field.
std::string AttrValue(const encoders::CategoricalSpec& spec, std::mt19937_64& rng) {
  if (spec.kind == encoders::CategoricalKind::kVocab && !spec.values.empty()) {
    return spec.values[rng() % spec.values.size()];
  }
  return fmt::format("{}{}", spec.name.substr(0, 3), rng() % 200);
}

// {"item": {"id": ..., "features": [...]}, "attrs": {...}} (+ an action object for events).
std::string EventJson(const encoders::ModelConfig& c, std::mt19937_64& rng, bool with_action) {
  std::normal_distribution<double> normal(0.0, 1.5);
  std::string out = fmt::format(R"({{"item": {{"id": "i{:05d}")", rng() % 5000);
  if (c.schema.item.kind == encoders::ItemKind::kFeatures) {
    out += R"(, "features": [)";
    for (int64_t i = 0; i < c.schema.item.dim; ++i) {
      out += (i == 0 ? "" : ", ") + PyFloat(normal(rng));
    }
    out += "]";
  }
  out += "}";
  if (with_action) {
    out += R"(, "action": {)";
    for (std::size_t i = 0; i < c.schema.actions.size(); ++i) {
      out += fmt::format(R"({}"{}": {})", i == 0 ? "" : ", ", c.schema.actions[i].name, rng() % 2);
    }
    out += "}";
  }
  out += R"(, "attrs": {)";
  for (std::size_t f = 0; f < c.schema.categorical.size(); ++f) {
    out += fmt::format(R"({}"{}": "{}")", f == 0 ? "" : ", ", c.schema.categorical[f].name,
                       AttrValue(c.schema.categorical[f], rng));
  }
  out += "}}";
  return out;
}

class TempDir {
 public:
  TempDir()
      : path_(std::filesystem::temp_directory_path() /
              fmt::format("rotor_api_bench_{}", getpid())) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// Everything the cases share: the bundle, a store holding kUser's full window, a committed view
// holding kHotUser's, two routers (store only, store + view) and the request.
struct Setup {
  TempDir dir;
  std::unique_ptr<encoders::Bundle> bundle;
  std::unique_ptr<storage::UserStateStore> store;
  std::unique_ptr<storage::CommittedView> view;
  std::unique_ptr<storage::WindowCache> hot;
  common::MetricsRegistry metrics_store, metrics_hot;
  std::unique_ptr<ApiContext> ctx_store, ctx_hot;
  std::unique_ptr<Router> router_store, router_hot;
  std::string body;
  std::string target, hot_target;
  int64_t ts_ms = 0;
};

Result<std::unique_ptr<Setup>> MakeSetup(const std::string& bundle_path) {
  auto s = std::make_unique<Setup>();
  ROTOR_ASSIGN_OR_RETURN(encoders::Bundle bundle, encoders::Bundle::Load(bundle_path));
  s->bundle = std::make_unique<encoders::Bundle>(std::move(bundle));
  const encoders::ModelConfig& c = s->bundle->config();
  ROTOR_ASSIGN_OR_RETURN(s->store, storage::UserStateStore::Open({.path = s->dir.path() + "/db",
                                                                  .sync_writes = false,
                                                                  .create_if_missing = true}));

  // A full window from events parsed, featurised and decoded as the pipeline does.
  ROTOR_ASSIGN_OR_RETURN(encoders::Decoder decoder, encoders::Decoder::Create(*s->bundle));
  encoders::EventParser parser(c);
  const encoders::Featurizer featurizer(c);
  std::mt19937_64 rng(42);
  encoders::KvWindow window = decoder.NewWindow(0);
  int64_t ts = c.t_ref_ms + int64_t{30} * 86400000;
  for (int64_t i = 0; i < c.window; ++i) {
    ts += 1000 + static_cast<int64_t>(rng() % 600000);
    std::string event = EventJson(c, rng, true);
    event.insert(1,
                 fmt::format(R"("event_id": "e{}", "user_id": "{}", "ts_ms": {}, )", i, kUser, ts));
    encoders::ParsedEvent parsed;
    encoders::Rejection rejection;
    if (!parser.Parse(event, parsed, rejection)) {
      return Status::Internal("event {}: {}", event, rejection.detail);
    }
    ROTOR_ASSIGN_OR_RETURN(encoders::EventInputs in, featurizer.Featurize(parsed.event, true));
    ROTOR_RETURN_IF_ERROR(decoder.Decode(window, in));
  }
  storage::StateBatch batch = s->store->NewBatch();
  ROTOR_RETURN_IF_ERROR(batch.PutWindow(kUser, s->bundle->model_id(), window, window.next_pos));
  ROTOR_RETURN_IF_ERROR(batch.SetOffset(kTopic, 0, 123456));
  ROTOR_RETURN_IF_ERROR(s->store->Commit(batch));
  ROTOR_RETURN_IF_ERROR(s->store->Flush());  // Reads come from an SST, as for a running daemon.

  s->view = std::make_unique<storage::CommittedView>(s->bundle->model_id());
  s->hot = std::make_unique<storage::WindowCache>(int64_t{64} << 20, s->view.get());
  if (s->hot->Insert(std::string(kHotUser),
                     storage::UserState{.window = window, .recent_event_ids = {}}) == nullptr) {
    return Status::Internal("the window cache refused the hot user");
  }
  const std::vector<std::string> hot_users{std::string(kHotUser)};
  const std::vector<std::pair<TopicPartition, int64_t>> offsets{
      {TopicPartition{std::string(kTopic), 0}, 123456}};
  s->hot->Publish(hot_users, offsets);

  // The request: api_load.py's body shape, 100 candidates at one request time.
  s->ts_ms = ts + 1000;
  s->body = fmt::format(R"({{"ts_ms": {}, "candidates": [)", s->ts_ms);
  for (int i = 0; i < kCandidates; ++i) {
    s->body += (i == 0 ? "" : ", ") + EventJson(c, rng, false);
  }
  s->body += "]}";
  s->target = fmt::format("/v1/users/{}/score", kUser);
  s->hot_target = fmt::format("/v1/users/{}/score", kHotUser);

  const auto context = [&](common::MetricsRegistry& metrics, const storage::CommittedView* view) {
    return std::make_unique<ApiContext>(ApiContext{
        .store = *s->store,
        .committed_view = view,
        .bundle = *s->bundle,
        .metrics = metrics,
        .input_topic = std::string(kTopic),
        .partition_of = [](std::string_view) { return 0; },
        .readiness = [] { return Readiness{.ready = true, .reason = {}, .partitions = {}}; },
        .now_ms = {},
        .limits = {},
        .locate = {},
        .forward_mode = ForwardMode::kProxy,
        .forward = {},
    });
  };
  s->ctx_store = context(s->metrics_store, nullptr);
  s->ctx_hot = context(s->metrics_hot, s->view.get());
  ROTOR_ASSIGN_OR_RETURN(s->router_store, Router::Create(*s->ctx_store));
  ROTOR_ASSIGN_OR_RETURN(s->router_hot, Router::Create(*s->ctx_hot));
  return s;
}

Setup* g_setup = nullptr;

void BenchRoute(benchmark::State& state, bool hot) {
  Setup& s = *g_setup;
  Router& router = hot ? *s.router_hot : *s.router_store;
  const Request request{.method = "POST", .target = hot ? s.hot_target : s.target, .body = s.body};
  for (auto _ : state) {
    Response response = router.Route(request);
    if (response.status != 200) {
      state.SkipWithError(response.body.c_str());
      break;
    }
    benchmark::DoNotOptimize(response.body.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BenchParse(benchmark::State& state) {
  Setup& s = *g_setup;
  encoders::EventParser parser(s.bundle->config());
  encoders::ScoreRequest request;
  encoders::Rejection rejection;
  for (auto _ : state) {
    if (!parser.ParseScoreRequest(s.body, encoders::ScoreRequestForm::kOneUser, {}, request,
                                  rejection)) {
      state.SkipWithError(rejection.detail.c_str());
      break;
    }
    benchmark::DoNotOptimize(request.users.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BenchLoad(benchmark::State& state) {
  Setup& s = *g_setup;
  const encoders::ModelConfig& c = s.bundle->config();
  for (auto _ : state) {
    Result<storage::CommittedUser> user =
        s.store->LoadCommittedUser(kUser, c.n_blocks(), c.window, c.d_model, kTopic, 0);
    if (!user.ok() || !user->state) {
      state.SkipWithError("LoadCommittedUser failed or found no state");
      break;
    }
    benchmark::DoNotOptimize(user->state->window.k.data());
  }
  state.SetItemsProcessed(state.iterations());
}

// The parsed candidates and the loaded window, for score and write.
struct Parsed {
  encoders::ScoreRequest request;
  storage::CommittedUser user;
};

Result<Parsed> ParseAndLoad(Setup& s) {
  Parsed p;
  encoders::EventParser parser(s.bundle->config());
  encoders::Rejection rejection;
  if (!parser.ParseScoreRequest(s.body, encoders::ScoreRequestForm::kOneUser, {}, p.request,
                                rejection)) {
    return Status::Internal("{}", rejection.detail);
  }
  const encoders::ModelConfig& c = s.bundle->config();
  ROTOR_ASSIGN_OR_RETURN(
      p.user, s.store->LoadCommittedUser(kUser, c.n_blocks(), c.window, c.d_model, kTopic, 0));
  return p;
}

void BenchScore(benchmark::State& state) {
  Setup& s = *g_setup;
  Result<Parsed> p = ParseAndLoad(s);
  Result<encoders::Decoder> decoder = encoders::Decoder::Create(*s.bundle);
  if (!p.ok() || !decoder.ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  const auto& candidates = p->request.users.front().candidates;
  std::vector<float> logits(candidates.size() * s.bundle->config().schema.labels.size());
  for (auto _ : state) {
    // As score.cc does: the logits are allocated per request.
    std::vector<float> out(logits.size());
    if (const Status st = decoder->ScoreCandidates(p->user.state->window, candidates, out);
        !st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}

// The response as score.cc writes it for a known user.
void BenchWrite(benchmark::State& state) {
  Setup& s = *g_setup;
  Result<Parsed> p = ParseAndLoad(s);
  Result<encoders::Decoder> decoder = encoders::Decoder::Create(*s.bundle);
  if (!p.ok() || !decoder.ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  const auto& candidates = p->request.users.front().candidates;
  const auto& labels = s.bundle->config().schema.labels;
  std::vector<float> logits(candidates.size() * labels.size());
  if (!decoder->ScoreCandidates(p->user.state->window, candidates, logits).ok()) {
    state.SkipWithError("ScoreCandidates failed");
    return;
  }
  const encoders::KvWindow& window = p->user.state->window;
  for (auto _ : state) {
    internal::JsonWriter json;
    json.BeginObject();
    json.Key("model_id").String(s.bundle->model_id());
    json.Key("ts_ms").Int(p->request.ts_ms);
    json.Key("user_id").String(kUser);
    json.Key("known").Bool(true);
    json.Key("next_pos").Int(window.next_pos);
    json.Key("input").BeginObject();
    json.Key("topic").String(kTopic);
    json.Key("partition").Int(0);
    json.Key("next_offset").Int(*p->user.next_offset);
    json.EndObject();
    internal::WriteScores(json, labels, logits);
    json.EndObject();
    std::string body = json.Take();
    benchmark::DoNotOptimize(body.data());
  }
  state.SetItemsProcessed(state.iterations());
}

// --dump_responses=DIR: writes the responses of both routers to the benchmark's request and to
// a larger one (1000 candidates, a cold user, many users at once) into DIR, to compare two
// builds' JSON byte for byte (docs/performance.md); 0 on success.
int DumpResponses(Setup& s, const std::string& dir) {
  std::mt19937_64 rng(7);
  const encoders::ModelConfig& c = s.bundle->config();
  std::string big = fmt::format(R"({{"ts_ms": {}, "candidates": [)", s.ts_ms + 12345);
  for (int i = 0; i < 1000; ++i) {
    big += (i == 0 ? "" : ", ") + EventJson(c, rng, false);
  }
  big += "]}";
  std::string many = fmt::format(R"({{"ts_ms": {}, "users": [)", s.ts_ms);
  for (const std::string_view user : {kUser, kHotUser, std::string_view("nobody")}) {
    many +=
        fmt::format(R"({}{{"user_id": "{}", "candidates": [{}, {}]}})", user == kUser ? "" : ", ",
                    user, EventJson(c, rng, false), EventJson(c, rng, false));
  }
  many += "]}";
  const std::vector<std::pair<std::string, Request>> requests = {
      {"store", {.method = "POST", .target = s.target, .body = s.body}},
      {"hot", {.method = "POST", .target = s.hot_target, .body = s.body}},
      {"store_1000", {.method = "POST", .target = s.target, .body = big}},
      {"hot_1000", {.method = "POST", .target = s.hot_target, .body = big}},
      {"cold_1000", {.method = "POST", .target = "/v1/users/nobody/score", .body = big}},
      {"many", {.method = "POST", .target = "/v1/score", .body = many}},
      {"refused",
       {.method = "POST",
        .target = s.target,
        .body = R"({"ts_ms": 1, "candidates": [{"item": 3}]})"}},
  };
  for (const auto& [name, request] : requests) {
    for (const bool hot : {false, true}) {
      Router& router = hot ? *s.router_hot : *s.router_store;
      const Response response = router.Route(request);
      const std::string path = fmt::format("{}/{}_{}.json", dir, name, hot ? "view" : "noview");
      std::FILE* f = std::fopen(path.c_str(), "w");
      if (f == nullptr) {
        std::fprintf(stderr, "api_bench: cannot write %s\n", path.c_str());
        return 1;
      }
      std::fprintf(f, "%d\n%s\n", response.status, response.body.c_str());
      std::fclose(f);
    }
  }
  return 0;
}

int Main(int argc, char** argv) {
  std::string bundle_path;
  std::string dump_dir;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--bundle=")) {
      bundle_path = std::string(arg.substr(9));
    } else if (arg.starts_with("--dump_responses=")) {
      dump_dir = std::string(arg.substr(17));
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) {
    return 2;
  }
  if (bundle_path.empty()) {
    std::fprintf(stderr, "api_bench: pass --bundle=<file>\n");
    return 2;
  }
  Result<std::unique_ptr<Setup>> setup = MakeSetup(bundle_path);
  if (!setup.ok()) {
    std::fprintf(stderr, "api_bench: %s\n", setup.status().ToString().c_str());
    return 1;
  }
  g_setup = setup->get();
  if (!dump_dir.empty()) {
    return DumpResponses(**setup, dump_dir);
  }
  benchmark::AddCustomContext("body_bytes", std::to_string((*setup)->body.size()));
  benchmark::AddCustomContext("candidates", std::to_string(kCandidates));
  benchmark::RegisterBenchmark("route/store", [](benchmark::State& s) { BenchRoute(s, false); });
  benchmark::RegisterBenchmark("route/hot", [](benchmark::State& s) { BenchRoute(s, true); });
  benchmark::RegisterBenchmark("parse", BenchParse);
  benchmark::RegisterBenchmark("load", BenchLoad);
  benchmark::RegisterBenchmark("score", BenchScore);
  benchmark::RegisterBenchmark("write", BenchWrite);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace
}  // namespace rotor::api

int main(int argc, char** argv) {
  return rotor::api::Main(argc, argv);
}
