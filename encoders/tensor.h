// Tensor: an owning, 64-byte aligned float32 array with a shape, as a bundle's weights are held.

#ifndef ROTOR_ENCODERS_TENSOR_H_
#define ROTOR_ENCODERS_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <vector>

namespace rotor::encoders {

// Alignment of every tensor's storage: one cache line, and a full AVX-512 vector, so kernels
// may use aligned loads on row 0.
inline constexpr std::size_t kTensorAlignment = 64;

// A std::allocator that aligns every allocation to `Alignment` bytes (a power of two).
template <class T, std::size_t Alignment = kTensorAlignment>
class AlignedAllocator {
  static_assert(Alignment >= alignof(T) && (Alignment & (Alignment - 1)) == 0,
                "Alignment must be a power of two no smaller than alignof(T)");

 public:
  using value_type = T;
  // std::allocator_traits cannot rebind an allocator with a non-type template parameter by
  // itself; the names are the standard's.
  template <class U>
  struct rebind {                                  // NOLINT(readability-identifier-naming)
    using other = AlignedAllocator<U, Alignment>;  // NOLINT(readability-identifier-naming)
  };

  AlignedAllocator() noexcept = default;
  template <class U>
  // NOLINTNEXTLINE(google-explicit-constructor): allocators convert implicitly by contract.
  AlignedAllocator(const AlignedAllocator<U, Alignment>& /*other*/) noexcept {}

  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) {
      throw std::bad_array_new_length();
    }
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{Alignment}));
  }
  void deallocate(T* p, std::size_t /*n*/) noexcept {
    ::operator delete (p, std::align_val_t{Alignment});
  }

  template <class U>
  bool operator==(const AlignedAllocator<U, Alignment>& /*other*/) const noexcept {
    return true;
  }
};

// float32 storage aligned to kTensorAlignment.
using AlignedFloats = std::vector<float, AlignedAllocator<float>>;

// A dense row-major float32 tensor: `data.size()` is the product of `shape` (1 for a scalar,
// shape {}).
//
// Lifecycle: a value type that owns its storage; bundles hand out const references.
// Concurrency: const access from many threads is safe.
struct Tensor {
  std::vector<int64_t> shape;
  AlignedFloats data;

  // Number of elements (the product of shape).
  int64_t numel() const noexcept { return static_cast<int64_t>(data.size()); }
  // Extent of dimension `i`; `i` must be < shape.size().
  int64_t dim(std::size_t i) const { return shape.at(i); }
  std::span<const float> values() const noexcept { return {data.data(), data.size()}; }
};

}  // namespace rotor::encoders

#endif  // ROTOR_ENCODERS_TENSOR_H_
