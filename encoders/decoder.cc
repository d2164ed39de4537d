#include "encoders/decoder.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <numbers>
#include <string>
#include <utility>

#include "encoders/internal/kernels/kernels.h"

namespace rotor::encoders {
namespace {

namespace k = ::rotor::kernels;

constexpr double kTwoPi = 2.0 * std::numbers::pi;

// A Linear layer's weights: W [out, in] row-major, b [out] or null.
struct Dense {
  const float* w = nullptr;
  const float* b = nullptr;
  int in = 0;
  int out = 0;
  // W laid out once for the tiled product (DenseRows); shared by copies of the layer.
  std::shared_ptr<const k::PackedWeights> packed;
};

struct Norm {
  const float* gamma = nullptr;
  const float* beta = nullptr;
};

struct Table {
  const float* data = nullptr;
  int64_t rows = 0;
  int dim = 0;
};

struct AngleNet {
  Variant variant = Variant::kNone;
  std::vector<Table> cat;
  bool has_sine = false;
  bool has_dnn = false;
  std::array<Dense, 3> sine;
  Dense sine_out;
  std::array<Dense, 4> dnn;
  const float* omega = nullptr;
  double lambda = 1.0;
  double c = 1.0;  // time_linear
};

struct Block {
  Norm ln1, ln2;
  Dense wq, wk, wv, wo, ffn0, ffn2;
  const float* pad = nullptr;
};

int AsInt(int64_t v) {
  return static_cast<int>(v);
}
size_t AsSize(int64_t v) {
  return static_cast<size_t>(v);
}

Dense MakeDense(const Bundle& b, const std::string& prefix, bool bias = true) {
  const Tensor& w = b.Get(prefix + ".weight");
  const int in = AsInt(w.dim(1));
  const int out = AsInt(w.dim(0));
  return Dense{w.data.data(), bias ? b.Get(prefix + ".bias").data.data() : nullptr, in, out,
               std::make_shared<const k::PackedWeights>(k::PackForGemm(w.data.data(), out, in))};
}

Norm MakeNorm(const Bundle& b, const std::string& prefix) {
  return Norm{b.Get(prefix + ".weight").data.data(), b.Get(prefix + ".bias").data.data()};
}

AngleNet MakeAngleNet(const Bundle& b, const std::string& prefix) {
  const ModelConfig& cfg = b.config();
  AngleNet net;
  net.variant = cfg.variant;
  if (cfg.variant == Variant::kTimeLinear) {
    net.c = static_cast<double>(b.Get(prefix + ".c").data[0]);
  }
  if (!IsSirenVariant(cfg.variant)) {
    return net;
  }
  for (const CategoricalSpec& spec : cfg.schema.categorical) {
    const Tensor& t = b.Get(prefix + ".cat." + spec.name + ".weight");
    net.cat.push_back(Table{t.data.data(), t.dim(0), AsInt(t.dim(1))});
  }
  net.has_sine = cfg.variant != Variant::kSirenDnnOnly;
  net.has_dnn = cfg.variant != Variant::kSirenSineOnly;
  if (net.has_sine) {
    for (std::size_t i = 0; i < 3; ++i) {
      net.sine[i] = MakeDense(b, fmt::format("{}.sine.{}.linear", prefix, i));
    }
    net.sine_out = MakeDense(b, prefix + ".sine_out");
  }
  if (net.has_dnn) {
    for (std::size_t i = 0; i < 4; ++i) {
      net.dnn[i] = MakeDense(b, fmt::format("{}.dnn.{}", prefix, 2 * i));
    }
  }
  net.omega = b.Get(prefix + ".omega").data.data();
  net.lambda = static_cast<double>(b.Get(prefix + ".lam").data[0]);
  return net;
}

// Y [n, out] = X [n, in] W^T + b. Row-invariant: a user's rows come out bit for bit the same
// whichever users share the batch, so streaming, restarts and replays agree exactly.
void DenseRows(const Dense& d, const float* x, int n, float* y) {
  k::GemmPacked(x, n, *d.packed, y);
  if (d.b != nullptr) {
    for (int r = 0; r < n; ++r) {
      k::Axpy(1.0F, d.b, y + static_cast<ptrdiff_t>(r) * d.out, AsSize(d.out));
    }
  }
}

void Relu(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    x[i] = std::max(x[i], 0.0F);
  }
}

}  // namespace

