#include "encoders/ready_tensors.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "encoders/internal/py_format.h"
#include "encoders/internal/safetensors.h"

namespace rotor::encoders {
namespace {

using internal::Dtype;
using internal::SafetensorsMetadata;
using internal::TensorView;

constexpr std::string_view kFormatKey = "rotor.format";

Dtype ToDtype(WireDtype d) {
  switch (d) {
    case WireDtype::kF32:
      return Dtype::kF32;
    case WireDtype::kBF16:
      return Dtype::kBF16;
    case WireDtype::kF16:
      return Dtype::kF16;
  }
  return Dtype::kF32;
}

// Appends `count` floats from `src` to `out` in `dtype`, little-endian.
void AppendRow(const float* src, std::size_t count, WireDtype dtype, std::string& out) {
  switch (dtype) {
    case WireDtype::kF32:
      out.append(reinterpret_cast<const char*>(src), count * sizeof(float));
      return;
    case WireDtype::kBF16:
    case WireDtype::kF16:
      for (std::size_t i = 0; i < count; ++i) {
        const uint16_t h = dtype == WireDtype::kBF16 ? FloatToBf16(src[i]) : FloatToF16(src[i]);
        out.push_back(static_cast<char>(h & 0xFF));
        out.push_back(static_cast<char>(h >> 8));
      }
      return;
  }
}

void ReadRows(std::span<const std::byte> data, Dtype dtype, std::vector<float>& out) {
  if (dtype == Dtype::kF32) {
    out.resize(data.size() / sizeof(float));
    if (!data.empty()) {
      std::memcpy(out.data(), data.data(), data.size());
    }
    return;
  }
  out.resize(data.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto h = static_cast<uint16_t>(std::to_integer<unsigned>(data[2 * i]) |
                                         (std::to_integer<unsigned>(data[2 * i + 1]) << 8));
    out[i] = dtype == Dtype::kBF16 ? Bf16ToFloat(h) : F16ToFloat(h);
  }
}

template <class T>
Result<T> MetaInt(const SafetensorsMetadata& meta, std::string_view key) {
  const auto it = meta.find(key);
  if (it == meta.end()) {
    return Status::Corruption("ready tensors: metadata '{}' is missing", key);
  }
  T value{};
  const std::string& text = it->second;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return Status::Corruption("ready tensors: metadata '{}' = '{}' is not an integer", key, text);
  }
  return value;
}

Result<std::string> MetaString(const SafetensorsMetadata& meta, std::string_view key) {
  const auto it = meta.find(key);
  if (it == meta.end()) {
    return Status::Corruption("ready tensors: metadata '{}' is missing", key);
  }
  return it->second;
}

}  // namespace

std::string_view WireDtypeName(WireDtype dtype) {
  return internal::DtypeName(ToDtype(dtype));
}

std::string_view ReadyKindName(ReadyKind kind) {
  return kind == ReadyKind::kDelta ? "delta" : "snapshot";
}

uint16_t FloatToBf16(float x) {
  uint32_t bits = std::bit_cast<uint32_t>(x);
  if (std::isnan(x)) {
    return static_cast<uint16_t>((bits >> 16) | 0x40);  // Quiet NaN, sign kept.
  }
  bits += 0x7FFF + ((bits >> 16) & 1);  // Round to nearest even.
  return static_cast<uint16_t>(bits >> 16);
}

float Bf16ToFloat(uint16_t x) {
  return std::bit_cast<float>(static_cast<uint32_t>(x) << 16);
}

uint16_t FloatToF16(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  uint32_t abs = bits & 0x7FFFFFFF;
  if (abs > 0x7F800000) {
    return static_cast<uint16_t>(sign | 0x7E00);  // NaN.
  }
  if (abs >= 0x477FF000) {  // >= 65520 rounds to infinity (and infinity itself).
    return static_cast<uint16_t>(sign | 0x7C00);
  }
  if (abs < 0x38800000) {  // Below 2^-14: a half subnormal, in units of 2^-24 (exact scaling).
    const float scaled = std::bit_cast<float>(abs) * 16777216.0F;
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)));
  }
  // Re-bias the exponent from 127 to 15 and round the 13 dropped mantissa bits to even.
  abs += 0xC8000FFFU + ((abs >> 13) & 1);
  return static_cast<uint16_t>(sign | (abs >> 13));
}

