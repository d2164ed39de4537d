// Ready-to-rank tensors as the output topic carries them (DESIGN section 4): one safetensors
// message per user holding the rotated K and the V rows of every attention block for some
// positions of the user's window, their positions, and metadata saying what they are.
//
// Tensors: `k.<b>` and `v.<b>` [rows, d_model] for b in 0..n_blocks (the L layers, then the
// action attention), in float32, bfloat16 or float16; `pos` [rows] int64, oldest first.
// Metadata (all strings): rotor.format = "rotor-ready-tensors/1", rotor.kind = "delta" (the
// rows one batch appended, at most the window's newest W of them) or "snapshot" (the whole
// window), rotor.model_id, rotor.user_id,
// rotor.next_pos, rotor.last_ts_ms, rotor.source_topic, rotor.source_partition,
// rotor.source_offset (the input offset of the user's last event in the batch), rotor.dtype.
//
// A consumer keeps, per user, the rows of the latest snapshot plus later deltas, dropping
// repeated positions (at-least-once delivery may repeat a delta) and rows older than
// next_pos - window.

#ifndef ROTOR_ENCODERS_READY_TENSORS_H_
#define ROTOR_ENCODERS_READY_TENSORS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "encoders/kv_window.h"

namespace rotor::encoders {

inline constexpr std::string_view kReadyTensorsFormat = "rotor-ready-tensors/1";

enum class WireDtype : unsigned char { kF32, kBF16, kF16 };
// "F32", "BF16", "F16" (the safetensors spelling).
std::string_view WireDtypeName(WireDtype dtype);

enum class ReadyKind : unsigned char { kDelta, kSnapshot };
// "delta", "snapshot".
std::string_view ReadyKindName(ReadyKind kind);

// What the metadata says besides the rows.
struct ReadyHeader {
  ReadyKind kind = ReadyKind::kDelta;
  std::string model_id;
  std::string user_id;
  int64_t next_pos = 0;
  int64_t last_ts_ms = 0;
  std::string source_topic;
  int32_t source_partition = 0;
  int64_t source_offset = 0;
  WireDtype dtype = WireDtype::kF32;

  bool operator==(const ReadyHeader&) const = default;
};

// The newest `rows` rows of `window` (all of them for a snapshot) as a message. `header`'s
// next_pos and last_ts_ms are taken from the window. InvalidArgument when rows is out of
// [0, window.rows].
Result<std::string> EncodeReadyTensors(const KvWindow& window, int64_t rows, ReadyHeader header);

// A decoded message, rows widened to float32.
struct ReadyTensors {
  ReadyHeader header;
  int64_t d_model = 0;
  std::vector<int64_t> pos;           // [rows]
  std::vector<std::vector<float>> k;  // n_blocks x [rows * d_model]
  std::vector<std::vector<float>> v;  // n_blocks x [rows * d_model]

  int64_t rows() const { return static_cast<int64_t>(pos.size()); }
};

// Parses and validates a message (Corruption naming what is wrong: not safetensors, a missing
// or malformed metadata field, missing/extra tensors, inconsistent shapes or dtypes, positions
// not consecutive or not ending at next_pos - 1).
Result<ReadyTensors> DecodeReadyTensors(std::string_view bytes);

// Float conversions used on the wire (round to nearest even; NaN stays NaN).
uint16_t FloatToBf16(float x);
float Bf16ToFloat(uint16_t x);
uint16_t FloatToF16(float x);
float F16ToFloat(uint16_t x);

}  // namespace rotor::encoders

#endif  // ROTOR_ENCODERS_READY_TENSORS_H_
