// HttpRequest over Boost.Beast's tcp_stream (a deadline over the whole exchange) and its
// HTTP/1.1 serializer and parser; ParseHttpUrl and PercentEncodeSegment by hand.

#include "api/client.h"

#include <charconv>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <fmt/core.h>

namespace rotor::api {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

// The outcome of one async step, for running the io_context until it is known.
struct Step {
  bool done = false;
  beast::error_code error;
};

}  // namespace

Result<HttpUrl> ParseHttpUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return Status::InvalidArgument("URL '{}': expected http://HOST:PORT", url);
  }
  std::string_view rest = url.substr(kScheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return Status::InvalidArgument("URL '{}': no query or fragment expected", url);
  }
  const std::size_t slash = rest.find('/');
  HttpUrl out;
  if (slash != std::string_view::npos) {
    std::string_view prefix = rest.substr(slash);
    while (prefix.ends_with('/')) {
      prefix.remove_suffix(1);
    }
    out.prefix = std::string(prefix);
    rest = rest.substr(0, slash);
  }
  std::string_view port;
  if (rest.starts_with('[')) {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return Status::InvalidArgument("URL '{}': an IPv6 address without its ']'", url);
    }
    out.host = std::string(rest.substr(1, close - 1));
    rest = rest.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) {
      return Status::InvalidArgument("URL '{}': expected ':PORT' after ']'", url);
    }
    port = rest.empty() ? std::string_view() : rest.substr(1);
  } else {
    const std::size_t colon = rest.rfind(':');
    out.host = std::string(rest.substr(0, colon));
    port = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
  }
  if (out.host.empty()) {
    return Status::InvalidArgument("URL '{}': no host", url);
  }
  if (!port.empty()) {
    unsigned value = 0;
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (error != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535) {
      return Status::InvalidArgument("URL '{}': port '{}' is not in 1..65535", url, port);
    }
    out.port = static_cast<uint16_t>(value);
  }
  return out;
}