float F16ToFloat(uint16_t x) {
  const uint32_t sign = static_cast<uint32_t>(x & 0x8000) << 16;
  const uint32_t exponent = (x >> 10) & 0x1F;
  const uint32_t mantissa = x & 0x3FFU;
  if (exponent == 0) {
    const float value = static_cast<float>(mantissa) * (1.0F / 16777216.0F);
    return sign != 0 ? -value : value;
  }
  if (exponent == 31) {
    return std::bit_cast<float>(sign | 0x7F800000U | (mantissa << 13));
  }
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

void RoundToKvDtype(KvDtype dtype, std::span<float> row) {
  if (dtype == KvDtype::kF32) {
    return;
  }
  // One branch per row, not per value: this runs on every row the decoder writes.
  if (dtype == KvDtype::kBF16) {
    for (float& x : row) {
      x = Bf16ToFloat(FloatToBf16(x));
    }
    return;
  }
  for (float& x : row) {
    x = F16ToFloat(FloatToF16(x));
  }
}

uint16_t KvDtypeBits(KvDtype dtype, float x) {
  return dtype == KvDtype::kBF16 ? FloatToBf16(x) : FloatToF16(x);
}

float KvDtypeValue(KvDtype dtype, uint16_t bits) {
  return dtype == KvDtype::kBF16 ? Bf16ToFloat(bits) : F16ToFloat(bits);
}

std::string_view KvDtypeName(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kBF16:
      return "bf16";
    case KvDtype::kF16:
      return "f16";
    case KvDtype::kF32:
      break;
  }
  return "f32";
}

