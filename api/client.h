// A small blocking HTTP/1.1 client of rotor's API, for `rotor inspect --url` and tests: one
// request per connection, no TLS, no redirects, no chunked request bodies. It lives in api/
// because Boost.Beast does (tools/lint.sh keeps boost/beast in this module).
//
// Lifecycle: nothing kept between calls. Concurrency: every function is thread-safe.
// Limitations: plain http:// only; a response body is read whole into memory (capped at
// HttpOptions::max_body_bytes).

#ifndef ROTOR_API_CLIENT_H_
#define ROTOR_API_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/router.h"
#include "common/status.h"

namespace rotor::api {

// Where the API is: "http://HOST:PORT" with an optional path prefix ("http://h:8470/rotor").
struct HttpUrl {
  std::string host;  // A name or an address; an IPv6 address without its brackets.
  uint16_t port = 80;
  std::string prefix;  // "" or "/rotor" (no trailing slash): put before every request path.
};

// InvalidArgument naming what is wrong: not http://, no host, a bad port, a query or fragment.
Result<HttpUrl> ParseHttpUrl(std::string_view url);

// `segment` percent-encoded for one path segment (RFC 3986 unreserved bytes stay as they are):
// a user id in /v1/users/{id}.
std::string PercentEncodeSegment(std::string_view segment);

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
  // Every header but Content-Type, Content-Length, Connection and Transfer-Encoding, in order.
  std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpOptions {
  std::chrono::milliseconds timeout{10000};  // Resolve, connect, send and receive, in all.
  int64_t max_body_bytes = int64_t{256} << 20;
  std::vector<std::pair<std::string, std::string>> headers;  // Extra request headers.
};

// Sends one request (`target` is the path and query after the URL's prefix) and reads the
// whole response, whatever its status. Unavailable when the host cannot be resolved or
// reached, or the exchange fails or times out (naming host:port); Corruption for a response
// that is not HTTP.
Result<HttpResponse> HttpRequest(const HttpUrl& url, std::string_view method,
                                 std::string_view target, std::string_view body = {},
                                 const HttpOptions& options = {});

// ApiContext::forward over HTTP (config api.forward: proxy): sends the request to the owner's
// API at `url` + the request's target with header X-Rotor-Forwarded: 1, within
// `options.timeout`, and returns the owner's status, content type, body and its X-Rotor-* and
// Retry-After headers, plus X-Rotor-Served-By: `url`. Unavailable when the owner did not answer
// (or `url` is not an http:// URL).
//
// A frozen or unreachable owner must not take the asking instance's API down with it (a
// server thread waits for each forward; /healthz and /readyz share those threads):
//   - at most `max_in_flight` forwards at once; one more is refused at once
//     (ResourceExhausted), so the server keeps threads for everything else;
//   - an owner that failed is not asked again for `cooldown` (Unavailable at once, naming the
//     failure), so requests for its users do not each wait out the timeout.
// Thread-safe: the returned function is called from every server thread.
struct ForwarderOptions {
  std::chrono::milliseconds timeout{2000};
  int max_in_flight = 1;
  std::chrono::milliseconds cooldown{1000};
};
std::function<Result<Response>(std::string_view url, const Request& request)> HttpForwarder(
    const ForwarderOptions& options);

}  // namespace rotor::api

#endif  // ROTOR_API_CLIENT_H_
