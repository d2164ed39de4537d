// SHA-256 (FIPS 180-4): a bundle's model id is the hex digest of its file bytes.

#ifndef ROTOR_ENCODERS_INTERNAL_SHA256_H_
#define ROTOR_ENCODERS_INTERNAL_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace rotor::encoders::internal {

// Incremental SHA-256.
//
// Lifecycle: Update any number of times, then Finish once; after Finish the object must be
// Reset before reuse. Concurrency: not thread-safe; one hasher per thread.
class Sha256 {
 public:
  using Digest = std::array<uint8_t, 32>;

  Sha256() { Reset(); }

  void Reset();
  void Update(std::span<const std::byte> bytes);
  void Update(std::string_view bytes);
  Digest Finish();

 private:
  void Compress(const uint8_t* block);

  std::array<uint32_t, 8> state_{};
  std::array<uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// Lowercase hex of a digest (64 characters).
std::string ToHex(const Sha256::Digest& digest);

// Lowercase hex SHA-256 of `bytes`, as Python's hashlib.sha256(b).hexdigest().
std::string Sha256Hex(std::span<const std::byte> bytes);
std::string Sha256Hex(std::string_view bytes);

}  // namespace rotor::encoders::internal

#endif  // ROTOR_ENCODERS_INTERNAL_SHA256_H_
