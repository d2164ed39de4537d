// Tests of the dense kernels (Gemv, Gemm in both implementations, Linear, LinearRelu,
// SineLayerForward) on every Highway target, against float64 loops and the scalar references.

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

// One output of a matrix product in float64, with the scale of its rounding error bound.
struct Exact {
  double value;
  double magnitude;  // sum_k |w_k x_k| + |b|
};

Exact DotFloat64(const float* w, const float* x, size_t n, float bias) {
  Exact e{bias, std::abs(bias)};
  for (size_t k = 0; k < n; ++k) {
    e.value += static_cast<double>(w[k]) * x[k];
    e.magnitude += std::abs(static_cast<double>(w[k]) * x[k]);
  }
  return e;
}

// float32 accumulation in any order: (n + 2) epsilons of the magnitude.
double Tolerance(size_t n, const Exact& e) {
  return static_cast<double>(n + 2) * kEps * e.magnitude + 1e-30;
}

class DenseTest : public testing::PerTargetTest {
 protected:
  // Inner dimensions around every vector width, the angle network's 5 inputs, and more than
  // GemmHighway's 128-deep panels.
  std::vector<size_t> Depths() const {
    return {1,  2,   3,  5, std::max<size_t>(lanes_ - 1, 1), lanes_, lanes_ + 1, 2 * lanes_ + 3,
            64, 130, 300};
  }
};

using GemvFn = void (*)(const float*, int, int, const float*, float*);

TEST_P(DenseTest, GemvMatchesFloat64) {
  for (const GemvFn gemv : {&Gemv, &GemvHighway, &GemvEigen, &scalar::Gemv}) {
    for (const size_t rows :
         {size_t{0}, size_t{1}, size_t{3}, size_t{4}, size_t{5}, size_t{17}, size_t{64}}) {
      for (const size_t cols : Depths()) {
        SCOPED_TRACE(::testing::Message() << rows << " x " << cols);
        const std::vector<float> w = RandomFloats(rows * cols, -1.0f, 1.0f, 1);
        const std::vector<float> x = RandomFloats(cols, -1.0f, 1.0f, 2);
        std::vector<float> y(rows + 1, 42.0f);
        gemv(w.data(), static_cast<int>(rows), static_cast<int>(cols), x.data(), y.data());
        EXPECT_EQ(y[rows], 42.0f);
        for (size_t r = 0; r < rows; ++r) {
          const Exact e = DotFloat64(w.data() + r * cols, x.data(), cols, 0.0f);
          ASSERT_NEAR(y[r], e.value, Tolerance(cols, e)) << "row " << r;
        }
      }
    }
  }
}

using GemmFn = void (*)(const float*, int, int, const float*, int, float*);

TEST_P(DenseTest, GemmMatchesFloat64) {
  for (const GemmFn gemm : {&Gemm, &GemmHighway, &GemmEigen, &scalar::Gemm}) {
    for (const size_t n : {size_t{0}, size_t{1}, size_t{3}, size_t{4}, size_t{5}, size_t{7},
                           size_t{64}, size_t{65}}) {
      for (const size_t in : {size_t{1}, size_t{5}, lanes_ + 1, size_t{64}, size_t{300}}) {
        for (const size_t out : {size_t{1}, std::max<size_t>(lanes_ - 1, 1), 2 * lanes_,
                                 2 * lanes_ + 1, size_t{100}}) {
          SCOPED_TRACE(::testing::Message() << n << " x " << in << " -> " << out);
          const std::vector<float> x = RandomFloats(n * in, -1.0f, 1.0f, 3);
          const std::vector<float> w = RandomFloats(out * in, -1.0f, 1.0f, 4);
          std::vector<float> y(n * out + 1, 42.0f);
          gemm(x.data(), static_cast<int>(n), static_cast<int>(in), w.data(), static_cast<int>(out),
               y.data());
          EXPECT_EQ(y[n * out], 42.0f);
          for (size_t i = 0; i < n; ++i) {
            for (size_t o = 0; o < out; ++o) {
              const Exact e = DotFloat64(w.data() + o * in, x.data() + i * in, in, 0.0f);
              ASSERT_NEAR(y[i * out + o], e.value, Tolerance(in, e)) << i << ", " << o;
            }
          }
        }
      }
    }
  }
}

TEST_P(DenseTest, GemmOfOneRowEqualsGemv) {
  const std::vector<float> x = RandomFloats(64, -1.0f, 1.0f, 5);
  const std::vector<float> w = RandomFloats(size_t{256} * 64, -1.0f, 1.0f, 6);
  std::vector<float> y_gemm(256);
  std::vector<float> y_gemv(256);
  GemmHighway(x.data(), 1, 64, w.data(), 256, y_gemm.data());
  GemvHighway(w.data(), 256, 64, x.data(), y_gemv.data());
  EXPECT_EQ(y_gemm, y_gemv);
}

