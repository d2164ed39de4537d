#include "encoders/internal/kernels/scalar_kernels.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>

namespace rotor::kernels::scalar {
namespace {

// python's TWO_PI = 2.0 * math.pi, the float64 constant torch.remainder reduces by.
constexpr double kTwoPi = 2.0 * std::numbers::pi;

size_t ToSize(int value) {
  assert(value >= 0);
  return static_cast<size_t>(value);
}

// acc = sum_k w[k] x[k], sequential.
float DotRow(const float* w, const float* x, size_t n) {
  float acc = 0.0f;
  for (size_t k = 0; k < n; ++k) {
    acc += w[k] * x[k];
  }
  return acc;
}

}  // namespace

void SinCos(const float* angles, float* c, float* s, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    c[i] = std::cos(angles[i]);
    s[i] = std::sin(angles[i]);
  }
}

void RotatePairs(float* x, const float* cos, const float* sin, int n_heads, int d_head) {
  assert(d_head > 0 && d_head % 2 == 0);
  const size_t heads = ToSize(n_heads);
  const size_t dh = ToSize(d_head);
  for (size_t h = 0; h < heads; ++h) {
    float* xh = x + h * dh;
    for (size_t j = 0; j < dh / 2; ++j) {
      const float a = xh[2 * j];
      const float b = xh[2 * j + 1];
      xh[2 * j] = a * cos[j] - b * sin[j];
      xh[2 * j + 1] = a * sin[j] + b * cos[j];
    }
  }
}

void RotatePairs(float* x, const float* angles, int n_heads, int d_head) {
  assert(d_head > 0 && d_head % 2 == 0);
  const size_t dh = ToSize(d_head);
  for (size_t h = 0; h < ToSize(n_heads); ++h) {
    float* xh = x + h * dh;
    for (size_t j = 0; j < dh / 2; ++j) {
      const float c = std::cos(angles[j]);
      const float s = std::sin(angles[j]);
      const float a = xh[2 * j];
      const float b = xh[2 * j + 1];
      xh[2 * j] = a * c - b * s;
      xh[2 * j + 1] = a * s + b * c;
    }
  }
}

void OrdinalAngles(int64_t pos, const double* theta, double lambda, float* out, size_t n) {
  const auto p = static_cast<double>(pos);
  for (size_t j = 0; j < n; ++j) {
    const double a = (p * theta[j]) * lambda;
    // torch.remainder for floating point: fmod (exact), then shift a negative result by 2pi.
    double r = std::fmod(a, kTwoPi);
    if (r != 0.0 && r < 0.0) {
      r += kTwoPi;
    }
    out[j] = static_cast<float>(r);
  }
}

void Gemv(const float* w, int rows, int cols, const float* x, float* y) {
  const size_t c = ToSize(cols);
  for (size_t r = 0; r < ToSize(rows); ++r) {
    y[r] = DotRow(w + r * c, x, c);
  }
}

void Gemm(const float* x, int n, int in, const float* w, int out, float* y) {
  const size_t k = ToSize(in);
  const size_t o = ToSize(out);
  for (size_t i = 0; i < ToSize(n); ++i) {
    for (size_t j = 0; j < o; ++j) {
      y[i * o + j] = DotRow(w + j * k, x + i * k, k);
    }
  }
}

void Linear(const float* w, const float* b, int in, int out, const float* x, float* y) {
  const size_t k = ToSize(in);
  for (size_t r = 0; r < ToSize(out); ++r) {
    y[r] = DotRow(w + r * k, x, k) + (b != nullptr ? b[r] : 0.0f);
  }
}

void LinearRelu(const float* w, const float* b, int in, int out, const float* x, float* y) {
  Linear(w, b, in, out, x, y);
  for (size_t r = 0; r < ToSize(out); ++r) {
    y[r] = std::max(y[r], 0.0f);
  }
}

void SineLayerForward(const float* w, const float* b, int in, int out, float w0, const float* x,
                      float* y) {
  Linear(w, b, in, out, x, y);
  for (size_t r = 0; r < ToSize(out); ++r) {
    y[r] = std::sin(w0 * y[r]);
  }
}

void Silu(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    x[i] = x[i] / (1.0f + std::exp(-x[i]));
  }
}

void LayerNorm(const float* x, const float* gamma, const float* beta, double eps, size_t n,
               float* y) {
  assert(n > 0);
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    sum += x[i];
  }
  const double mean = sum / static_cast<double>(n);
  double sq = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double d = x[i] - mean;
    sq += d * d;
  }
  const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(n) + eps);
  for (size_t i = 0; i < n; ++i) {
    y[i] = static_cast<float>((x[i] - mean) * rstd * gamma[i] + beta[i]);
  }
}

void Softmax(float* x, size_t n) {
  assert(n > 0);
  float max = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < n; ++i) {
    max = std::max(max, x[i]);
  }
  float sum = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (size_t i = 0; i < n; ++i) {
    x[i] *= inv;
  }
}

float Dot(const float* a, const float* b, size_t n) {
  return DotRow(a, b, n);
}

void Axpy(float alpha, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    y[i] += alpha * x[i];
  }
}

void AttendOne(const float* q, const float* k, const float* v, int rows, int n_heads, int d_head,
               float scale, float* out, float* scratch) {
  assert(rows > 0 && n_heads > 0 && d_head > 0);
  const size_t n = ToSize(rows);
  const size_t dh = ToSize(d_head);
  const size_t d_model = ToSize(n_heads) * dh;
  for (size_t h = 0; h < ToSize(n_heads); ++h) {
    float* w = scratch + h * n;
    for (size_t r = 0; r < n; ++r) {
      w[r] = scale * DotRow(q + h * dh, k + r * d_model + h * dh, dh);
    }
    Softmax(w, n);
    for (size_t t = 0; t < dh; ++t) {
      float acc = 0.0f;
      for (size_t r = 0; r < n; ++r) {
        acc += w[r] * v[r * d_model + h * dh + t];
      }
      out[h * dh + t] = acc;
    }
  }
}

}  // namespace rotor::kernels::scalar
