// Per-target building blocks shared by the kernel translation units: partial loads and stores
// for tails, horizontal sums, dot products and the softmax of one row.
//
// Highway's "-inl.h" convention: a translation unit that includes hwy/foreach_target.h compiles
// this file once per target (each time into rotor::kernels::N_<TARGET>), so the guard below
// toggles with HWY_TARGET_TOGGLE instead of being a plain include guard. Include it after
// hwy/highway.h, outside any namespace.

#if defined(ROTOR_ENCODERS_INTERNAL_KERNELS_VECTOR_OPS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ROTOR_ENCODERS_INTERNAL_KERNELS_VECTOR_OPS_INL_H_
#undef ROTOR_ENCODERS_INTERNAL_KERNELS_VECTOR_OPS_INL_H_
#else
#define ROTOR_ENCODERS_INTERNAL_KERNELS_VECTOR_OPS_INL_H_
#endif

#include <cstddef>
#include <cstring>
#include <limits>

#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace rotor::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Whether MaskedLoad and BlendedStore touch only the selected lanes. AVX2's vmaskmovps and
// AVX-512's masked moves suppress faults on the other lanes in hardware (Highway's macro says
// AVX2 "might fault" only because MSAN cannot see through vmaskmovps). SSE4 and below emulate
// them with a full-width load.
#undef ROTOR_KERNELS_MASKED_MEMORY_OK_
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#define ROTOR_KERNELS_MASKED_MEMORY_OK_ 1
#else
#define ROTOR_KERNELS_MASKED_MEMORY_OK_ 0
#endif

// Loads p[0..n) with n <= Lanes(d), the other lanes set to `fill`; reads nothing past p + n.
// Without hardware masking the tail goes through a stack buffer (the stores feeding a wider load
// cost a store-forwarding stall, but only on the pre-AVX2 targets).
template <class D, typename T = hn::TFromD<D>>
HWY_INLINE hn::Vec<D> LoadPartial(D d, const T* HWY_RESTRICT p, size_t n, T fill) {
#if ROTOR_KERNELS_MASKED_MEMORY_OK_
  const auto mask = hn::FirstN(d, n);
  return hn::IfThenElse(mask, hn::MaskedLoad(mask, d, p), hn::Set(d, fill));
#else
  HWY_ALIGN T buf[hn::MaxLanes(D())];
  hn::Store(hn::Set(d, fill), d, buf);
  std::memcpy(buf, p, n * sizeof(T));
  return hn::Load(d, buf);
#endif
}

// Stores the first n <= Lanes(d) lanes of v to p[0..n); writes nothing else.
template <class D, typename T = hn::TFromD<D>>
HWY_INLINE void StorePartial(D d, hn::Vec<D> v, T* HWY_RESTRICT p, size_t n) {
#if ROTOR_KERNELS_MASKED_MEMORY_OK_
  hn::BlendedStore(v, hn::FirstN(d, n), d, p);
#else
  HWY_ALIGN T buf[hn::MaxLanes(D())];
  hn::Store(v, d, buf);
  std::memcpy(p, buf, n * sizeof(T));
#endif
}

// Sum of all lanes.
template <class D>
HWY_INLINE hn::TFromD<D> ReduceSum(D d, hn::Vec<D> v) {
  return hn::GetLane(hn::SumOfLanes(d, v));
}

#if HWY_TARGET != HWY_SCALAR  // One-lane vectors have no blocks to shuffle.

// Adds the 128-bit blocks of v together: one block of four floats.
template <class D>
HWY_INLINE auto SumBlocks(D d, hn::Vec<D> v) {
  if constexpr (hn::MaxLanes(D()) > 4) {
    const hn::Half<D> dh;
    return SumBlocks(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)));
  } else {
    (void)d;
    return v;
  }
}

