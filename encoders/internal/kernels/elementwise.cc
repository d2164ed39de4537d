// SIMD vector kernels: Silu, LayerNorm, Softmax, Dot, Axpy (kernels.h).

#include <cassert>
#include <cmath>
#include <cstddef>

#include "encoders/internal/kernels/kernels.h"

// Highway compiles everything below once per target: foreach_target.h re-includes this file.
#undef HWY_TARGET_INCLUDE
// NOLINTNEXTLINE(readability-identifier-naming): the name is Highway's.
#define HWY_TARGET_INCLUDE "encoders/internal/kernels/elementwise.cc"
#include <hwy/foreach_target.h>
// After foreach_target.h.
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include "encoders/internal/kernels/vector_ops-inl.h"

HWY_BEFORE_NAMESPACE();
namespace rotor::kernels::HWY_NAMESPACE {
namespace {

// x / (1 + exp(-x)). exp's argument is capped at 88 (exp(88) < FLT_MAX): beyond it torch's
// result is below 1e-36 in magnitude and so is ours, and Highway's Exp is only specified up to
// +104.
template <class D>
HWY_INLINE hn::Vec<D> SiluVec(D d, hn::Vec<D> x) {
  const hn::Vec<D> e = hn::Exp(d, hn::Min(hn::Neg(x), hn::Set(d, 88.0f)));
  return hn::Div(x, hn::Add(hn::Set(d, 1.0f), e));
}

void SiluImpl(float* HWY_RESTRICT x, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(SiluVec(d, hn::LoadU(d, x + i)), d, x + i);
  }
  if (i < n) {
    StorePartial(d, SiluVec(d, LoadPartial(d, x + i, n - i, 0.0f)), x + i, n - i);
  }
}

// float((x - mean) * rstd * gamma + beta), evaluated in float64 from half-width float vectors.
template <class DD, class VF>
HWY_INLINE VF NormalizeVec(DD dd, VF x, VF gamma, VF beta, hn::Vec<DD> mean, hn::Vec<DD> rstd) {
  const hn::Rebind<float, DD> df;
  const hn::Vec<DD> t = hn::Mul(hn::Sub(hn::PromoteTo(dd, x), mean), rstd);
  return hn::DemoteTo(df, hn::MulAdd(t, hn::PromoteTo(dd, gamma), hn::PromoteTo(dd, beta)));
}

// Mean, variance and the normalisation in float64: each step reads a half-width float vector
// and widens it, so the arithmetic is the scalar reference's up to the summation order.
void LayerNormImpl(const float* x, const float* HWY_RESTRICT gamma, const float* HWY_RESTRICT beta,
                   double eps, size_t n, float* y) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  const size_t lanes = hn::Lanes(dd);

  auto sum = hn::Zero(dd);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    sum = hn::Add(sum, hn::PromoteTo(dd, hn::LoadU(df, x + i)));
  }
  if (i < n) {
    sum = hn::Add(sum, hn::PromoteTo(dd, LoadPartial(df, x + i, n - i, 0.0f)));
  }
  const double mean = ReduceSum(dd, sum) / static_cast<double>(n);
  const auto vmean = hn::Set(dd, mean);

  auto sq = hn::Zero(dd);
  for (i = 0; i + lanes <= n; i += lanes) {
    const auto dev = hn::Sub(hn::PromoteTo(dd, hn::LoadU(df, x + i)), vmean);
    sq = hn::MulAdd(dev, dev, sq);
  }
  if (i < n) {
    const auto dev =
        hn::IfThenElseZero(hn::FirstN(dd, n - i),
                           hn::Sub(hn::PromoteTo(dd, LoadPartial(df, x + i, n - i, 0.0f)), vmean));
    sq = hn::MulAdd(dev, dev, sq);
  }
  const double rstd = 1.0 / std::sqrt(ReduceSum(dd, sq) / static_cast<double>(n) + eps);
  const auto vrstd = hn::Set(dd, rstd);

  // y may alias x: each vector is read before it is written.
  for (i = 0; i + lanes <= n; i += lanes) {
    hn::StoreU(NormalizeVec(dd, hn::LoadU(df, x + i), hn::LoadU(df, gamma + i),
                            hn::LoadU(df, beta + i), vmean, vrstd),
               df, y + i);
  }
  if (i < n) {
    const size_t rest = n - i;
    StorePartial(
        df,
        NormalizeVec(dd, LoadPartial(df, x + i, rest, 0.0f), LoadPartial(df, gamma + i, rest, 0.0f),
                     LoadPartial(df, beta + i, rest, 0.0f), vmean, vrstd),
        y + i, rest);
  }
}

void SoftmaxImpl(float* HWY_RESTRICT x, size_t n) {
  SoftmaxRow(hn::ScalableTag<float>(), x, n);
}

float DotImpl(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, size_t n) {
  return DotVec(hn::ScalableTag<float>(), a, b, n);
}

void AxpyImpl(float alpha, const float* HWY_RESTRICT x, float* HWY_RESTRICT y, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  const auto va = hn::Set(d, alpha);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, y + i);
  }
  if (i < n) {
    const size_t rest = n - i;
    StorePartial(
        d, hn::MulAdd(va, LoadPartial(d, x + i, rest, 0.0f), LoadPartial(d, y + i, rest, 0.0f)),
        y + i, rest);
  }
}

}  // namespace
}  // namespace rotor::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rotor::kernels {

HWY_EXPORT(SiluImpl);
HWY_EXPORT(LayerNormImpl);
HWY_EXPORT(SoftmaxImpl);
HWY_EXPORT(DotImpl);
HWY_EXPORT(AxpyImpl);

void Silu(float* x, size_t n) {
  HWY_DYNAMIC_DISPATCH(SiluImpl)(x, n);
}

void LayerNorm(const float* x, const float* gamma, const float* beta, double eps, size_t n,
               float* y) {
  assert(n > 0);
  HWY_DYNAMIC_DISPATCH(LayerNormImpl)(x, gamma, beta, eps, n, y);
}

void Softmax(float* x, size_t n) {
  assert(n > 0);
  HWY_DYNAMIC_DISPATCH(SoftmaxImpl)(x, n);
}

float Dot(const float* a, const float* b, size_t n) {
  return HWY_DYNAMIC_DISPATCH(DotImpl)(a, b, n);
}

void Axpy(float alpha, const float* x, float* y, size_t n) {
  HWY_DYNAMIC_DISPATCH(AxpyImpl)(alpha, x, y, n);
}

}  // namespace rotor::kernels
#endif  // HWY_ONCE
