// SIMD rotation kernels: SinCos, RotatePairs and the float64 ordinal angles (kernels.h).

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <numbers>

#include "encoders/internal/kernels/kernels.h"
#include "encoders/internal/kernels/scalar_kernels.h"

// Highway compiles everything below once per target: foreach_target.h re-includes this file.
#undef HWY_TARGET_INCLUDE
// NOLINTNEXTLINE(readability-identifier-naming): the name is Highway's.
#define HWY_TARGET_INCLUDE "encoders/internal/kernels/rotation.cc"
#include <hwy/foreach_target.h>
// After foreach_target.h.
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include "encoders/internal/kernels/vector_ops-inl.h"

HWY_BEFORE_NAMESPACE();
namespace rotor::kernels::HWY_NAMESPACE {
namespace {

// cos/sin of n angles; the tail goes through a padded vector.
void SinCosImpl(const float* HWY_RESTRICT angles, float* HWY_RESTRICT c, float* HWY_RESTRICT s,
                size_t n) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto t = hn::LoadU(d, angles + i);
    hn::StoreU(hn::Cos(d, t), d, c + i);
    hn::StoreU(hn::Sin(d, t), d, s + i);
  }
  if (i < n) {
    const auto t = LoadPartial(d, angles + i, n - i, 0.0f);
    StorePartial(d, hn::Cos(d, t), c + i, n - i);
    StorePartial(d, hn::Sin(d, t), s + i, n - i);
  }
}

// Rotates n_pairs adjacent (a, b) pairs of x by (c[j], s[j]). Full vectors of D first; the
// remainder (< Lanes(d) pairs) with vectors of half the width, recursively, down to one lane,
// so a 16-pair head still runs on 8-lane vectors under AVX-512.
template <class D>
HWY_INLINE void ApplyRotation(D d, float* HWY_RESTRICT x, const float* HWY_RESTRICT c,
                              const float* HWY_RESTRICT s, size_t n_pairs) {
  const size_t lanes = hn::Lanes(d);
  size_t j = 0;
  for (; j + lanes <= n_pairs; j += lanes) {
    hn::Vec<D> a;
    hn::Vec<D> b;
    hn::LoadInterleaved2(d, x + 2 * j, a, b);
    const hn::Vec<D> vc = hn::LoadU(d, c + j);
    const hn::Vec<D> vs = hn::LoadU(d, s + j);
    const hn::Vec<D> ra = hn::MulSub(a, vc, hn::Mul(b, vs));  // a cos - b sin
    const hn::Vec<D> rb = hn::MulAdd(a, vs, hn::Mul(b, vc));  // a sin + b cos
    hn::StoreInterleaved2(ra, rb, d, x + 2 * j);
  }
  if constexpr (hn::MaxLanes(D()) > 1) {
    if (j < n_pairs) {
      ApplyRotation(hn::Half<D>(), x + 2 * j, c + j, s + j, n_pairs - j);
    }
  }
}

void RotatePairsCosSinImpl(float* HWY_RESTRICT x, const float* HWY_RESTRICT c,
                           const float* HWY_RESTRICT s, int n_heads, int d_head) {
  const size_t dh = static_cast<size_t>(d_head);
  for (size_t h = 0; h < static_cast<size_t>(n_heads); ++h) {
    ApplyRotation(hn::ScalableTag<float>(), x + h * dh, c, s, dh / 2);
  }
}

void RotatePairsImpl(float* HWY_RESTRICT x, const float* HWY_RESTRICT angles, int n_heads,
                     int d_head) {
  // cos/sin of a chunk of angles on the stack, applied to every head before the next chunk.
  constexpr size_t kChunk = 128;
  HWY_ALIGN float c[kChunk];
  HWY_ALIGN float s[kChunk];
  const size_t dh = static_cast<size_t>(d_head);
  const size_t pairs = dh / 2;
  for (size_t j0 = 0; j0 < pairs; j0 += kChunk) {
    const size_t m = std::min(kChunk, pairs - j0);
    SinCosImpl(angles + j0, c, s, m);
    for (size_t h = 0; h < static_cast<size_t>(n_heads); ++h) {
      ApplyRotation(hn::ScalableTag<float>(), x + h * dh + 2 * j0, c, s, m);
    }
  }
}

