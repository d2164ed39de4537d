// SIMD dense layers: Gemv and Gemm (Highway), Linear, LinearRelu, SineLayerForward (kernels.h).
// The Eigen versions are in dense_eigen.cc; which one Gemv/Gemm use is decided at the end.

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>

#include "encoders/internal/kernels/kernels.h"

// Highway compiles everything below once per target: foreach_target.h re-includes this file.
#undef HWY_TARGET_INCLUDE
// NOLINTNEXTLINE(readability-identifier-naming): the name is Highway's.
#define HWY_TARGET_INCLUDE "encoders/internal/kernels/dense.cc"
#include <hwy/foreach_target.h>
// After foreach_target.h.
#include <hwy/aligned_allocator.h>
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include "encoders/internal/kernels/vector_ops-inl.h"

HWY_BEFORE_NAMESPACE();
namespace rotor::kernels::HWY_NAMESPACE {
namespace {

// What a layer applies after W x + b.
enum class Activation { kNone, kRelu, kSine };

// y = act(W x + b), b optional, one output vector (Lanes(dout) rows) at a time, the rows read
// with vectors of D. Each output vector is reduced, biased and activated in registers and
// stored once.
template <Activation Act, class DO, class D>
HWY_INLINE void LayerWith(DO dout, D d, const float* HWY_RESTRICT w, const float* HWY_RESTRICT b,
                          size_t rows, size_t cols, const float* HWY_RESTRICT x,
                          float* HWY_RESTRICT y, float w0) {
  const size_t lanes = hn::Lanes(dout);
  for (size_t r = 0; r < rows; r += lanes) {
    const size_t count = std::min(lanes, rows - r);
    hn::Vec<DO> v = DotRows(dout, d, w + r * cols, cols, count, x, cols);
    if (b != nullptr) {
      v = hn::Add(v,
                  count == lanes ? hn::LoadU(dout, b + r) : LoadPartial(dout, b + r, count, 0.0f));
    }
    if constexpr (Act == Activation::kRelu) {
      v = hn::ZeroIfNegative(v);
    } else if constexpr (Act == Activation::kSine) {
      v = hn::Sin(dout, hn::Mul(hn::Set(dout, w0), v));
    }
    if (count == lanes) {
      hn::StoreU(v, dout, y + r);
    } else {
      StorePartial(dout, v, y + r, count);
    }
  }
}

template <Activation Act>
void LayerImpl(const float* HWY_RESTRICT w, const float* HWY_RESTRICT b, int in, int out,
               const float* HWY_RESTRICT x, float* HWY_RESTRICT y, float w0) {
  const auto rows = static_cast<size_t>(out);
  const auto cols = static_cast<size_t>(in);
  const hn::ScalableTag<float> dout;
  // Rows shorter than a full vector (the angle network's 5-wide input) are read with 128- or
  // 256-bit vectors, which waste fewer lanes.
  if (cols >= hn::Lanes(dout)) {
    LayerWith<Act>(dout, dout, w, b, rows, cols, x, y, w0);
  } else if (const hn::CappedTag<float, 8> d8; cols >= hn::Lanes(d8)) {
    LayerWith<Act>(dout, d8, w, b, rows, cols, x, y, w0);
  } else {
    LayerWith<Act>(dout, hn::CappedTag<float, 4>(), w, b, rows, cols, x, y, w0);
  }
}

void GemvImpl(const float* HWY_RESTRICT w, int rows, int cols, const float* HWY_RESTRICT x,
              float* HWY_RESTRICT y) {
  LayerImpl<Activation::kNone>(w, nullptr, cols, rows, x, y, 0.0f);
}

// ---- Gemm: Y [n, out] = X [n, in] W^T ----
//
// W is packed, kKc input columns and two vectors' worth of outputs (a "panel") at a time, into
// panel[k][c] = W[o0 + c, k0 + k], so the inner loop broadcasts one X element and multiplies
// it with contiguous W^T rows: no horizontal sums. Each panel serves all n rows of X, kMr at
// a time.
constexpr size_t kKc = 128;
// Rows of X per micro-tile: 12 accumulators, 2 panel vectors and a broadcast fit the 16
// registers of SSE4/AVX2 (AVX-512 has 32). 6 measured ~10% faster than 4 at n = 64 on AVX3.
constexpr size_t kMr = 6;
// Below this many rows, packing W does not pay: one Gemv per row.
constexpr size_t kMinGemmRows = 4;

// Adds (when `accumulate`) and stores the two accumulators of one row: y[0..nb), nb <= 2N.
template <class D>
HWY_INLINE void StoreRowSegment(D d, hn::Vec<D> v0, hn::Vec<D> v1, float* HWY_RESTRICT y, size_t nb,
                                bool accumulate) {
  const size_t lanes = hn::Lanes(d);
  if (nb == 2 * lanes) {
    if (accumulate) {
      v0 = hn::Add(v0, hn::LoadU(d, y));
      v1 = hn::Add(v1, hn::LoadU(d, y + lanes));
    }
    hn::StoreU(v0, d, y);
    hn::StoreU(v1, d, y + lanes);
    return;
  }
  const size_t n0 = std::min(nb, lanes);
  const size_t n1 = nb - n0;
  if (accumulate) {
    v0 = hn::Add(v0, LoadPartial(d, y, n0, 0.0f));
    if (n1 != 0) {
      v1 = hn::Add(v1, LoadPartial(d, y + lanes, n1, 0.0f));
    }
  }
  StorePartial(d, v0, y, n0);
  if (n1 != 0) {
    StorePartial(d, v1, y + lanes, n1);
  }
}

// Rows (1..kMr) rows of X [.., kc] times one packed panel [kc][2N] into Y.
template <size_t Rows, class D>
HWY_INLINE void GemmMicroTile(D d, const float* HWY_RESTRICT x, size_t ldx,
                              const float* HWY_RESTRICT panel, size_t kc, float* HWY_RESTRICT y,
                              size_t ldy, size_t nb, bool accumulate) {
  const size_t lanes = hn::Lanes(d);
  hn::Vec<D> acc0[Rows];
  hn::Vec<D> acc1[Rows];
  for (size_t m = 0; m < Rows; ++m) {
    acc0[m] = hn::Zero(d);
    acc1[m] = hn::Zero(d);
  }
  for (size_t k = 0; k < kc; ++k) {
    const hn::Vec<D> w0 = hn::Load(d, panel + k * 2 * lanes);
    const hn::Vec<D> w1 = hn::Load(d, panel + k * 2 * lanes + lanes);
    for (size_t m = 0; m < Rows; ++m) {
      const hn::Vec<D> xb = hn::Set(d, x[m * ldx + k]);
      acc0[m] = hn::MulAdd(xb, w0, acc0[m]);
      acc1[m] = hn::MulAdd(xb, w1, acc1[m]);
    }
  }
  for (size_t m = 0; m < Rows; ++m) {
    StoreRowSegment(d, acc0[m], acc1[m], y + m * ldy, nb, accumulate);
  }
}

// One panel (kc input columns x two vectors of outputs, input-major) times every row of X:
// kMr rows at a time, then the remainder.
template <class D>
HWY_INLINE void GemmPanel(D d, const float* HWY_RESTRICT x, size_t rows, size_t depth,
                          const float* HWY_RESTRICT panel, size_t kc, float* HWY_RESTRICT y,
                          size_t outs, size_t nb, bool accumulate) {
  size_t i = 0;
  for (; i + kMr <= rows; i += kMr) {
    GemmMicroTile<kMr>(d, x + i * depth, depth, panel, kc, y + i * outs, outs, nb, accumulate);
  }
  const float* xi = x + i * depth;
  float* yi = y + i * outs;
  switch (rows - i) {
    case 5:
      GemmMicroTile<5>(d, xi, depth, panel, kc, yi, outs, nb, accumulate);
      break;
    case 4:
      GemmMicroTile<4>(d, xi, depth, panel, kc, yi, outs, nb, accumulate);
      break;
    case 3:
      GemmMicroTile<3>(d, xi, depth, panel, kc, yi, outs, nb, accumulate);
      break;
    case 2:
      GemmMicroTile<2>(d, xi, depth, panel, kc, yi, outs, nb, accumulate);
      break;
    case 1:
      GemmMicroTile<1>(d, xi, depth, panel, kc, yi, outs, nb, accumulate);
      break;
    default:
      break;
  }
}

// Lays out W's outputs [o0, o0 + nb) and inputs [k0, k0 + kc) as a panel: kc rows of
// panel_width floats, outputs beyond nb zero.
HWY_INLINE void PackPanel(const float* HWY_RESTRICT w, size_t depth, size_t o0, size_t nb,
                          size_t k0, size_t kc, size_t panel_width, float* HWY_RESTRICT panel) {
  for (size_t c = 0; c < panel_width; ++c) {
    if (c < nb) {
      const float* src = w + (o0 + c) * depth + k0;
      for (size_t k = 0; k < kc; ++k) {
        panel[k * panel_width + c] = src[k];
      }
    } else {
      for (size_t k = 0; k < kc; ++k) {
        panel[k * panel_width + c] = 0.0f;
      }
    }
  }
}

// The tiled product. Every output element is one sequential FMA chain over k (in chunks of
// kKc added in order), whatever the number of rows or the tile a row falls in, so each row's
// result does not depend on n. W comes either as is (`w`; each panel is packed on the way) or
// packed once by PackImpl (`packed`, then `w` is null).
void GemmTiles(const float* HWY_RESTRICT x, int n, int in, const float* HWY_RESTRICT w,
               const float* HWY_RESTRICT packed, int out, float* HWY_RESTRICT y) {
  const auto rows = static_cast<size_t>(n);
  const auto depth = static_cast<size_t>(in);
  const auto outs = static_cast<size_t>(out);
  const hn::ScalableTag<float> d;
  const size_t panel_width = 2 * hn::Lanes(d);
  HWY_ALIGN float panel[kKc * 2 * hn::MaxLanes(hn::ScalableTag<float>())];
  if (depth == 0) {
    std::fill(y, y + rows * outs, 0.0f);
    return;
  }
  for (size_t o0 = 0; o0 < outs; o0 += panel_width) {
    const size_t nb = std::min(panel_width, outs - o0);
    for (size_t k0 = 0; k0 < depth; k0 += kKc) {
      const size_t kc = std::min(kKc, depth - k0);
      const float* tile = packed + o0 * depth + k0 * panel_width;
      if (w != nullptr) {
        PackPanel(w, depth, o0, nb, k0, kc, panel_width, panel);
        tile = panel;
      }
      GemmPanel(d, x + k0, rows, depth, tile, kc, y + o0, outs, nb, k0 != 0);
    }
  }
}

void GemmTilesImpl(const float* HWY_RESTRICT x, int n, int in, const float* HWY_RESTRICT w, int out,
                   float* HWY_RESTRICT y) {
  GemmTiles(x, n, in, w, nullptr, out, y);
}

// The panels of every output block, each over the whole depth (a chunk [k0, k0 + kc) of one is
// then the panel GemmTiles would have packed).
size_t PanelWidthImpl() {
  return 2 * hn::Lanes(hn::ScalableTag<float>());
}

void PackImpl(const float* HWY_RESTRICT w, int out, int in, float* HWY_RESTRICT packed) {
  const auto depth = static_cast<size_t>(in);
  const auto outs = static_cast<size_t>(out);
  const size_t panel_width = PanelWidthImpl();
  for (size_t o0 = 0; o0 < outs; o0 += panel_width) {
    PackPanel(w, depth, o0, std::min(panel_width, outs - o0), 0, depth, panel_width,
              packed + o0 * depth);
  }
}

// GemmTiles over pre-packed panels: the same tiles in the same order, without packing.
void GemmPackedImpl(const float* HWY_RESTRICT x, int n, int in, const float* HWY_RESTRICT packed,
                    int out, float* HWY_RESTRICT y) {
  GemmTiles(x, n, in, nullptr, packed, out, y);
}

void GemmImpl(const float* HWY_RESTRICT x, int n, int in, const float* HWY_RESTRICT w, int out,
              float* HWY_RESTRICT y) {
  const auto rows = static_cast<size_t>(n);
  if (rows < kMinGemmRows) {
    const auto depth = static_cast<size_t>(in);
    const auto outs = static_cast<size_t>(out);
    for (size_t i = 0; i < rows; ++i) {
      GemvImpl(w, out, in, x + i * depth, y + i * outs);
    }
    return;
  }
  GemmTilesImpl(x, n, in, w, out, y);
}

void LinearImpl(const float* HWY_RESTRICT w, const float* HWY_RESTRICT b, int in, int out,
                const float* HWY_RESTRICT x, float* HWY_RESTRICT y) {
  LayerImpl<Activation::kNone>(w, b, in, out, x, y, 0.0f);
}
void LinearReluImpl(const float* HWY_RESTRICT w, const float* HWY_RESTRICT b, int in, int out,
                    const float* HWY_RESTRICT x, float* HWY_RESTRICT y) {
  LayerImpl<Activation::kRelu>(w, b, in, out, x, y, 0.0f);
}
void SineLayerImpl(const float* HWY_RESTRICT w, const float* HWY_RESTRICT b, int in, int out,
                   float w0, const float* HWY_RESTRICT x, float* HWY_RESTRICT y) {
  LayerImpl<Activation::kSine>(w, b, in, out, x, y, w0);
}

}  // namespace
}  // namespace rotor::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rotor::kernels {

