// decode_bench: the incremental decode step of rotor's encoder (encoders/decoder.h) on real
// bundles, against the roofline of this machine and against re-encoding the window per event
// (DESIGN section 7).
//
//   build/release/bench/decode_bench --bundle=build/bench-bundles [--bundle=other.safetensors]
//       [--cold_mib=128] [benchmark flags: --benchmark_repetitions=5 ...]
//
// --bundle (repeatable) names a bundle file or a directory whose *.safetensors files are all
// taken; --cold_mib sizes the cold cases' working set. Both go before the benchmark flags. The
// roofline ceilings (peak FMA GFLOP/s, streaming GB/s, single thread) are measured once at
// start and printed in the context with the kernels' SIMD target. bench/run.py builds the
// bundles, runs this and tabulates the medians.
//
// Cases, per bundle <name> (the file name without .safetensors / .bundle.safetensors), W being
// its window, on one thread. Times are that thread's CPU time (Google Benchmark's default): on a
// shared virtual machine it leaves out the time other tenants steal, and a single-threaded
// computation's CPU time is its wall time otherwise (memory stalls included).
//   b1/<name>        One user whose window is full (W events decoded first); each iteration
//                    Decodes one more event, so the ring overwrites its oldest row and the
//                    window stays full. The window and the weights stay in cache.
//   b1cold/<name>    As b1, but each iteration decodes the next of U users round robin, U full
//                    windows of --cold_mib MiB in all (4x the 32 MiB L3 by default), so every
//                    event's window comes from memory, as for a daemon with many users.
//   b64/<name>       64 users with full windows; each iteration DecodeBatch-es one event for
//                    each (items_per_second = events/s).
//   b64cold/<name>   As b64, round robin over groups of 64 users, --cold_mib MiB in all.
//   reencode/<name>  What serving without a persistent cache costs per event: each iteration
//                    resets one window to empty (reused storage, nothing allocated) and
//                    Decodes W + 1 events into it, the last one being the event to serve. The
//                    decoder has no sequence-batched forward, so this is W + 1 batch-1 steps
//                    over a growing prefix: the same attention work as a causal full forward
//                    over W + 1 events, with the projections as matrix-vector products.
//   cand100/<name>   ScoreCandidates of 100 candidates against a full window per iteration
//                    (items_per_second = candidates/s).
//
// Counters (per event; per candidate for cand100; for a whole re-encode for reencode):
//   flops         2 x the multiply-adds of every matrix product, from the model dims:
//                 attention rows x n_blocks x 2 x d_model (q.k and the weighted sum of V, per
//                 cached row and block; n_blocks = layers + 1 with the action attention), plus
//                 per layer 4 d^2 (W_q, W_k, W_v, W_o) + 2 ffn_mult d^2 (FFN), plus the item
//                 projection, the action MLP, both angle networks and the head. Elementwise
//                 work (LayerNorm, SiLU, sin/cos, softmax) is not counted. Candidates skip
//                 W_k, W_v and the action MLP.
//   bytes         K/V read: rows x n_blocks x 2 x d_model x 4, plus the weights read per event:
//                 every weight and bias once per batch (so / 64 at batch 64), an embedding
//                 table one row. (The new row's K/V writes, 1/W of the reads, are left out.)
//   roofline      max(flops / peak, K/V bytes / bw_kv + weight bytes / bw_w) / measured time
//                 (1 = at the bound), each byte read at the bandwidth of where it lives, as
//                 measured in this run (MeasureReadBandwidthGBs over a buffer of that size):
//                 hot cases read everything at the bandwidth of their working set (weights +
//                 one window for b1 and cand100, + 64 windows for b64: L2, L3 or memory); cold
//                 cases read K/V at the memory bandwidth and the weights at the bandwidth of
//                 their own size (the weights are what every event reuses).
//   roofline_dram max(flops / peak, bytes / memory bandwidth) / measured time: DESIGN section 7's
//                 bound with every byte from memory. Above 1 where the data sits in cache.
//   compute       (flops / peak) / measured time: the fraction of the FMA peak reached.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "encoders/bundle.h"
#include "encoders/decoder.h"
#include "encoders/featurizer.h"
#include "encoders/kv_window.h"
#include "encoders/model_config.h"
#include "encoders/roofline.h"