// fl(2pi) = kC1 + kC2 + kC3 exactly, each with at most 21 significant bits, so k * kCi is exact
// for integer |k| < 2^32 (checked by a static_assert in the HWY_ONCE section).
constexpr double kTwoPi = 2.0 * std::numbers::pi;
constexpr double kC1 = 0x1.921fbp+2;
constexpr double kC2 = 0x1.5110ap-20;
constexpr double kC3 = 0x1.46p-40;
// Above this |a|, k = floor(a / 2pi) could reach 2^32; such lanes take the scalar fmod path.
constexpr double kExactLimit = 1e10;

// r = a mod fl(2pi) in [0, 2pi], exactly as fmod + shift (scalar::OrdinalAngles) for
// |a| < kExactLimit. k = floor(a / 2pi) from a correctly rounded division is never below the
// true floor (rounding is monotonic and the floor is representable), so r <= the true
// remainder and at most one 2pi too small. Each step of a - k*kC1 - k*kC2 - k*kC3 is exact:
// the products are exact by construction, and every difference is a multiple of the
// coarser of ulp(a) and the constant's last bit that fits in 53 bits. Hence r equals the
// exact remainder (which is what fmod returns) or that minus 2pi, fixed by one add, which
// rounds exactly as torch's `fmod + 2pi` does for negative a.
void OrdinalAnglesImpl(int64_t pos, const double* HWY_RESTRICT theta, double lambda,
                       float* HWY_RESTRICT out, size_t n) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;  // Half-width: one float per double lane.
  const size_t lanes = hn::Lanes(dd);
  const auto p = hn::Set(dd, static_cast<double>(pos));
  const auto lam = hn::Set(dd, lambda);
  const auto two_pi = hn::Set(dd, kTwoPi);
  const auto c1 = hn::Set(dd, kC1);
  const auto c2 = hn::Set(dd, kC2);
  const auto c3 = hn::Set(dd, kC3);
  const auto limit = hn::Set(dd, kExactLimit);
  const auto zero = hn::Zero(dd);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    // (p * theta) * lambda: python's order.
    const auto a = hn::Mul(hn::Mul(p, hn::LoadU(dd, theta + i)), lam);
    // Not(a >= limit) also lets NaN through, which propagates like fmod's NaN.
    if (HWY_UNLIKELY(!hn::AllFalse(dd, hn::Ge(hn::Abs(a), limit)))) {
      scalar::OrdinalAngles(pos, theta + i, lambda, out + i, lanes);
      continue;
    }
    const auto k = hn::Floor(hn::Div(a, two_pi));
    auto r = hn::Sub(a, hn::Mul(k, c1));
    r = hn::Sub(r, hn::Mul(k, c2));
    r = hn::Sub(r, hn::Mul(k, c3));
    r = hn::IfThenElse(hn::Lt(r, zero), hn::Add(r, two_pi), r);
    hn::StoreU(hn::DemoteTo(df, r), df, out + i);
  }
  if (i < n) {
    scalar::OrdinalAngles(pos, theta + i, lambda, out + i, n - i);
  }
}

}  // namespace
}  // namespace rotor::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rotor::kernels {

static_assert(HWY_NAMESPACE::kC1 + HWY_NAMESPACE::kC2 + HWY_NAMESPACE::kC3 ==
              HWY_NAMESPACE::kTwoPi);

HWY_EXPORT(SinCosImpl);
HWY_EXPORT(RotatePairsImpl);
HWY_EXPORT(RotatePairsCosSinImpl);
HWY_EXPORT(OrdinalAnglesImpl);

void SinCos(const float* angles, float* c, float* s, size_t n) {
  HWY_DYNAMIC_DISPATCH(SinCosImpl)(angles, c, s, n);
}

void RotatePairs(float* x, const float* angles, int n_heads, int d_head) {
  assert(n_heads >= 0 && d_head > 0 && d_head % 2 == 0);
  HWY_DYNAMIC_DISPATCH(RotatePairsImpl)(x, angles, n_heads, d_head);
}

void RotatePairs(float* x, const float* cos, const float* sin, int n_heads, int d_head) {
  assert(n_heads >= 0 && d_head > 0 && d_head % 2 == 0);
  HWY_DYNAMIC_DISPATCH(RotatePairsCosSinImpl)(x, cos, sin, n_heads, d_head);
}

void OrdinalAngles(int64_t pos, const double* theta, double lambda, float* out, size_t n) {
  HWY_DYNAMIC_DISPATCH(OrdinalAnglesImpl)(pos, theta, lambda, out, n);
}

}  // namespace rotor::kernels
#endif  // HWY_ONCE
