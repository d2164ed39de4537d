#include "api/internal/target.h"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace rotor::api::internal {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

}  // namespace

std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) {  // Fewer than two characters follow.
        return std::nullopt;
      }
      const int hi = HexValue(text[i + 1]);
      const int lo = HexValue(text[i + 2]);
      if (hi < 0 || lo < 0) {
        return std::nullopt;
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<Target> ParseTarget(std::string_view target, std::string& why) {
  if (target.empty() || target.front() != '/') {
    why = "the request target must be a path starting with '/'";
    return std::nullopt;
  }
  Target out;
  std::string_view path = target;
  std::string_view query;
  if (const std::size_t q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  if (const std::size_t hash = query.find('#'); hash != std::string_view::npos) {
    query = query.substr(0, hash);  // A fragment is not sent by clients; ignore one that is.
  }
  path.remove_prefix(1);
  while (true) {
    const std::size_t slash = path.find('/');
    out.segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) {
      break;
    }
    path.remove_prefix(slash + 1);
  }
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) {
      continue;
    }
    const std::size_t eq = pair.find('=');
    auto key = PercentDecode(pair.substr(0, eq), true);
    auto value = PercentDecode(
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
    if (!key || !value) {
      why = "the query string has a '%' not followed by two hex digits";
      return std::nullopt;
    }
    out.query.emplace_back(std::move(*key), std::move(*value));
  }
  return out;
}

}  // namespace rotor::api::internal
