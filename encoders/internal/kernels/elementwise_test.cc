// Tests of the vector kernels (Silu, LayerNorm, Softmax, Dot, Axpy) on every Highway target,
// against the scalar references, float64 loops and (LayerNorm) values computed by torch.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include <gtest/gtest.h>

#include "encoders/internal/kernels/kernels.h"
#include "encoders/internal/kernels/scalar_kernels.h"
#include "encoders/internal/kernels/test_util.h"

namespace rotor::kernels {
namespace {

using testing::kEps;
using testing::RandomFloats;

class ElementwiseTest : public testing::PerTargetTest {};

// ---------------------------------------------------------------------------------------------
// Silu

TEST_P(ElementwiseTest, SiluMatchesFloat64AndScalar) {
  for (const size_t n : TailLengths()) {
    SCOPED_TRACE(n);
    const std::vector<float> x0 = RandomFloats(n, -20.0f, 20.0f, 1);
    std::vector<float> x = x0;
    x.push_back(42.0f);  // Guard: must not be written.
    Silu(x.data(), n);
    EXPECT_EQ(x[n], 42.0f);
    std::vector<float> ref = x0;
    scalar::Silu(ref.data(), n);
    for (size_t i = 0; i < n; ++i) {
      const double v = x0[i];
      const double exact = v / (1.0 + std::exp(-v));
      const double tol = 4 * kEps * std::abs(exact) + 1e-30;
      ASSERT_NEAR(x[i], exact, tol) << "x = " << v;
      ASSERT_NEAR(x[i], ref[i], 2 * tol) << "x = " << v;
    }
  }
}

TEST_P(ElementwiseTest, SiluSaturates) {
  std::vector<float> x = {-1000.0f, -100.0f, -88.0f, 0.0f, 88.0f, 100.0f, 1000.0f};
  Silu(x.data(), x.size());
  EXPECT_NEAR(x[0], 0.0f, 1e-30);
  EXPECT_NEAR(x[1], 0.0f, 1e-30);
  EXPECT_NEAR(x[2], 0.0f, 1e-30);
  EXPECT_EQ(x[3], 0.0f);
  EXPECT_EQ(x[4], 88.0f);
  EXPECT_EQ(x[5], 100.0f);
  EXPECT_EQ(x[6], 1000.0f);
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

// float64 LayerNorm with torch's semantics (biased variance, eps inside the square root).
std::vector<double> LayerNormFloat64(const std::vector<float>& x, const std::vector<float>& gamma,
                                     const std::vector<float>& beta, double eps) {
  const auto n = static_cast<double>(x.size());
  double mean = 0.0;
  for (const float v : x) {
    mean += v;
  }
  mean /= n;
  double var = 0.0;
  for (const float v : x) {
    var += (v - mean) * (v - mean);
  }
  var /= n;
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    y[i] = (x[i] - mean) / std::sqrt(var + eps) * gamma[i] + beta[i];
  }
  return y;
}

TEST_P(ElementwiseTest, LayerNormIsCorrectlyRoundedAtEveryTailLength) {
  for (const size_t n : TailLengths()) {
    if (n == 0) {
      continue;  // n > 0 by contract.
    }
    SCOPED_TRACE(n);
    // An offset mean: the case where a float32 one-pass variance loses digits.
    std::vector<float> x = RandomFloats(n, 99.0f, 101.0f, 2);
    const std::vector<float> gamma = RandomFloats(n, 0.5f, 1.5f, 3);
    const std::vector<float> beta = RandomFloats(n, -0.1f, 0.1f, 4);
    const std::vector<double> exact = LayerNormFloat64(x, gamma, beta, 1e-5);
    std::vector<float> y(n + 1, 42.0f);
    std::vector<float> ref(n);
    LayerNorm(x.data(), gamma.data(), beta.data(), 1e-5, n, y.data());
    scalar::LayerNorm(x.data(), gamma.data(), beta.data(), 1e-5, n, ref.data());
    EXPECT_EQ(y[n], 42.0f);
    for (size_t i = 0; i < n; ++i) {
      // float64 arithmetic, then one float32 rounding (0.5 ulp; 1 ulp allows the double one).
      ASSERT_NEAR(y[i], exact[i], kEps * std::abs(exact[i]) + 1e-12) << i;
      ASSERT_NEAR(y[i], ref[i], kEps * std::abs(exact[i]) + 1e-12) << i;
    }
    // In place (y aliases x).
    LayerNorm(x.data(), gamma.data(), beta.data(), 1e-5, n, x.data());
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(x[i], y[i]) << i;
    }
  }
}

TEST_P(ElementwiseTest, LayerNormMatchesTorch) {
  // torch 1.13 nn.LayerNorm(64, eps=1e-5) in float32 on x_i = ((37 i) mod 101) / 16 - 3,
  // gamma_i = 1 + (i mod 7) / 32, beta_i = (i mod 5) / 64 - 1/32 (all exact in float32).
  constexpr float kTorch[64] = {
      -1.71568692f,  -0.461210787f, 0.871537447f,  -1.45652199f,   -0.0740603656f, 1.30854845f,
      -1.21201813f,  0.244864777f,  1.55963159f,   -0.679578424f,  0.606776714f,   -1.79638171f,
      -0.382188052f, 1.11027765f,   -1.21317077f,  -0.0230691116f, 1.3234297f,     -0.990879297f,
      0.405332834f,  1.87981713f,   -0.705123961f, 0.669255972f,   -1.52764487f,   -0.227686241f,
      1.15054452f,   -1.31698835f,  0.110955678f,  1.61717188f,    -0.788779616f,  0.49319759f,
      1.77532184f,   -0.525236607f, 0.884726048f,  -1.5797807f,    -0.120104715f,  1.09364712f,
      -1.08950317f,  0.224205956f,  1.61618721f,   -0.759470165f,  0.604099393f,   -1.93550634f,
      -0.364388406f, 0.931339324f,  -1.32691002f,  -0.0595938936f, 1.36411929f,    -1.08663702f,
      0.386789501f,  1.59616339f,   -0.651361465f, 0.676098168f,   -1.65725005f,   -0.280076981f,
      1.17536807f,   -1.42861211f,  0.0600027815f, 1.36948097f,    -0.875017762f,  0.484173834f,
      1.84351242f,   -0.593493342f, 0.893683732f,  -1.39803278f};
  std::vector<float> x(64);
  std::vector<float> gamma(64);
  std::vector<float> beta(64);
  for (size_t i = 0; i < 64; ++i) {
    x[i] = static_cast<float>((i * 37) % 101) / 16.0f - 3.0f;
    gamma[i] = 1.0f + static_cast<float>(i % 7) / 32.0f;
    beta[i] = static_cast<float>(i % 5) / 64.0f - 0.03125f;
  }
  std::vector<float> y(64);
  LayerNorm(x.data(), gamma.data(), beta.data(), 1e-5, 64, y.data());
  for (size_t i = 0; i < 64; ++i) {
    EXPECT_NEAR(y[i], kTorch[i], 1e-6) << i;
  }
}

// ---------------------------------------------------------------------------------------------
// Softmax

TEST_P(ElementwiseTest, SoftmaxMatchesFloat64AndScalar) {
  for (const size_t n : TailLengths()) {
    if (n == 0) {
      continue;  // n > 0 by contract.
    }
    SCOPED_TRACE(n);
    // Wide logits: many weights underflow towards 0, a few dominate.
    for (const float spread : {1.0f, 30.0f}) {
      const std::vector<float> x0 = RandomFloats(n, -spread, spread, 5);
      std::vector<float> x = x0;
      x.push_back(42.0f);
      Softmax(x.data(), n);
      EXPECT_EQ(x[n], 42.0f);
      std::vector<float> ref = x0;
      scalar::Softmax(ref.data(), n);
      const double max = *std::max_element(x0.begin(), x0.end());
      double sum = 0.0;
      for (const float v : x0) {
        sum += std::exp(v - max);
      }
      for (size_t i = 0; i < n; ++i) {
        const double exact = std::exp(x0[i] - max) / sum;
        // Relative: exp's 1 ulp, the sum and the scaling, plus rounding x - max in float32,
        // which moves exp(x - max) by up to eps |x - max| (the same in the scalar version).
        const double tol = (6 + std::abs(x0[i] - max)) * kEps * exact + 1e-37;
        ASSERT_NEAR(x[i], exact, tol) << i;
        ASSERT_NEAR(x[i], ref[i], 2 * tol) << i;
      }
    }
  }
}

TEST_P(ElementwiseTest, SoftmaxOfEqualLogitsIsUniform) {
  std::vector<float> x(37, 1e4f);  // Large equal logits: only the max subtraction keeps exp finite.
  Softmax(x.data(), x.size());
  for (const float v : x) {
    EXPECT_NEAR(v, 1.0 / 37, 1e-7);
  }
}

// ---------------------------------------------------------------------------------------------
// Dot and Axpy

TEST_P(ElementwiseTest, DotMatchesFloat64AndScalar) {
  for (const size_t n : TailLengths()) {
    SCOPED_TRACE(n);
    const std::vector<float> a = RandomFloats(n, -2.0f, 2.0f, 6);
    const std::vector<float> b = RandomFloats(n, -2.0f, 2.0f, 7);
    double exact = 0.0;
    double magnitude = 0.0;
    for (size_t i = 0; i < n; ++i) {
      exact += static_cast<double>(a[i]) * b[i];
      magnitude += std::abs(static_cast<double>(a[i]) * b[i]);
    }
    // The classic bound of float summation: n epsilons of sum |a_i b_i|.
    const double tol = static_cast<double>(n + 1) * kEps * magnitude;
    EXPECT_NEAR(Dot(a.data(), b.data(), n), exact, tol);
    EXPECT_NEAR(Dot(a.data(), b.data(), n), scalar::Dot(a.data(), b.data(), n), 2 * tol);
  }
}

TEST_P(ElementwiseTest, DotOfSmallIntegersIsExact) {
  std::vector<float> a(100);
  std::vector<float> b(100);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(i);
    b[i] = static_cast<float>(i % 3) - 1.0f;
  }
  // sum over i of i * ((i mod 3) - 1), every partial sum an exact float.
  double exact = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    exact += static_cast<double>(i) * (static_cast<double>(i % 3) - 1.0);
  }
  EXPECT_EQ(Dot(a.data(), b.data(), a.size()), static_cast<float>(exact));
}

