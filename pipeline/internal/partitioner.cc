#include "pipeline/internal/partitioner.h"

#include <cstddef>
#include <cstdint>

namespace rotor::pipeline::internal {

// Utils.murmur2, with Java's wrapping int arithmetic done in uint32_t and `>>>` as the
// unsigned shift; each byte is read as Java's `data[i] & 0xff`.
int32_t Murmur2(std::string_view key) {
  constexpr uint32_t kSeed = 0x9747b28cU;
  constexpr uint32_t kM = 0x5bd1e995U;
  constexpr int kR = 24;
  const std::size_t length = key.size();
  const auto byte = [&](std::size_t i) {
    return static_cast<uint32_t>(static_cast<uint8_t>(key[i]));
  };
  // Java hashes byte[].length, an int: keys are far below 2^31 bytes.
  uint32_t h = kSeed ^ static_cast<uint32_t>(length);
  const std::size_t length4 = length / 4;
  for (std::size_t i = 0; i < length4; ++i) {
    const std::size_t i4 = i * 4;
    uint32_t k = byte(i4) | (byte(i4 + 1) << 8U) | (byte(i4 + 2) << 16U) | (byte(i4 + 3) << 24U);
    k *= kM;
    k ^= k >> kR;
    k *= kM;
    h *= kM;
    h ^= k;
  }
  const std::size_t tail = length & ~std::size_t{3};
  switch (length % 4) {
    case 3:
      h ^= byte(tail + 2) << 16U;
      [[fallthrough]];
    case 2:
      h ^= byte(tail + 1) << 8U;
      [[fallthrough]];
    case 1:
      h ^= byte(tail);
      h *= kM;
      break;
    default:
      break;
  }
  h ^= h >> 13U;
  h *= kM;
  h ^= h >> 15U;
  return static_cast<int32_t>(h);  // Two's complement, as Java's int.
}

int32_t JavaPartition(std::string_view key, int32_t partitions) {
  if (partitions < 1) {
    return -1;
  }
  // Utils.toPositive: the sign bit cleared (not Math.abs, which fails for INT_MIN).
  const auto positive = static_cast<int32_t>(static_cast<uint32_t>(Murmur2(key)) & 0x7fffffffU);
  return positive % partitions;
}

}  // namespace rotor::pipeline::internal
