// Python's spellings of values, so that error messages and canonical JSON read the same as
// the PyTorch reference writes them: repr(float), repr(str), json.dumps(str) (ensure_ascii).

#ifndef ROTOR_ENCODERS_INTERNAL_PY_FORMAT_H_
#define ROTOR_ENCODERS_INTERNAL_PY_FORMAT_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace rotor::encoders::internal {

// repr(float): the shortest digits that round-trip, "1.0" for integral values, exponent form
// ("1e-05", "1e+16") outside 1e-4 <= |v| < 1e16, and "nan", "inf", "-inf".
std::string PyFloatRepr(double v);

// repr(str) of UTF-8 text: single quotes unless the text has a ' and no ", backslash escapes
// for \\, the quote, \t \n \r, \xNN for the C0/C1 control characters and DEL. Other
// non-printable code points (which Python would escape) are copied as is.
std::string PyStrRepr(std::string_view utf8);

// "[a, b, c]": str() of a Python list of ints (a shape).
std::string PyIntList(std::span<const int64_t> values);

// True when `bytes` is well-formed UTF-8 as Python's strict decoder sees it: no overlong
// forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequences.
bool IsValidUtf8(std::string_view bytes);
// The offset of the first byte that starts an invalid sequence, or npos when valid.
std::size_t FirstInvalidUtf8(std::string_view bytes);

// Appends json.dumps(s) with ensure_ascii: a quoted string with \" \\ \b \f \n \r \t, every
// other code point outside 0x20..0x7E as \uXXXX (lowercase hex; UTF-16 surrogate pairs above
// U+FFFF). Returns false, leaving `out` partly written, when `utf8` is not valid UTF-8.
bool AppendPyJsonString(std::string& out, std::string_view utf8);

}  // namespace rotor::encoders::internal

#endif  // ROTOR_ENCODERS_INTERNAL_PY_FORMAT_H_
