// Tests of AttendOne on every Highway target, against a float64 attention and the scalar
// reference.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "encoders/internal/kernels/kernels.h"
#include "encoders/internal/kernels/scalar_kernels.h"
#include "encoders/internal/kernels/test_util.h"

namespace rotor::kernels {
namespace {

using testing::kEps;
using testing::RandomFloats;

struct Shape {
  int n_heads;
  int d_head;
};

// float64 attention of one query; `magnitude[i]` = sum_r w_r |V[r][i]|, the scale of output
// i's rounding errors.
void AttendFloat64(const std::vector<float>& q, const std::vector<float>& k,
                   const std::vector<float>& v, size_t rows, Shape shape, double scale,
                   std::vector<double>& out, std::vector<double>& magnitude) {
  const auto dh = static_cast<size_t>(shape.d_head);
  const size_t d_model = static_cast<size_t>(shape.n_heads) * dh;
  out.assign(d_model, 0.0);
  magnitude.assign(d_model, 0.0);
  std::vector<double> w(rows);
  for (size_t h = 0; h < static_cast<size_t>(shape.n_heads); ++h) {
    for (size_t r = 0; r < rows; ++r) {
      double s = 0.0;
      for (size_t t = 0; t < dh; ++t) {
        s += static_cast<double>(q[h * dh + t]) * k[r * d_model + h * dh + t];
      }
      w[r] = scale * s;
    }
    const double max = *std::max_element(w.begin(), w.end());
    double sum = 0.0;
    for (double& x : w) {
      x = std::exp(x - max);
      sum += x;
    }
    for (size_t r = 0; r < rows; ++r) {
      for (size_t t = 0; t < dh; ++t) {
        const double vv = v[r * d_model + h * dh + t];
        out[h * dh + t] += w[r] / sum * vv;
        magnitude[h * dh + t] += w[r] / sum * std::abs(vv);
      }
    }
  }
}

class AttendOneTest : public testing::PerTargetTest {
 protected:
  static std::vector<Shape> Shapes() {
    // The model's shapes (d_model 64/128 with 2/4 heads), heads narrower than a vector, and
    // odd numbers of lanes per head.
    return {{2, 32}, {4, 16}, {2, 64}, {4, 32}, {1, 2}, {1, 6},
            {2, 8},  {4, 4},  {3, 10}, {1, 34}, {2, 3}};
  }
};

TEST_P(AttendOneTest, MatchesFloat64AndScalar) {
  for (const Shape shape : Shapes()) {
    for (const size_t rows :
         {size_t{1}, size_t{2}, size_t{3}, size_t{4}, size_t{5}, std::max<size_t>(lanes_ - 1, 1),
          lanes_ + 1, size_t{17}, size_t{200}}) {
      // 0.025 is the model's logit scale; 3 makes the softmax peaky.
      for (const float scale : {0.025f, 3.0f}) {
        SCOPED_TRACE(::testing::Message() << shape.n_heads << " heads x " << shape.d_head << ", "
                                          << rows << " rows, scale " << scale);
        const size_t d_model =
            static_cast<size_t>(shape.n_heads) * static_cast<size_t>(shape.d_head);
        const std::vector<float> q = RandomFloats(d_model, -1.0f, 1.0f, 1);
        const std::vector<float> k = RandomFloats(rows * d_model, -1.0f, 1.0f, 2);
        const std::vector<float> v = RandomFloats(rows * d_model, -1.0f, 1.0f, 3);
        const size_t scratch_size = static_cast<size_t>(shape.n_heads) * rows;
        std::vector<float> out(d_model + 1, 42.0f);
        std::vector<float> scratch(scratch_size + 1, 42.0f);
        AttendOne(q.data(), k.data(), v.data(), static_cast<int>(rows), shape.n_heads, shape.d_head,
                  scale, out.data(), scratch.data());
        EXPECT_EQ(out[d_model], 42.0f);
        EXPECT_EQ(scratch[scratch_size], 42.0f);
        std::vector<float> ref(d_model);
        std::vector<float> ref_scratch(scratch_size);
        scalar::AttendOne(q.data(), k.data(), v.data(), static_cast<int>(rows), shape.n_heads,
                          shape.d_head, scale, ref.data(), ref_scratch.data());
        std::vector<double> exact;
        std::vector<double> magnitude;
        AttendFloat64(q, k, v, rows, shape, scale, exact, magnitude);
        for (size_t i = 0; i < d_model; ++i) {
          // Weights within ~2e-6 relative (scores' rounding times scale, exp, the sum), then
          // a float sum over rows and one over d_head.
          const double tol = magnitude[i] * (2e-6 + static_cast<double>(rows + 4) * kEps) + 1e-30;
          ASSERT_NEAR(out[i], exact[i], tol) << i;
          ASSERT_NEAR(out[i], ref[i], 2 * tol) << i;
        }
        // The scratch ends with the weights, and each head's sum to 1.
        for (size_t h = 0; h < static_cast<size_t>(shape.n_heads); ++h) {
          double sum = 0.0;
          for (size_t r = 0; r < rows; ++r) {
            sum += scratch[h * rows + r];
          }
          ASSERT_NEAR(sum, 1.0, 1e-5);
        }
      }
    }
  }
}

TEST_P(AttendOneTest, OneRowReturnsItsValue) {
  // Independent: a single visible row gets weight 1 whatever the score.
  const std::vector<float> q = RandomFloats(64, -1.0f, 1.0f, 4);
  const std::vector<float> k = RandomFloats(64, -1.0f, 1.0f, 5);
  const std::vector<float> v = RandomFloats(64, -1.0f, 1.0f, 6);
  std::vector<float> out(64);
  std::vector<float> scratch(2);
  AttendOne(q.data(), k.data(), v.data(), 1, 2, 32, 0.025f, out.data(), scratch.data());
  EXPECT_EQ(out, v);
}

TEST_P(AttendOneTest, EqualKeysAverageTheValues) {
  // Independent: identical keys give uniform weights, so out is the mean of the value rows.
  const size_t rows = 10;
  const std::vector<float> q = RandomFloats(32, -1.0f, 1.0f, 7);
  const std::vector<float> key = RandomFloats(32, -1.0f, 1.0f, 8);
  std::vector<float> k;
  for (size_t r = 0; r < rows; ++r) {
    k.insert(k.end(), key.begin(), key.end());
  }
  const std::vector<float> v = RandomFloats(rows * 32, -1.0f, 1.0f, 9);
  std::vector<float> out(32);
  std::vector<float> scratch(4 * rows);
  AttendOne(q.data(), k.data(), v.data(), static_cast<int>(rows), 4, 8, 0.5f, out.data(),
            scratch.data());
  for (size_t i = 0; i < 32; ++i) {
    double mean = 0.0;
    for (size_t r = 0; r < rows; ++r) {
      mean += v[r * 32 + i];
    }
    mean /= static_cast<double>(rows);
    EXPECT_NEAR(out[i], mean, 1e-6) << i;
  }
}

TEST_P(AttendOneTest, AttendManyIsAttendOnePerQueryBitForBit) {
  // The candidates' case: several queries against one window give, bit for bit, what each
  // query gives alone (the decoder's scores must not depend on how candidates are grouped).
  for (const Shape shape : Shapes()) {
    for (const size_t rows : {size_t{1}, size_t{3}, size_t{4}, size_t{5}, lanes_ + 1, size_t{50}}) {
      for (const int n : {0, 1, 2, 7, 16}) {
        SCOPED_TRACE(::testing::Message() << shape.n_heads << " heads x " << shape.d_head << ", "
                                          << rows << " rows, " << n << " queries");
        const size_t d_model =
            static_cast<size_t>(shape.n_heads) * static_cast<size_t>(shape.d_head);
        const auto nq = static_cast<size_t>(n);
        const std::vector<float> q =
            RandomFloats(std::max<size_t>(nq, 1) * d_model, -1.0f, 1.0f, 11);
        const std::vector<float> k = RandomFloats(rows * d_model, -1.0f, 1.0f, 12);
        const std::vector<float> v = RandomFloats(rows * d_model, -1.0f, 1.0f, 13);
        const size_t weights = static_cast<size_t>(shape.n_heads) * rows;
        std::vector<float> out(nq * d_model + 1, 42.0f);
        std::vector<float> scratch(nq * weights + 1, 42.0f);
        AttendMany(q.data(), n, k.data(), v.data(), static_cast<int>(rows), shape.n_heads,
                   shape.d_head, 0.025f, out.data(), scratch.data());
        EXPECT_EQ(out[nq * d_model], 42.0f);
        EXPECT_EQ(scratch[nq * weights], 42.0f);
        for (size_t i = 0; i < nq; ++i) {
          std::vector<float> one(d_model);
          std::vector<float> one_scratch(weights);
          AttendOne(q.data() + i * d_model, k.data(), v.data(), static_cast<int>(rows),
                    shape.n_heads, shape.d_head, 0.025f, one.data(), one_scratch.data());
          ASSERT_EQ(std::memcmp(one.data(), out.data() + i * d_model, d_model * sizeof(float)), 0)
              << "query " << i;
          ASSERT_EQ(std::memcmp(one_scratch.data(), scratch.data() + i * weights,
                                weights * sizeof(float)),
                    0)
              << "query " << i;
        }
      }
    }
  }
}

ROTOR_KERNELS_INSTANTIATE_PER_TARGET(AttendOneTest);

}  // namespace
}  // namespace rotor::kernels