HWY_EXPORT(GemvImpl);
HWY_EXPORT(GemmImpl);
HWY_EXPORT(GemmTilesImpl);
HWY_EXPORT(PanelWidthImpl);
HWY_EXPORT(PackImpl);
HWY_EXPORT(GemmPackedImpl);
HWY_EXPORT(LinearImpl);
HWY_EXPORT(LinearReluImpl);
HWY_EXPORT(SineLayerImpl);

void GemvHighway(const float* w, int rows, int cols, const float* x, float* y) {
  assert(rows >= 0 && cols >= 0);
  HWY_DYNAMIC_DISPATCH(GemvImpl)(w, rows, cols, x, y);
}

void GemmHighway(const float* x, int n, int in, const float* w, int out, float* y) {
  assert(n >= 0 && in >= 0 && out >= 0);
  HWY_DYNAMIC_DISPATCH(GemmImpl)(x, n, in, w, out, y);
}

// The default matrix products: Highway, the faster at every shape measured. kernels_bench,
// release preset, one run on the 2-core AMD EPYC VM (AVX-512; Highway dispatched to AVX3,
// Eigen 3.4 compiled for the portable x86-64 baseline, which means SSE2), ns, min of 7:
//
//   in -> out      Gemv (n = 1)            Gemm (n = 64)
//                  Highway  Eigen  ratio   Highway   Eigen  ratio
//   64 -> 64            97    204  2.10       3271   11784  3.60
//   64 -> 256          542    795  1.47      13143   46397  3.53
//   256 -> 64          422    685  1.62      13335   46082  3.46
//   128 -> 128         562    714  1.27      12962   46175  3.56
//   128 -> 512        2199   2756  1.25      51423  181131  3.52
//   512 -> 128        2202   2548  1.16      52913  184165  3.48
//
// (d_model 64 is the default model, 128 the paper's backbone; n = 1 is one event, n = 64 a
// batch. Gemm with n < 4 is Gemv per row in both libraries.) Eigen only catches up when the
// whole build targets AVX-512 (-march=x86-64-v4, which the shipped binary cannot assume): then
// Eigen's Gemm is 1.1-1.3x faster than ours (it packs W with SIMD transposes, ours with scalar
// copies) and Gemv is a tie, except 64 -> 64 where ours is 2x faster.
void Gemv(const float* w, int rows, int cols, const float* x, float* y) {
  GemvHighway(w, rows, cols, x, y);
}