struct Decoder::Impl {
  const Bundle* bundle = nullptr;
  ModelConfig cfg;
  KvDtype kv_dtype = KvDtype::kF32;
  int d = 0, heads = 0, dh = 0, pairs = 0, group = 0, n_labels = 0, hh = 0;
  float scale = 0, skip = 0;
  std::vector<double> theta;
  Table item_emb;
  Dense item_proj;
  Norm item_ln;
  std::array<Dense, 3> action;
  AngleNet angle, act_angle;
  std::vector<Block> blocks;
  Norm final_ln;
  const float* act_pad = nullptr;
  bool act_proj = false;
  Dense act_wq, act_wk, act_wv, act_wo;  // with act_proj only
  Dense head0, head2;

  // Scratch, reused across calls (sized for the largest batch seen).
  AlignedFloats ang_in, ang_h1, ang_h2, ang_f, ang_tmp, ang_cos, angles, act_angles, cos_b, sin_b,
      cos_a, sin_a, x, a, h1, q, kk, vv, att, tmp, ffn, head_in, head_h, logits, attn_scratch;

  static void Resize(AlignedFloats& buf, int64_t n) {
    if (static_cast<int64_t>(buf.size()) < n) {
      buf.resize(AsSize(n));
    }
  }

  // Angles [n, pairs] of one angle network for n events at positions pos[i].
  void Angles(const AngleNet& net, std::span<const EventInputs> ev, const int64_t* pos,
              float* out) {
    const int n = AsInt(static_cast<int64_t>(ev.size()));
    const int p = pairs;
    if (net.variant == Variant::kNone) {
      std::fill(out, out + static_cast<ptrdiff_t>(n) * p, 0.0F);
      return;
    }
    if (net.variant == Variant::kOrdinal) {
      for (int r = 0; r < n; ++r) {
        k::OrdinalAngles(pos[r], theta.data(), 1.0, out + static_cast<ptrdiff_t>(r) * p, AsSize(p));
      }
      return;
    }
    if (net.variant == Variant::kTimeLinear) {
      for (int r = 0; r < n; ++r) {
        const double steps =
            static_cast<double>(pos[r]) + net.c * TimeDeltaUnits(cfg, ev[AsSize(r)].ts_ms);
        for (int j = 0; j < p; ++j) {
          const double v = steps * theta[AsSize(j)];
          out[static_cast<ptrdiff_t>(r) * p + j] =
              static_cast<float>(v - kTwoPi * std::floor(v / kTwoPi));
        }
      }
      return;
    }
    // SIREN variants: f(x) = f_sin(x) + f_dnn(x) on x = [time features, embeddings].
    const int in = AsInt(cfg.angle_in_dim());
    const int h = AsInt(cfg.angle_hidden);
    const int da = AsInt(cfg.d_angle);
    Resize(ang_in, static_cast<int64_t>(n) * in);
    Resize(ang_h1, static_cast<int64_t>(n) * h);
    Resize(ang_h2, static_cast<int64_t>(n) * h);
    Resize(ang_f, static_cast<int64_t>(n) * da);
    Resize(ang_tmp, static_cast<int64_t>(n) * std::max(h, da));
    Resize(ang_cos, static_cast<int64_t>(n) * h);
    for (int r = 0; r < n; ++r) {
      float* row = ang_in.data() + static_cast<ptrdiff_t>(r) * in;
      const EventInputs& e = ev[AsSize(r)];
      std::copy(e.time_feats.begin(), e.time_feats.end(), row);
      int off = AsInt(kTimeFeatures);
      for (size_t f = 0; f < net.cat.size(); ++f) {
        const Table& t = net.cat[f];
        const float* src = t.data + e.cat_rows[f] * t.dim;
        std::copy(src, src + t.dim, row + off);
        off += t.dim;
      }
    }
    std::fill(ang_f.begin(), ang_f.begin() + static_cast<ptrdiff_t>(n) * da, 0.0F);
    const float w0 = static_cast<float>(cfg.w0);
    if (net.has_sine) {
      const float* src = ang_in.data();
      float* bufs[2] = {ang_h1.data(), ang_h2.data()};
      for (std::size_t i = 0; i < 3; ++i) {
        float* dst = bufs[i % 2];
        DenseRows(net.sine[i], src, n, ang_tmp.data());
        const size_t m = static_cast<size_t>(n) * AsSize(h);
        for (size_t t = 0; t < m; ++t) {
          ang_tmp[t] *= w0;
        }
        k::SinCos(ang_tmp.data(), ang_cos.data(), dst, m);  // sin(w0 (W x + b))
        src = dst;
      }
      DenseRows(net.sine_out, src, n, ang_tmp.data());
      k::Axpy(1.0F, ang_tmp.data(), ang_f.data(), static_cast<size_t>(n) * AsSize(da));
    }
    if (net.has_dnn) {
      DenseRows(net.dnn[0], ang_in.data(), n, ang_h1.data());
      Relu(ang_h1.data(), static_cast<size_t>(n) * AsSize(h));
      DenseRows(net.dnn[1], ang_h1.data(), n, ang_h2.data());
      Relu(ang_h2.data(), static_cast<size_t>(n) * AsSize(h));
      DenseRows(net.dnn[2], ang_h2.data(), n, ang_h1.data());
      Relu(ang_h1.data(), static_cast<size_t>(n) * AsSize(h));
      DenseRows(net.dnn[3], ang_h1.data(), n, ang_tmp.data());
      k::Axpy(1.0F, ang_tmp.data(), ang_f.data(), static_cast<size_t>(n) * AsSize(da));
    }
    for (int r = 0; r < n; ++r) {
      float* o = out + static_cast<ptrdiff_t>(r) * p;
      k::OrdinalAngles(pos[r], theta.data(), net.lambda, o, AsSize(p));
      const float* f = ang_f.data() + static_cast<ptrdiff_t>(r) * da;
      for (int j = 0; j < p; ++j) {
        const int g = j / group;
        o[j] = o[j] + f[g] * net.omega[g];
      }
    }
  }

