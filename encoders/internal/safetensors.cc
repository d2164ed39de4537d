#include "encoders/internal/safetensors.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "encoders/internal/json_util.h"
#include "encoders/internal/py_format.h"

namespace rotor::encoders::internal {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host needs byte swaps here");

constexpr std::array<std::pair<std::string_view, Dtype>, 7> kDtypes = {{
    {"F64", Dtype::kF64},
    {"F32", Dtype::kF32},
    {"F16", Dtype::kF16},
    {"BF16", Dtype::kBF16},
    {"I64", Dtype::kI64},
    {"I32", Dtype::kI32},
    {"U8", Dtype::kU8},
}};

constexpr std::string_view kMetadataKey = "__metadata__";

// numel(shape) * itemsize, or false when it does not fit in uint64.
bool ByteSize(std::span<const int64_t> shape, std::size_t itemsize, uint64_t& out) {
  uint64_t bytes = itemsize;
  for (const int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes)) {
      return false;
    }
  }
  out = bytes;
  return true;
}

// Python's `x or {}` for the metadata value: every falsy JSON value means "no metadata".
bool IsFalsy(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return true;
    case Json::value_t::boolean:
      return !v.get<bool>();
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      return v.get<double>() == 0.0;
    case Json::value_t::string:
      return v.get_ref<const std::string&>().empty();
    case Json::value_t::array:
    case Json::value_t::object:
      return v.empty();
    case Json::value_t::binary:
    case Json::value_t::discarded:
      return false;
  }
  return false;
}

Status ParseMetadata(const Json& header, SafetensorsMetadata& out) {
  const auto it = header.find(kMetadataKey);
  if (it == header.end() || IsFalsy(*it)) {
    return Status::OK();
  }
  if (!it->is_object()) {
    return Status::Corruption("__metadata__ must map strings to strings");
  }
  for (const auto& [key, value] : it->items()) {
    if (!value.is_string()) {
      return Status::Corruption("__metadata__ must map strings to strings");
    }
    out.insert_or_assign(key, value.get<std::string>());
  }
  return Status::OK();
}

// One header entry, checked in the order of Python's decode().
Status ParseEntry(const std::string& name, const Json& info, std::span<const std::byte> data,
                  TensorView& view, uint64_t& begin, uint64_t& end) {
  const std::string where = fmt::format("tensor '{}'", name);
  if (!info.is_object() || info.size() != 3 || !info.contains("dtype") || !info.contains("shape") ||
      !info.contains("data_offsets")) {
    return Status::Corruption("{}: entry needs exactly dtype, shape, data_offsets", where);
  }
  const Json& dtype = info["dtype"];
  const Json& shape = info["shape"];
  const Json& offsets = info["data_offsets"];

  const auto* const known = std::find_if(kDtypes.begin(), kDtypes.end(), [&](const auto& d) {
    return dtype.is_string() && dtype.get_ref<const std::string&>() == d.first;
  });
  if (known == kDtypes.end()) {
    return Status::Corruption("{}: unsupported dtype {}", where, PyRepr(dtype));
  }
  view.name = name;
  view.dtype = known->second;

  bool shape_ok = shape.is_array();
  bool shape_fits = true;  // Every dimension fits int64 (Python ints never overflow).
  if (shape_ok) {
    view.shape.reserve(shape.size());
    for (const Json& d : shape) {
      int64_t v = 0;
      if (!d.is_number_integer() || (!d.is_number_unsigned() && d.get<int64_t>() < 0)) {
        shape_ok = false;
        break;
      }
      if (!GetInt64(d, v)) {
        shape_fits = false;
        v = std::numeric_limits<int64_t>::max();
      }
      view.shape.push_back(v);
    }
  }
  if (!shape_ok) {
    return Status::Corruption("{}: shape must be a list of non-negative integers", where);
  }
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_integer() ||
      !offsets[1].is_number_integer()) {
    return Status::Corruption("{}: data_offsets must be two integers", where);
  }
  const auto negative = [](const Json& v) {
    return !v.is_number_unsigned() && v.get<int64_t>() < 0;
  };
  if (negative(offsets[0]) || negative(offsets[1]) ||
      offsets[0].get<uint64_t>() > offsets[1].get<uint64_t>()) {
    return Status::Corruption("{}: data_offsets [{}, {}] are not ordered", where,
                              PyJsonDumps(offsets[0], 40), PyJsonDumps(offsets[1], 40));
  }
  begin = offsets[0].get<uint64_t>();
  end = offsets[1].get<uint64_t>();
  if (end > data.size()) {
    return Status::Corruption("truncated: {} ends at byte {} of a {}-byte data region", where, end,
                              data.size());
  }
  const std::size_t itemsize = DtypeSize(view.dtype);
  uint64_t want = 0;
  if (!shape_fits || !ByteSize(view.shape, itemsize, want)) {
    return Status::Corruption("{}: shape {} of {} does not fit in 64-bit byte counts", where,
                              PyJsonDumps(shape, 200), DtypeName(view.dtype));
  }
  if (end - begin != want) {
    return Status::Corruption("{}: {} bytes for shape {} of {} ({} expected)", where, end - begin,
                              PyIntList(view.shape), DtypeName(view.dtype), want);
  }
  view.data = data.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(want));
  return Status::OK();
}