// The decoder's product: W packed once, then any batch. It must give GemmRowInvariant's bits
// (state written before packing existed stays valid) and a row's bits must not depend on the
// batch.
TEST_P(DenseTest, GemmPackedIsGemmRowInvariantBitForBitAndRowInvariant) {
  for (const size_t in : {size_t{1}, size_t{5}, lanes_ + 1, size_t{64}, size_t{130}, size_t{300}}) {
    for (const size_t out :
         {size_t{1}, std::max<size_t>(lanes_ - 1, 1), 2 * lanes_, 2 * lanes_ + 1, size_t{100}}) {
      const std::vector<float> w = RandomFloats(out * in, -1.0f, 1.0f, 10);
      const PackedWeights packed =
          PackForGemm(w.data(), static_cast<int>(out), static_cast<int>(in));
      for (const size_t n :
           {size_t{0}, size_t{1}, size_t{2}, size_t{5}, size_t{6}, size_t{7}, size_t{13}}) {
        SCOPED_TRACE(::testing::Message() << n << " x " << in << " -> " << out);
        const std::vector<float> x = RandomFloats(n * in, -1.0f, 1.0f, 11);
        std::vector<float> want(n * out + 1, 42.0f);
        std::vector<float> got(n * out + 1, 42.0f);
        GemmRowInvariant(x.data(), static_cast<int>(n), static_cast<int>(in), w.data(),
                         static_cast<int>(out), want.data());
        GemmPacked(x.data(), static_cast<int>(n), packed, got.data());
        ASSERT_EQ(got, want);
        for (size_t i = 0; i < n; ++i) {
          std::vector<float> alone(out);
          GemmPacked(x.data() + i * in, 1, packed, alone.data());
          ASSERT_TRUE(std::equal(alone.begin(), alone.end(),
                                 got.begin() + static_cast<std::ptrdiff_t>(i * out)))
              << "row " << i << " differs when computed alone";
        }
      }
    }
  }
}

TEST_P(DenseTest, LinearLayersMatchFloat64AndScalar) {
  for (const size_t in : Depths()) {
    for (const size_t out : {size_t{1}, size_t{4}, std::max<size_t>(lanes_ - 1, 1), lanes_ + 1,
                             size_t{16}, size_t{64}}) {
      SCOPED_TRACE(::testing::Message() << in << " -> " << out);
      const std::vector<float> w = RandomFloats(out * in, -1.0f, 1.0f, 7);
      const std::vector<float> b = RandomFloats(out, -1.0f, 1.0f, 8);
      const std::vector<float> x = RandomFloats(in, -1.0f, 1.0f, 9);
      const int n_in = static_cast<int>(in);
      const int n_out = static_cast<int>(out);
      std::vector<float> lin(out + 1, 42.0f);
      std::vector<float> lin_nobias(out);
      std::vector<float> relu(out);
      std::vector<float> sine(out);
      std::vector<float> sine_ref(out);
      // A SIREN layer's argument is w0 (W x + b) with W ~ U(-1/in, 1/in) (first layer) or
      // smaller, so |argument| stays around w0; scale the weights likewise.
      std::vector<float> w_siren = w;
      for (float& v : w_siren) {
        v /= static_cast<float>(in);
      }
      const float w0 = 10.0f;
      Linear(w.data(), b.data(), n_in, n_out, x.data(), lin.data());
      Linear(w.data(), nullptr, n_in, n_out, x.data(), lin_nobias.data());
      LinearRelu(w.data(), b.data(), n_in, n_out, x.data(), relu.data());
      SineLayerForward(w_siren.data(), b.data(), n_in, n_out, w0, x.data(), sine.data());
      scalar::SineLayerForward(w_siren.data(), b.data(), n_in, n_out, w0, x.data(),
                               sine_ref.data());
      EXPECT_EQ(lin[out], 42.0f);
      for (size_t r = 0; r < out; ++r) {
        const Exact e = DotFloat64(w.data() + r * in, x.data(), in, b[r]);
        const Exact e0 = DotFloat64(w.data() + r * in, x.data(), in, 0.0f);
        ASSERT_NEAR(lin[r], e.value, Tolerance(in, e)) << r;
        ASSERT_NEAR(lin_nobias[r], e0.value, Tolerance(in, e0)) << r;
        ASSERT_NEAR(relu[r], std::max(e.value, 0.0), Tolerance(in, e)) << r;
        const Exact es = DotFloat64(w_siren.data() + r * in, x.data(), in, b[r]);
        // sin's slope is 1: the error of w0 (W x + b) (the sum's, times w0, plus rounding the
        // product) plus SinCos's 2e-6.
        const double tol = w0 * Tolerance(in, es) + kEps * w0 * std::abs(es.value) + 2e-6;
        ASSERT_NEAR(sine[r], std::sin(w0 * es.value), tol) << r;
        ASSERT_NEAR(sine[r], sine_ref[r], 2 * tol) << r;
      }
    }
  }
}

ROTOR_KERNELS_INSTANTIATE_PER_TARGET(DenseTest);

}  // namespace
}  // namespace rotor::kernels