  // x [n, d] = LN_item(ReLU(W_item item + b)).
  void EmbedItems(std::span<const EventInputs> ev, float* out) {
    const int n = AsInt(static_cast<int64_t>(ev.size()));
    const int din = item_proj.in;
    Resize(tmp, static_cast<int64_t>(n) * std::max(din, d));
    for (int r = 0; r < n; ++r) {
      const EventInputs& e = ev[AsSize(r)];
      const float* src = cfg.schema.item.kind == ItemKind::kId
                             ? item_emb.data + e.item_row * item_emb.dim
                             : e.item_features.data();
      std::copy(src, src + din, tmp.data() + static_cast<ptrdiff_t>(r) * din);
    }
    DenseRows(item_proj, tmp.data(), n, out);
    Relu(out, static_cast<size_t>(n) * AsSize(d));
    for (int r = 0; r < n; ++r) {
      float* row = out + static_cast<ptrdiff_t>(r) * d;
      k::LayerNorm(row, item_ln.gamma, item_ln.beta, cfg.layer_norm_eps, AsSize(d), row);
    }
  }

  // a [n, d] = ReLU(L3(SiLU(L2(SiLU(L1 actions))))).
  void EmbedActions(std::span<const EventInputs> ev, float* out) {
    const int n = AsInt(static_cast<int64_t>(ev.size()));
    const int na = action[0].in;
    const int ah = action[0].out;
    Resize(tmp, static_cast<int64_t>(n) * (na + 2 * ah));
    float* in = tmp.data();
    float* h1a = in + static_cast<ptrdiff_t>(n) * na;
    float* h2a = h1a + static_cast<ptrdiff_t>(n) * ah;
    for (int r = 0; r < n; ++r) {
      const std::vector<float>& act = ev[AsSize(r)].actions;
      std::copy(act.begin(), act.end(), in + static_cast<ptrdiff_t>(r) * na);
    }
    DenseRows(action[0], in, n, h1a);
    k::Silu(h1a, static_cast<size_t>(n) * AsSize(ah));
    DenseRows(action[1], h1a, n, h2a);
    k::Silu(h2a, static_cast<size_t>(n) * AsSize(ah));
    DenseRows(action[2], h2a, n, out);
    Relu(out, static_cast<size_t>(n) * AsSize(d));
  }

  // Rows [n, d] through LayerNorm `ln` into `out`.
  void NormRows(const Norm& ln, const float* src, int n, float* out) const {
    for (int r = 0; r < n; ++r) {
      k::LayerNorm(src + static_cast<ptrdiff_t>(r) * d, ln.gamma, ln.beta, cfg.layer_norm_eps,
                   AsSize(d), out + static_cast<ptrdiff_t>(r) * d);
    }
  }

