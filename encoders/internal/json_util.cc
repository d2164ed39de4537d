#include "encoders/internal/json_util.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "encoders/internal/py_format.h"

namespace rotor::encoders::internal {
namespace {

// Deepest array/object nesting in `text`, counting brackets outside strings; stops counting
// once `limit` is passed.
int NestingDepth(std::string_view text, int limit) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      ++depth;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) {
          return deepest;
        }
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// Shared walker for PyJsonDumps and PyRepr: stops descending once `out` holds `max_chars`,
// so neither depth nor size of `value` matters.
class PyWriter {
 public:
  PyWriter(bool repr, std::size_t max_chars) : repr_(repr), max_chars_(max_chars) {}

  void Write(const Json& v) {
    if (Full()) {
      return;
    }
    switch (v.type()) {
      case Json::value_t::null:
        out_ += repr_ ? "None" : "null";
        break;
      case Json::value_t::boolean:
        if (repr_) {
          out_ += v.get<bool>() ? "True" : "False";
        } else {
          out_ += v.get<bool>() ? "true" : "false";
        }
        break;
      case Json::value_t::number_integer:
        out_ += std::to_string(v.get<int64_t>());
        break;
      case Json::value_t::number_unsigned:
        out_ += std::to_string(v.get<uint64_t>());
        break;
      case Json::value_t::number_float:
        WriteFloat(v.get<double>());
        break;
      case Json::value_t::string:
        WriteString(v.get_ref<const std::string&>());
        break;
      case Json::value_t::array: {
        out_.push_back('[');
        bool first = true;
        for (const Json& item : v) {
          if (Full()) {
            return;
          }
          if (!first) {
            out_ += ", ";
          }
          first = false;
          Write(item);
        }
        out_.push_back(']');
        break;
      }
      case Json::value_t::object: {
        out_.push_back('{');
        bool first = true;
        for (const auto& [key, item] : v.items()) {
          if (Full()) {
            return;
          }
          if (!first) {
            out_ += ", ";
          }
          first = false;
          WriteString(key);
          out_ += ": ";
          Write(item);
        }
        out_.push_back('}');
        break;
      }
      case Json::value_t::binary:
      case Json::value_t::discarded:
        out_ += "?";
        break;
    }
  }

  std::string Take() && {
    if (out_.size() > max_chars_) {
      out_.resize(max_chars_);
    }
    return std::move(out_);
  }

 private:
  bool Full() const { return out_.size() >= max_chars_; }

  void WriteFloat(double d) {
    if (!repr_ && std::isnan(d)) {
      out_ += "NaN";
    } else if (!repr_ && std::isinf(d)) {
      out_ += d < 0 ? "-Infinity" : "Infinity";
    } else {
      out_ += PyFloatRepr(d);
    }
  }

  void WriteString(const std::string& s) {
    if (repr_) {
      out_ += PyStrRepr(s);
      return;
    }
    std::string quoted;
    if (!AppendPyJsonString(quoted, s)) {
      quoted = "\"?\"";  // Unreachable: nlohmann only produces valid UTF-8 strings.
    }
    out_ += quoted;
  }

  bool repr_;
  std::size_t max_chars_;
  std::string out_;
};

}  // namespace

Result<Json> ParseJson(std::string_view text) {
  // nlohmann skips a leading byte order mark; Python's json.loads refuses it.
  if (text.starts_with("\xEF\xBB\xBF")) {
    return Status::InvalidArgument("Unexpected UTF-8 BOM: line 1 column 1 (char 0)");
  }
  if (NestingDepth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    return Status::InvalidArgument("nesting deeper than {} levels", kMaxJsonDepth);
  }
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> after "] ".
    std::string_view what = e.what();
    if (const std::size_t cut = what.find("] "); cut != std::string_view::npos) {
      what.remove_prefix(cut + 2);
    }
    return Status::InvalidArgument("{}", what);
  }
}

std::string PyJsonDumps(const Json& value, std::size_t max_chars) {
  PyWriter writer(/*repr=*/false, max_chars);
  writer.Write(value);
  return std::move(writer).Take();
}

std::string PyRepr(const Json& value, std::size_t max_chars) {
  PyWriter writer(/*repr=*/true, max_chars);
  writer.Write(value);
  return std::move(writer).Take();
}

bool GetInt64(const Json& value, int64_t& out) {
  if (value.is_number_unsigned()) {
    const auto u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return false;
    }
    out = static_cast<int64_t>(u);
    return true;
  }
  if (value.is_number_integer()) {
    out = value.get<int64_t>();
    return true;
  }
  return false;
}

}  // namespace rotor::encoders::internal
