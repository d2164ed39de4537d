// SIMD kernels of the SIREN-RoPE encoder: rotation angles and the pair rotation, the small dense
// layers of the angle network and the model, and single-query attention over a K/V window.
//
// Every function here is implemented with Highway and dispatched at run time to the best
// instruction set that both this build and the CPU support (SSSE3, SSE4, AVX2, AVX-512 "AVX3",
// or a portable one-lane fallback: SCALAR under GCC 12, EMU128 under clang), so one binary
// runs on any x86-64. Each call pays ~2.6 ns for HWY_DYNAMIC_DISPATCH: batch work per call. Each
// kernel has a plain scalar reference with the same signature in scalar_kernels.h; the tests hold
// every compiled target to it with the tolerance stated on each function (README.md lists them with
// the measured speedups).
//
// Contract, for every kernel: pointers are non-null unless stated, arrays hold at least the
// stated number of elements, and in-place arguments may alias only where stated. Violations
// are programmer errors (asserts in debug builds), never reported at run time. Kernels do not
// allocate, throw or keep state; they are safe to call from any number of threads at once
// (except ForceTargetForTest, which changes the process-wide dispatch).

#ifndef ROTOR_ENCODERS_INTERNAL_KERNELS_KERNELS_H_
#define ROTOR_ENCODERS_INTERNAL_KERNELS_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rotor::kernels {

// ---- Dispatch ---------------------------------------------------------------------------------

// Name of the Highway target the kernels dispatch to on this CPU ("AVX3", "AVX2", "SSE4",
// "SSSE3", "SCALAR"/"EMU128"): hwy::TargetName of the chosen target.
const char* KernelTarget();

// The Highway targets (HWY_* bits) compiled into this library that this CPU can run, best
// first. Under ForceTargetForTest, only the forced one.
std::vector<int64_t> AvailableTargets();

// hwy::TargetName of a HWY_* target bit.
const char* TargetName(int64_t target);

// float32 lanes of the dispatched target's vectors (16 for AVX3, 8 for AVX2, 4 for SSE4, SSSE3
// and EMU128, 1 for SCALAR): tests use it to hit tail lengths such as lanes - 1 and lanes + 1.
size_t KernelFloatLanes();

// Makes every kernel dispatch to `target` (one of AvailableTargets()); 0 restores the best.
// For tests and benchmarks only: not thread-safe against concurrent kernel calls.
void ForceTargetForTest(int64_t target);

// ---- Rotation (DESIGN section 1) --------------------------------------------------------------

// c[i] = cos(angles[i]), s[i] = sin(angles[i]) for i < n, float32 (Highway's contrib Sin/Cos).
// Accuracy against float64 sin/cos of the float input, every target: max abs error 1.4e-7
// measured for |angle| <= 3.9e4 (tested <= 5e-7 over [-8, 8], [0, 2pi + 20], [-50, 50] and
// [-1e4, 1e4]; the requirement is 2e-6). Beyond 3.9e4 the targets without FMA (SSE4, SSSE3,
// the scalar fallback) degrade to ~1e-6 at 1e5.
void SinCos(const float* angles, float* c, float* s, size_t n);

// Rotates adjacent pairs of x [n_heads * d_head] in place (GPT-J style, python's `rotate`):
// for head h and pair j < d_head/2, with t = angles[j] (the same angles for every head),
//   (a, b) = (x[h*d_head + 2j], x[h*d_head + 2j + 1]) -> (a cos t - b sin t, a sin t + b cos t).
// d_head must be even and > 0. Tolerance vs a float64 rotation by the same angles: SinCos's
// error plus 4 float epsilons, times |a| + |b|.
void RotatePairs(float* x, const float* angles, int n_heads, int d_head);

// As above with cos/sin of the d_head/2 angles precomputed (SinCos): what the decode step uses,
// since one token's angles rotate Q and K of every block. Within 2 float epsilons of |a| + |b|
// of the scalar reference (a fused multiply-add skips one rounding).
void RotatePairs(float* x, const float* cos, const float* sin, int n_heads, int d_head);

// The ordinal angle term, reduced in float64 exactly as python does
// (`torch.remainder((p * theta) * lam, 2pi).to(float32)`): out[j] = float(r) with
// a = (double(pos) * theta[j]) * lambda and r = a - 2pi floor(a / 2pi) in [0, 2pi], 2pi being
// the float64 constant 2.0 * M_PI. The SIMD reduction is exact (a three-part
// Cody-Waite split of that constant, proven exact for |a| < 1e10; larger lanes take the scalar
// fmod path), so results equal the scalar reference bit for bit (up to the sign of a zero).
// Against the exact (long double) angle p * theta * lambda mod 2pi the error is <= 1e-6 rad for
// |pos| < 2^31 and |lambda| <= 1.5: python's two float64 roundings forming a (<= 3.6e-7 rad),
// its 2pi constant (<= 1.3e-7 rad) and the final float32 rounding (<= 2.4e-7 rad).
void OrdinalAngles(int64_t pos, const double* theta, double lambda, float* out, size_t n);

// ---- Dense layers -----------------------------------------------------------------------------
// Weights are row-major [out, in], as torch.nn.Linear stores them. Accumulation is float32 in
// an order that differs from the scalar reference; the tests allow (in + 2) float epsilons of
// sum_k |w_k x_k| + |b| per output (times the derivative of the activation).