namespace rotor::encoders {
namespace {

constexpr int kBatch = 64;
constexpr int kCandidates = 100;
// Distinct events decoded in turn; more than one batch, so batches differ.
constexpr size_t kEventPool = 256;

// What one event (or candidate) costs in arithmetic and bytes, from the model's dims.
struct ModelCost {
  double macs_fixed = 0;       // Per event, independent of the window.
  double cand_macs_fixed = 0;  // Per candidate.
  double macs_per_row = 0;     // Per cached row visible: n_blocks x 2 x d_model.
  double weight_bytes = 0;     // Weights read once per decode batch.
  double cand_weight_bytes = 0;
  double kv_row_bytes = 0;  // n_blocks x 2 x d_model x 4.

  double Flops(int64_t rows) const {
    return 2.0 * (macs_fixed + macs_per_row * static_cast<double>(rows));
  }
  double CandFlops(int64_t rows) const {
    return 2.0 * (cand_macs_fixed + macs_per_row * static_cast<double>(rows));
  }
  double KvBytes(int64_t rows) const { return kv_row_bytes * static_cast<double>(rows); }
};

bool IsTable(std::string_view name) {
  return name == "item_emb.weight" || name.find(".cat.") != std::string_view::npos;
}

// Weights a candidate never reads: its action is unknown, and it writes no K/V rows.
bool CandidateSkips(std::string_view name) {
  return name.starts_with("action_mlp.") || name.find(".wk.") != std::string_view::npos ||
         name.find(".wv.") != std::string_view::npos;
}

ModelCost CostOf(const Bundle& bundle) {
  const ModelConfig& c = bundle.config();
  const auto d = static_cast<double>(c.d_model);
  ModelCost cost;
  // Every Linear weight [out, in] is one multiply-add per element per event; tables are
  // lookups. So the fixed multiply-adds are the matrix elements, and the bytes add biases,
  // norms and one table row per lookup.
  for (const auto& [name, t] : bundle.tensors()) {
    const auto n = static_cast<double>(t.numel());
    if (IsTable(name)) {
      const auto row_bytes = 4.0 * static_cast<double>(t.dim(1));
      cost.weight_bytes += row_bytes;
      cost.cand_weight_bytes += row_bytes;
      continue;
    }
    cost.weight_bytes += 4.0 * n;
    const bool matrix = t.shape.size() == 2;
    if (matrix) {
      cost.macs_fixed += n;
    }
    if (!CandidateSkips(name)) {
      cost.cand_weight_bytes += 4.0 * n;
      if (matrix) {
        cost.cand_macs_fixed += n;
      }
    }
  }
  cost.macs_per_row = static_cast<double>(c.n_blocks()) * 2.0 * d;
  cost.kv_row_bytes = static_cast<double>(c.n_blocks()) * 2.0 * d * 4.0;
  return cost;
}

// A bundle with its decoder and featurised inputs.
struct Case {
  std::string name;
  std::unique_ptr<Bundle> bundle;
  std::unique_ptr<Decoder> decoder;
  ModelCost cost;
  std::vector<EventInputs> events;      // kEventPool + kBatch: a batch may start anywhere.
  std::vector<EventInputs> candidates;  // kCandidates.
  KvWindow full;                        // A window holding W events, for copying.
  // Read bandwidth (bytes/s) over the hot cases' working sets, the weights plus one window (b1,
  // cand100) or 64 windows (b64), and over the weights alone.
  double b1_bytes_per_s = 0;
  double b64_bytes_per_s = 0;
  double weights_bytes_per_s = 0;
};

// The roofline ceilings measured at start, in flop/s and bytes/s.
struct Ceilings {
  double peak_flops = 0;
  double bytes_per_s = 0;
};

Ceilings g_roofline;
int64_t g_cold_bytes = int64_t{128} << 20;

Event RandomEvent(const ModelConfig& c, std::mt19937_64& rng, int64_t ts_ms) {
  Event e;
  e.has_ts_ms = true;
  e.ts_ms = ts_ms;
  e.has_item = true;
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> action(0.0, 3.0);
  if (c.schema.item.kind == ItemKind::kFeatures) {
    e.has_item_features = true;
    for (int64_t i = 0; i < c.schema.item.dim; ++i) {
      e.item_features.push_back(normal(rng));
    }
  } else {
    e.has_item_id = true;
    e.item_id = "item-" + std::to_string(rng() % 100000);
  }
  for (const ActionSpec& a : c.schema.actions) {
    e.actions.emplace_back(a.name, action(rng));
  }
  for (const CategoricalSpec& f : c.schema.categorical) {
    std::string value = f.kind == CategoricalKind::kVocab && !f.values.empty()
                            ? f.values[rng() % f.values.size()]
                            : "value-" + std::to_string(rng() % 1000);
    e.attrs.emplace_back(f.name, std::move(value));
  }
  return e;
}

Result<std::unique_ptr<Case>> LoadCase(const std::filesystem::path& path) {
  auto out = std::make_unique<Case>();
  std::string name = path.filename().string();
  for (const std::string_view suffix : {".bundle.safetensors", ".safetensors"}) {
    if (name.ends_with(suffix)) {
      name.resize(name.size() - suffix.size());
      break;
    }
  }
  out->name = name;
  ROTOR_ASSIGN_OR_RETURN(Bundle bundle, Bundle::Load(path.string()));
  out->bundle = std::make_unique<Bundle>(std::move(bundle));
  ROTOR_ASSIGN_OR_RETURN(Decoder decoder, Decoder::Create(*out->bundle));
  out->decoder = std::make_unique<Decoder>(std::move(decoder));
  const ModelConfig& c = out->bundle->config();
  out->cost = CostOf(*out->bundle);

  const Featurizer featurizer(c);
  std::mt19937_64 rng(42);
  int64_t ts = c.t_ref_ms + int64_t{30} * 86400000;
  for (size_t i = 0; i < kEventPool + kBatch; ++i) {
    ts += 1000 + static_cast<int64_t>(rng() % 600000);
    ROTOR_ASSIGN_OR_RETURN(EventInputs in, featurizer.Featurize(RandomEvent(c, rng, ts), true));
    out->events.push_back(std::move(in));
  }
  for (int i = 0; i < kCandidates; ++i) {
    ROTOR_ASSIGN_OR_RETURN(EventInputs in,
                           featurizer.Featurize(RandomEvent(c, rng, ts + 60000), false));
    out->candidates.push_back(std::move(in));
  }
  out->full = out->decoder->NewWindow(0);
  for (int64_t i = 0; i < c.window; ++i) {
    ROTOR_RETURN_IF_ERROR(
        out->decoder->Decode(out->full, out->events[static_cast<size_t>(i) % kEventPool]));
  }
  return out;
}

// Where a case's bytes come from: K/V rows and weights, each at a measured read bandwidth.
struct Sources {
  double kv_bytes = 0;
  double kv_bytes_per_s = 0;
  double weight_bytes = 0;
  double weight_bytes_per_s = 0;
};

// The roofline counters of a case doing `flops` and reading `src` per unit (event or
// candidate), `units` per iteration. Rate counters are multiplied by the iterations and divided
// by the measured time, so each reads bound time / measured time:
//   roofline       max(flops / peak, kv_bytes / kv_bw + weight_bytes / weight_bw)
//   roofline_dram  max(flops / peak, (kv_bytes + weight_bytes) / memory bandwidth)
//   compute        flops / peak
void SetRooflineCounters(benchmark::State& state, double flops, const Sources& src, int64_t units) {
  using C = benchmark::Counter;
  const double compute_s = flops / g_roofline.peak_flops;
  const double bytes = src.kv_bytes + src.weight_bytes;
  const double read_s =
      src.kv_bytes / src.kv_bytes_per_s + src.weight_bytes / src.weight_bytes_per_s;
  const double n = static_cast<double>(units);
  state.counters["flops"] = C(flops);
  state.counters["bytes"] = C(bytes);
  state.counters["roofline"] = C(std::max(compute_s, read_s) * n, C::kIsIterationInvariantRate);
  state.counters["roofline_dram"] =
      C(std::max(compute_s, bytes / g_roofline.bytes_per_s) * n, C::kIsIterationInvariantRate);
  state.counters["compute"] = C(compute_s * n, C::kIsIterationInvariantRate);
  state.SetItemsProcessed(state.iterations() * units);
}

// Counters of the decode cases, per event with a full window; the weights are read once per
// batch. Hot: everything at the bandwidth of the working set's size. Cold: K/V from memory,
// the weights at the bandwidth of their own size (they are the only data every event reuses).
void SetDecodeCounters(benchmark::State& state, const Case& c, int batch, bool cold) {
  const int64_t rows = c.bundle->config().window;
  Sources src;
  src.kv_bytes = c.cost.KvBytes(rows);
  src.weight_bytes = c.cost.weight_bytes / batch;
  if (cold) {
    src.kv_bytes_per_s = g_roofline.bytes_per_s;
    src.weight_bytes_per_s = c.weights_bytes_per_s;
  } else {
    src.kv_bytes_per_s = batch == 1 ? c.b1_bytes_per_s : c.b64_bytes_per_s;
    src.weight_bytes_per_s = src.kv_bytes_per_s;
  }
  SetRooflineCounters(state, c.cost.Flops(rows), src, batch);
}

// Full windows for `users` users (copies of c.full: the contents do not change the cost).
std::vector<KvWindow> Users(const Case& c, int64_t users) {
  return std::vector<KvWindow>(static_cast<size_t>(users), c.full);
}

// Users whose windows fill g_cold_bytes, rounded up to a multiple of `multiple`.
int64_t ColdUsers(const Case& c, int multiple) {
  const ModelConfig& cfg = c.bundle->config();
  const int64_t per_user = cfg.n_blocks() * 2 * cfg.window * cfg.d_model * 4;
  const int64_t users = std::max<int64_t>(1, (g_cold_bytes + per_user - 1) / per_user);
  return (users + multiple - 1) / multiple * multiple;
}

void BenchBatch1(benchmark::State& state, Case* c, bool cold) {
  std::vector<KvWindow> users = Users(*c, cold ? ColdUsers(*c, 1) : 1);
  size_t u = 0;
  size_t e = 0;
  for (auto _ : state) {
    const Status s = c->decoder->Decode(users[u], c->events[e]);
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
    u = u + 1 == users.size() ? 0 : u + 1;
    e = e + 1 == kEventPool ? 0 : e + 1;
  }
  SetDecodeCounters(state, *c, 1, cold);
  state.counters["users"] = static_cast<double>(users.size());
}

void BenchBatch64(benchmark::State& state, Case* c, bool cold) {
  std::vector<KvWindow> users = Users(*c, cold ? ColdUsers(*c, kBatch) : kBatch);
  std::vector<KvWindow*> ptrs;
  ptrs.reserve(users.size());
  for (KvWindow& w : users) {
    ptrs.push_back(&w);
  }
  size_t u = 0;
  size_t e = 0;
  for (auto _ : state) {
    const Status s =
        c->decoder->DecodeBatch(std::span<KvWindow* const>(ptrs).subspan(u, kBatch),
                                std::span<const EventInputs>(c->events).subspan(e, kBatch));
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
    u = u + kBatch == users.size() ? 0 : u + kBatch;
    e = (e + kBatch) % kEventPool;
  }
  SetDecodeCounters(state, *c, kBatch, cold);
  state.counters["users"] = static_cast<double>(users.size());
}

void BenchReencode(benchmark::State& state, Case* c) {
  const int64_t window = c->bundle->config().window;
  KvWindow w = c->decoder->NewWindow(0);
  size_t e = 0;
  for (auto _ : state) {
    w.first_pos = 0;
    w.next_pos = 0;
    w.rows = 0;
    for (int64_t i = 0; i <= window; ++i) {
      const Status s = c->decoder->Decode(w, c->events[e]);
      if (!s.ok()) {
        state.SkipWithError(s.ToString().c_str());
        return;
      }
      e = e + 1 == kEventPool ? 0 : e + 1;
    }
  }
  double flops = 0;
  for (int64_t rows = 0; rows <= window; ++rows) {
    flops += c->cost.Flops(rows);
  }
  state.counters["flops"] = flops;
  state.counters["compute"] = benchmark::Counter(flops / g_roofline.peak_flops,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.SetItemsProcessed(state.iterations());
}

void BenchCandidates(benchmark::State& state, Case* c) {
  const ModelConfig& cfg = c->bundle->config();
  std::vector<float> logits(static_cast<size_t>(kCandidates * cfg.n_labels()));
  for (auto _ : state) {
    const Status s = c->decoder->ScoreCandidates(c->full, c->candidates, logits);
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(logits.data());
  }
  // One window and the weights serve all the candidates of a call, from cache.
  Sources src;
  src.kv_bytes = c->cost.KvBytes(cfg.window) / kCandidates;
  src.weight_bytes = c->cost.cand_weight_bytes / kCandidates;
  src.kv_bytes_per_s = c->b1_bytes_per_s;
  src.weight_bytes_per_s = c->b1_bytes_per_s;
  SetRooflineCounters(state, c->cost.CandFlops(cfg.window), src, kCandidates);
}

void Register(Case* c) {
  const auto add = [](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn);
  };
  add("b1/" + c->name, [c](benchmark::State& s) { BenchBatch1(s, c, false); });
  add("b1cold/" + c->name, [c](benchmark::State& s) { BenchBatch1(s, c, true); });
  add("b64/" + c->name, [c](benchmark::State& s) { BenchBatch64(s, c, false); });
  add("b64cold/" + c->name, [c](benchmark::State& s) { BenchBatch64(s, c, true); });
  add("reencode/" + c->name, [c](benchmark::State& s) { BenchReencode(s, c); });
  add("cand100/" + c->name, [c](benchmark::State& s) { BenchCandidates(s, c); });
}

// Bundle files named by --bundle: files as given, directories expanded to their *.safetensors.
std::vector<std::filesystem::path> BundlePaths(const std::vector<std::string>& args) {
  std::vector<std::filesystem::path> out;
  for (const std::string& arg : args) {
    const std::filesystem::path p(arg);
    if (std::filesystem::is_directory(p)) {
      std::vector<std::filesystem::path> in_dir;
      for (const auto& entry : std::filesystem::directory_iterator(p)) {
        if (entry.is_regular_file() && entry.path().extension() == ".safetensors") {
          in_dir.push_back(entry.path());
        }
      }
      std::sort(in_dir.begin(), in_dir.end());
      out.insert(out.end(), in_dir.begin(), in_dir.end());
    } else {
      out.push_back(p);
    }
  }
  return out;
}

int Main(int argc, char** argv) {
  // Our flags first: benchmark::Initialize would reject them.
  std::vector<std::string> bundle_args;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--bundle=")) {
      bundle_args.emplace_back(arg.substr(9));
    } else if (arg.starts_with("--cold_mib=")) {
      g_cold_bytes = std::stoll(std::string(arg.substr(11))) << 20;
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) {
    return 2;
  }
  const std::vector<std::filesystem::path> paths = BundlePaths(bundle_args);
  if (paths.empty()) {
    std::fprintf(stderr, "decode_bench: no bundle: pass --bundle=<file or directory>\n");
    return 2;
  }
  std::vector<std::unique_ptr<Case>> cases;
  for (const std::filesystem::path& p : paths) {
    Result<std::unique_ptr<Case>> c = LoadCase(p);
    if (!c.ok()) {
      std::fprintf(stderr, "decode_bench: %s: %s\n", p.string().c_str(),
                   c.status().ToString().c_str());
      return 1;
    }
    cases.push_back(std::move(c).value());
  }