TEST_P(ElementwiseTest, AxpyMatchesFloat64AndScalar) {
  for (const size_t n : TailLengths()) {
    SCOPED_TRACE(n);
    const float alpha = -0.7f;
    const std::vector<float> x = RandomFloats(n, -3.0f, 3.0f, 8);
    const std::vector<float> y0 = RandomFloats(n, -3.0f, 3.0f, 9);
    std::vector<float> y = y0;
    y.push_back(42.0f);
    Axpy(alpha, x.data(), y.data(), n);
    EXPECT_EQ(y[n], 42.0f);
    std::vector<float> ref = y0;
    scalar::Axpy(alpha, x.data(), ref.data(), n);
    for (size_t i = 0; i < n; ++i) {
      const double exact = y0[i] + static_cast<double>(alpha) * x[i];
      // Fused: one rounding of the result; the scalar one also rounds alpha * x.
      const double tol = kEps * (std::abs(exact) + std::abs(static_cast<double>(alpha) * x[i]));
      ASSERT_NEAR(y[i], exact, tol) << i;
      ASSERT_NEAR(y[i], ref[i], tol) << i;
    }
  }
}

ROTOR_KERNELS_INSTANTIATE_PER_TARGET(ElementwiseTest);

}  // namespace
}  // namespace rotor::kernels
