// SIMD single-query attention over a K/V window: AttendOne (kernels.h).

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

// The attention with vectors of D, whose lane count divides d_head (so a head is a whole number
// of vectors and no lane straddles two heads).
template <class D>
void AttendWith(D d, const float* HWY_RESTRICT q, const float* HWY_RESTRICT k,
                const float* HWY_RESTRICT v, size_t rows, size_t n_heads, size_t d_head,
                float scale, float* HWY_RESTRICT out, float* HWY_RESTRICT scratch) {
  const size_t lanes = hn::Lanes(d);
  const size_t d_model = n_heads * d_head;

  // 1. Scores, reading K once in row order: scratch[h * rows + r] = scale * q_h . K[r]_h, for a
  // tile of Lanes(dout) rows at a time (every head of the tile before the next), reduced in
  // registers into one vector of scores per head.
  const hn::ScalableTag<float> dout;
  const size_t tile = hn::Lanes(dout);
  const hn::Vec<decltype(dout)> vscale = hn::Set(dout, scale);
  for (size_t r = 0; r < rows; r += tile) {
    const size_t count = std::min(tile, rows - r);
    for (size_t h = 0; h < n_heads; ++h) {
      const auto scores = hn::Mul(vscale, DotRows(dout, d, k + r * d_model + h * d_head, d_model,
                                                  count, q + h * d_head, d_head));
      if (count == tile) {
        hn::StoreU(scores, dout, scratch + h * rows + r);
      } else {
        StorePartial(dout, scores, scratch + h * rows + r, count);
      }
    }
  }

  // 2. Softmax of each head's row of scores, with full-width vectors.
  for (size_t h = 0; h < n_heads; ++h) {
    SoftmaxRow(hn::ScalableTag<float>(), scratch + h * rows, rows);
  }

  // 3. out_h = sum_r w[h, r] V[r]_h, reading V once in row order; four rows per pass over out
  // keep the load/store of the accumulator off the critical path.
  std::fill(out, out + d_model, 0.0f);
  size_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* v0 = v + r * d_model;
    const float* v1 = v0 + d_model;
    const float* v2 = v1 + d_model;
    const float* v3 = v2 + d_model;
    for (size_t h = 0; h < n_heads; ++h) {
      const float* w = scratch + h * rows + r;
      const hn::Vec<D> w0 = hn::Set(d, w[0]);
      const hn::Vec<D> w1 = hn::Set(d, w[1]);
      const hn::Vec<D> w2 = hn::Set(d, w[2]);
      const hn::Vec<D> w3 = hn::Set(d, w[3]);
      for (size_t t = h * d_head; t < (h + 1) * d_head; t += lanes) {
        hn::Vec<D> o = hn::LoadU(d, out + t);
        o = hn::MulAdd(w0, hn::LoadU(d, v0 + t), o);
        o = hn::MulAdd(w1, hn::LoadU(d, v1 + t), o);
        o = hn::MulAdd(w2, hn::LoadU(d, v2 + t), o);
        o = hn::MulAdd(w3, hn::LoadU(d, v3 + t), o);
        hn::StoreU(o, d, out + t);
      }
    }
  }
  for (; r < rows; ++r) {
    const float* vr = v + r * d_model;
    for (size_t h = 0; h < n_heads; ++h) {
      const hn::Vec<D> w = hn::Set(d, scratch[h * rows + r]);
      for (size_t t = h * d_head; t < (h + 1) * d_head; t += lanes) {
        hn::StoreU(hn::MulAdd(w, hn::LoadU(d, vr + t), hn::LoadU(d, out + t)), d, out + t);
      }
    }
  }
}

void AttendOneImpl(const float* HWY_RESTRICT q, const float* HWY_RESTRICT k,
                   const float* HWY_RESTRICT v, int rows, int n_heads, int d_head, float scale,
                   float* HWY_RESTRICT out, float* HWY_RESTRICT scratch) {
  const auto n = static_cast<size_t>(rows);
  const auto heads = static_cast<size_t>(n_heads);
  const auto dh = static_cast<size_t>(d_head);
  // The widest vector whose lane count divides d_head.
  const hn::ScalableTag<float> full;
  if (dh % hn::Lanes(full) == 0) {
    AttendWith(full, q, k, v, n, heads, dh, scale, out, scratch);
  } else if (const hn::CappedTag<float, 8> d8; dh % hn::Lanes(d8) == 0) {
    AttendWith(d8, q, k, v, n, heads, dh, scale, out, scratch);
  } else if (const hn::CappedTag<float, 4> d4; dh % hn::Lanes(d4) == 0) {
    AttendWith(d4, q, k, v, n, heads, dh, scale, out, scratch);
  } else if (const hn::CappedTag<float, 2> d2; dh % hn::Lanes(d2) == 0) {
    AttendWith(d2, q, k, v, n, heads, dh, scale, out, scratch);
  } else {
    AttendWith(hn::CappedTag<float, 1>(), q, k, v, n, heads, dh, scale, out, scratch);
  }
}

}  // namespace
}  // namespace rotor::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rotor::kernels {

HWY_EXPORT(AttendOneImpl);

void AttendOne(const float* q, const float* k, const float* v, int rows, int n_heads, int d_head,
               float scale, float* out, float* scratch) {
  assert(rows > 0 && n_heads > 0 && d_head > 0);
  HWY_DYNAMIC_DISPATCH(AttendOneImpl)(q, k, v, rows, n_heads, d_head, scale, out, scratch);
}

}  // namespace rotor::kernels
#endif  // HWY_ONCE
