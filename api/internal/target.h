// The request target of the API's routes: path segments and query parameters.

#ifndef ROTOR_API_INTERNAL_TARGET_H_
#define ROTOR_API_INTERNAL_TARGET_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rotor::api::internal {

// `text` with every %XX replaced by its byte (and, when `plus_is_space`, '+' by ' ', as query
// strings write spaces); nullopt for a '%' not followed by two hex digits.
std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space);

// An origin-form target split into its raw path segments ("/v1/users/a%2Fb" -> "v1", "users",
// "a%2Fb": a segment is decoded only where it is used, so an encoded '/' stays inside its
// segment) and its decoded query parameters, in order.
struct Target {
  std::vector<std::string_view> segments;
  std::vector<std::pair<std::string, std::string>> query;
};

// nullopt, with `why` set, for a target that does not start with '/' or whose query does not
// percent-decode.
std::optional<Target> ParseTarget(std::string_view target, std::string& why);

}  // namespace rotor::api::internal

#endif  // ROTOR_API_INTERNAL_TARGET_H_