// y[r] = sum_c W[r, c] x[c] for r < rows. y must not alias W or x. The implementation
// (Highway or Eigen) is the faster of the two on the benchmark shapes; see dense.cc.
void Gemv(const float* w, int rows, int cols, const float* x, float* y);
void GemvHighway(const float* w, int rows, int cols, const float* x, float* y);
void GemvEigen(const float* w, int rows, int cols, const float* x, float* y);

// Y [n, out] = X [n, in] W^T (W is [out, in]): a batch of n rows through one Linear layer.
// Y must not alias X or W.
void Gemm(const float* x, int n, int in, const float* w, int out, float* y);
void GemmHighway(const float* x, int n, int in, const float* w, int out, float* y);
void GemmEigen(const float* x, int n, int in, const float* w, int out, float* y);
// Gemm whose every row is computed the same way whatever n is (always the tiled Highway path,
// never the Gemv fallback for small n), so a row's bits do not depend on how rows are batched.
void GemmRowInvariant(const float* x, int n, int in, const float* w, int out, float* y);

// W [out, in] laid out once for GemmRowInvariant's tiles (panels of two vectors of outputs,
// input-major, for the dispatched target), so that GemmPacked does not lay it out again on
// every call: at n = 1 that re-packing was most of the product's time.
// Move-only: a copy's buffer would lose the alignment `offset` was computed for.
struct PackedWeights {
  PackedWeights() = default;
  PackedWeights(PackedWeights&&) = default;
  PackedWeights& operator=(PackedWeights&&) = default;
  PackedWeights(const PackedWeights&) = delete;
  PackedWeights& operator=(const PackedWeights&) = delete;
  ~PackedWeights() = default;

  std::vector<float> data;  // Panels, each `in` rows of `panel_width` floats; zero padded.
  std::size_t offset = 0;   // data.data() + offset is aligned for the target's vector loads.
  int in = 0;
  int out = 0;
  int panel_width = 0;
  const float* panels() const { return data.data() + offset; }
};
PackedWeights PackForGemm(const float* w, int out, int in);
// Y [n, out] = X [n, in] W^T, bit for bit what GemmRowInvariant(x, n, w.in, W, w.out, y) gives.
void GemmPacked(const float* x, int n, const PackedWeights& w, float* y);

// y = W x + b; b may be null (no bias). y must not alias x.
void Linear(const float* w, const float* b, int in, int out, const float* x, float* y);
// y = max(0, W x + b).
void LinearRelu(const float* w, const float* b, int in, int out, const float* x, float* y);
// SIREN layer: y = sin(w0 * (W x + b)). Extra error: SinCos's (the argument stays small).
void SineLayerForward(const float* w, const float* b, int in, int out, float w0, const float* x,
                      float* y);

// x[i] = x[i] * sigmoid(x[i]) = x / (1 + exp(-x)) in place (torch's SiLU).
// Tolerance: 4 float ulps relative, plus 1e-30 absolute (underflowing tails).
void Silu(float* x, size_t n);

// torch.nn.LayerNorm over n elements: y = (x - mean) / sqrt(var + eps) * gamma + beta with the
// biased variance. Mean, variance and the normalisation are computed in float64, so the result
// is within one float ulp of the exact value (torch's float32 kernel is within 1e-6 of it on
// typical inputs, 6e-6 when the mean is 100x the spread). y may alias x. n > 0.
void LayerNorm(const float* x, const float* gamma, const float* beta, double eps, size_t n,
               float* y);

// In-place softmax over x[0..n): max-subtracted, float32, normalised by multiplying with
// 1 / sum (the order of torch's CPU kernel). n > 0. Relative error per element within
// (6 + |x_i - max|) float epsilons: exp's ulp, the sum, and rounding x_i - max to float32
// (which the scalar version shares).
void Softmax(float* x, size_t n);

// sum_i a[i] b[i], float32 accumulation. Tolerance: n float epsilons of sum_i |a_i b_i|.
float Dot(const float* a, const float* b, size_t n);

// y[i] += alpha * x[i] (fused multiply-add where the target has one: 1 ulp of |alpha x_i|).
void Axpy(float alpha, const float* x, float* y, size_t n);

// ---- Attention --------------------------------------------------------------------------------

// One query against a window of `rows` cached keys and values, per head h:
//   w = softmax_r(scale * q_h . K[r]_h), out_h = sum_r w_r V[r]_h
// with K, V row-major [rows, n_heads * d_head] (the cache layout), q and out [n_heads * d_head].
// K and V are each read once, in order; the dot products and the weighted sum are SIMD across
// d_head. `scratch` holds n_heads * rows floats (it ends holding the softmax weights, [head,
// row]). rows > 0: an empty window is the caller's case (it outputs the block's pad vector).
// out must not alias the inputs. Tolerance: (2e-6 + (rows + 4) float epsilons) times
// sum_r w_r |V[r]_h| per output.
void AttendOne(const float* q, const float* k, const float* v, int rows, int n_heads, int d_head,
               float scale, float* out, float* scratch);

// AttendOne for `n_queries` queries against the same window: q and out [n_queries, n_heads *
// d_head], scratch n_queries * n_heads * rows floats (each query's weights, [query, head,
// row]). Each query's output is AttendOne's, bit for bit; interleaving the queries' weighted
// sums hides the latency of their FMA chains (candidates of one user share a window).
void AttendMany(const float* q, int n_queries, const float* k, const float* v, int rows,
                int n_heads, int d_head, float scale, float* out, float* scratch);

}  // namespace rotor::kernels

#endif  // ROTOR_ENCODERS_INTERNAL_KERNELS_KERNELS_H_
