// Server over Boost.Asio and Beast: the only translation unit that includes them.
//
// Threads: one io_context run by `threads` threads. Each connection's handlers run on its own
// strand, so a connection never runs on two threads at once, while different connections run
// in parallel; a request is routed by the Router of the thread that happens to run it (a
// thread_local set when the thread starts), so each Router is used by one thread only.
//
// A connection's life, with one steady_timer bounding each phase:
//   idle:    wait for the first byte of the next request (idle_timeout, or read_timeout for a
//            connection's first request; expiry closes quietly). Bytes already buffered
//            (pipelined requests) skip the wait.
//   reading: parse the request (header, then body; "Expect: 100-continue" is answered between
//            them) within read_timeout from its first byte. Expiry cancels the read and answers
//            408; too large a body 413, too large a header 431, a malformed request 400: each
//            then closes the connection.
//   writing: send the response within write_timeout (expiry closes). Then back to idle when
//            both sides keep the connection alive, else close.
// Closing after an error response shuts down the sending side and discards what the client
// still sends for a moment (a lingering close), so the client reads the response instead of a
// connection reset.

#include "api/server.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <fmt/core.h>

#include "common/metrics.h"

namespace rotor::api {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using ErrorCode = boost::system::error_code;

// The Router of the server thread running the current handler.
thread_local Router* t_router = nullptr;

// How long a closing connection keeps reading (and dropping) what the client still sends.
constexpr std::chrono::milliseconds kLingerTime{500};
constexpr std::size_t kReadChunk = 4096;

std::string_view View(beast::string_view s) {
  return {s.data(), s.size()};
}

// The routes and statuses the request metrics are labelled with; a fixed table, so a request
// finds its series without a lock once the series exists.
constexpr std::array<std::string_view, 8> kRoutes = {
    "users", "user_tensors", "user_score", "score", "healthz", "readyz", "metrics", "unmatched"};
constexpr std::array<int, 11> kStatuses = {200, 400, 404, 405, 408, 409, 413, 431, 500, 503, 0};

class RequestMetrics {
 public:
  explicit RequestMetrics(common::MetricsRegistry& registry) : registry_(registry) {}

  void Record(std::string_view route, int status, double seconds) {
    std::size_t r = kRoutes.size() - 1;
    for (std::size_t i = 0; i < kRoutes.size(); ++i) {
      if (kRoutes[i] == route) {
        r = i;
      }
    }
    std::size_t s = kStatuses.size() - 1;  // 0: any other status.
    for (std::size_t i = 0; i < kStatuses.size(); ++i) {
      if (kStatuses[i] == status) {
        s = i;
        break;
      }
    }
    Series* series = table_[r * kStatuses.size() + s].load(std::memory_order_acquire);
    if (series == nullptr) {
      series = Register(r, s);
      if (series == nullptr) {
        return;
      }
    }
    // The histogram first: whoever sees the count sees the latency too.
    series->seconds->Observe(seconds);
    series->count->Increment();
  }

 private:
  struct Series {
    common::Counter* count = nullptr;
    common::Histogram* seconds = nullptr;
  };

  Series* Register(std::size_t r, std::size_t s) {
    const std::lock_guard<std::mutex> lock(mu_);
    std::atomic<Series*>& slot = table_[r * kStatuses.size() + s];
    if (Series* existing = slot.load(std::memory_order_acquire)) {
      return existing;
    }
    const common::MetricLabels labels = {
        {"route", std::string(kRoutes[r])},
        {"status", kStatuses[s] == 0 ? std::string("other") : std::to_string(kStatuses[s])}};
    auto count = registry_.AddCounter("rotor_api_requests_total",
                                      "HTTP API requests answered, by route and status.", labels);
    auto seconds = registry_.AddHistogram(
        "rotor_api_request_seconds",
        "HTTP API request latency, from the request's last byte read to the response's last "
        "byte written, by route and status.",
        common::LatencySecondsBuckets(), labels);
    if (!count.ok() || !seconds.ok()) {
      return nullptr;  // Another module registered these names differently; go uncounted.
    }
    owned_.push_back(std::make_unique<Series>(Series{*count, *seconds}));
    slot.store(owned_.back().get(), std::memory_order_release);
    return owned_.back().get();
  }