// The four horizontal sums of a0..a3 as one vector of four floats: two rounds of
// interleave-and-add leave, in every 128-bit block, that block's four partial sums side by
// side, and the blocks are then added. About a third of the shuffles of four separate
// horizontal sums, which dominate dot products of 16 to 64 floats.
template <class D>
HWY_INLINE hn::Vec<hn::Full128<float>> Sum4(D d, hn::Vec<D> a0, hn::Vec<D> a1, hn::Vec<D> a2,
                                            hn::Vec<D> a3) {
  // Per block: [a0_0 + a0_2, a1_0 + a1_2, a0_1 + a0_3, a1_1 + a1_3], and the same for a2, a3.
  const hn::Vec<D> s01 = hn::Add(hn::InterleaveLower(d, a0, a1), hn::InterleaveUpper(d, a0, a1));
  const hn::Vec<D> s23 = hn::Add(hn::InterleaveLower(d, a2, a3), hn::InterleaveUpper(d, a2, a3));
  // Pairs of floats as one 64-bit lane: [s01_0 s01_1 s23_0 s23_1] + [s01_2 s01_3 s23_2 s23_3].
  const hn::Repartition<double, D> dd;
  const hn::Vec<D> lo =
      hn::BitCast(d, hn::InterleaveLower(dd, hn::BitCast(dd, s01), hn::BitCast(dd, s23)));
  const hn::Vec<D> hi =
      hn::BitCast(d, hn::InterleaveUpper(dd, hn::BitCast(dd, s01), hn::BitCast(dd, s23)));
  return SumBlocks(d, hn::Add(lo, hi));
}

#endif  // HWY_TARGET != HWY_SCALAR

// Lane m of the result = sum of the lanes of acc[Offset + m], for m < Lanes(dout): Sum4 on
// groups of four, then Combine, so the results never go through memory (a vector load of
// results stored one by one would stall on store forwarding).
template <size_t Offset, class DO, class D, size_t N>
HWY_INLINE hn::Vec<DO> ReduceToLanes(DO dout, D d, const hn::Vec<D> (&acc)[N]) {
  constexpr size_t kLanes = hn::MaxLanes(DO());
  static_assert(Offset + kLanes <= N);
  if constexpr (kLanes == 1) {
    return hn::Set(dout, ReduceSum(d, acc[Offset]));
  } else if constexpr (hn::MaxLanes(D()) < 4) {
    // Rows read with one- or two-lane vectors (odd head sizes): through memory after all.
    HWY_ALIGN float sums[kLanes];
    for (size_t m = 0; m < kLanes; ++m) {
      sums[m] = ReduceSum(d, acc[Offset + m]);
    }
    return hn::Load(dout, sums);
  } else {
#if HWY_TARGET != HWY_SCALAR
    if constexpr (kLanes == 4) {
      return Sum4(d, acc[Offset], acc[Offset + 1], acc[Offset + 2], acc[Offset + 3]);
    } else {
      const hn::Half<DO> dh;
      return hn::Combine(dout, ReduceToLanes<Offset + kLanes / 2>(dh, d, acc),
                         ReduceToLanes<Offset>(dh, d, acc));
    }
#endif
  }
}

// Dot products of x[0..n) with rows of n floats at w, w + stride, ..., as one vector of DO:
// lane m = row m. With Clamp, only `count` rows exist and the later lanes repeat the last one
// (read again rather than past it). The rows are read with vectors of D, one FMA chain per
// row, so Lanes(dout) chains hide the FMA latency; columns past the last full vector use a
// masked or padded vector.
template <bool Clamp, class DO, class D>
HWY_INLINE hn::Vec<DO> DotRowsImpl(DO dout, D d, const float* HWY_RESTRICT w, size_t stride,
                                   size_t count, const float* HWY_RESTRICT x, size_t n) {
  constexpr size_t kRows = hn::MaxLanes(DO());
  const size_t lanes = hn::Lanes(d);
  const size_t full = n - n % lanes;
  hn::Vec<D> acc[kRows];
  for (size_t m = 0; m < kRows; ++m) {
    acc[m] = hn::Zero(d);
  }
  for (size_t k = 0; k < full; k += lanes) {
    const hn::Vec<D> xv = hn::LoadU(d, x + k);
    const float* p = w + k;
    for (size_t m = 0; m < kRows; ++m) {
      acc[m] = hn::MulAdd(hn::LoadU(d, p), xv, acc[m]);
      if (!Clamp || m + 1 < count) {
        p += stride;
      }
    }
  }
  if (full < n) {
    const size_t rest = n - full;
    const hn::Vec<D> xv = LoadPartial(d, x + full, rest, 0.0f);
    const float* p = w + full;
    for (size_t m = 0; m < kRows; ++m) {
      acc[m] = hn::MulAdd(LoadPartial(d, p, rest, 0.0f), xv, acc[m]);
      if (!Clamp || m + 1 < count) {
        p += stride;
      }
    }
  }
  return ReduceToLanes<0>(dout, d, acc);
}