  void RotateRows(float* io, int n, const float* cos, const float* sin) const {
    for (int r = 0; r < n; ++r) {
      k::RotatePairs(io + static_cast<ptrdiff_t>(r) * d, cos + static_cast<ptrdiff_t>(r) * pairs,
                     sin + static_cast<ptrdiff_t>(r) * pairs, heads, dh);
    }
  }

  // Query rows [n, d] against their windows' block `block` (row r against *win[r], or the pad
  // vector when that window is empty), into out [n, d]. Consecutive rows of one window (a
  // score request's candidates) attend together, up to kAttendChunk at a time (their weights
  // stay in L1): the same bits as one row at a time, in less time.
  static constexpr int kAttendChunk = 16;
  void AttendRows(std::span<const KvWindow* const> win, int64_t block, const float* qrows,
                  const float* pad, int n, float* out) {
    int r = 0;
    while (r < n) {
      const KvWindow& w = *win[AsSize(r)];
      int end = r + 1;
      while (end < n && win[AsSize(end)] == &w && end - r < kAttendChunk) {
        ++end;
      }
      if (w.rows == 0) {
        for (int i = r; i < end; ++i) {
          std::copy(pad, pad + d, out + static_cast<ptrdiff_t>(i) * d);
        }
      } else {
        Resize(attn_scratch, static_cast<int64_t>(end - r) * heads * w.rows);
        k::AttendMany(qrows + static_cast<ptrdiff_t>(r) * d, end - r, w.k[AsSize(block)].data(),
                      w.v[AsSize(block)].data(), AsInt(w.rows), heads, dh, scale,
                      out + static_cast<ptrdiff_t>(r) * d, attn_scratch.data());
      }
      r = end;
    }
  }