  common::MetricsRegistry& registry_;
  std::mutex mu_;  // Registration only.
  std::array<std::atomic<Series*>, kRoutes.size() * kStatuses.size()> table_{};
  std::vector<std::unique_ptr<Series>> owned_;  // Guarded by mu_.
};

class Connection;

// Member order matters for destruction: the io_context goes before what a Connection's
// destructor touches (a stopped io_context destroys the handlers it still holds, and with them
// their connections), and after the acceptor and the routers.
struct ServerState {
  ServerOptions options;
  const ApiContext& context;
  RequestMetrics request_metrics;
  common::Gauge* open_gauge = nullptr;
  common::Counter* refused_counter = nullptr;

  std::atomic<bool> stopping{false};
  std::atomic<int> open{0};  // Connections counted against max_connections.
  mutable std::mutex mu;
  std::condition_variable all_closed;
  uint64_t next_id = 0;                                // Guarded by mu.
  std::map<uint64_t, std::weak_ptr<Connection>> live;  // Guarded by mu: every connection.

  net::io_context ioc;
  tcp::acceptor acceptor;
  uint16_t bound_port = 0;
  std::vector<std::unique_ptr<Router>> routers;  // One per thread.
  std::vector<std::thread> threads;

  ServerState(ServerOptions o, const ApiContext& c)
      : options(std::move(o)),
        context(c),
        request_metrics(c.metrics),
        acceptor(net::make_strand(ioc)) {}

  void Accept();
  void Register(const std::shared_ptr<Connection>& connection, uint64_t& id);
  void Unregister(uint64_t id, bool counted);
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // `counted`: within max_connections; otherwise the connection only says 503 and closes.
  Connection(ServerState& server, tcp::socket socket, bool counted)
      : server_(server),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        buffer_(static_cast<std::size_t>(server.options.max_header_bytes) +
                static_cast<std::size_t>(server.options.max_body_bytes) + 2 * kReadChunk),
        counted_(counted) {}

  ~Connection() { server_.Unregister(id_, counted_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  Connection(Connection&&) = delete;
  Connection& operator=(Connection&&) = delete;

  void Start() {
    server_.Register(shared_from_this(), id_);
    net::dispatch(socket_.get_executor(), [self = shared_from_this()] {
      if (!self->counted_) {
        self->request_started_ = Clock::now();
        self->Respond(ErrorResponse(503, "overloaded",
                                    fmt::format("the API serves at most {} connections at once",
                                                self->server_.options.max_connections)),
                      /*close=*/true, 11);
        return;
      }
      self->WaitForRequest();
    });
  }

  // Server::Stop: close unless a response is being written (that one then closes).
  void OnStop() {
    net::dispatch(socket_.get_executor(), [self = shared_from_this()] {
      self->stop_requested_ = true;
      if (self->phase_kind_ != Phase::kWriting) {
        self->Close();
      }
    });
  }

 private:
  enum class Phase : unsigned char { kIdle, kReading, kWriting, kLingering, kClosed };

  // Starts `kind` with a deadline `timeout` away; `on_expiry` runs if the phase is still the
  // same one when the timer fires.
  template <class F>
  void Arm(Phase kind, std::chrono::milliseconds timeout, F on_expiry) {
    phase_kind_ = kind;
    const uint64_t phase = ++phase_;
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this(), phase, on_expiry](const ErrorCode& ec) {
      if (ec || self->phase_ != phase) {
        return;  // Cancelled, or the phase is over.
      }
      on_expiry(*self);
    });
  }

  void Disarm() {
    ++phase_;
    timer_.cancel();
  }

  void WaitForRequest() {
    if (stop_requested_) {
      Close();
      return;
    }
    if (buffer_.size() > 0) {  // A pipelined request is already here.
      ReadRequest();
      return;
    }
    // A new connection gets read_timeout for its first request, not idle_timeout: a client
    // that connects and says nothing must not hold a connection slot for a keep-alive's time.
    const std::chrono::milliseconds wait =
        served_ == 0 ? std::min(server_.options.read_timeout, server_.options.idle_timeout)
                     : server_.options.idle_timeout;
    Arm(Phase::kIdle, wait, [](Connection& c) { c.Close(); });
    socket_.async_read_some(buffer_.prepare(kReadChunk), [self = shared_from_this()](
                                                             const ErrorCode& ec, std::size_t n) {
      if (ec || self->phase_kind_ != Phase::kIdle) {
        self->Close();  // The client left, the connection idled out, or the server stops.
        return;
      }
      self->buffer_.commit(n);
      self->ReadRequest();
    });
  }