  const Roofline roofline = MeasureRoofline();
  g_roofline.peak_flops = roofline.peak_fma_gflops * 1e9;
  g_roofline.bytes_per_s = roofline.memory_gbs * 1e9;
  benchmark::AddCustomContext("kernel_target", KernelTarget());
  benchmark::AddCustomContext("peak_fma_gflops", std::to_string(roofline.peak_fma_gflops));
  benchmark::AddCustomContext("memory_gbs", std::to_string(roofline.memory_gbs));
  benchmark::AddCustomContext("cold_mib", std::to_string(g_cold_bytes >> 20));
  for (const auto& c : cases) {
    const ModelConfig& cfg = c->bundle->config();
    const double window_bytes = c->cost.KvBytes(cfg.window);
    const auto bandwidth = [](double bytes) {
      return MeasureReadBandwidthGBs(static_cast<size_t>(bytes)) * 1e9;
    };
    c->b1_bytes_per_s = bandwidth(c->cost.weight_bytes + window_bytes);
    c->b64_bytes_per_s = bandwidth(c->cost.weight_bytes + kBatch * window_bytes);
    c->weights_bytes_per_s = bandwidth(c->cost.weight_bytes);
    // key=value pairs, for bench/run.py: the model, its bytes and the bandwidths measured.
    const auto gbs = [](double bytes_per_s) {
      return std::to_string(bytes_per_s / 1e9);
    };
    benchmark::AddCustomContext(
        "bundle." + c->name,
        "d_model=" + std::to_string(cfg.d_model) + " heads=" + std::to_string(cfg.n_heads) +
            " layers=" + std::to_string(cfg.n_layers) + " window=" + std::to_string(cfg.window) +
            " weight_bytes=" + std::to_string(static_cast<int64_t>(c->cost.weight_bytes)) +
            " window_bytes=" + std::to_string(static_cast<int64_t>(window_bytes)) +
            " read_gbs_b1=" + gbs(c->b1_bytes_per_s) + " read_gbs_b64=" + gbs(c->b64_bytes_per_s) +
            " read_gbs_weights=" + gbs(c->weights_bytes_per_s));
    Register(c.get());
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace
}  // namespace rotor::encoders

int main(int argc, char** argv) {
  return rotor::encoders::Main(argc, argv);
}
