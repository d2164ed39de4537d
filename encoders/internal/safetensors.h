// A strict, zero-copy safetensors reader and a canonical writer, byte-compatible with
// python/sirenrope/safetensors_io.py.
//
// Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON header, then the data
// region. The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets relative to the data region) and may hold "__metadata__", a string-to-string map.

#ifndef ROTOR_ENCODERS_INTERNAL_SAFETENSORS_H_
#define ROTOR_ENCODERS_INTERNAL_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace rotor::encoders::internal {

// Largest header the reader accepts (Python's MAX_HEADER_BYTES).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = uint64_t{100} * 1024 * 1024;

enum class Dtype : unsigned char { kF64, kF32, kF16, kBF16, kI64, kI32, kU8 };

// "F64", "F32", "F16", "BF16", "I64", "I32", "U8".
std::string_view DtypeName(Dtype dtype);
// Bytes per element.
std::size_t DtypeSize(Dtype dtype);

// One tensor of a parsed file: where its little-endian bytes are, and what they hold. `data`
// points into the buffer given to ParseSafetensors (or, for EncodeSafetensors, anywhere).
struct TensorView {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<int64_t> shape;  // Row-major; {} is a scalar of one element.
  std::span<const std::byte> data;
};

// String-to-string metadata, sorted by key.
using SafetensorsMetadata = std::map<std::string, std::string, std::less<>>;

// A parsed file: views into the caller's buffer, which must outlive it.
//
// Lifecycle: holds no bytes of its own; valid while the parsed buffer is.
// Concurrency: immutable after parsing; const access from many threads is safe.
struct SafetensorsFile {
  std::vector<TensorView> tensors;  // In header order.
  SafetensorsMetadata metadata;     // Empty when the header has no __metadata__.

  // The tensor named `name`, or nullptr.
  const TensorView* Find(std::string_view name) const;
};

// Parses and bounds-checks a whole file without copying tensor data. Every failure is
// Corruption with the message Python's decode raises ("truncated: header claims 100 bytes but
// only 2 follow", "tensor 'w': data_offsets [8, 0] are not ordered", ...). Checks: the length
// prefix (8 bytes, N <= 100 MiB, N bytes present), UTF-8 JSON object (nesting <= 64),
// __metadata__ string-to-string (null counts as empty), each entry exactly dtype/shape/
// data_offsets with a supported dtype, non-negative integer shape whose byte size fits 64 bits,
// two ordered integer offsets inside the data region spanning exactly that size, and the spans
// covering the data region contiguously with no gap, overlap or trailing byte.
Result<SafetensorsFile> ParseSafetensors(std::span<const std::byte> bytes);

// The canonical encoding, byte-identical to Python's encode(): tensors sorted by name, packed
// back to back, header JSON with sorted keys and no whitespace (non-ASCII as \uXXXX), padded
// with spaces to a multiple of 8; "__metadata__" only when `metadata` is not empty.
// InvalidArgument when a name is "__metadata__" or repeated, a name or metadata string is not
// UTF-8, a shape dimension is negative, or a view's byte count does not match its shape.
Result<std::string> EncodeSafetensors(std::span<const TensorView> tensors,
                                      const SafetensorsMetadata& metadata);

}  // namespace rotor::encoders::internal

#endif  // ROTOR_ENCODERS_INTERNAL_SAFETENSORS_H_
