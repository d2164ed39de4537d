// Benchmarks of the SIMD kernels against their scalar references, and of the Highway matrix
// products against Eigen's, at the model's shapes (DESIGN section 7: SIMD kernels >= 4x their
// scalar versions).
//
// Names are <kernel>/<implementation>/<shape>, implementation one of simd (Highway, dispatched
// to the target printed as kernel_target in the context), scalar (scalar_kernels.h), highway
// and eigen (Gemv/Gemm), so ratios pair up by name. The source lives beside the kernels because
// it needs their private headers; bench/CMakeLists.txt builds it into build/<preset>/bench/.
//
//   build/release/bench/kernels_bench --benchmark_filter='Gemm'

#include "encoders/internal/kernels/kernels.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "encoders/internal/kernels/scalar_kernels.h"

namespace rotor::kernels {
namespace {

std::vector<float> Random(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> out(n);
  for (float& v : out) {
    v = dist(rng);
  }
  return out;
}

std::vector<double> RopeFrequencies(size_t pairs, double base) {
  std::vector<double> theta(pairs);
  for (size_t j = 0; j < pairs; ++j) {
    theta[j] = std::pow(base, -2.0 * static_cast<double>(j) / static_cast<double>(2 * pairs));
  }
  return theta;
}

// The two implementations of each kernel: the dispatched SIMD one and the scalar reference.
enum class Impl { kSimd, kScalar };

const char* ImplName(Impl impl) {
  return impl == Impl::kSimd ? "simd" : "scalar";
}

template <class Fn>
void Add(const std::string& name, Fn&& fn) {
  benchmark::RegisterBenchmark(name.c_str(), std::forward<Fn>(fn));
}

// ---- Rotation ------------------------------------------------------------------------------

// One token's rotation: its ordinal angles (float64 reduction), their cos/sin, and the rotation
// of one d_model vector (the decode step then reuses cos/sin for Q and K of every block).
void AngleAndRotation(Impl impl, int d_model, int n_heads) {
  const int d_head = d_model / n_heads;
  const auto pairs = static_cast<size_t>(d_head / 2);
  const std::vector<double> theta = RopeFrequencies(pairs, 1e5);
  Add(std::string("AngleRotate/") + ImplName(impl) + "/d" + std::to_string(d_model) + "h" +
          std::to_string(n_heads),
      [=](benchmark::State& state) {
        std::vector<float> x = Random(static_cast<size_t>(d_model), -1.0f, 1.0f, 1);
        std::vector<float> angles(pairs);
        std::vector<float> c(pairs);
        std::vector<float> s(pairs);
        int64_t pos = 123456;
        for (auto _ : state) {
          if (impl == Impl::kSimd) {
            OrdinalAngles(pos, theta.data(), 0.97, angles.data(), pairs);
            SinCos(angles.data(), c.data(), s.data(), pairs);
            RotatePairs(x.data(), c.data(), s.data(), n_heads, d_head);
          } else {
            scalar::OrdinalAngles(pos, theta.data(), 0.97, angles.data(), pairs);
            scalar::SinCos(angles.data(), c.data(), s.data(), pairs);
            scalar::RotatePairs(x.data(), c.data(), s.data(), n_heads, d_head);
          }
          ++pos;
          benchmark::DoNotOptimize(x.data());
          benchmark::ClobberMemory();
        }
      });
}

void SinCosBench(Impl impl, size_t n) {
  Add(std::string("SinCos/") + ImplName(impl) + "/" + std::to_string(n),
      [=](benchmark::State& state) {
        const std::vector<float> t = Random(n, -30.0f, 30.0f, 2);
        std::vector<float> c(n);
        std::vector<float> s(n);
        for (auto _ : state) {
          (impl == Impl::kSimd ? SinCos : scalar::SinCos)(t.data(), c.data(), s.data(), n);
          benchmark::DoNotOptimize(c.data());
          benchmark::DoNotOptimize(s.data());
          benchmark::ClobberMemory();
        }
        state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
      });
}

void RotatePairsBench(Impl impl, int d_model, int n_heads, bool from_angles) {
  const int d_head = d_model / n_heads;
  const auto pairs = static_cast<size_t>(d_head / 2);
  Add(std::string(from_angles ? "RotatePairsAngles/" : "RotatePairsCosSin/") + ImplName(impl) +
          "/d" + std::to_string(d_model) + "h" + std::to_string(n_heads),
      [=](benchmark::State& state) {
        std::vector<float> x = Random(static_cast<size_t>(d_model), -1.0f, 1.0f, 3);
        const std::vector<float> angles = Random(pairs, 0.0f, 6.0f, 4);
        std::vector<float> c(pairs);
        std::vector<float> s(pairs);
        scalar::SinCos(angles.data(), c.data(), s.data(), pairs);
        for (auto _ : state) {
          // Rotations keep the norm, so repeating one in place stays in range.
          if (from_angles) {
            (impl == Impl::kSimd
                 ? static_cast<void (*)(float*, const float*, int, int)>(RotatePairs)
                 : static_cast<void (*)(float*, const float*, int, int)>(scalar::RotatePairs))(
                x.data(), angles.data(), n_heads, d_head);
          } else {
            using Fn = void (*)(float*, const float*, const float*, int, int);
            (impl == Impl::kSimd ? static_cast<Fn>(RotatePairs)
                                 : static_cast<Fn>(scalar::RotatePairs))(x.data(), c.data(),
                                                                         s.data(), n_heads, d_head);
          }
          benchmark::DoNotOptimize(x.data());
          benchmark::ClobberMemory();
        }
      });
}

void OrdinalAnglesBench(Impl impl, size_t n) {
  Add(std::string("OrdinalAngles/") + ImplName(impl) + "/" + std::to_string(n),
      [=](benchmark::State& state) {
        const std::vector<double> theta = RopeFrequencies(n, 1e5);
        std::vector<float> out(n);
        int64_t pos = 987654321;
        for (auto _ : state) {
          (impl == Impl::kSimd ? OrdinalAngles : scalar::OrdinalAngles)(pos++, theta.data(), 0.97,
                                                                        out.data(), n);
          benchmark::DoNotOptimize(out.data());
          benchmark::ClobberMemory();
        }
      });
}

// ---- Dense layers --------------------------------------------------------------------------

using LayerFn = void (*)(const float*, const float*, int, int, const float*, float*);

void LayerBench(const char* name, LayerFn simd, LayerFn ref, Impl impl, int in, int out) {
  Add(std::string(name) + "/" + ImplName(impl) + "/" + std::to_string(in) + "x" +
          std::to_string(out),
      [=](benchmark::State& state) {
        const auto n_in = static_cast<size_t>(in);
        const auto n_out = static_cast<size_t>(out);
        const std::vector<float> w = Random(n_in * n_out, -0.1f, 0.1f, 5);
        const std::vector<float> b = Random(n_out, -0.1f, 0.1f, 6);
        const std::vector<float> x = Random(n_in, -1.0f, 1.0f, 7);
        std::vector<float> y(n_out);
        for (auto _ : state) {
          (impl == Impl::kSimd ? simd : ref)(w.data(), b.data(), in, out, x.data(), y.data());
          benchmark::DoNotOptimize(y.data());
          benchmark::ClobberMemory();
        }
      });
}

void SineLayer(const float* w, const float* b, int in, int out, const float* x, float* y) {
  SineLayerForward(w, b, in, out, 10.0f, x, y);
}
void SineLayerScalar(const float* w, const float* b, int in, int out, const float* x, float* y) {
  scalar::SineLayerForward(w, b, in, out, 10.0f, x, y);
}

// Highway vs Eigen vs scalar at the shapes of DESIGN section 2: n = 1 (one event: Gemv) and
// n = 64 (a batch: Gemm).
void MatmulBench(const char* impl_name, int n, int in, int out) {
  const std::string impl = impl_name;
  Add((n == 1 ? std::string("Gemv/") : std::string("Gemm/")) + impl + "/n" + std::to_string(n) +
          "/" + std::to_string(in) + "x" + std::to_string(out),
      [=](benchmark::State& state) {
        const auto rows = static_cast<size_t>(n);
        const std::vector<float> x = Random(rows * static_cast<size_t>(in), -1.0f, 1.0f, 8);
        const std::vector<float> w =
            Random(static_cast<size_t>(out) * static_cast<size_t>(in), -0.1f, 0.1f, 9);
        std::vector<float> y(rows * static_cast<size_t>(out));
        for (auto _ : state) {
          if (n == 1) {
            (impl == "highway" ? GemvHighway
             : impl == "eigen" ? GemvEigen
                               : scalar::Gemv)(w.data(), out, in, x.data(), y.data());
          } else {
            (impl == "highway" ? GemmHighway
             : impl == "eigen" ? GemmEigen
                               : scalar::Gemm)(x.data(), n, in, w.data(), out, y.data());
          }
          benchmark::DoNotOptimize(y.data());
          benchmark::ClobberMemory();
        }
        state.SetItemsProcessed(state.iterations() * n * in * out);  // Multiply-adds.
      });
}

// ---- Vector kernels ------------------------------------------------------------------------

void SiluBench(Impl impl, size_t n) {
  Add(std::string("Silu/") + ImplName(impl) + "/" + std::to_string(n),
      [=](benchmark::State& state) {
        // In place and repeated: inputs in [25, 30] stay there for billions of applications
        // (silu(x) = x - x e^-x), where smaller ones would decay into denormals. Neither
        // implementation's cost depends on the value.
        std::vector<float> x = Random(n, 25.0f, 30.0f, 10);
        for (auto _ : state) {
          (impl == Impl::kSimd ? Silu : scalar::Silu)(x.data(), n);
          benchmark::DoNotOptimize(x.data());
          benchmark::ClobberMemory();
        }
      });
}

void LayerNormBench(Impl impl, size_t n) {
  Add(std::string("LayerNorm/") + ImplName(impl) + "/" + std::to_string(n),
      [=](benchmark::State& state) {
        const std::vector<float> x = Random(n, -2.0f, 2.0f, 11);
        const std::vector<float> g = Random(n, 0.5f, 1.5f, 12);
        const std::vector<float> b = Random(n, -0.1f, 0.1f, 13);
        std::vector<float> y(n);
        for (auto _ : state) {
          (impl == Impl::kSimd ? LayerNorm : scalar::LayerNorm)(x.data(), g.data(), b.data(), 1e-5,
                                                                n, y.data());
          benchmark::DoNotOptimize(y.data());
          benchmark::ClobberMemory();
        }
      });
}

void SoftmaxBench(Impl impl, size_t n) {
  Add(std::string("Softmax/") + ImplName(impl) + "/" + std::to_string(n),
      [=](benchmark::State& state) {
        // Repeated in place, the row converges to uniform weights: finite, no denormals.
        std::vector<float> x = Random(n, -3.0f, 3.0f, 14);
        for (auto _ : state) {
          (impl == Impl::kSimd ? Softmax : scalar::Softmax)(x.data(), n);
          benchmark::DoNotOptimize(x.data());
          benchmark::ClobberMemory();
        }
      });
}

void DotBench(Impl impl, size_t n) {
  Add(std::string("Dot/") + ImplName(impl) + "/" + std::to_string(n), [=](benchmark::State& state) {
    const std::vector<float> a = Random(n, -1.0f, 1.0f, 15);
    const std::vector<float> b = Random(n, -1.0f, 1.0f, 16);
    for (auto _ : state) {
      benchmark::DoNotOptimize((impl == Impl::kSimd ? Dot : scalar::Dot)(a.data(), b.data(), n));
    }
  });
}

void AxpyBench(Impl impl, size_t n) {
  Add(std::string("Axpy/") + ImplName(impl) + "/" + std::to_string(n),
      [=](benchmark::State& state) {
        const std::vector<float> x = Random(n, -1.0f, 1.0f, 17);
        std::vector<float> y = Random(n, -1.0f, 1.0f, 18);
        for (auto _ : state) {
          // y drifts linearly (|y| < 1e8 after 1e8 calls): no overflow, no denormals.
          (impl == Impl::kSimd ? Axpy : scalar::Axpy)(1e-7f, x.data(), y.data(), n);
          benchmark::DoNotOptimize(y.data());
          benchmark::ClobberMemory();
        }
      });
}

// ---- Attention -----------------------------------------------------------------------------

void AttendOneBench(Impl impl, int d_model, int n_heads, int rows) {
  Add(std::string("AttendOne/") + ImplName(impl) + "/d" + std::to_string(d_model) + "h" +
          std::to_string(n_heads) + "/rows" + std::to_string(rows),
      [=](benchmark::State& state) {
        const auto n = static_cast<size_t>(rows);
        const auto d = static_cast<size_t>(d_model);
        const std::vector<float> q = Random(d, -1.0f, 1.0f, 19);
        const std::vector<float> k = Random(n * d, -1.0f, 1.0f, 20);
        const std::vector<float> v = Random(n * d, -1.0f, 1.0f, 21);
        std::vector<float> out(d);
        std::vector<float> scratch(static_cast<size_t>(n_heads) * n);
        for (auto _ : state) {
          (impl == Impl::kSimd ? AttendOne : scalar::AttendOne)(q.data(), k.data(), v.data(), rows,
                                                                n_heads, d_model / n_heads, 0.025f,
                                                                out.data(), scratch.data());
          benchmark::DoNotOptimize(out.data());
          benchmark::ClobberMemory();
        }
        // K and V bytes read per query.
        state.SetBytesProcessed(state.iterations() *
                                static_cast<int64_t>(2 * n * d * sizeof(float)));
      });
}

void RegisterAll() {
  for (const Impl impl : {Impl::kSimd, Impl::kScalar}) {
    for (const auto& [d_model, n_heads] : {std::pair{64, 2}, {64, 4}, {128, 2}, {128, 4}}) {
      AngleAndRotation(impl, d_model, n_heads);
    }
    for (const size_t n : {size_t{16}, size_t{64}, size_t{1024}}) {
      SinCosBench(impl, n);
    }
    for (const auto& [d_model, n_heads] : {std::pair{64, 2}, {128, 4}}) {
      RotatePairsBench(impl, d_model, n_heads, true);
      RotatePairsBench(impl, d_model, n_heads, false);
    }
    for (const size_t n : {size_t{16}, size_t{32}, size_t{1024}}) {
      OrdinalAnglesBench(impl, n);
    }
    // The angle network (5 time features in, h = 16 or 64) and the model's layers.
    for (const auto& [in, out] : {std::pair{5, 16}, {16, 16}, {5, 64}, {64, 64}}) {
      LayerBench("SineLayer", SineLayer, SineLayerScalar, impl, in, out);
    }
    LayerBench("LinearRelu", LinearRelu, scalar::LinearRelu, impl, 16, 16);
    LayerBench("Linear", Linear, scalar::Linear, impl, 64, 256);
    for (const size_t n : {size_t{64}, size_t{256}, size_t{512}}) {
      SiluBench(impl, n);
    }
    for (const size_t n : {size_t{64}, size_t{128}}) {
      LayerNormBench(impl, n);
    }
    for (const size_t n : {size_t{16}, size_t{200}, size_t{1024}}) {
      SoftmaxBench(impl, n);
    }
    for (const size_t n : {size_t{32}, size_t{64}, size_t{1024}}) {
      DotBench(impl, n);
      AxpyBench(impl, n);
    }
    for (const auto& [d_model, n_heads] : {std::pair{64, 2}, {128, 4}}) {
      for (const int rows : {16, 200, 1000}) {
        AttendOneBench(impl, d_model, n_heads, rows);
      }
    }
  }
  for (const int n : {1, 64}) {
    for (const auto& [in, out] :
         {std::pair{64, 64}, {64, 256}, {256, 64}, {128, 128}, {128, 512}, {512, 128}}) {
      for (const char* impl : {"highway", "eigen", "scalar"}) {
        MatmulBench(impl, n, in, out);
      }
    }
  }
}

}  // namespace
}  // namespace rotor::kernels

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::AddCustomContext("kernel_target", rotor::kernels::KernelTarget());
  rotor::kernels::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
