#include "storage/internal/key_layout.h"

#include <bit>
#include <cstring>
#include <limits>

#include <fmt/core.h>

namespace rotor::storage::internal {
namespace {

static_assert(std::endian::native == std::endian::little,
              "row values are float32 little-endian and copied with memcpy");
static_assert(sizeof(float) == 4);

void PutFixed32(uint32_t v, std::string* out) {
  char buf[4];
  std::memcpy(buf, &v, sizeof v);
  out->append(buf, sizeof buf);
}
void PutFixed64(int64_t v, std::string* out) {
  char buf[8];
  std::memcpy(buf, &v, sizeof v);
  out->append(buf, sizeof buf);
}
void PutBigEndian(uint64_t v, int bytes, std::string* out) {
  for (int shift = (bytes - 1) * 8; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xFFU));
  }
}
uint64_t GetBigEndian(std::string_view in, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v = (v << 8) | static_cast<unsigned char>(in[static_cast<std::size_t>(i)]);
  }
  return v;
}
void PutVarint32(uint32_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7FU) | 0x80U));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
// Reads a varint32 from the front of `*in` and consumes it; false when malformed.
bool GetVarint32(std::string_view* in, uint32_t* v) {
  uint32_t result = 0;
  for (int shift = 0; shift <= 28 && !in->empty(); shift += 7) {
    const auto byte = static_cast<unsigned char>(in->front());
    in->remove_prefix(1);
    if (shift == 28 && byte > 0x0F) {
      return false;  // More than 32 bits.
    }
    result |= static_cast<uint32_t>(byte & 0x7FU) << shift;
    if ((byte & 0x80U) == 0) {
      if (byte == 0 && shift > 0) {
        return false;  // Overlong: a canonical varint never ends in a zero byte.
      }
      *v = result;
      return true;
    }
  }
  return false;
}
void PutLengthPrefixed(std::string_view bytes, std::string* out) {
  PutVarint32(static_cast<uint32_t>(bytes.size()), out);
  out->append(bytes);
}
// Consumes a varint32 length and that many bytes; false when truncated or over `max_bytes`.
bool GetLengthPrefixed(std::string_view* in, std::size_t max_bytes, std::string_view* bytes) {
  uint32_t length = 0;
  if (!GetVarint32(in, &length) || length > max_bytes || length > in->size()) {
    return false;
  }
  *bytes = in->substr(0, length);
  in->remove_prefix(length);
  return true;
}

// A little-endian reader over one value; every Get checks the remaining size.
class ValueReader {
 public:
  explicit ValueReader(std::string_view bytes) : rest_(bytes) {}
  bool GetU32(uint32_t* v) { return Get(v); }
  bool GetI64(int64_t* v) { return Get(v); }
  bool GetBytes(std::size_t n, std::string_view* out) {
    if (rest_.size() < n) {
      return false;
    }
    *out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return true;
  }
  std::size_t remaining() const { return rest_.size(); }

 private:
  template <class T>
  bool Get(T* v) {
    if (rest_.size() < sizeof(T)) {
      return false;
    }
    std::memcpy(v, rest_.data(), sizeof(T));
    rest_.remove_prefix(sizeof(T));
    return true;
  }
  std::string_view rest_;
};

constexpr std::size_t kMetadataFixedBytes = 4 + 7 * 8 + 4 + 4;

}  // namespace

std::string_view ColumnFamilyName(ColumnFamily cf) {
  switch (cf) {
    case ColumnFamily::kUsers:
      return "users";
    case ColumnFamily::kRows:
      return "rows";
    case ColumnFamily::kOffsets:
      return "offsets";
  }
  return "unknown";
}

std::string InfoKey(std::string_view name) {
  std::string out = "info/";
  out.append(name);
  return out;
}

std::string UserKey(std::string_view user) {
  return std::string(user);
}

std::string EncodeUserMetadata(const UserMetadata& meta) {
  std::string out;
  out.reserve(kMetadataFixedBytes + meta.model_id.size());
  PutFixed32(kMetadataFormatVersion, &out);
  for (const int64_t v : {meta.first_pos, meta.next_pos, meta.rows, meta.last_ts_ms, meta.capacity,
                          meta.d_model, meta.n_blocks}) {
    PutFixed64(v, &out);
  }
  PutFixed32(static_cast<uint32_t>(meta.model_id.size()), &out);
  out.append(meta.model_id);
  PutFixed32(static_cast<uint32_t>(meta.recent_event_ids.size()), &out);
  for (const std::string& id : meta.recent_event_ids) {
    PutFixed32(static_cast<uint32_t>(id.size()), &out);
    out.append(id);
  }
  return out;
}