  // The shared forward pass. Row i of `ev` is a query against *win[i]. For events
  // (`append`), each row's K/V are written to its window; for candidates they are not
  // computed. Leaves the final hidden rows in `h1`, logits in `logits`.
  void Forward(std::span<const EventInputs> ev, std::span<const KvWindow* const> win,
               const int64_t* pos, bool append, std::span<KvWindow* const> out_win) {
    const int n = AsInt(static_cast<int64_t>(ev.size()));
    const int64_t nd = static_cast<int64_t>(n) * d;
    Resize(angles, static_cast<int64_t>(n) * pairs);
    Resize(act_angles, static_cast<int64_t>(n) * pairs);
    Resize(cos_b, static_cast<int64_t>(n) * pairs);
    Resize(sin_b, static_cast<int64_t>(n) * pairs);
    Resize(cos_a, static_cast<int64_t>(n) * pairs);
    Resize(sin_a, static_cast<int64_t>(n) * pairs);
    for (AlignedFloats* buf : {&x, &a, &h1, &q, &kk, &vv, &att}) {
      Resize(*buf, nd);
    }
    Resize(ffn, nd * cfg.ffn_mult);
    Angles(angle, ev, pos, angles.data());
    Angles(act_angle, ev, pos, act_angles.data());
    k::SinCos(angles.data(), cos_b.data(), sin_b.data(), static_cast<size_t>(n) * AsSize(pairs));
    k::SinCos(act_angles.data(), cos_a.data(), sin_a.data(),
              static_cast<size_t>(n) * AsSize(pairs));
    EmbedItems(ev, x.data());
    if (append) {
      EmbedActions(ev, a.data());
    }
    for (size_t b = 0; b < blocks.size(); ++b) {
      const Block& blk = blocks[b];
      NormRows(blk.ln1, x.data(), n, h1.data());
      DenseRows(blk.wq, h1.data(), n, q.data());
      RotateRows(q.data(), n, cos_b.data(), sin_b.data());
      if (append) {
        DenseRows(blk.wk, h1.data(), n, kk.data());
        RotateRows(kk.data(), n, cos_b.data(), sin_b.data());
        for (int64_t t = 0; t < nd; ++t) {
          h1[AsSize(t)] = x[AsSize(t)] + a[AsSize(t)];
        }
        NormRows(blk.ln1, h1.data(), n, h1.data());
        DenseRows(blk.wv, h1.data(), n, vv.data());
      }
      AttendRows(win, static_cast<int64_t>(b), q.data(), blk.pad, n, att.data());
      if (append) {  // after attending: the new row's slot may hold a row just attended to
        WriteRows(out_win, static_cast<int64_t>(b), kk.data(), vv.data(), n);
      }
      DenseRows(blk.wo, att.data(), n, tmp.data());
      k::Axpy(skip, tmp.data(), x.data(), AsSize(nd));
      NormRows(blk.ln2, x.data(), n, h1.data());
      DenseRows(blk.ffn0, h1.data(), n, ffn.data());
      k::Silu(ffn.data(), AsSize(nd * cfg.ffn_mult));
      DenseRows(blk.ffn2, ffn.data(), n, tmp.data());
      k::Axpy(skip, tmp.data(), x.data(), AsSize(nd));
    }
    // Action attention: Q = K = rotated final hidden state, V = action embedding; with
    // act_proj Q = rot(Wq h), K = rot(Wk h), V = Wv a and the context goes through Wo.
    NormRows(final_ln, x.data(), n, h1.data());
    const auto act_block = static_cast<int64_t>(blocks.size());
    if (!act_proj) {
      std::copy(h1.begin(), h1.begin() + nd, q.begin());
      RotateRows(q.data(), n, cos_a.data(), sin_a.data());
      AttendRows(win, act_block, q.data(), act_pad, n, att.data());
      if (append) {
        WriteRows(out_win, act_block, q.data(), a.data(), n);
      }
    } else {
      DenseRows(act_wq, h1.data(), n, q.data());
      RotateRows(q.data(), n, cos_a.data(), sin_a.data());
      if (append) {
        DenseRows(act_wk, h1.data(), n, kk.data());
        RotateRows(kk.data(), n, cos_a.data(), sin_a.data());
        DenseRows(act_wv, a.data(), n, vv.data());
      }
      AttendRows(win, act_block, q.data(), act_pad, n, tmp.data());
      if (append) {  // after attending, as in the blocks
        WriteRows(out_win, act_block, kk.data(), vv.data(), n);
      }
      DenseRows(act_wo, tmp.data(), n, att.data());
    }
    // Head: MLP on [h, action context, request context].
    const int hin = head0.in;
    Resize(head_in, static_cast<int64_t>(n) * hin);
    Resize(head_h, static_cast<int64_t>(n) * hh);
    Resize(logits, static_cast<int64_t>(n) * n_labels);
    for (int r = 0; r < n; ++r) {
      float* row = head_in.data() + static_cast<ptrdiff_t>(r) * hin;
      std::copy_n(h1.data() + static_cast<ptrdiff_t>(r) * d, d, row);
      std::copy_n(att.data() + static_cast<ptrdiff_t>(r) * d, d, row + d);
      std::copy_n(ev[AsSize(r)].time_feats.data(), kRequestFeatures,
                  row + static_cast<ptrdiff_t>(2) * d);
    }
    DenseRows(head0, head_in.data(), n, head_h.data());
    Relu(head_h.data(), static_cast<size_t>(n) * AsSize(hh));
    DenseRows(head2, head_h.data(), n, logits.data());
  }

  // Writes each row's K and V at its window's next slot, rounded to kv_dtype.
  void WriteRows(std::span<KvWindow* const> wins, int64_t block, const float* krows,
                 const float* vrows, int n) const {
    for (int r = 0; r < n; ++r) {
      KvWindow& w = *wins[AsSize(r)];
      const int64_t slot = w.NextSlot();
      w.EnsureSlots(slot + 1);
      const ptrdiff_t src = static_cast<ptrdiff_t>(r) * w.d_model;
      float* k_row = w.k[AsSize(block)].data() + slot * w.d_model;
      float* v_row = w.v[AsSize(block)].data() + slot * w.d_model;
      std::copy_n(krows + src, w.d_model, k_row);
      std::copy_n(vrows + src, w.d_model, v_row);
      RoundToKvDtype(kv_dtype, {k_row, AsSize(w.d_model)});
      RoundToKvDtype(kv_dtype, {v_row, AsSize(w.d_model)});
    }
  }
};

Decoder::Decoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Decoder::Decoder(Decoder&&) noexcept = default;
Decoder& Decoder::operator=(Decoder&&) noexcept = default;
Decoder::~Decoder() = default;

const ModelConfig& Decoder::config() const {
  return impl_->cfg;
}

