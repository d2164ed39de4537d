#include "encoders/internal/py_format.h"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>
#include <system_error>

namespace rotor::encoders::internal {
namespace {

// Decodes the UTF-8 sequence at s[i]; on success stores the code point, advances i and
// returns true. Rejects what Python's strict UTF-8 decoder rejects.
bool NextCodePoint(std::string_view s, std::size_t& i, char32_t& cp) {
  const auto byte = [&](std::size_t k) {
    return static_cast<unsigned char>(s[k]);
  };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    cp = b0;
    i += 1;
    return true;
  }
  std::size_t len = 0;
  char32_t min = 0;
  if ((b0 & 0xE0U) == 0xC0U) {
    len = 2;
    cp = b0 & 0x1FU;
    min = 0x80;
  } else if ((b0 & 0xF0U) == 0xE0U) {
    len = 3;
    cp = b0 & 0x0FU;
    min = 0x800;
  } else if ((b0 & 0xF8U) == 0xF0U) {
    len = 4;
    cp = b0 & 0x07U;
    min = 0x10000;
  } else {
    return false;
  }
  if (s.size() - i < len) {
    return false;
  }
  for (std::size_t k = 1; k < len; ++k) {
    const unsigned char b = byte(i + k);
    if ((b & 0xC0U) != 0x80U) {
      return false;
    }
    cp = (cp << 6U) | (b & 0x3FU);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return false;
  }
  i += len;
  return true;
}

void AppendHex(std::string& out, unsigned value, int digits) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) {
    out.push_back(kHex[(value >> static_cast<unsigned>(shift)) & 0xFU]);
  }
}

}  // namespace

std::string PyFloatRepr(double v) {
  if (std::isnan(v)) {
    return "nan";
  }
  if (std::isinf(v)) {
    return v < 0 ? "-inf" : "inf";
  }
  // Shortest round-trip digits in scientific form: "-d.ddde+XX".
  std::array<char, 64> buf{};
  const auto [end, ec] =
      std::to_chars(buf.data(), buf.data() + buf.size(), v, std::chars_format::scientific);
  if (ec != std::errc()) {
    return "?";  // Unreachable: 64 bytes hold any double.
  }
  const std::string_view sci(buf.data(), static_cast<std::size_t>(end - buf.data()));
  std::string out;
  std::size_t pos = 0;
  if (sci[0] == '-') {
    out.push_back('-');
    pos = 1;
  }
  const std::size_t e_pos = sci.find('e');
  std::string digits;
  for (std::size_t k = pos; k < e_pos; ++k) {
    if (sci[k] != '.') {
      digits.push_back(sci[k]);
    }
  }
  const int exponent = std::atoi(std::string(sci.substr(e_pos + 1)).c_str());
  const int decpt = exponent + 1;  // Digits before the decimal point in fixed notation.
  const int n = static_cast<int>(digits.size());
  if (decpt > -4 && decpt <= 16) {  // Python's repr: fixed notation in this range.
    if (decpt <= 0) {
      out += "0.";
      out.append(static_cast<std::size_t>(-decpt), '0');
      out += digits;
    } else if (decpt >= n) {
      out += digits;
      out.append(static_cast<std::size_t>(decpt - n), '0');
      out += ".0";
    } else {
      out += digits.substr(0, static_cast<std::size_t>(decpt));
      out.push_back('.');
      out += digits.substr(static_cast<std::size_t>(decpt));
    }
    return out;
  }
  out.push_back(digits[0]);
  if (n > 1) {
    out.push_back('.');
    out += digits.substr(1);
  }
  out.push_back('e');
  out.push_back(exponent < 0 ? '-' : '+');
  const int mag = std::abs(exponent);
  if (mag < 10) {
    out.push_back('0');
  }
  out += std::to_string(mag);
  return out;
}

std::string PyStrRepr(std::string_view utf8) {
  const bool has_single = utf8.find('\'') != std::string_view::npos;
  const bool has_double = utf8.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out;
  out.reserve(utf8.size() + 2);
  out.push_back(quote);
  std::size_t i = 0;
  while (i < utf8.size()) {
    char32_t cp = 0;
    const std::size_t start = i;
    if (!NextCodePoint(utf8, i, cp)) {
      // Not UTF-8 (Python strings always are): show the byte, as bytes' repr would.
      out += "\\x";
      AppendHex(out, static_cast<unsigned char>(utf8[start]), 2);
      i = start + 1;
      continue;
    }
    if (cp == '\\') {
      out += "\\\\";
    } else if (cp == static_cast<char32_t>(quote)) {
      out.push_back('\\');
      out.push_back(quote);
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
      out += "\\x";
      AppendHex(out, static_cast<unsigned>(cp), 2);
    } else {
      out.append(utf8.substr(start, i - start));
    }
  }
  out.push_back(quote);
  return out;
}

std::string PyIntList(std::span<const int64_t> values) {
  std::string out = "[";
  for (std::size_t k = 0; k < values.size(); ++k) {
    if (k > 0) {
      out += ", ";
    }
    out += std::to_string(values[k]);
  }
  out.push_back(']');
  return out;
}

std::size_t FirstInvalidUtf8(std::string_view bytes) {
  std::size_t i = 0;
  char32_t cp = 0;
  while (i < bytes.size()) {
    if (!NextCodePoint(bytes, i, cp)) {
      return i;
    }
  }
  return std::string_view::npos;
}

bool IsValidUtf8(std::string_view bytes) {
  return FirstInvalidUtf8(bytes) == std::string_view::npos;
}

bool AppendPyJsonString(std::string& out, std::string_view utf8) {
  out.push_back('"');
  std::size_t i = 0;
  while (i < utf8.size()) {
    char32_t cp = 0;
    if (!NextCodePoint(utf8, i, cp)) {
      return false;
    }
    switch (cp) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (cp >= 0x20 && cp <= 0x7E) {
          out.push_back(static_cast<char>(cp));
        } else if (cp <= 0xFFFF) {
          out += "\\u";
          AppendHex(out, static_cast<unsigned>(cp), 4);
        } else {
          const char32_t v = cp - 0x10000;
          out += "\\u";
          AppendHex(out, static_cast<unsigned>(0xD800 + (v >> 10U)), 4);
          out += "\\u";
          AppendHex(out, static_cast<unsigned>(0xDC00 + (v & 0x3FFU)), 4);
        }
    }
  }
  out.push_back('"');
  return true;
}

}  // namespace rotor::encoders::internal
