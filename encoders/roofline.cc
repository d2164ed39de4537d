#include "encoders/roofline.h"

#include <cstddef>

#include "encoders/internal/kernels/kernels.h"
#include "encoders/internal/kernels/roofline.h"

namespace rotor::encoders {

Roofline MeasureRoofline() {
  Roofline r;
  r.peak_fma_gflops = kernels::MeasurePeakFmaGflops();
  r.memory_gbs = kernels::MeasureMemoryBandwidthGBs();
  return r;
}

double MeasureReadBandwidthGBs(std::size_t bytes) {
  return kernels::MeasureReadBandwidthGBs(bytes);
}

std::string KernelTarget() {
  return kernels::KernelTarget();
}

}  // namespace rotor::encoders