  void ReadRequest() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options.max_header_bytes));
    parser_->body_limit(static_cast<std::uint64_t>(server_.options.max_body_bytes));
    timed_out_ = false;
    Arm(Phase::kReading, server_.options.read_timeout, [](Connection& c) {
      c.timed_out_ = true;
      ErrorCode ignored;
      c.socket_.cancel(ignored);  // The pending read completes with operation_aborted.
    });
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](const ErrorCode& ec, std::size_t) { self->OnHeader(ec); });
  }

  void OnHeader(const ErrorCode& ec) {
    // timed_out_ with no error: the deadline passed while this completion was queued, so the
    // cancel found nothing to cancel; the request is late all the same.
    if (ec || timed_out_) {
      OnReadError(ec);
      return;
    }
    const auto& request = parser_->get();
    if (beast::iequals(request[http::field::expect], "100-continue")) {
      // curl and others wait for this before sending a large body.
      auto interim = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                        request.version());
      http::async_write(socket_, *interim,
                        [self = shared_from_this(), interim](const ErrorCode& wec, std::size_t) {
                          if (wec || self->timed_out_) {
                            self->OnReadError(wec);
                            return;
                          }
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](const ErrorCode& ec, std::size_t) {
                       if (ec || self->timed_out_) {
                         self->OnReadError(ec);
                         return;
                       }
                       self->Disarm();
                       self->Handle();
                     });
  }

  void OnReadError(const ErrorCode& ec) {
    Disarm();
    request_started_ = Clock::now();
    if (stop_requested_) {
      Close();
      return;
    }
    if (timed_out_) {
      Respond(ErrorResponse(408, "request_timeout",
                            fmt::format("the request did not arrive within {} ms",
                                        server_.options.read_timeout.count())),
              /*close=*/true, 11);
    } else if (ec == http::error::body_limit) {
      Respond(ErrorResponse(413, "body_too_large",
                            fmt::format("the request body is larger than {} bytes",
                                        server_.options.max_body_bytes)),
              /*close=*/true, 11);
    } else if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      Respond(ErrorResponse(431, "headers_too_large",
                            fmt::format("the request headers are larger than {} bytes",
                                        server_.options.max_header_bytes)),
              /*close=*/true, 11);
    } else if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      Respond(ErrorResponse(400, "bad_request", fmt::format("malformed HTTP: {}", ec.message())),
              /*close=*/true, 11);
    } else {
      Close();  // The client closed or reset the connection; nobody to answer.
    }
  }

  void Handle() {
    const auto& request = parser_->get();
    request_started_ = Clock::now();
    Response response;
    try {
      response = t_router->Route(Request{.method = View(request.method_string()),
                                         .target = View(request.target()),
                                         .body = request.body(),
                                         .forwarded = request.count("X-Rotor-Forwarded") > 0});
    } catch (const std::exception& e) {  // std::bad_alloc and the like: not the client's fault.
      response = ErrorResponse(500, "internal", e.what());
    }
    ++served_;
    if (request.method() == http::verb::head) {
      // A response to HEAD has no body, but its Content-Length would announce this one's:
      // send neither and close, so nothing is left for the client to misread.
      response.body.clear();
      Respond(std::move(response), /*close=*/true, request.version());
      return;
    }
    Respond(std::move(response), !request.keep_alive(), request.version());
  }

  // Writes `response`; then closes when `close`, else waits for the next request. The
  // latency recorded runs from request_started_.
  void Respond(Response response, bool close, unsigned version) {
    close = close || stop_requested_ || server_.stopping.load();
    route_ = response.route;
    status_ = response.status;
    response_.emplace(static_cast<http::status>(response.status), version);
    response_->set(http::field::server, "rotor");
    response_->set(http::field::content_type, response.content_type);
    for (const auto& [name, value] : response.headers) {
      response_->set(name, value);
    }
    response_->body() = std::move(response.body);
    response_->keep_alive(!close);
    response_->prepare_payload();
    Arm(Phase::kWriting, server_.options.write_timeout, [](Connection& c) { c.Close(); });
    http::async_write(
        socket_, *response_, [self = shared_from_this(), close](const ErrorCode& ec, std::size_t) {
          self->Disarm();
          self->server_.request_metrics.Record(
              self->route_, self->status_,
              std::chrono::duration<double>(Clock::now() - self->request_started_).count());
          if (ec) {
            self->Close();
          } else if (close || self->stop_requested_) {
            self->Linger();
          } else {
            self->WaitForRequest();
          }
        });
  }

  // Shuts down our side and drops what the client still sends, briefly, then closes.
  void Linger() {
    ErrorCode ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    Arm(Phase::kLingering, std::min(kLingerTime, server_.options.read_timeout),
        [](Connection& c) { c.Close(); });
    Drain();
  }

  void Drain() {
    buffer_.clear();
    socket_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = shared_from_this()](const ErrorCode& ec, std::size_t) {
                              if (ec || self->phase_kind_ != Phase::kLingering) {
                                self->Close();
                                return;
                              }
                              self->Drain();
                            });
  }

  void Close() {
    if (phase_kind_ == Phase::kClosed) {
      return;
    }
    phase_kind_ = Phase::kClosed;
    ++phase_;
    timer_.cancel();
    ErrorCode ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  ServerState& server_;
  tcp::socket socket_;
  net::steady_timer timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;
  bool counted_;
  int64_t served_ = 0;  // Responses to requests written on this connection.
  uint64_t id_ = 0;
  uint64_t phase_ = 0;
  Phase phase_kind_ = Phase::kIdle;
  bool timed_out_ = false;
  bool stop_requested_ = false;
  std::string_view route_ = "unmatched";
  int status_ = 0;
  Clock::time_point request_started_;
};