void GemmRowInvariant(const float* x, int n, int in, const float* w, int out, float* y) {
  assert(n >= 0 && in >= 0 && out >= 0);
  HWY_DYNAMIC_DISPATCH(GemmTilesImpl)(x, n, in, w, out, y);
}

void Gemm(const float* x, int n, int in, const float* w, int out, float* y) {
  GemmHighway(x, n, in, w, out, y);
}

PackedWeights PackForGemm(const float* w, int out, int in) {
  assert(in >= 0 && out >= 0);
  PackedWeights p;
  p.in = in;
  p.out = out;
  p.panel_width = static_cast<int>(HWY_DYNAMIC_DISPATCH(PanelWidthImpl)());
  const auto width = static_cast<std::size_t>(p.panel_width);
  const std::size_t panels = (static_cast<std::size_t>(out) + width - 1) / width;
  // Room to start the panels on a vector boundary (GemmMicroTile loads them aligned).
  constexpr std::size_t kAlignFloats = HWY_ALIGNMENT / sizeof(float);
  p.data.assign(panels * width * static_cast<std::size_t>(in) + kAlignFloats, 0.0f);
  const auto address = reinterpret_cast<std::uintptr_t>(p.data.data());
  p.offset = ((HWY_ALIGNMENT - address % HWY_ALIGNMENT) % HWY_ALIGNMENT) / sizeof(float);
  HWY_DYNAMIC_DISPATCH(PackImpl)(w, out, in, p.data.data() + p.offset);
  return p;
}

void GemmPacked(const float* x, int n, const PackedWeights& w, float* y) {
  assert(n >= 0);
  HWY_DYNAMIC_DISPATCH(GemmPackedImpl)(x, n, w.in, w.panels(), w.out, y);
}

// The layers use the Highway product (the faster at every measured shape) fused with the bias
// and activation.
void Linear(const float* w, const float* b, int in, int out, const float* x, float* y) {
  assert(in >= 0 && out >= 0);
  HWY_DYNAMIC_DISPATCH(LinearImpl)(w, b, in, out, x, y);
}

void LinearRelu(const float* w, const float* b, int in, int out, const float* x, float* y) {
  assert(in >= 0 && out >= 0);
  HWY_DYNAMIC_DISPATCH(LinearReluImpl)(w, b, in, out, x, y);
}

void SineLayerForward(const float* w, const float* b, int in, int out, float w0, const float* x,
                      float* y) {
  assert(in >= 0 && out >= 0);
  HWY_DYNAMIC_DISPATCH(SineLayerImpl)(w, b, in, out, w0, x, y);
}

}  // namespace rotor::kernels
#endif  // HWY_ONCE