// The message is written in one pass into one string: the same bytes EncodeSafetensors makes
// of the tensors k.<b>, v.<b>, pos and the metadata below (a test checks them against it), but
// without a buffer per tensor, a metadata map or a sorted copy of the names: this runs once
// per user per batch, and the general encoder was 5-10% of a drain's cycles.
Result<std::string> EncodeReadyTensors(const KvWindow& window, int64_t rows, ReadyHeader header) {
  if (header.kind == ReadyKind::kSnapshot) {
    rows = window.rows;
  }
  if (rows < 0 || rows > window.rows) {
    return Status::InvalidArgument("ready tensors: {} rows asked of a window holding {}", rows,
                                   window.rows);
  }
  header.next_pos = window.next_pos;
  header.last_ts_ms = window.last_ts_ms;
  const auto d = static_cast<std::size_t>(window.d_model);
  const auto n_rows = static_cast<std::size_t>(rows);
  const std::size_t item = header.dtype == WireDtype::kF32 ? 4 : 2;
  const auto n_blocks = static_cast<std::size_t>(window.n_blocks());

  // The tensors in the header's order (names sorted as Python sorts them: "k.10" before
  // "k.2"): kind 0 = k, 1 = pos, 2 = v; `block` for k and v.
  struct Part {
    char name[24];
    std::size_t name_size;
    int kind;
    std::size_t block;
  };
  std::vector<Part> tensors;
  tensors.reserve(2 * n_blocks + 1);
  const auto add = [&](int kind, std::size_t block) {
    Part t{};
    const char* prefix = kind == 0 ? "k." : kind == 2 ? "v." : "pos";
    const auto end = kind == 1 ? fmt::format_to_n(t.name, sizeof(t.name), "{}", prefix)
                               : fmt::format_to_n(t.name, sizeof(t.name), "{}{}", prefix, block);
    t.name_size = end.size;
    t.kind = kind;
    t.block = block;
    tensors.push_back(t);
  };
  for (std::size_t b = 0; b < n_blocks; ++b) {
    add(0, b);
    add(2, b);
  }
  add(1, 0);
  std::sort(tensors.begin(), tensors.end(), [](const Part& a, const Part& b) {
    return std::string_view(a.name, a.name_size) < std::string_view(b.name, b.name_size);
  });

  // The header: "__metadata__" sorts before every tensor name (all lower case), its entries in
  // key order.
  std::string head = R"({"__metadata__":{)";
  const auto entry = [&](std::string_view key, std::string_view value, bool last) -> Status {
    head.push_back('"');
    head += key;
    head += "\":";
    if (!internal::AppendPyJsonString(head, value)) {
      return Status::InvalidArgument("metadata value of '{}' is not UTF-8", key);
    }
    if (!last) {
      head.push_back(',');
    }
    return Status::OK();
  };
  const auto view = [](const fmt::format_int& n) {
    return std::string_view(n.data(), n.size());
  };
  const fmt::format_int last_ts(header.last_ts_ms);
  const fmt::format_int next_pos(header.next_pos);
  const fmt::format_int source_offset(header.source_offset);
  const fmt::format_int source_partition(header.source_partition);
  ROTOR_RETURN_IF_ERROR(entry("rotor.dtype", WireDtypeName(header.dtype), false));
  ROTOR_RETURN_IF_ERROR(entry(kFormatKey, kReadyTensorsFormat, false));
  ROTOR_RETURN_IF_ERROR(entry("rotor.kind", ReadyKindName(header.kind), false));
  ROTOR_RETURN_IF_ERROR(entry("rotor.last_ts_ms", view(last_ts), false));
  ROTOR_RETURN_IF_ERROR(entry("rotor.model_id", header.model_id, false));
  ROTOR_RETURN_IF_ERROR(entry("rotor.next_pos", view(next_pos), false));
  ROTOR_RETURN_IF_ERROR(entry("rotor.source_offset", view(source_offset), false));
  ROTOR_RETURN_IF_ERROR(entry("rotor.source_partition", view(source_partition), false));
  ROTOR_RETURN_IF_ERROR(entry("rotor.source_topic", header.source_topic, false));
  ROTOR_RETURN_IF_ERROR(entry("rotor.user_id", header.user_id, true));
  head.push_back('}');
  const std::string_view row_dtype = internal::DtypeName(ToDtype(header.dtype));
  const std::size_t row_bytes = n_rows * d * item;
  uint64_t offset = 0;
  for (const Part& t : tensors) {
    const uint64_t size = t.kind == 1 ? n_rows * sizeof(int64_t) : row_bytes;
    fmt::format_to(std::back_inserter(head), R"(,"{}":{{"data_offsets":[{},{}],"dtype":"{}",)",
                   std::string_view(t.name, t.name_size), offset, offset + size,
                   t.kind == 1 ? internal::DtypeName(Dtype::kI64) : row_dtype);
    if (t.kind == 1) {
      fmt::format_to(std::back_inserter(head), R"("shape":[{}]}})", rows);
    } else {
      fmt::format_to(std::back_inserter(head), R"("shape":[{},{}]}})", rows, window.d_model);
    }
    offset += size;
  }
  head.push_back('}');
  head.append((8 - head.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + head.size() + offset);
  const uint64_t head_size = head.size();
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<char>((head_size >> (8 * i)) & 0xFF));
  }
  out += head;
  for (const Part& t : tensors) {
    for (int64_t p = window.next_pos - rows; p < window.next_pos; ++p) {
      if (t.kind == 1) {
        out.append(reinterpret_cast<const char*>(&p), sizeof(p));
        continue;
      }
      const auto slot_offset = static_cast<std::size_t>(window.SlotOf(p)) * d;
      const auto& block = t.kind == 0 ? window.k[t.block] : window.v[t.block];
      AppendRow(block.data() + slot_offset, d, header.dtype, out);
    }
  }
  return out;
}

