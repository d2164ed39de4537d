// Scalar references of the kernels in kernels.h: the same signatures and contracts, written as
// the plainest loops that compute the definition (sequential float32 accumulation, std::sin,
// std::exp, std::fmod). They are what the SIMD kernels are tested against and what the
// benchmarks divide by; nothing on the serving path calls them.
//
// scalar_kernels.cc is compiled with -fno-tree-vectorize, so these stay one lane wide and the
// measured SIMD speedups are against genuinely scalar code, not the compiler's SSE2
// auto-vectorisation of it.

#ifndef ROTOR_ENCODERS_INTERNAL_KERNELS_SCALAR_KERNELS_H_
#define ROTOR_ENCODERS_INTERNAL_KERNELS_SCALAR_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace rotor::kernels::scalar {

void SinCos(const float* angles, float* c, float* s, size_t n);
void RotatePairs(float* x, const float* angles, int n_heads, int d_head);
void RotatePairs(float* x, const float* cos, const float* sin, int n_heads, int d_head);
// Bit-exact emulation of torch.remainder(a, 2pi) (fmod, then + 2pi when the result is negative).
void OrdinalAngles(int64_t pos, const double* theta, double lambda, float* out, size_t n);

void Gemv(const float* w, int rows, int cols, const float* x, float* y);
void Gemm(const float* x, int n, int in, const float* w, int out, float* y);
void Linear(const float* w, const float* b, int in, int out, const float* x, float* y);
void LinearRelu(const float* w, const float* b, int in, int out, const float* x, float* y);
void SineLayerForward(const float* w, const float* b, int in, int out, float w0, const float* x,
                      float* y);
void Silu(float* x, size_t n);
void LayerNorm(const float* x, const float* gamma, const float* beta, double eps, size_t n,
               float* y);
void Softmax(float* x, size_t n);
float Dot(const float* a, const float* b, size_t n);
void Axpy(float alpha, const float* x, float* y, size_t n);

void AttendOne(const float* q, const float* k, const float* v, int rows, int n_heads, int d_head,
               float scale, float* out, float* scratch);

}  // namespace rotor::kernels::scalar

#endif  // ROTOR_ENCODERS_INTERNAL_KERNELS_SCALAR_KERNELS_H_
