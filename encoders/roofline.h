// Roofline: the machine ceilings that decode performance is judged against (DESIGN section 7),
// measured on the calling thread, and the SIMD instruction set the encoder's kernels run.
//
// For benchmarks and diagnostics (bench/decode_bench prints the fraction of the roofline bound
// each decode case reaches); the daemon does not need them. The measurements live with the
// kernels (encoders/internal/kernels/roofline.h); this header makes them reachable from
// outside the module without exposing the kernels.

#ifndef ROTOR_ENCODERS_ROOFLINE_H_
#define ROTOR_ENCODERS_ROOFLINE_H_

#include <cstddef>
#include <string>

namespace rotor::encoders {

// Single-thread ceilings of this machine, measured now.
struct Roofline {
  double peak_fma_gflops = 0;  // float32, 2 flops per FMA lane, independent FMA chains.
  double memory_gbs = 0;       // Streaming read of a 256 MiB buffer, 1e9 bytes/s.
};

// Measures both ceilings on the calling thread (about a second; allocates 256 MiB while it
// runs). Noisy machines give noisy ceilings: measure in the same run as what you divide.
Roofline MeasureRoofline();

// Streaming read bandwidth of one thread over a buffer of `bytes`, in GB/s: that cache level's
// bandwidth when the buffer fits one (about 0.1 s; allocates `bytes`).
double MeasureReadBandwidthGBs(std::size_t bytes);

// The Highway target the kernels dispatch to on this CPU ("AVX3", "AVX2", "SSE4", ...).
std::string KernelTarget();

}  // namespace rotor::encoders

#endif  // ROTOR_ENCODERS_ROOFLINE_H_
