// Tests of the rotation kernels (SinCos, RotatePairs, OrdinalAngles) on every Highway target,
// against the scalar references and against float64 / long double computations of the math.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "encoders/internal/kernels/kernels.h"
#include "encoders/internal/kernels/scalar_kernels.h"
#include "encoders/internal/kernels/test_util.h"

namespace rotor::kernels {
namespace {

using testing::kEps;
using testing::RandomFloats;

// ---------------------------------------------------------------------------------------------
// Dispatch

TEST(DispatchTest, DefaultIsTheBestAvailableTarget) {
  const std::vector<int64_t> targets = AvailableTargets();
  ASSERT_FALSE(targets.empty());
  EXPECT_STREQ(KernelTarget(), TargetName(targets.front()));
}

TEST(DispatchTest, ForcingATargetAndRestoringIt) {
  const std::vector<int64_t> targets = AvailableTargets();
  const std::string best = KernelTarget();
  ForceTargetForTest(targets.back());
  EXPECT_STREQ(KernelTarget(), TargetName(targets.back()));
  ForceTargetForTest(0);
  EXPECT_EQ(KernelTarget(), best);
}

// ---------------------------------------------------------------------------------------------
// SinCos

class SinCosTest : public testing::PerTargetTest {
 protected:
  // Max |error| of SinCos against float64 sin/cos of the same float inputs, over a uniform grid
  // of `n` points in [lo, hi].
  static double MaxError(double lo, double hi, size_t n) {
    std::vector<float> t(n);
    for (size_t i = 0; i < n; ++i) {
      t[i] =
          static_cast<float>(lo + (hi - lo) * static_cast<double>(i) / static_cast<double>(n - 1));
    }
    std::vector<float> c(n);
    std::vector<float> s(n);
    SinCos(t.data(), c.data(), s.data(), n);
    double max_err = 0.0;
    for (size_t i = 0; i < n; ++i) {
      const double x = t[i];
      max_err = std::max(max_err, std::abs(c[i] - std::cos(x)));
      max_err = std::max(max_err, std::abs(s[i] - std::sin(x)));
    }
    return max_err;
  }
};

TEST_P(SinCosTest, AccurateOnTheAngleRanges) {
  // The reduced ordinal part lies in [0, 2pi); the learned part adds a few tens of radians.
  // Required: 2e-6. Measured on every target: 1.4e-7; held to 5e-7.
  EXPECT_LE(MaxError(-8.0, 8.0, 200001), 5e-7);
  EXPECT_LE(MaxError(0.0, 2.0 * std::numbers::pi + 20.0, 200001), 5e-7);
  EXPECT_LE(MaxError(-50.0, 50.0, 200001), 5e-7);
  EXPECT_LE(MaxError(-1e4, 1e4, 200001), 5e-7);
}

TEST_P(SinCosTest, MatchesScalarAtEveryTailLength) {
  for (const size_t n : TailLengths()) {
    SCOPED_TRACE(n);
    const std::vector<float> t = RandomFloats(n, -50.0f, 50.0f, 1);
    // One guard element past the end: the kernels must not write it.
    std::vector<float> c(n + 1, 42.0f);
    std::vector<float> s(n + 1, 42.0f);
    std::vector<float> c_ref(n);
    std::vector<float> s_ref(n);
    SinCos(t.data(), c.data(), s.data(), n);
    scalar::SinCos(t.data(), c_ref.data(), s_ref.data(), n);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_NEAR(c[i], c_ref[i], 2e-6) << "angle " << t[i];
      ASSERT_NEAR(s[i], s_ref[i], 2e-6) << "angle " << t[i];
    }
    EXPECT_EQ(c[n], 42.0f);
    EXPECT_EQ(s[n], 42.0f);
  }
}

TEST_P(SinCosTest, ExactAtZero) {
  const float zero[1] = {0.0f};
  float c = 0.0f;
  float s = 1.0f;
  SinCos(zero, &c, &s, 1);
  EXPECT_EQ(c, 1.0f);
  EXPECT_EQ(s, 0.0f);
}

ROTOR_KERNELS_INSTANTIATE_PER_TARGET(SinCosTest);

// ---------------------------------------------------------------------------------------------
// RotatePairs

class RotatePairsTest : public testing::PerTargetTest {
 protected:
  struct Shape {
    int n_heads;
    int d_head;
  };
  // Head sizes around every vector width (pairs = d_head / 2 from 1 to 257) and head counts
  // that make the tensor not a multiple of a vector.
  static std::vector<Shape> Shapes() {
    std::vector<Shape> shapes;
    for (const int d_head : {2, 4, 6, 8, 10, 14, 16, 18, 30, 32, 34, 62, 64, 66, 128, 258, 514}) {
      for (const int n_heads : {1, 2, 3, 4}) {
        shapes.push_back({n_heads, d_head});
      }
    }
    return shapes;
  }
};

TEST_P(RotatePairsTest, FromAnglesMatchesFloat64Rotation) {
  for (const Shape shape : Shapes()) {
    SCOPED_TRACE(::testing::Message() << shape.n_heads << " heads x " << shape.d_head);
    const auto pairs = static_cast<size_t>(shape.d_head / 2);
    const auto n = static_cast<size_t>(shape.n_heads) * static_cast<size_t>(shape.d_head);
    const std::vector<float> angles = RandomFloats(pairs, -50.0f, 50.0f, 2);
    const std::vector<float> x0 = RandomFloats(n, -3.0f, 3.0f, 3);
    std::vector<float> x = x0;
    x.push_back(42.0f);  // Guard.
    RotatePairs(x.data(), angles.data(), shape.n_heads, shape.d_head);
    EXPECT_EQ(x[n], 42.0f);
    std::vector<float> x_ref = x0;
    scalar::RotatePairs(x_ref.data(), angles.data(), shape.n_heads, shape.d_head);
    for (size_t i = 0; i < n; i += 2) {
      const double a = x0[i];
      const double b = x0[i + 1];
      const double t = angles[(i % static_cast<size_t>(shape.d_head)) / 2];
      // SinCos's 2e-6 on each of cos and sin, plus the float rounding of the products and sums.
      const double tol = (2e-6 + 4 * kEps) * (std::abs(a) + std::abs(b));
      ASSERT_NEAR(x[i], a * std::cos(t) - b * std::sin(t), tol) << "element " << i;
      ASSERT_NEAR(x[i + 1], a * std::sin(t) + b * std::cos(t), tol) << "element " << i + 1;
      ASSERT_NEAR(x[i], x_ref[i], 2 * tol) << "element " << i;
      ASSERT_NEAR(x[i + 1], x_ref[i + 1], 2 * tol) << "element " << i + 1;
    }
  }
}

TEST_P(RotatePairsTest, FromCosSinMatchesScalar) {
  for (const Shape shape : Shapes()) {
    SCOPED_TRACE(::testing::Message() << shape.n_heads << " heads x " << shape.d_head);
    const auto pairs = static_cast<size_t>(shape.d_head / 2);
    const auto n = static_cast<size_t>(shape.n_heads) * static_cast<size_t>(shape.d_head);
    const std::vector<float> angles = RandomFloats(pairs, 0.0f, 7.0f, 4);
    std::vector<float> c(pairs);
    std::vector<float> s(pairs);
    scalar::SinCos(angles.data(), c.data(), s.data(), pairs);
    const std::vector<float> x0 = RandomFloats(n, -3.0f, 3.0f, 5);
    std::vector<float> x = x0;
    x.push_back(42.0f);
    RotatePairs(x.data(), c.data(), s.data(), shape.n_heads, shape.d_head);
    EXPECT_EQ(x[n], 42.0f);
    std::vector<float> x_ref = x0;
    scalar::RotatePairs(x_ref.data(), c.data(), s.data(), shape.n_heads, shape.d_head);
    for (size_t i = 0; i < n; i += 2) {
      // A fused multiply-add skips one of the scalar version's two roundings.
      const double tol = 2 * kEps * (std::abs(x0[i]) + std::abs(x0[i + 1]));
      ASSERT_NEAR(x[i], x_ref[i], tol) << "element " << i;
      ASSERT_NEAR(x[i + 1], x_ref[i + 1], tol) << "element " << i + 1;
    }
  }
}

TEST_P(RotatePairsTest, QuarterTurnSwapsThePair) {
  // Independent check of the convention: t = pi/2 maps (a, b) to (-b, a) in every head.
  const std::vector<float> angles = {static_cast<float>(std::numbers::pi / 2), 0.0f};
  std::vector<float> x = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f, 8.0f};
  RotatePairs(x.data(), angles.data(), 2, 4);
  const std::vector<float> expected = {-2.0f, 1.0f, 3.0f, 4.0f, -6.0f, 5.0f, 7.0f, 8.0f};
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(x[i], expected[i], 1e-6) << i;
  }
}