Result<UserMetadata> DecodeUserMetadata(std::string_view key, std::string_view value) {
  const std::string where = fmt::format("users key '{}'", PrintableBytes(key));
  ValueReader reader(value);
  uint32_t version = 0;
  if (!reader.GetU32(&version)) {
    return Status::Corruption("{}: metadata of {} bytes, want at least {}", where, value.size(),
                              kMetadataFixedBytes);
  }
  if (version != kMetadataFormatVersion) {
    return Status::Corruption("{}: metadata format version {}, this build reads {}", where, version,
                              kMetadataFormatVersion);
  }
  UserMetadata meta;
  uint32_t model_id_bytes = 0;
  if (!reader.GetI64(&meta.first_pos) || !reader.GetI64(&meta.next_pos) ||
      !reader.GetI64(&meta.rows) || !reader.GetI64(&meta.last_ts_ms) ||
      !reader.GetI64(&meta.capacity) || !reader.GetI64(&meta.d_model) ||
      !reader.GetI64(&meta.n_blocks) || !reader.GetU32(&model_id_bytes)) {
    return Status::Corruption("{}: metadata of {} bytes, want at least {}", where, value.size(),
                              kMetadataFixedBytes);
  }
  std::string_view model_id;
  if (model_id_bytes > kMaxModelIdBytes || !reader.GetBytes(model_id_bytes, &model_id)) {
    return Status::Corruption("{}: model id length {} exceeds the {} bytes left", where,
                              model_id_bytes, reader.remaining());
  }
  meta.model_id = std::string(model_id);
  uint32_t id_count = 0;
  if (!reader.GetU32(&id_count) || id_count > kMaxRecentEventIds ||
      id_count > reader.remaining() / 4) {
    return Status::Corruption("{}: recent event id count {} with {} bytes left", where, id_count,
                              reader.remaining());
  }
  meta.recent_event_ids.reserve(id_count);
  for (uint32_t i = 0; i < id_count; ++i) {
    uint32_t id_bytes = 0;
    std::string_view id;
    if (!reader.GetU32(&id_bytes) || id_bytes > kMaxEventIdBytes ||
        !reader.GetBytes(id_bytes, &id)) {
      return Status::Corruption("{}: recent event id {} of {} is truncated", where, i, id_count);
    }
    meta.recent_event_ids.emplace_back(id);
  }
  if (reader.remaining() != 0) {
    return Status::Corruption("{}: {} trailing bytes after the metadata", where,
                              reader.remaining());
  }
  if (meta.capacity <= 0 || meta.d_model <= 0 || meta.n_blocks <= 0) {
    return Status::Corruption("{}: shape capacity={} d_model={} n_blocks={}, want all > 0", where,
                              meta.capacity, meta.d_model, meta.n_blocks);
  }
  if (meta.first_pos < 0 || meta.next_pos < meta.first_pos) {
    return Status::Corruption("{}: positions first_pos={} next_pos={}, want 0 <= first <= next",
                              where, meta.first_pos, meta.next_pos);
  }
  if (meta.rows < 0 || meta.rows > meta.capacity || meta.rows > meta.next_pos - meta.first_pos) {
    return Status::Corruption("{}: rows={} out of [0, min(capacity={}, next_pos - first_pos={})]",
                              where, meta.rows, meta.capacity, meta.next_pos - meta.first_pos);
  }
  return meta;
}

std::string RowPrefix(std::string_view user) {
  std::string out;
  out.reserve(5 + user.size() + 8);
  PutLengthPrefixed(user, &out);
  return out;
}

std::string RowKey(std::string_view user, int64_t position) {
  std::string out = RowPrefix(user);
  PutBigEndian(static_cast<uint64_t>(position), 8, &out);
  return out;
}

std::string RowPrefixEnd(std::string_view user) {
  // Every row key of `user` is the prefix plus exactly 8 bytes, so the prefix plus nine 0xFF
  // bytes sorts after all of them; no other user's key starts with this prefix.
  std::string out = RowPrefix(user);
  out.append(9, '\xFF');
  return out;
}

Result<std::pair<std::string_view, int64_t>> DecodeRowKey(std::string_view key) {
  std::string_view rest = key;
  std::string_view user;
  if (!GetLengthPrefixed(&rest, kMaxUserIdBytes, &user) || rest.size() != 8) {
    return Status::Corruption("rows key '{}': not a length-prefixed user id and 8-byte position",
                              PrintableBytes(key));
  }
  const uint64_t position = GetBigEndian(rest, 8);
  if (position > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Status::Corruption("rows key '{}': position {} out of range", PrintableBytes(key),
                              position);
  }
  return std::pair{user, static_cast<int64_t>(position)};
}

std::size_t RowValueBytes(int64_t n_blocks, int64_t d_model, encoders::KvDtype dtype) {
  const std::size_t width = dtype == encoders::KvDtype::kF32 ? sizeof(float) : sizeof(uint16_t);
  return static_cast<std::size_t>(n_blocks) * 2 * static_cast<std::size_t>(d_model) * width;
}

std::string OffsetKey(std::string_view topic, int32_t partition) {
  std::string out;
  out.reserve(5 + topic.size() + 4);
  PutLengthPrefixed(topic, &out);
  PutBigEndian(static_cast<uint32_t>(partition), 4, &out);
  return out;
}

