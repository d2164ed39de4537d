// Shared by the kernel tests: a fixture that runs each test once per compiled Highway target,
// the tail lengths every kernel is checked at, and random inputs.

#ifndef ROTOR_ENCODERS_INTERNAL_KERNELS_TEST_UTIL_H_
#define ROTOR_ENCODERS_INTERNAL_KERNELS_TEST_UTIL_H_

#include <algorithm>
#include <cfloat>
#include <cstddef>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "encoders/internal/kernels/kernels.h"

namespace rotor::kernels::testing {

// Parameterised by a HWY_* target bit: SetUp forces every kernel to dispatch to it, and checks
// that it did.
class PerTargetTest : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override {
    ForceTargetForTest(GetParam());
    ASSERT_STREQ(KernelTarget(), TargetName(GetParam()));
    lanes_ = KernelFloatLanes();
  }
  void TearDown() override { ForceTargetForTest(0); }

  // Lengths that exercise the empty case, a lone element, every tail around one and two
  // vectors of floats and of doubles (half as many lanes), and a few longer random ones.
  std::vector<size_t> TailLengths() const {
    std::set<size_t> lengths = {0, 1, 2, 3};
    for (const size_t v : {lanes_ / 2, lanes_, 2 * lanes_, 3 * lanes_}) {
      if (v > 0) {  // The SCALAR target has one lane.
        lengths.insert({v - 1, v, v + 1});
      }
    }
    std::mt19937 rng(7);
    std::uniform_int_distribution<size_t> len(4 * lanes_, 1000);
    for (int i = 0; i < 3; ++i) {
      lengths.insert(len(rng));
    }
    return {lengths.begin(), lengths.end()};
  }

  size_t lanes_ = 0;
};

inline std::string TargetParamName(const ::testing::TestParamInfo<int64_t>& info) {
  return TargetName(info.param);
}

// Instantiates a PerTargetTest subclass for every target this build has and this CPU runs.
#define ROTOR_KERNELS_INSTANTIATE_PER_TARGET(Suite)                                   \
  INSTANTIATE_TEST_SUITE_P(AllTargets, Suite,                                         \
                           ::testing::ValuesIn(::rotor::kernels::AvailableTargets()), \
                           ::rotor::kernels::testing::TargetParamName)

// n floats uniform in [lo, hi), reproducible per seed.
inline std::vector<float> RandomFloats(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> out(n);
  std::generate(out.begin(), out.end(), [&] { return dist(rng); });
  return out;
}

// Float epsilon as a double, for tolerances.
inline constexpr double kEps = FLT_EPSILON;

}  // namespace rotor::kernels::testing

#endif  // ROTOR_ENCODERS_INTERNAL_KERNELS_TEST_UTIL_H_
