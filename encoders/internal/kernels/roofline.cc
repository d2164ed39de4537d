// Roofline ceilings: peak FMA rate and streaming read bandwidth of one thread (roofline.h).

#include "encoders/internal/kernels/roofline.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <ctime>

// Highway compiles everything below once per target: foreach_target.h re-includes this file.
#undef HWY_TARGET_INCLUDE
// NOLINTNEXTLINE(readability-identifier-naming): the name is Highway's.
#define HWY_TARGET_INCLUDE "encoders/internal/kernels/roofline.cc"
#include <hwy/foreach_target.h>
// After foreach_target.h.
#include <hwy/aligned_allocator.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace rotor::kernels::HWY_NAMESPACE {
namespace {
namespace hn = hwy::HWY_NAMESPACE;

// The number of independent FMA chains in FmaChains.
constexpr size_t kFmaChains = 12;

// `iters` rounds of kFmaChains independent acc = acc * m + c, one vector each. m < 1 keeps
// every chain at a normal, finite fixed point (c / (1 - m)), so no denormals slow it down.
// Returns the sum of the chains, so that none of them is dead code.
float FmaChains(uint64_t iters, float seed) {
  const hn::ScalableTag<float> d;
  const auto m = hn::Set(d, 0.999999f);
  const auto c = hn::Set(d, 1e-3f);
  auto a0 = hn::Set(d, seed);
  auto a1 = hn::Add(a0, c);
  auto a2 = hn::Add(a1, c);
  auto a3 = hn::Add(a2, c);
  auto a4 = hn::Add(a3, c);
  auto a5 = hn::Add(a4, c);
  auto a6 = hn::Add(a5, c);
  auto a7 = hn::Add(a6, c);
  auto a8 = hn::Add(a7, c);
  auto a9 = hn::Add(a8, c);
  auto a10 = hn::Add(a9, c);
  auto a11 = hn::Add(a10, c);
  for (uint64_t i = 0; i < iters; ++i) {
    a0 = hn::MulAdd(a0, m, c);
    a1 = hn::MulAdd(a1, m, c);
    a2 = hn::MulAdd(a2, m, c);
    a3 = hn::MulAdd(a3, m, c);
    a4 = hn::MulAdd(a4, m, c);
    a5 = hn::MulAdd(a5, m, c);
    a6 = hn::MulAdd(a6, m, c);
    a7 = hn::MulAdd(a7, m, c);
    a8 = hn::MulAdd(a8, m, c);
    a9 = hn::MulAdd(a9, m, c);
    a10 = hn::MulAdd(a10, m, c);
    a11 = hn::MulAdd(a11, m, c);
  }
  const auto s = hn::Add(
      hn::Add(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)), hn::Add(hn::Add(a4, a5), hn::Add(a6, a7))),
      hn::Add(hn::Add(a8, a9), hn::Add(a10, a11)));
  return hn::GetLane(hn::SumOfLanes(d, s));
}

// Flops of one FmaChains iteration: 2 per lane per chain.
size_t FmaFlopsPerIteration() {
  return 2 * kFmaChains * hn::Lanes(hn::ScalableTag<float>());
}

// Sum of x[0..n) with 8 vector accumulators; n is a multiple of 8 * FloatLanes().
float StreamSum(const float* HWY_RESTRICT x, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  auto s0 = hn::Zero(d);
  auto s1 = hn::Zero(d);
  auto s2 = hn::Zero(d);
  auto s3 = hn::Zero(d);
  auto s4 = hn::Zero(d);
  auto s5 = hn::Zero(d);
  auto s6 = hn::Zero(d);
  auto s7 = hn::Zero(d);
  for (size_t i = 0; i + 8 * lanes <= n; i += 8 * lanes) {
    s0 = hn::Add(s0, hn::LoadU(d, x + i));
    s1 = hn::Add(s1, hn::LoadU(d, x + i + lanes));
    s2 = hn::Add(s2, hn::LoadU(d, x + i + 2 * lanes));
    s3 = hn::Add(s3, hn::LoadU(d, x + i + 3 * lanes));
    s4 = hn::Add(s4, hn::LoadU(d, x + i + 4 * lanes));
    s5 = hn::Add(s5, hn::LoadU(d, x + i + 5 * lanes));
    s6 = hn::Add(s6, hn::LoadU(d, x + i + 6 * lanes));
    s7 = hn::Add(s7, hn::LoadU(d, x + i + 7 * lanes));
  }
  const auto s =
      hn::Add(hn::Add(hn::Add(s0, s1), hn::Add(s2, s3)), hn::Add(hn::Add(s4, s5), hn::Add(s6, s7)));
  return hn::GetLane(hn::SumOfLanes(d, s));
}

}  // namespace
}  // namespace rotor::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rotor::kernels {