std::optional<net::ip::address> ParseAddress(const std::string& text) {
  ErrorCode ec;
  const net::ip::address address = net::ip::make_address(text, ec);
  if (ec) {
    return std::nullopt;
  }
  return address;
}

}  // namespace

// The server's state; Connection (above) sees it as a ServerState.
struct Server::Impl : ServerState {
  using ServerState::ServerState;
};

void ServerState::Accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](const ErrorCode& ec, tcp::socket socket) {
    if (stopping.load() || !acceptor.is_open()) {
      return;
    }
    if (!ec) {
      const bool counted = open.fetch_add(1) < options.max_connections;
      if (!counted) {
        open.fetch_sub(1);
        if (refused_counter != nullptr) {
          refused_counter->Increment();
        }
      }
      std::make_shared<Connection>(*this, std::move(socket), counted)->Start();
    }
    // Accept errors (EMFILE, a connection aborted before accept) must not stop accepting.
    Accept();
  });
}

void ServerState::Register(const std::shared_ptr<Connection>& connection, uint64_t& id) {
  const std::lock_guard<std::mutex> lock(mu);
  id = ++next_id;
  live.emplace(id, connection);
  if (open_gauge != nullptr) {
    open_gauge->Set(open.load());
  }
}

void ServerState::Unregister(uint64_t id, bool counted) {
  const std::lock_guard<std::mutex> lock(mu);
  live.erase(id);
  if (counted) {
    open.fetch_sub(1);
  }
  if (open_gauge != nullptr) {
    open_gauge->Set(open.load());
  }
  all_closed.notify_all();
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Stop();
}

ServerOptions ServerOptionsFromConfig(const config::ApiOptions& api) {
  ServerOptions o;
  const std::size_t colon = api.listen.rfind(':');
  std::string host = api.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  o.address = host;
  o.port = 0;
  if (colon != std::string::npos) {
    const std::string port = api.listen.substr(colon + 1);
    int value = 0;
    for (const char c : port) {
      value = c >= '0' && c <= '9' && value <= 65535 ? value * 10 + (c - '0') : 65536;
    }
    // ValidateDaemonConfig has checked it; an unchecked bad port makes Start refuse the
    // address instead.
    o.port = value <= 65535 ? static_cast<uint16_t>(value) : 0;
    if (value > 65535 || port.empty()) {
      o.address = api.listen;
    }
  }
  o.threads = api.threads;
  o.max_connections = api.max_connections;
  o.read_timeout = std::chrono::milliseconds(api.read_timeout_ms);
  o.write_timeout = std::chrono::milliseconds(api.write_timeout_ms);
  o.idle_timeout = std::chrono::milliseconds(api.idle_timeout_ms);
  o.max_body_bytes = api.max_body_bytes;
  return o;
}