ROTOR_KERNELS_INSTANTIATE_PER_TARGET(RotatePairsTest);

// ---------------------------------------------------------------------------------------------
// OrdinalAngles

class OrdinalAnglesTest : public testing::PerTargetTest {
 protected:
  // theta_j = base^(-2j/d_head) for j < d_head/2, as python's rope_frequencies.
  static std::vector<double> RopeFrequencies(int d_head, double base) {
    std::vector<double> theta(static_cast<size_t>(d_head / 2));
    for (size_t j = 0; j < theta.size(); ++j) {
      theta[j] = std::pow(base, -2.0 * static_cast<double>(j) / d_head);
    }
    return theta;
  }

  static std::vector<int64_t> Positions() {
    std::vector<int64_t> pos = {0,
                                1,
                                2,
                                3,
                                7,
                                100,
                                12345,
                                99999,
                                1 << 20,
                                (1 << 24) + 1,
                                1 << 30,
                                (int64_t{1} << 31) - 1,
                                int64_t{1} << 31,
                                -1,
                                -123456};
    std::mt19937_64 rng(11);
    std::uniform_int_distribution<int64_t> dist(0, (int64_t{1} << 31) - 1);
    for (int i = 0; i < 50; ++i) {
      pos.push_back(dist(rng));
    }
    return pos;
  }