HWY_EXPORT(FmaChains);
HWY_EXPORT(FmaFlopsPerIteration);
HWY_EXPORT(StreamSum);

namespace {

// The calling thread's CPU time, in seconds: on a shared virtual machine it leaves out the
// time other tenants steal (as Google Benchmark's default CPU time does for the timings these
// ceilings are compared with).
double ThreadSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double SecondsSince(double start) {
  return ThreadSeconds() - start;
}

// Keeps results alive without letting the compiler drop the loops that make them.
volatile float g_sink = 0.0f;

constexpr int kTrials = 5;
constexpr double kMinTrialSeconds = 0.02;

}  // namespace

double MeasurePeakFmaGflops() {
  // Grow the trial until it lasts kMinTrialSeconds (timer resolution and the loop's start-up
  // are then negligible), then keep the best of kTrials.
  uint64_t iters = 1 << 16;
  double seconds = 0.0;
  for (;;) {
    const double start = ThreadSeconds();
    g_sink = HWY_DYNAMIC_DISPATCH(FmaChains)(iters, 1.0f);
    seconds = SecondsSince(start);
    if (seconds >= kMinTrialSeconds || iters >= (uint64_t{1} << 40)) {
      break;
    }
    iters *= 2;
  }
  for (int t = 0; t < kTrials; ++t) {
    const double start = ThreadSeconds();
    g_sink = HWY_DYNAMIC_DISPATCH(FmaChains)(iters, 1.0f + static_cast<float>(t));
    seconds = std::min(seconds, SecondsSince(start));
  }
  const double flops = static_cast<double>(iters) *
                       static_cast<double>(HWY_DYNAMIC_DISPATCH(FmaFlopsPerIteration)());
  return flops / seconds / 1e9;
}

double MeasureMemoryBandwidthGBs() {
  return MeasureReadBandwidthGBs(size_t{256} << 20);
}

double MeasureReadBandwidthGBs(size_t bytes) {
  constexpr size_t kChunkFloats = size_t{8} * 16;  // StreamSum's step on the widest target (AVX3).
  const size_t n =
      std::max<size_t>(1, (bytes / sizeof(float) + kChunkFloats - 1) / kChunkFloats) * kChunkFloats;
  const hwy::AlignedFreeUniquePtr<float[]> buf = hwy::AllocateAligned<float>(n);
  std::fill(buf.get(), buf.get() + n, 1.0f);               // Touches every page before timing.
  g_sink = HWY_DYNAMIC_DISPATCH(StreamSum)(buf.get(), n);  // Warms the caches and the TLB.
  // Passes per trial: enough for kMinTrialSeconds / 4 (each cached pass is short).
  size_t passes = 1;
  for (;;) {
    const double start = ThreadSeconds();
    for (size_t p = 0; p < passes; ++p) {
      g_sink = HWY_DYNAMIC_DISPATCH(StreamSum)(buf.get(), n);
    }
    if (SecondsSince(start) >= kMinTrialSeconds / 4 || passes >= (size_t{1} << 30)) {
      break;
    }
    passes *= 2;
  }
  double best = 0.0;
  for (int t = 0; t < kTrials; ++t) {
    const double start = ThreadSeconds();
    for (size_t p = 0; p < passes; ++p) {
      g_sink = HWY_DYNAMIC_DISPATCH(StreamSum)(buf.get(), n);
    }
    const double seconds = SecondsSince(start);
    if (t == 0 || seconds < best) {
      best = seconds;
    }
  }
  return static_cast<double>(n * sizeof(float)) * static_cast<double>(passes) / best / 1e9;
}

}  // namespace rotor::kernels
#endif  // HWY_ONCE
