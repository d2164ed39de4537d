// Eigen versions of the matrix products (kernels.h), benchmarked against the Highway ones.
//
// Eigen picks its SIMD width at compile time, so in the portable build (no -march) it runs
// SSE2 code on every CPU; Highway's dispatch picks AVX-512/AVX2 at run time. This is the only
// translation unit that includes Eigen, and it must stay that way: compiling Eigen in another
// unit with different ISA flags would give the linker two differing copies of the same inline
// functions to choose from.

#include <Eigen/Core>

#include "encoders/internal/kernels/kernels.h"

namespace rotor::kernels {
namespace {

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace

void GemvEigen(const float* w, int rows, int cols, const float* x, float* y) {
  const Eigen::Map<const RowMajorMatrix> wm(w, rows, cols);
  const Eigen::Map<const Eigen::VectorXf> xv(x, cols);
  Eigen::Map<Eigen::VectorXf> yv(y, rows);
  yv.noalias() = wm * xv;
}

void GemmEigen(const float* x, int n, int in, const float* w, int out, float* y) {
  const Eigen::Map<const RowMajorMatrix> xm(x, n, in);
  const Eigen::Map<const RowMajorMatrix> wm(w, out, in);
  Eigen::Map<RowMajorMatrix> ym(y, n, out);
  ym.noalias() = xm * wm.transpose();
}

}  // namespace rotor::kernels
