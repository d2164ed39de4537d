// Tests of the roofline measurements: they return finite, positive rates in a plausible range.
// The values themselves depend on the machine and its load; bench/decode_bench reports them.

#include "encoders/internal/kernels/roofline.h"

#include <cmath>

#include <gtest/gtest.h>

namespace rotor::kernels {
namespace {

TEST(RooflineTest, PeakFmaRateIsPlausible) {
  const double gflops = MeasurePeakFmaGflops();
  EXPECT_TRUE(std::isfinite(gflops));
  // Even an unoptimised, sanitised build of the one-lane fallback does more than 0.01 GFLOP/s,
  // and no single core does 10 TFLOP/s.
  EXPECT_GT(gflops, 0.01);
  EXPECT_LT(gflops, 1e4);
}

TEST(RooflineTest, MemoryBandwidthIsPlausible) {
  const double gbs = MeasureMemoryBandwidthGBs();
  EXPECT_TRUE(std::isfinite(gbs));
  EXPECT_GT(gbs, 0.01);
  EXPECT_LT(gbs, 1e4);
}

}  // namespace
}  // namespace rotor::kernels