void AppendU64Le(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<char>((v >> (8U * static_cast<unsigned>(i))) & 0xFFU));
  }
}

}  // namespace

std::string_view DtypeName(Dtype dtype) {
  for (const auto& [name, d] : kDtypes) {
    if (d == dtype) {
      return name;
    }
  }
  return "?";
}

std::size_t DtypeSize(Dtype dtype) {
  switch (dtype) {
    case Dtype::kF64:
    case Dtype::kI64:
      return 8;
    case Dtype::kF32:
    case Dtype::kI32:
      return 4;
    case Dtype::kF16:
    case Dtype::kBF16:
      return 2;
    case Dtype::kU8:
      return 1;
  }
  return 1;
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  for (const TensorView& t : tensors) {
    if (t.name == name) {
      return &t;
    }
  }
  return nullptr;
}

Result<SafetensorsFile> ParseSafetensors(std::span<const std::byte> bytes) {
  if (bytes.size() < 8) {
    return Status::Corruption("truncated: file is {} bytes, the header length needs 8",
                              bytes.size());
  }
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), sizeof(n));  // Little-endian host (static_assert above).
  if (n > kMaxSafetensorsHeaderBytes) {
    return Status::Corruption("header length {} exceeds the {}-byte limit", n,
                              kMaxSafetensorsHeaderBytes);
  }
  if (n > bytes.size() - 8) {
    return Status::Corruption("truncated: header claims {} bytes but only {} follow", n,
                              bytes.size() - 8);
  }
  const auto header_len = static_cast<std::size_t>(n);
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, header_len);
  if (const std::size_t bad = FirstInvalidUtf8(text); bad != std::string_view::npos) {
    return Status::Corruption("header is not valid UTF-8 JSON: invalid UTF-8 at byte {}", bad);
  }
  auto parsed = ParseJson(text);
  if (!parsed.ok()) {
    return Status::Corruption("header is not valid UTF-8 JSON: {}", parsed.status().message());
  }
  const Json& header = *parsed;
  if (!header.is_object()) {
    return Status::Corruption("header must be a JSON object");
  }
  const std::span<const std::byte> data = bytes.subspan(8 + header_len);

  SafetensorsFile file;
  ROTOR_RETURN_IF_ERROR(ParseMetadata(header, file.metadata));

  std::vector<std::tuple<uint64_t, uint64_t, std::string_view>> spans;
  file.tensors.reserve(header.size());
  for (const auto& [name, info] : header.items()) {
    if (name == kMetadataKey) {
      continue;
    }
    TensorView view;
    uint64_t begin = 0;
    uint64_t end = 0;
    ROTOR_RETURN_IF_ERROR(ParseEntry(name, info, data, view, begin, end));
    file.tensors.push_back(std::move(view));
    spans.emplace_back(begin, end, name);
  }
  std::sort(spans.begin(), spans.end());
  uint64_t pos = 0;
  for (const auto& [begin, end, name] : spans) {
    if (begin != pos) {
      return Status::Corruption("tensor '{}': data starts at {}, expected {} (gap or overlap)",
                                name, begin, pos);
    }
    pos = end;
  }
  if (pos != data.size()) {
    return Status::Corruption("data region has {} trailing bytes past the last tensor",
                              data.size() - pos);
  }
  return file;
}