Result<ReadyTensors> DecodeReadyTensors(std::string_view bytes) {
  ROTOR_ASSIGN_OR_RETURN(
      const internal::SafetensorsFile file,
      internal::ParseSafetensors(std::as_bytes(std::span<const char>(bytes.data(), bytes.size()))));
  const SafetensorsMetadata& meta = file.metadata;
  ROTOR_ASSIGN_OR_RETURN(const std::string format, MetaString(meta, kFormatKey));
  if (format != kReadyTensorsFormat) {
    return Status::Corruption("ready tensors: rotor.format '{}', want '{}'", format,
                              kReadyTensorsFormat);
  }
  ReadyTensors out;
  ReadyHeader& h = out.header;
  ROTOR_ASSIGN_OR_RETURN(const std::string kind, MetaString(meta, "rotor.kind"));
  if (kind == "delta") {
    h.kind = ReadyKind::kDelta;
  } else if (kind == "snapshot") {
    h.kind = ReadyKind::kSnapshot;
  } else {
    return Status::Corruption("ready tensors: rotor.kind '{}', want delta or snapshot", kind);
  }
  ROTOR_ASSIGN_OR_RETURN(h.model_id, MetaString(meta, "rotor.model_id"));
  ROTOR_ASSIGN_OR_RETURN(h.user_id, MetaString(meta, "rotor.user_id"));
  ROTOR_ASSIGN_OR_RETURN(h.next_pos, MetaInt<int64_t>(meta, "rotor.next_pos"));
  ROTOR_ASSIGN_OR_RETURN(h.last_ts_ms, MetaInt<int64_t>(meta, "rotor.last_ts_ms"));
  ROTOR_ASSIGN_OR_RETURN(h.source_topic, MetaString(meta, "rotor.source_topic"));
  ROTOR_ASSIGN_OR_RETURN(h.source_partition, MetaInt<int32_t>(meta, "rotor.source_partition"));
  ROTOR_ASSIGN_OR_RETURN(h.source_offset, MetaInt<int64_t>(meta, "rotor.source_offset"));
  ROTOR_ASSIGN_OR_RETURN(const std::string dtype, MetaString(meta, "rotor.dtype"));
  Dtype want = Dtype::kF32;
  if (dtype == "F32") {
    h.dtype = WireDtype::kF32;
  } else if (dtype == "BF16") {
    h.dtype = WireDtype::kBF16;
    want = Dtype::kBF16;
  } else if (dtype == "F16") {
    h.dtype = WireDtype::kF16;
    want = Dtype::kF16;
  } else {
    return Status::Corruption("ready tensors: rotor.dtype '{}', want F32, BF16 or F16", dtype);
  }

  const TensorView* pos = file.Find("pos");
  if (pos == nullptr || pos->dtype != Dtype::kI64 || pos->shape.size() != 1) {
    return Status::Corruption("ready tensors: 'pos' must be a 1-d I64 tensor");
  }
  const int64_t rows = pos->shape[0];
  out.pos.resize(static_cast<std::size_t>(rows));
  if (rows > 0) {
    std::memcpy(out.pos.data(), pos->data.data(), pos->data.size());
  }
  for (int64_t i = 0; i < rows; ++i) {
    if (out.pos[static_cast<std::size_t>(i)] != h.next_pos - rows + i) {
      return Status::Corruption(
          "ready tensors: pos[{}] = {}, want {} (consecutive, ending at next_pos - 1 = {})", i,
          out.pos[static_cast<std::size_t>(i)], h.next_pos - rows + i, h.next_pos - 1);
    }
  }
  if (file.tensors.size() % 2 != 1 || file.tensors.size() < 3) {
    return Status::Corruption("ready tensors: {} tensors, want pos plus k.<b>/v.<b> pairs",
                              file.tensors.size());
  }
  const std::size_t n_blocks = (file.tensors.size() - 1) / 2;
  out.k.resize(n_blocks);
  out.v.resize(n_blocks);
  for (std::size_t b = 0; b < n_blocks; ++b) {
    for (std::size_t kv = 0; kv < 2; ++kv) {
      const std::string name = fmt::format("{}.{}", kv == 0 ? 'k' : 'v', b);
      const TensorView* t = file.Find(name);
      if (t == nullptr) {
        return Status::Corruption("ready tensors: tensor '{}' is missing", name);
      }
      if (t->dtype != want || t->shape.size() != 2 || t->shape[0] != rows || t->shape[1] <= 0 ||
          (out.d_model != 0 && t->shape[1] != out.d_model)) {
        return Status::Corruption(
            "ready tensors: tensor '{}' has dtype {} and shape [{}], want {} "
            "[{}, d_model]",
            name, internal::DtypeName(t->dtype), fmt::join(t->shape, ", "),
            internal::DtypeName(want), rows);
      }
      out.d_model = t->shape[1];
      ReadRows(t->data, t->dtype, kv == 0 ? out.k[b] : out.v[b]);
    }
  }
  return out;
}

}  // namespace rotor::encoders