Result<Decoder> Decoder::Create(const Bundle& bundle, KvDtype kv_dtype) {
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.bundle = &bundle;
  m.kv_dtype = kv_dtype;
  m.cfg = bundle.config();
  const ModelConfig& c = m.cfg;
  if (c.reverse_order) {
    return Status::InvalidArgument("config.reverse_order: cannot be served");
  }
  m.d = AsInt(c.d_model);
  m.heads = AsInt(c.n_heads);
  m.dh = AsInt(c.d_head());
  m.pairs = AsInt(c.n_pairs());
  m.group = AsInt(c.n_pairs() / c.d_angle);
  m.n_labels = AsInt(c.n_labels());
  m.hh = AsInt(c.head_hidden);
  m.scale = static_cast<float>(c.logit_scale);
  m.skip = static_cast<float>(c.skip_scale);
  m.theta = RopeFrequencies(c);
  if (c.schema.item.kind == ItemKind::kId) {
    const Tensor& t = bundle.Get("item_emb.weight");
    m.item_emb = Table{t.data.data(), t.dim(0), AsInt(t.dim(1))};
  }
  m.item_proj = MakeDense(bundle, "item_proj");
  m.item_ln = MakeNorm(bundle, "item_ln");
  for (std::size_t i = 0; i < 3; ++i) {
    m.action[i] = MakeDense(bundle, fmt::format("action_mlp.{}", 2 * i));
  }
  m.angle = MakeAngleNet(bundle, "angle");
  m.act_angle = MakeAngleNet(bundle, "act_angle");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = fmt::format("blocks.{}", l);
    Block blk;
    blk.ln1 = MakeNorm(bundle, p + ".ln1");
    blk.ln2 = MakeNorm(bundle, p + ".ln2");
    blk.wq = MakeDense(bundle, p + ".wq", false);
    blk.wk = MakeDense(bundle, p + ".wk", false);
    blk.wv = MakeDense(bundle, p + ".wv", false);
    blk.wo = MakeDense(bundle, p + ".wo", false);
    blk.ffn0 = MakeDense(bundle, p + ".ffn.0");
    blk.ffn2 = MakeDense(bundle, p + ".ffn.2");
    blk.pad = bundle.Get(p + ".pad").data.data();
    m.blocks.push_back(blk);
  }
  m.final_ln = MakeNorm(bundle, "final_ln");
  m.act_pad = bundle.Get("act_pad").data.data();
  m.act_proj = c.act_proj;
  if (c.act_proj) {
    m.act_wq = MakeDense(bundle, "act_wq", false);
    m.act_wk = MakeDense(bundle, "act_wk", false);
    m.act_wv = MakeDense(bundle, "act_wv", false);
    m.act_wo = MakeDense(bundle, "act_wo", false);
  }
  m.head0 = MakeDense(bundle, "head.0");
  m.head2 = MakeDense(bundle, "head.2");
  return Decoder(std::move(impl));
}

KvWindow Decoder::NewWindow(int64_t start_pos) const {
  // No slot made yet: the first events make them (KvWindow::EnsureSlots).
  return {impl_->cfg.n_blocks(), impl_->cfg.window, impl_->cfg.d_model, start_pos, 0};
}

namespace {

Status CheckInputs(const ModelConfig& c, const EventInputs& e, bool need_actions) {
  if (c.schema.item.kind == ItemKind::kFeatures &&
      static_cast<int64_t>(e.item_features.size()) != c.schema.item.dim) {
    return Status::InvalidArgument("item.features: {} values, the model needs {}",
                                   e.item_features.size(), c.schema.item.dim);
  }
  if (c.schema.item.kind == ItemKind::kId &&
      (e.item_row < 0 || e.item_row > c.schema.item.buckets)) {
    return Status::InvalidArgument("item.id: row {} outside the table", e.item_row);
  }
  if (need_actions && static_cast<int64_t>(e.actions.size()) != c.n_actions()) {
    return Status::InvalidArgument("action: {} values, the model needs {}", e.actions.size(),
                                   c.n_actions());
  }
  // The Featurizer already refuses these; an EventInputs built any other way must not put a
  // NaN into a cache, where it would poison every later event of the user.
  const auto finite = [](std::span<const float> xs) {
    return std::all_of(xs.begin(), xs.end(), [](float x) { return std::isfinite(x); });
  };
  if (!finite(e.item_features) || !finite(e.actions) || !finite(e.time_feats)) {
    return Status::InvalidArgument("event inputs hold a NaN or an infinity");
  }
  if (e.cat_rows.size() != c.schema.categorical.size()) {
    return Status::InvalidArgument("attrs: {} rows, the model needs {}", e.cat_rows.size(),
                                   c.schema.categorical.size());
  }
  for (size_t f = 0; f < e.cat_rows.size(); ++f) {
    if (e.cat_rows[f] < 0 || e.cat_rows[f] >= c.schema.categorical[f].rows()) {
      return Status::InvalidArgument("attrs.{}: row {} outside the table",
                                     c.schema.categorical[f].name, e.cat_rows[f]);
    }
  }
  return Status::OK();
}

Status CheckWindow(const ModelConfig& c, const KvWindow& w) {
  if (w.capacity != c.window || w.d_model != c.d_model || w.n_blocks() != c.n_blocks()) {
    return Status::InvalidArgument(
        "window shape [{} blocks, {} rows, d {}] does not fit the model [{}, {}, {}]", w.n_blocks(),
        w.capacity, w.d_model, c.n_blocks(), c.window, c.d_model);
  }
  return Status::OK();
}

}  // namespace