// DotRowsImpl for `count` (1..Lanes(dout)) rows.
template <class DO, class D>
HWY_INLINE hn::Vec<DO> DotRows(DO dout, D d, const float* HWY_RESTRICT w, size_t stride,
                               size_t count, const float* HWY_RESTRICT x, size_t n) {
  if (count == hn::Lanes(dout)) {
    return DotRowsImpl<false>(dout, d, w, stride, count, x, n);
  }
  return DotRowsImpl<true>(dout, d, w, stride, count, x, n);
}

// sum_i a[i] b[i] over n floats with two independent accumulators (hides the FMA latency on
// long rows) and a zero-padded tail.
template <class D>
HWY_INLINE float DotVec(D d, const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, size_t n) {
  const size_t lanes = hn::Lanes(d);
  hn::Vec<D> acc0 = hn::Zero(d);
  hn::Vec<D> acc1 = hn::Zero(d);
  size_t i = 0;
  for (; i + 2 * lanes <= n; i += 2 * lanes) {
    acc0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), acc0);
    acc1 = hn::MulAdd(hn::LoadU(d, a + i + lanes), hn::LoadU(d, b + i + lanes), acc1);
  }
  if (i + lanes <= n) {
    acc0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), acc0);
    i += lanes;
  }
  if (i < n) {
    acc1 = hn::MulAdd(LoadPartial(d, a + i, n - i, 0.0f), LoadPartial(d, b + i, n - i, 0.0f), acc1);
  }
  return ReduceSum(d, hn::Add(acc0, acc1));
}

// In-place softmax of x[0..n), n > 0: max-subtracted, float32, scaled by 1 / sum (the order of
// torch's CPU kernel). exp is Highway's: 1 ulp, and exactly 0 below -104, where the true weight
// is below float's smallest denormal anyway.
template <class D>
HWY_INLINE void SoftmaxRow(D d, float* HWY_RESTRICT x, size_t n) {
  const size_t lanes = hn::Lanes(d);
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  if (n <= lanes) {
    // One vector (attention over a short window): everything stays in registers.
    const hn::Vec<D> v = n == lanes ? hn::LoadU(d, x) : LoadPartial(d, x, n, kNegInf);
    hn::Vec<D> e = hn::Exp(d, hn::Sub(v, hn::MaxOfLanes(d, v)));
    if (n < lanes) {
      e = hn::IfThenElseZero(hn::FirstN(d, n), e);
    }
    const hn::Vec<D> y = hn::Mul(e, hn::Div(hn::Set(d, 1.0f), hn::SumOfLanes(d, e)));
    if (n == lanes) {
      hn::StoreU(y, d, x);
    } else {
      StorePartial(d, y, x, n);
    }
    return;
  }
  hn::Vec<D> vmax = hn::Set(d, kNegInf);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    vmax = hn::Max(vmax, hn::LoadU(d, x + i));
  }
  if (i < n) {
    vmax = hn::Max(vmax, LoadPartial(d, x + i, n - i, kNegInf));
  }
  vmax = hn::MaxOfLanes(d, vmax);

  hn::Vec<D> sum = hn::Zero(d);
  for (i = 0; i + lanes <= n; i += lanes) {
    const hn::Vec<D> e = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i), vmax));
    hn::StoreU(e, d, x + i);
    sum = hn::Add(sum, e);
  }
  if (i < n) {
    const size_t rest = n - i;
    const hn::Vec<D> e = hn::IfThenElseZero(
        hn::FirstN(d, rest), hn::Exp(d, hn::Sub(LoadPartial(d, x + i, rest, 0.0f), vmax)));
    StorePartial(d, e, x + i, rest);
    sum = hn::Add(sum, e);
  }

  const hn::Vec<D> inv = hn::Div(hn::Set(d, 1.0f), hn::SumOfLanes(d, sum));
  for (i = 0; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::Mul(hn::LoadU(d, x + i), inv), d, x + i);
  }
  if (i < n) {
    StorePartial(d, hn::Mul(LoadPartial(d, x + i, n - i, 0.0f), inv), x + i, n - i);
  }
}

}  // namespace rotor::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // ROTOR_ENCODERS_INTERNAL_KERNELS_VECTOR_OPS_INL_H_
