// Server: rotor's HTTP/1.1 API on the wire (Boost.Asio/Beast), on its own threads, in front
// of one api::Router per thread. docs/api.md describes the endpoints; this file the transport:
// keep-alive, pipelining, a bounded number of connections, timeouts, size limits, graceful
// stop, request metrics.

#ifndef ROTOR_API_SERVER_H_
#define ROTOR_API_SERVER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "api/router.h"
#include "common/status.h"
#include "config/daemon_config.h"

namespace rotor::api {

struct ServerOptions {
  std::string address = "127.0.0.1";  // An IPv4 or IPv6 address (no brackets, no host names).
  uint16_t port = 8470;               // 0: a free port (Server::port() says which).
  int threads = 2;                    // Server threads, each with its own Router.
  int max_connections = 256;          // Open connections; one more gets a 503 and is closed.
  // Longest one request may take to arrive once its first byte has (then 408 and close); also
  // how long a new connection may wait before its first request starts (then it is closed).
  std::chrono::milliseconds read_timeout{5000};
  // Longest one response may take to be sent (then the connection is closed).
  std::chrono::milliseconds write_timeout{5000};
  // A keep-alive connection waiting this long for its next request is closed.
  std::chrono::milliseconds idle_timeout{60000};
  int64_t max_header_bytes = int64_t{16} << 10;  // Larger request headers: 431 and close.
  int64_t max_body_bytes = int64_t{8} << 20;     // Larger request bodies: 413 and close.
};

// The server options and limits the `api` config section sets (listen parsed into address and
// port; the limits go to ApiContext::limits).
ServerOptions ServerOptionsFromConfig(const config::ApiOptions& api);
ApiLimits ApiLimitsFromConfig(const config::ApiOptions& api);

// The HTTP server.
//
// Metrics it registers in ApiContext::metrics: rotor_api_requests_total{route,status} and
// rotor_api_request_seconds{route,status} (from the request's last byte read to the
// response's last byte written), rotor_api_connections (open now) and
// rotor_api_connections_refused_total (over max_connections).
//
// Lifecycle: Start binds, listens and starts the threads; Stop (or destruction) stops
// accepting, closes idle connections and connections still reading a request, lets responses
// being written finish (up to write_timeout), then closes everything and joins the threads.
// The ApiContext (and what it refers to) must outlive the Server.
// Concurrency: port() and Stop() may be called from any thread (Stop from one at a time, never
// from a server thread). Each connection is served on one strand; requests of different
// connections run in parallel on the server's threads, each thread scoring with its own
// Router.
// Limitations: no TLS, no authentication, no HTTP/2; HEAD is not served (405). A request that
// does CPU work (scoring) occupies one server thread for its duration; the limits bound it.
class Server {
 public:
  // InvalidArgument for bad options (an address that is not an IP address, threads < 1, ...);
  // Unavailable when the address cannot be bound (in use, not local); a Router error.
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& options,
                                               const ApiContext& context);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The port the server listens on (the bound one when ServerOptions::port was 0).
  uint16_t port() const;
  // Open connections now (for tests and metrics).
  int open_connections() const;

  void Stop();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rotor::api

#endif  // ROTOR_API_SERVER_H_