Status Decoder::Decode(KvWindow& window, const EventInputs& event, DecodeResult* result) {
  KvWindow* windows[1] = {&window};
  if (result == nullptr) {
    return DecodeBatch(windows, std::span<const EventInputs>(&event, 1));
  }
  return DecodeBatch(windows, std::span<const EventInputs>(&event, 1),
                     std::span<DecodeResult>(result, 1));
}

Status Decoder::DecodeBatch(std::span<KvWindow* const> windows, std::span<const EventInputs> events,
                            std::span<DecodeResult> results) {
  Impl& m = *impl_;
  if (windows.size() != events.size() || (!results.empty() && results.size() != events.size())) {
    return Status::InvalidArgument("DecodeBatch: {} windows, {} events, {} results", windows.size(),
                                   events.size(), results.size());
  }
  if (events.empty()) {
    return Status::OK();
  }
  std::vector<int64_t> pos(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    ROTOR_RETURN_IF_ERROR(CheckWindow(m.cfg, *windows[i]));
    ROTOR_RETURN_IF_ERROR(CheckInputs(m.cfg, events[i], true));
    for (size_t j = 0; j < i; ++j) {
      if (windows[j] == windows[i]) {
        return Status::InvalidArgument("DecodeBatch: a window appears twice in one batch");
      }
    }
    pos[i] = windows[i]->next_pos;
  }
  std::vector<const KvWindow*> read(windows.begin(), windows.end());
  m.Forward(events, read, pos.data(), true, windows);
  const int n = static_cast<int>(events.size());
  for (int r = 0; r < n; ++r) {
    KvWindow& w = *windows[AsSize(r)];
    w.pos[AsSize(w.NextSlot())] = w.next_pos;
    w.next_pos += 1;
    w.rows = std::min(w.rows + 1, w.capacity);
    w.last_ts_ms = events[AsSize(r)].ts_ms;
    if (!results.empty()) {
      DecodeResult& out = results[AsSize(r)];
      const auto at = [r](const AlignedFloats& buf, int width) {
        const float* p = buf.data() + static_cast<ptrdiff_t>(r) * width;
        return std::vector<float>(p, p + width);
      };
      out.angles = at(m.angles, m.pairs);
      out.act_angles = at(m.act_angles, m.pairs);
      out.hidden = at(m.h1, m.d);
      out.logits = at(m.logits, m.n_labels);
    }
  }
  return Status::OK();
}

Status Decoder::ScoreCandidates(const KvWindow& window, std::span<const EventInputs> candidates,
                                std::span<float> logits) {
  Impl& m = *impl_;
  ROTOR_RETURN_IF_ERROR(CheckWindow(m.cfg, window));
  if (logits.size() != candidates.size() * AsSize(m.n_labels)) {
    return Status::InvalidArgument("ScoreCandidates: {} logits for {} candidates x {} labels",
                                   logits.size(), candidates.size(), m.n_labels);
  }
  for (const EventInputs& e : candidates) {
    ROTOR_RETURN_IF_ERROR(CheckInputs(m.cfg, e, false));
  }
  if (candidates.empty()) {
    return Status::OK();
  }
  std::vector<int64_t> pos(candidates.size(), window.next_pos);
  std::vector<const KvWindow*> read(candidates.size(), &window);
  m.Forward(candidates, read, pos.data(), false, {});
  std::copy_n(m.logits.data(), logits.size(), logits.data());
  return Status::OK();
}

}  // namespace rotor::encoders