ApiLimits ApiLimitsFromConfig(const config::ApiOptions& api) {
  return {.max_candidates = api.max_candidates,
          .max_users_per_request = api.max_users_per_request,
          .max_total_candidates = api.max_total_candidates};
}

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                              const ApiContext& context) {
  const std::optional<net::ip::address> address = ParseAddress(options.address);
  if (!address) {
    return Status::InvalidArgument("api server: '{}' is not an IP address", options.address);
  }
  if (options.threads < 1 || options.max_connections < 1 || options.max_header_bytes < 1 ||
      options.max_body_bytes < 0 || options.read_timeout.count() < 1 ||
      options.write_timeout.count() < 1 || options.idle_timeout.count() < 1) {
    return Status::InvalidArgument(
        "api server: threads, max_connections, max_header_bytes and the timeouts must be "
        "positive");
  }
  auto impl = std::make_unique<Impl>(options, context);
  for (int i = 0; i < options.threads; ++i) {
    ROTOR_ASSIGN_OR_RETURN(std::unique_ptr<Router> router, Router::Create(context));
    impl->routers.push_back(std::move(router));
  }
  auto gauge = context.metrics.AddGauge("rotor_api_connections", "HTTP API connections open.");
  auto refused = context.metrics.AddCounter(
      "rotor_api_connections_refused_total",
      "HTTP API connections refused (503, then closed) because api.max_connections were open.");
  ROTOR_RETURN_IF_ERROR(gauge.status());
  ROTOR_RETURN_IF_ERROR(refused.status());
  impl->open_gauge = *gauge;
  impl->refused_counter = *refused;

  const tcp::endpoint endpoint(*address, options.port);
  ErrorCode ec;
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) {
    impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    impl->acceptor.bind(endpoint, ec);
  }
  if (!ec) {
    impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return Status::Unavailable("api server: cannot listen on {}:{}: {}", options.address,
                               options.port, ec.message());
  }
  impl->bound_port = impl->acceptor.local_endpoint(ec).port();
  if (ec) {
    return Status::Unavailable("api server: cannot read the bound port: {}", ec.message());
  }
  impl->Accept();
  for (int i = 0; i < options.threads; ++i) {
    Router* router = impl->routers[static_cast<std::size_t>(i)].get();
    Impl* raw = impl.get();
    impl->threads.emplace_back([raw, router] {
      t_router = router;
      // A handler that throws must not take the server down: run again.
      while (true) {
        try {
          raw->ioc.run();
          return;
        } catch (const std::exception&) {
          continue;
        }
      }
    });
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

uint16_t Server::port() const {
  return impl_->bound_port;
}

int Server::open_connections() const {
  return impl_->open.load();
}

void Server::Stop() {
  Impl& s = *impl_;
  if (s.stopping.exchange(true)) {
    return;
  }
  net::post(s.acceptor.get_executor(), [&s] {
    ErrorCode ignored;
    s.acceptor.close(ignored);
  });
  {
    std::vector<std::shared_ptr<Connection>> connections;
    {
      const std::lock_guard<std::mutex> lock(s.mu);
      for (const auto& [id, weak] : s.live) {
        if (auto c = weak.lock()) {
          connections.push_back(std::move(c));
        }
      }
    }
    for (const auto& c : connections) {
      c->OnStop();
    }
  }
  // Responses being written get their write timeout (and the lingering close) to finish.
  {
    std::unique_lock<std::mutex> lock(s.mu);
    s.all_closed.wait_for(lock, s.options.write_timeout + kLingerTime + std::chrono::seconds(1),
                          [&s] { return s.live.empty(); });
  }
  s.ioc.stop();
  for (std::thread& t : s.threads) {
    if (t.joinable()) {
      t.join();
    }
  }
  s.threads.clear();
}

}  // namespace rotor::api