std::string PercentEncodeSegment(std::string_view segment) {
  std::string out;
  for (const char c : segment) {
    const auto u = static_cast<unsigned char>(c);
    const bool unreserved = (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') ||
                            (u >= '0' && u <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    out += unreserved ? std::string(1, c) : fmt::format("%{:02X}", u);
  }
  return out;
}

Result<HttpResponse> HttpRequest(const HttpUrl& url, std::string_view method,
                                 std::string_view target, std::string_view body,
                                 const HttpOptions& options) {
  const std::string where = url.host.find(':') == std::string::npos
                                ? fmt::format("{}:{}", url.host, url.port)
                                : fmt::format("[{}]:{}", url.host, url.port);
  const auto failed = [&](std::string_view what, const beast::error_code& error) {
    return Status::Unavailable("HTTP {} {}{} on {}: {}: {}", method, url.prefix, target, where,
                               what, error.message());
  };
  try {
    net::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(options.timeout);
    // Each step runs the io_context until its handler ran; the stream's deadline cancels it.
    const auto run = [&io](Step& step) {
      io.restart();
      while (!step.done && io.run_one() > 0) {
      }
    };

    net::ip::tcp::resolver resolver(io);
    Step resolved;
    net::ip::tcp::resolver::results_type endpoints;
    resolver.async_resolve(url.host, std::to_string(url.port),
                           [&](const beast::error_code& e, net::ip::tcp::resolver::results_type r) {
                             resolved = {true, e};
                             endpoints = std::move(r);
                           });
    run(resolved);
    if (resolved.error) {
      return failed("resolving the host", resolved.error);
    }
    Step connected;
    stream.async_connect(endpoints, [&](const beast::error_code& e, const auto& /*endpoint*/) {
      connected = {true, e};
    });
    run(connected);
    if (connected.error) {
      return failed("connecting", connected.error);
    }

    http::request<http::string_body> request(
        http::string_to_verb(beast::string_view(method.data(), method.size())),
        url.prefix + std::string(target), 11);
    request.set(http::field::host, where);
    request.set(http::field::user_agent, "rotor");
    request.set(http::field::connection, "close");
    for (const auto& [name, value] : options.headers) {
      request.set(name, value);
    }
    if (!body.empty() || method == "POST") {
      request.set(http::field::content_type, "application/json");
      request.body() = std::string(body);
      request.prepare_payload();
    }
    Step sent;
    http::async_write(stream, request, [&](const beast::error_code& e, std::size_t /*n*/) {
      sent = {true, e};
    });
    run(sent);
    if (sent.error) {
      return failed("sending", sent.error);
    }

    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(static_cast<uint64_t>(options.max_body_bytes));
    Step received;
    http::async_read(stream, buffer, parser, [&](const beast::error_code& e, std::size_t /*n*/) {
      received = {true, e};
    });
    run(received);
    if (received.error) {
      return failed("reading the response", received.error);
    }
    beast::error_code ignored;
    stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);

    const http::response<http::string_body>& response = parser.get();
    HttpResponse out;
    out.status = static_cast<int>(response.result_int());
    out.content_type = std::string(response[http::field::content_type]);
    out.body = response.body();
    for (const auto& field : response) {
      const http::field name = field.name();
      if (name != http::field::content_type && name != http::field::content_length &&
          name != http::field::connection && name != http::field::transfer_encoding) {
        out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
      }
    }
    return out;
  } catch (const std::exception& e) {
    return Status::Unavailable("HTTP {} {}{} on {}: {}", method, url.prefix, target, where,
                               e.what());
  }
}

std::function<Result<Response>(std::string_view url, const Request& request)> HttpForwarder(
    const ForwarderOptions& options) {
  // What every copy of the function shares: the forwards in flight, and the owners that failed
  // lately (when, and why).
  struct Shared {
    std::mutex mu;
    int in_flight = 0;
    std::map<std::string, std::pair<std::chrono::steady_clock::time_point, std::string>,
             std::less<>>
        failed;
  };
  auto shared = std::make_shared<Shared>();
  return [options, shared](std::string_view url, const Request& request) -> Result<Response> {
    ROTOR_ASSIGN_OR_RETURN(const HttpUrl owner, ParseHttpUrl(url));
    const auto now = std::chrono::steady_clock::now();
    {
      const std::lock_guard<std::mutex> lock(shared->mu);
      if (const auto f = shared->failed.find(url); f != shared->failed.end()) {
        const auto ago = now - f->second.first;
        if (ago < options.cooldown) {
          return Status::Unavailable(
              "it failed {} ms ago ({}); not asked again for {} ms",
              std::chrono::duration_cast<std::chrono::milliseconds>(ago).count(), f->second.second,
              options.cooldown.count());
        }
        shared->failed.erase(f);
      }
      if (shared->in_flight >= options.max_in_flight) {
        return Status::ResourceExhausted(
            "{} requests are being forwarded already, the most at once (api.threads - 1)",
            shared->in_flight);
      }
      ++shared->in_flight;
    }
    HttpOptions http;
    http.timeout = options.timeout;
    http.headers = {{"X-Rotor-Forwarded", "1"}};
    Result<HttpResponse> answer =
        HttpRequest(owner, request.method, request.target, request.body, http);
    {
      const std::lock_guard<std::mutex> lock(shared->mu);
      --shared->in_flight;
      if (!answer.ok()) {
        shared->failed[std::string(url)] = {std::chrono::steady_clock::now(),
                                            std::string(answer.status().message())};
      }
    }
    if (!answer.ok()) {
      return std::move(answer).status();
    }
    Response response;
    response.status = answer->status;
    response.content_type = std::move(answer->content_type);
    response.body = std::move(answer->body);
    for (auto& [name, value] : answer->headers) {
      if (beast::iequals(name, "Retry-After") ||
          (name.size() > 8 && beast::iequals(name.substr(0, 8), "X-Rotor-"))) {
        response.headers.emplace_back(std::move(name), std::move(value));
      }
    }
    response.headers.emplace_back("X-Rotor-Served-By", std::string(url));
    return response;
  };
}

}  // namespace rotor::api
