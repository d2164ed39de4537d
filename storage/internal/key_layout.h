// The RocksDB key layout of rotor's state: the ONE place that knows how users, K/V rows and
// input offsets become keys and values. Everything else in storage/ goes through these
// functions; nothing outside storage/ sees a key.
//
// Column families:
//   users    key   = user id bytes (as received, any bytes, 1..kMaxUserIdBytes)
//            value = UserMetadata: fixed32 format version, then int64 first_pos, next_pos,
//                    rows, last_ts_ms, capacity, d_model, n_blocks, then fixed32 length +
//                    model id bytes, then fixed32 count of recent event ids and, oldest
//                    first, fixed32 length + bytes of each. All integers little-endian.
//   rows     key   = varint32(len(user)) + user + big-endian uint64 position
//            value = for each block b in 0..n_blocks: K row then V row, d_model values
//                    little-endian each: float32 (n_blocks * 2 * d_model * 4 bytes), or the
//                    16 bits of bfloat16 or float16 with state.kv_dtype bf16 / f16 (half that).
//            The varint length prefix is prefix-free, so "u1", "u10" and "u1\0x" never share a
//            row prefix, and big-endian positions sort numerically: one user's window is one
//            range scan returning rows in position order.
//   offsets  key   = varint32(len(topic)) + topic + big-endian uint32 partition
//            value = int64 little-endian: the next input offset to consume.
//
//   default  key   = "info/" + name: store-wide properties (the model id the state belongs to).
//            key   = "watermark/" + varint32(len(topic)) + topic + big-endian uint32 partition
//            value = int64 little-endian: the partition's event-time watermark, the largest
//                    event ts_ms applied from it so far. Written in the batch that writes the
//                    partition's offset, so the two always agree.
//
// Decoders never trust their input: a short, long or out-of-range value is Status::Corruption
// naming the key, never a crash.

#ifndef ROTOR_STORAGE_INTERNAL_KEY_LAYOUT_H_
#define ROTOR_STORAGE_INTERNAL_KEY_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/topic_partition.h"
#include "encoders/kv_window.h"

namespace rotor::storage::internal {

// The column families, in the order Open creates them (after RocksDB's "default").
enum class ColumnFamily : unsigned char { kUsers = 0, kRows = 1, kOffsets = 2 };
inline constexpr std::size_t kColumnFamilyCount = 3;
// "users", "rows", "offsets": the RocksDB column family names.
std::string_view ColumnFamilyName(ColumnFamily cf);

// Version written in every users value; a different version is refused as Corruption until a
// migration exists.
inline constexpr uint32_t kMetadataFormatVersion = 1;
// Longest accepted user id and topic name: bounds key sizes (and keeps a corrupt length prefix
// from being believed).
inline constexpr std::size_t kMaxUserIdBytes = 4096;
inline constexpr std::size_t kMaxTopicBytes = 4096;
inline constexpr std::size_t kMaxModelIdBytes = 1024;
// Bounds on the recent event ids kept per user (the pipeline's dedupe memory).
inline constexpr std::size_t kMaxRecentEventIds = 100000;
inline constexpr std::size_t kMaxEventIdBytes = 4096;

// One user's entry in the users column family.
struct UserMetadata {
  std::string model_id;
  int64_t first_pos = 0;
  int64_t next_pos = 0;
  int64_t rows = 0;
  int64_t last_ts_ms = 0;
  int64_t capacity = 0;
  int64_t d_model = 0;
  int64_t n_blocks = 0;
  std::vector<std::string> recent_event_ids;  // Oldest first.

  bool operator==(const UserMetadata& other) const = default;
};

// users: key and value.
std::string UserKey(std::string_view user);
std::string EncodeUserMetadata(const UserMetadata& meta);
// Corruption (naming `key`) for a wrong size, unknown version or values that break the window
// invariants (capacity/d_model/n_blocks > 0, 0 <= first_pos <= next_pos, 0 <= rows <=
// min(capacity, next_pos - first_pos)).
Result<UserMetadata> DecodeUserMetadata(std::string_view key, std::string_view value);

// rows: keys. RowKey(user, p) for p >= 0; RowPrefix is the part every row key of `user` starts
// with, RowPrefixEnd(user) sorts after every one of them and before any other user's.
std::string RowPrefix(std::string_view user);
std::string RowKey(std::string_view user, int64_t position);
std::string RowPrefixEnd(std::string_view user);
// Splits a row key into (user, position); Corruption when it is not one.
Result<std::pair<std::string_view, int64_t>> DecodeRowKey(std::string_view key);

// rows: values. Bytes of one event's row value, its values in `dtype`.
std::size_t RowValueBytes(int64_t n_blocks, int64_t d_model,
                          encoders::KvDtype dtype = encoders::KvDtype::kF32);

// offsets: key and value.
std::string OffsetKey(std::string_view topic, int32_t partition);
Result<TopicPartition> DecodeOffsetKey(std::string_view key);
std::string EncodeOffsetValue(int64_t next_offset);
Result<int64_t> DecodeOffsetValue(std::string_view key, std::string_view value);

// default: key of a store-wide property.
std::string InfoKey(std::string_view name);

// default: a partition's event-time watermark. WatermarkPrefix() starts every such key (and no
// other key of the default column family).
std::string_view WatermarkPrefix();
std::string WatermarkKey(std::string_view topic, int32_t partition);
Result<TopicPartition> DecodeWatermarkKey(std::string_view key);
std::string EncodeWatermarkValue(int64_t ts_ms);
Result<int64_t> DecodeWatermarkValue(std::string_view key, std::string_view value);

// `bytes` for messages: printable ASCII as is, anything else (and '\\', '\'') as \xNN.
std::string PrintableBytes(std::string_view bytes);

// Little-endian float32 <-> bytes for row values: Append adds 4 * count bytes to `out`; Read
// copies 4 * count bytes from `bytes` into `out[0..count)`.
void AppendFloatsLe(const float* floats, std::size_t count, std::string* out);
void ReadFloatsLe(const char* bytes, std::size_t count, float* out);
// The same in `dtype`: float32 as above, or each value rounded to nearest even to the 16-bit
// dtype (exact for the rows the decoder wrote, which it rounded already) in 2 bytes; Read widens
// them back.
void AppendRowLe(const float* floats, std::size_t count, encoders::KvDtype dtype, std::string* out);
void ReadRowLe(const char* bytes, std::size_t count, encoders::KvDtype dtype, float* out);

}  // namespace rotor::storage::internal

#endif  // ROTOR_STORAGE_INTERNAL_KEY_LAYOUT_H_
