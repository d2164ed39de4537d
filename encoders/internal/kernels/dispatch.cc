// Run-time target selection of the kernels: which Highway target they use, and the test hooks
// that force one (kernels.h).

#include <cstddef>
#include <cstdint>
#include <vector>

#include "encoders/internal/kernels/kernels.h"

// Highway compiles everything below once per target: foreach_target.h re-includes this file.
#undef HWY_TARGET_INCLUDE
// NOLINTNEXTLINE(readability-identifier-naming): the name is Highway's.
#define HWY_TARGET_INCLUDE "encoders/internal/kernels/dispatch.cc"
#include <hwy/foreach_target.h>
// After foreach_target.h.
#include <hwy/highway.h>
#include <hwy/targets.h>

HWY_BEFORE_NAMESPACE();
namespace rotor::kernels::HWY_NAMESPACE {
namespace {
namespace hn = hwy::HWY_NAMESPACE;

// Dispatched like every kernel, so it names the target the kernels actually run.
const char* CurrentTargetName() {
  return hwy::TargetName(HWY_TARGET);
}

size_t CurrentFloatLanes() {
  return hn::Lanes(hn::ScalableTag<float>());
}

}  // namespace
}  // namespace rotor::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rotor::kernels {

HWY_EXPORT(CurrentTargetName);
HWY_EXPORT(CurrentFloatLanes);

const char* KernelTarget() {
  return HWY_DYNAMIC_DISPATCH(CurrentTargetName)();
}

// Every kernel translation unit is compiled with the same flags, so their HWY_TARGETS (the set
// SupportedAndGeneratedTargets intersects with) is this one.
std::vector<int64_t> AvailableTargets() {
  return hwy::SupportedAndGeneratedTargets();
}

const char* TargetName(int64_t target) {
  return hwy::TargetName(target);
}

size_t KernelFloatLanes() {
  return HWY_DYNAMIC_DISPATCH(CurrentFloatLanes)();
}

void ForceTargetForTest(int64_t target) {
  hwy::SetSupportedTargetsForTest(target);
}

}  // namespace rotor::kernels
#endif  // HWY_ONCE
