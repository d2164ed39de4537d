// JSON plumbing shared by the config and safetensors parsers: nlohmann-json with insertion
// order kept (so the first bad field is the one Python reports first), a nesting-depth guard,
// and Python's spellings of JSON values for error messages.

#ifndef ROTOR_ENCODERS_INTERNAL_JSON_UTIL_H_
#define ROTOR_ENCODERS_INTERNAL_JSON_UTIL_H_

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace rotor::encoders::internal {

// Objects keep their keys in document order, as Python's dict does (a repeated key keeps its
// first position and its last value, also as in Python).
using Json = nlohmann::ordered_json;

// Deepest nesting of arrays/objects the parsers accept. A legitimate bundle header nests 3
// deep and a config 4; the bound keeps hostile input from building millions of nested nodes.
inline constexpr int kMaxJsonDepth = 64;

// Parses `text` as one JSON value (surrounding whitespace allowed; a leading UTF-8 byte order
// mark is refused, as Python's json.loads does). On failure returns InvalidArgument with
// nlohmann's description ("syntax error while parsing value - invalid literal; last read:
// 'x'"), or "nesting deeper than 64 levels".
Result<Json> ParseJson(std::string_view text);

// json.dumps(value) with Python's default separators (", ", ": ") and ensure_ascii, cut to at
// most `max_chars` characters like Python's `[:max_chars]`.
std::string PyJsonDumps(const Json& value, std::size_t max_chars);

// repr() of the Python object json.loads would make of `value` ('F8', 5, None, True,
// ['a', 1], {'k': 2}), cut to at most `max_chars` characters (Python never cuts; only
// pathological values reach the bound).
std::string PyRepr(const Json& value, std::size_t max_chars = 200);

// True when `value` is a JSON integer (not a float, not a bool) that fits int64; stores it.
bool GetInt64(const Json& value, int64_t& out);

}  // namespace rotor::encoders::internal

#endif  // ROTOR_ENCODERS_INTERNAL_JSON_UTIL_H_