Result<std::string> EncodeSafetensors(std::span<const TensorView> tensors,
                                      const SafetensorsMetadata& metadata) {
  // Header keys in Python's sort order (code points == UTF-8 bytes), "__metadata__" among them.
  std::vector<std::string_view> keys;
  keys.reserve(tensors.size() + 1);
  std::vector<const TensorView*> by_name;
  by_name.reserve(tensors.size());
  std::set<std::string_view> seen;
  for (const TensorView& t : tensors) {
    if (t.name == kMetadataKey) {
      return Status::InvalidArgument("'__metadata__' is reserved and cannot name a tensor");
    }
    if (!seen.insert(t.name).second) {
      return Status::InvalidArgument("tensor '{}': name given twice", t.name);
    }
    uint64_t want = 0;
    if (!ByteSize(t.shape, DtypeSize(t.dtype), want) || want != t.data.size()) {
      return Status::InvalidArgument("tensor '{}': {} bytes for shape {} of {}", t.name,
                                     t.data.size(), PyIntList(t.shape), DtypeName(t.dtype));
    }
    by_name.push_back(&t);
  }
  std::sort(by_name.begin(), by_name.end(),
            [](const TensorView* a, const TensorView* b) { return a->name < b->name; });

  std::string header = "{";
  bool first = true;
  const auto key = [&](std::string_view k) -> Status {
    if (!first) {
      header.push_back(',');
    }
    first = false;
    if (!AppendPyJsonString(header, k)) {
      return Status::InvalidArgument("name {} is not UTF-8", PyStrRepr(k));
    }
    header.push_back(':');
    return Status::OK();
  };
  const auto write_metadata = [&]() -> Status {
    ROTOR_RETURN_IF_ERROR(key(kMetadataKey));
    header.push_back('{');
    bool first_entry = true;
    for (const auto& [k, v] : metadata) {
      if (!first_entry) {
        header.push_back(',');
      }
      first_entry = false;
      if (!AppendPyJsonString(header, k)) {
        return Status::InvalidArgument("metadata key {} is not UTF-8", PyStrRepr(k));
      }
      header.push_back(':');
      if (!AppendPyJsonString(header, v)) {
        return Status::InvalidArgument("metadata value of {} is not UTF-8", PyStrRepr(k));
      }
    }
    header.push_back('}');
    return Status::OK();
  };

  bool metadata_written = metadata.empty();
  uint64_t offset = 0;
  for (const TensorView* t : by_name) {
    if (!metadata_written && std::string_view(t->name) > kMetadataKey) {
      ROTOR_RETURN_IF_ERROR(write_metadata());
      metadata_written = true;
    }
    ROTOR_RETURN_IF_ERROR(key(t->name));
    const uint64_t end = offset + t->data.size();
    header += fmt::format(R"({{"data_offsets":[{},{}],"dtype":"{}","shape":[{}]}})", offset, end,
                          DtypeName(t->dtype), fmt::join(t->shape, ","));
    offset = end;
  }
  if (!metadata_written) {
    ROTOR_RETURN_IF_ERROR(write_metadata());
  }
  header.push_back('}');
  header.append((8 - header.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + header.size() + offset);
  AppendU64Le(out, header.size());
  out += header;
  for (const TensorView* t : by_name) {
    if (!t->data.empty()) {
      out.append(reinterpret_cast<const char*>(t->data.data()), t->data.size());
    }
  }
  return out;
}

}  // namespace rotor::encoders::internal