Result<TopicPartition> DecodeOffsetKey(std::string_view key) {
  std::string_view rest = key;
  std::string_view topic;
  if (!GetLengthPrefixed(&rest, kMaxTopicBytes, &topic) || topic.empty() || rest.size() != 4) {
    return Status::Corruption("offsets key '{}': not a length-prefixed topic and 4-byte partition",
                              PrintableBytes(key));
  }
  const uint64_t partition = GetBigEndian(rest, 4);
  if (partition > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
    return Status::Corruption("offsets key '{}': partition {} out of range", PrintableBytes(key),
                              partition);
  }
  return TopicPartition{.topic = std::string(topic), .partition = static_cast<int32_t>(partition)};
}

std::string_view WatermarkPrefix() {
  return "watermark/";
}

std::string WatermarkKey(std::string_view topic, int32_t partition) {
  std::string out(WatermarkPrefix());
  out += OffsetKey(topic, partition);
  return out;
}

Result<TopicPartition> DecodeWatermarkKey(std::string_view key) {
  if (!key.starts_with(WatermarkPrefix())) {
    return Status::Corruption("default key '{}': not a watermark key", PrintableBytes(key));
  }
  auto decoded = DecodeOffsetKey(key.substr(WatermarkPrefix().size()));
  if (!decoded.ok()) {
    return Status::Corruption(
        "watermark key '{}': not a length-prefixed topic and 4-byte partition",
        PrintableBytes(key));
  }
  return std::move(decoded).value();
}

std::string EncodeWatermarkValue(int64_t ts_ms) {
  return EncodeOffsetValue(ts_ms);
}

Result<int64_t> DecodeWatermarkValue(std::string_view key, std::string_view value) {
  int64_t ts_ms = 0;
  ValueReader reader(value);
  if (value.size() != sizeof ts_ms || !reader.GetI64(&ts_ms) || ts_ms < 0) {
    return Status::Corruption("watermark key '{}': value of {} bytes is not a non-negative int64",
                              PrintableBytes(key), value.size());
  }
  return ts_ms;
}

std::string EncodeOffsetValue(int64_t next_offset) {
  std::string out;
  PutFixed64(next_offset, &out);
  return out;
}

Result<int64_t> DecodeOffsetValue(std::string_view key, std::string_view value) {
  int64_t offset = 0;
  ValueReader reader(value);
  if (value.size() != sizeof offset || !reader.GetI64(&offset) || offset < 0) {
    return Status::Corruption("offsets key '{}': value of {} bytes is not a non-negative int64",
                              PrintableBytes(key), value.size());
  }
  return offset;
}

std::string PrintableBytes(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (const char c : bytes) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F && c != '\\' && c != '\'') {
      out.push_back(c);
    } else {
      out += fmt::format("\\x{:02x}", u);
    }
  }
  return out;
}

void AppendFloatsLe(const float* floats, std::size_t count, std::string* out) {
  out->append(reinterpret_cast<const char*>(floats), count * sizeof(float));
}

void ReadFloatsLe(const char* bytes, std::size_t count, float* out) {
  std::memcpy(out, bytes, count * sizeof(float));
}

void AppendRowLe(const float* floats, std::size_t count, encoders::KvDtype dtype,
                 std::string* out) {
  if (dtype == encoders::KvDtype::kF32) {
    AppendFloatsLe(floats, count, out);
    return;
  }
  const std::size_t at = out->size();
  out->resize(at + 2 * count);
  char* dst = out->data() + at;
  for (std::size_t i = 0; i < count; ++i) {
    const uint16_t bits = encoders::KvDtypeBits(dtype, floats[i]);
    dst[2 * i] = static_cast<char>(bits & 0xFF);
    dst[2 * i + 1] = static_cast<char>(bits >> 8);
  }
}

void ReadRowLe(const char* bytes, std::size_t count, encoders::KvDtype dtype, float* out) {
  if (dtype == encoders::KvDtype::kF32) {
    ReadFloatsLe(bytes, count, out);
    return;
  }
  const auto* src = reinterpret_cast<const unsigned char*>(bytes);
  if (dtype == encoders::KvDtype::kBF16) {
    // The upper half of a float32: a loop the compiler vectorizes (a window read back from
    // RocksDB is tens of thousands of values).
    for (std::size_t i = 0; i < count; ++i) {
      const uint32_t bits =
          static_cast<uint32_t>(src[2 * i]) << 16 | static_cast<uint32_t>(src[2 * i + 1]) << 24;
      out[i] = std::bit_cast<float>(bits);
    }
    return;
  }
  for (std::size_t i = 0; i < count; ++i) {
    const auto bits = static_cast<uint16_t>(src[2 * i] | (src[2 * i + 1] << 8));
    out[i] = encoders::KvDtypeValue(dtype, bits);
  }
}

}  // namespace rotor::storage::internal
