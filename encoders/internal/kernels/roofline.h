// The two ceilings of a single-threaded roofline on this machine, measured rather than taken
// from a data sheet: the float32 FMA rate and the streaming read bandwidth from memory. The
// decode benchmark divides the time a decode step could take at these rates by the time it
// does take (DESIGN section 7: decode within 2x of the roofline bound).
//
// All run on the calling thread only (the decode step is single-threaded), on the Highway
// target the other kernels dispatch to (kernels.h: KernelTarget()), and time it in thread CPU
// time (CLOCK_THREAD_CPUTIME_ID), which on a shared virtual machine leaves out the time other
// tenants steal, like Google Benchmark's default CPU time. They take about 0.2 s (FMA) and
// 0.5 s (bandwidth, including first-touching the buffer) on the project machine, and still feel
// what else shares the core and its caches: call them in the same run as the timings they are
// compared with.

#ifndef ROTOR_ENCODERS_INTERNAL_KERNELS_ROOFLINE_H_
#define ROTOR_ENCODERS_INTERNAL_KERNELS_ROOFLINE_H_

#include <cstddef>

namespace rotor::kernels {

// Peak float32 multiply-add rate of one thread, in GFLOP/s (2 flops per FMA lane): 12
// independent FMA chains on vector registers (enough to cover a 4-cycle latency on 2 FMA
// pipes plus margin), best of 5 trials of >= 20 ms. Targets without a hardware FMA
// (SSSE3/SSE4) count their multiply + add as one FMA.
double MeasurePeakFmaGflops();

// Single-threaded streaming read bandwidth from memory, in GB/s (1e9 bytes/s):
// MeasureReadBandwidthGBs of a 256 MiB buffer, 8x the project machine's 32 MiB L3.
double MeasureMemoryBandwidthGBs();

// Single-threaded streaming read bandwidth over a buffer of `bytes` (rounded up to 512), in
// GB/s: the buffer is summed with 8 independent vector accumulators, repeatedly, and the best
// of 5 trials of >= 5 ms each counts, after one untimed pass that touches every page. A buffer
// that fits a cache level gives that level's bandwidth: what a working set of that size can be
// read at when it stays cached. Allocates `bytes` for the duration of the call.
double MeasureReadBandwidthGBs(size_t bytes);

}  // namespace rotor::kernels

#endif  // ROTOR_ENCODERS_INTERNAL_KERNELS_ROOFLINE_H_
