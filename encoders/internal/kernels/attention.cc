// SIMD attention of one or several queries over a K/V window: AttendOne, AttendMany
// (kernels.h).

#include <algorithm>
#include <cassert>
#include <cstddef>

#include "encoders/internal/kernels/kernels.h"

// Highway compiles everything below once per target: foreach_target.h re-includes this file.
#undef HWY_TARGET_INCLUDE
// NOLINTNEXTLINE(readability-identifier-naming): the name is Highway's.
#define HWY_TARGET_INCLUDE "encoders/internal/kernels/attention.cc"
#include <hwy/foreach_target.h>
// After foreach_target.h.
#include <hwy/highway.h>

#include "encoders/internal/kernels/vector_ops-inl.h"

HWY_BEFORE_NAMESPACE();
namespace rotor::kernels::HWY_NAMESPACE {
namespace {

// The attention of `n_queries` queries (rows of q and out, d_model apart) against one window,
// with vectors of D, whose lane count divides d_head (so a head is a whole number of vectors
// and no lane straddles two heads). Each query's arithmetic is the same whatever n_queries is
// (AttendMany's outputs are AttendOne's, bit for bit); several queries only interleave their
// weighted sums, which are chains of dependent FMAs: one query alone waits on the FMA latency,
// several fill the pipeline. scratch: n_queries * n_heads * rows floats.
template <class D>
void AttendWith(D d, const float* HWY_RESTRICT q, size_t n_queries, const float* HWY_RESTRICT k,
                const float* HWY_RESTRICT v, size_t rows, size_t n_heads, size_t d_head,
                float scale, float* HWY_RESTRICT out, float* HWY_RESTRICT scratch) {
  const size_t lanes = hn::Lanes(d);
  const size_t d_model = n_heads * d_head;
  const size_t weights = n_heads * rows;  // Per query.

  for (size_t i = 0; i < n_queries; ++i) {
    const float* qi = q + i * d_model;
    float* si = scratch + i * weights;
    // 1. Scores, reading K once in row order: si[h * rows + r] = scale * q_h . K[r]_h, for a
    // tile of Lanes(dout) rows at a time (every head of the tile before the next), reduced in
    // registers into one vector of scores per head.
    const hn::ScalableTag<float> dout;
    const size_t tile = hn::Lanes(dout);
    const hn::Vec<decltype(dout)> vscale = hn::Set(dout, scale);
    for (size_t r = 0; r < rows; r += tile) {
      const size_t count = std::min(tile, rows - r);
      for (size_t h = 0; h < n_heads; ++h) {
        const auto scores = hn::Mul(vscale, DotRows(dout, d, k + r * d_model + h * d_head, d_model,
                                                    count, qi + h * d_head, d_head));
        if (count == tile) {
          hn::StoreU(scores, dout, si + h * rows + r);
        } else {
          StorePartial(dout, scores, si + h * rows + r, count);
        }
      }
    }

    // 2. Softmax of each head's row of scores, with full-width vectors.
    for (size_t h = 0; h < n_heads; ++h) {
      SoftmaxRow(hn::ScalableTag<float>(), si + h * rows, rows);
    }
    std::fill(out + i * d_model, out + (i + 1) * d_model, 0.0f);
  }

  // 3. out_h = sum_r w[h, r] V[r]_h, reading V once in row order (for all queries); four rows
  // per pass over out keep the load/store of the accumulator off the critical path.
  size_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* v0 = v + r * d_model;
    const float* v1 = v0 + d_model;
    const float* v2 = v1 + d_model;
    const float* v3 = v2 + d_model;
    for (size_t i = 0; i < n_queries; ++i) {
      float* oi = out + i * d_model;
      for (size_t h = 0; h < n_heads; ++h) {
        const float* w = scratch + i * weights + h * rows + r;
        const hn::Vec<D> w0 = hn::Set(d, w[0]);
        const hn::Vec<D> w1 = hn::Set(d, w[1]);
        const hn::Vec<D> w2 = hn::Set(d, w[2]);
        const hn::Vec<D> w3 = hn::Set(d, w[3]);
        for (size_t t = h * d_head; t < (h + 1) * d_head; t += lanes) {
          hn::Vec<D> o = hn::LoadU(d, oi + t);
          o = hn::MulAdd(w0, hn::LoadU(d, v0 + t), o);
          o = hn::MulAdd(w1, hn::LoadU(d, v1 + t), o);
          o = hn::MulAdd(w2, hn::LoadU(d, v2 + t), o);
          o = hn::MulAdd(w3, hn::LoadU(d, v3 + t), o);
          hn::StoreU(o, d, oi + t);
        }
      }
    }
  }
  for (; r < rows; ++r) {
    const float* vr = v + r * d_model;
    for (size_t i = 0; i < n_queries; ++i) {
      float* oi = out + i * d_model;
      for (size_t h = 0; h < n_heads; ++h) {
        const hn::Vec<D> w = hn::Set(d, scratch[i * weights + h * rows + r]);
        for (size_t t = h * d_head; t < (h + 1) * d_head; t += lanes) {
          hn::StoreU(hn::MulAdd(w, hn::LoadU(d, vr + t), hn::LoadU(d, oi + t)), d, oi + t);
        }
      }
    }
  }
}

void AttendManyImpl(const float* HWY_RESTRICT q, int n_queries, const float* HWY_RESTRICT k,
                    const float* HWY_RESTRICT v, int rows, int n_heads, int d_head, float scale,
                    float* HWY_RESTRICT out, float* HWY_RESTRICT scratch) {
  const auto nq = static_cast<size_t>(n_queries);
  const auto n = static_cast<size_t>(rows);
  const auto heads = static_cast<size_t>(n_heads);
  const auto dh = static_cast<size_t>(d_head);
  // The widest vector whose lane count divides d_head.
  const hn::ScalableTag<float> full;
  if (dh % hn::Lanes(full) == 0) {
    AttendWith(full, q, nq, k, v, n, heads, dh, scale, out, scratch);
  } else if (const hn::CappedTag<float, 8> d8; dh % hn::Lanes(d8) == 0) {
    AttendWith(d8, q, nq, k, v, n, heads, dh, scale, out, scratch);
  } else if (const hn::CappedTag<float, 4> d4; dh % hn::Lanes(d4) == 0) {
    AttendWith(d4, q, nq, k, v, n, heads, dh, scale, out, scratch);
  } else if (const hn::CappedTag<float, 2> d2; dh % hn::Lanes(d2) == 0) {
    AttendWith(d2, q, nq, k, v, n, heads, dh, scale, out, scratch);
  } else {
    AttendWith(hn::CappedTag<float, 1>(), q, nq, k, v, n, heads, dh, scale, out, scratch);
  }
}

}  // namespace
}  // namespace rotor::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rotor::kernels {

HWY_EXPORT(AttendManyImpl);

void AttendOne(const float* q, const float* k, const float* v, int rows, int n_heads, int d_head,
               float scale, float* out, float* scratch) {
  assert(rows > 0 && n_heads > 0 && d_head > 0);
  HWY_DYNAMIC_DISPATCH(AttendManyImpl)(q, 1, k, v, rows, n_heads, d_head, scale, out, scratch);
}

void AttendMany(const float* q, int n_queries, const float* k, const float* v, int rows,
                int n_heads, int d_head, float scale, float* out, float* scratch) {
  assert(n_queries >= 0 && rows > 0 && n_heads > 0 && d_head > 0);
  HWY_DYNAMIC_DISPATCH(AttendManyImpl)
  (q, n_queries, k, v, rows, n_heads, d_head, scale, out, scratch);
}

}  // namespace rotor::kernels
#endif  // HWY_ONCE