  static constexpr double kLambdas[] = {1.0, 0.9731, 1.0625, -1.0, 0.5, 1e-3, 1.5, -0.37};
};

TEST_P(OrdinalAnglesTest, BitExactWithScalarReference) {
  for (const int d_head : {2, 8, 16, 32, 34, 64, 128}) {
    const std::vector<double> theta = RopeFrequencies(d_head, 1e5);
    for (const int64_t pos : Positions()) {
      for (const double lam : kLambdas) {
        std::vector<float> out(theta.size() + 1, 42.0f);
        std::vector<float> ref(theta.size());
        OrdinalAngles(pos, theta.data(), lam, out.data(), theta.size());
        scalar::OrdinalAngles(pos, theta.data(), lam, ref.data(), theta.size());
        for (size_t j = 0; j < theta.size(); ++j) {
          // == also accepts -0 for +0 (fmod keeps the sign of an exact-multiple zero).
          ASSERT_EQ(out[j], ref[j]) << "pos " << pos << " lambda " << lam << " j " << j;
        }
        ASSERT_EQ(out[theta.size()], 42.0f);
      }
    }
  }
}

TEST_P(OrdinalAnglesTest, BitExactAtEveryTailLengthAndHugeAngles) {
  for (const size_t n : TailLengths()) {
    SCOPED_TRACE(n);
    std::vector<double> theta(n);
    std::mt19937_64 rng(n);
    std::uniform_real_distribution<double> dist(1e-6, 1.0);
    for (double& t : theta) {
      t = dist(rng);
    }
    // The last positions make |a| pass 1e10, the SIMD path's limit, in some lanes only.
    for (const int64_t pos : {int64_t{5}, int64_t{1} << 30, int64_t{1} << 36, int64_t{1} << 50}) {
      std::vector<float> out(n);
      std::vector<float> ref(n);
      OrdinalAngles(pos, theta.data(), 1.0, out.data(), n);
      scalar::OrdinalAngles(pos, theta.data(), 1.0, ref.data(), n);
      for (size_t j = 0; j < n; ++j) {
        ASSERT_EQ(out[j], ref[j]) << "pos " << pos << " j " << j;
      }
    }
  }
}

TEST_P(OrdinalAnglesTest, WithinOneMicroradianOfExactAngle) {
  // The exact angle p * theta * lambda mod 2pi in long double (64-bit mantissa): its own error
  // is below 1e-9 rad for these magnitudes.
  const long double two_pi = 2.0L * std::numbers::pi_v<long double>;
  for (const int d_head : {16, 32, 64, 128}) {
    const std::vector<double> theta = RopeFrequencies(d_head, 1e5);
    for (const int64_t pos : Positions()) {
      for (const double lam : kLambdas) {
        std::vector<float> out(theta.size());
        OrdinalAngles(pos, theta.data(), lam, out.data(), theta.size());
        for (size_t j = 0; j < theta.size(); ++j) {
          long double exact = std::fmod(static_cast<long double>(pos) * theta[j] * lam, two_pi);
          if (exact < 0) {
            exact += two_pi;
          }
          // Distance on the circle: 2pi - tiny and 0 are the same angle.
          long double err = std::abs(static_cast<long double>(out[j]) - exact);
          err = std::min(err, two_pi - err);
          ASSERT_LE(static_cast<double>(err), 1e-6)
              << "pos " << pos << " lambda " << lam << " j " << j;
        }
      }
    }
  }
}

TEST_P(OrdinalAnglesTest, KnownValues) {
  // Independent values: theta = 1, lambda = 1: a = p, so r = p - 2pi * floor(p / 2pi).
  const double theta[4] = {1.0, 1.0, 1.0, 1.0};
  float out[4];
  OrdinalAngles(7, theta, 1.0, out, 4);
  EXPECT_FLOAT_EQ(out[0], static_cast<float>(7.0 - 2.0 * std::numbers::pi));
  OrdinalAngles(0, theta, 1.0, out, 4);
  EXPECT_EQ(out[0], 0.0f);
  OrdinalAngles(-1, theta, 1.0, out, 4);  // Floored: -1 -> 2pi - 1.
  EXPECT_FLOAT_EQ(out[0], static_cast<float>(2.0 * std::numbers::pi - 1.0));
}

ROTOR_KERNELS_INSTANTIATE_PER_TARGET(OrdinalAnglesTest);

}  // namespace
}  // namespace rotor::kernels
