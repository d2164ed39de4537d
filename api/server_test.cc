// The server over real sockets on loopback: keep-alive, pipelining, the connection limit,
// timeouts (a stalled client gets 408 while others are served), size limits, malformed
// requests, 100-continue, request metrics and Stop with connections open. The clients are
// plain blocking Asio sockets with receive timeouts, so a server that fails to answer fails
// the test instead of hanging it.

#include "api/server.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/metrics.h"
#include "encoders/bundle.h"
#include "storage/user_state_store.h"

namespace rotor::api {
namespace {

namespace net = boost::asio;
using boost::asio::ip::tcp;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("rotor_api_server_test_{}_{}", ::getpid(), counter.fetch_add(1));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// One HTTP response as a test reads it.
struct HttpResponse {
  int status = 0;
  std::string head;  // Status line and headers.
  std::string body;
  bool Has(std::string_view header_line) const {
    return head.find(std::string(header_line) + "\r\n") != std::string::npos;
  }
};

// A blocking client connection with a receive timeout.
class Client {
 public:
  Client(net::io_context& io, uint16_t port) : socket_(io) {
    socket_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    SetReceiveTimeout(milliseconds(5000));
  }

  void SetReceiveTimeout(milliseconds timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }

  void Send(std::string_view bytes) {
    net::write(socket_, net::buffer(bytes.data(), bytes.size()));
  }

  // Reads one response (Content-Length framed, as the server always sends); nullopt when the
  // connection ends (or times out) before a whole response arrives.
  std::optional<HttpResponse> Read() {
    std::size_t end = 0;
    while ((end = pending_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) {
        return std::nullopt;
      }
    }
    HttpResponse r;
    r.head = pending_.substr(0, end + 2);
    pending_.erase(0, end + 4);
    r.status = std::stoi(r.head.substr(9, 3));
    std::size_t length = 0;
    const std::size_t at = r.head.find("Content-Length: ");
    if (at != std::string::npos) {
      length = std::stoul(r.head.substr(at + 16));
    }
    while (pending_.size() < length) {
      if (!Fill()) {
        return std::nullopt;
      }
    }
    r.body = pending_.substr(0, length);
    pending_.erase(0, length);
    return r;
  }

  // True when the server has closed the connection (a read sees EOF or a reset).
  bool Closed() {
    if (!pending_.empty()) {
      return false;
    }
    char c = 0;
    boost::system::error_code ec;
    const std::size_t n = socket_.read_some(net::buffer(&c, 1), ec);
    if (n == 1) {
      pending_.push_back(c);
      return false;
    }
    return ec == net::error::eof || ec == net::error::connection_reset;
  }

  HttpResponse Get(std::string_view target) {
    Send(fmt::format("GET {} HTTP/1.1\r\nHost: t\r\n\r\n", target));
    auto r = Read();
    if (!r) {
      throw std::runtime_error("no response");
    }
    return *r;
  }

  tcp::socket& socket() { return socket_; }

 private:
  bool Fill() {
    char buffer[4096];
    boost::system::error_code ec;
    const std::size_t n = socket_.read_some(net::buffer(buffer), ec);
    if (ec || n == 0) {
      return false;
    }
    pending_.append(buffer, n);
    return true;
  }

  tcp::socket socket_;
  std::string pending_;
};

std::string Post(std::string_view target, std::string_view body) {
  return fmt::format(
      "POST {} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
      "Content-Length: {}\r\n\r\n{}",
      target, body.size(), body);
}

int32_t PartitionOf(std::string_view user) {
  return static_cast<int32_t>(user.size() % 4);
}

// A server over an empty store and the golden siren bundle.
class ServerTest : public ::testing::Test {
 protected:
  ServerTest() {
    auto bundle =
        encoders::Bundle::Load(std::string(ROTOR_GOLDEN_DIR) + "/siren.bundle.safetensors");
    if (!bundle.ok()) {
      throw std::runtime_error(bundle.status().ToString());
    }
    bundle_ = std::make_unique<encoders::Bundle>(std::move(*bundle));
    auto store = storage::UserStateStore::Open({.path = dir_.path() + "/db",
                                                .block_cache_bytes = int64_t{8} << 20,
                                                .write_buffer_bytes = int64_t{2} << 20,
                                                .sync_writes = false,
                                                .create_if_missing = true});
    if (!store.ok()) {
      throw std::runtime_error(store.status().ToString());
    }
    store_ = std::move(*store);
    context_ = std::make_unique<ApiContext>(ApiContext{.store = *store_,
                                                       .bundle = *bundle_,
                                                       .metrics = metrics_,
                                                       .input_topic = "rotor.events",
                                                       .partition_of = PartitionOf,
                                                       .readiness = {},
                                                       .now_ms = {},
                                                       .limits = {},
                                                       .locate = {},
                                                       .forward_mode = ForwardMode::kProxy,
                                                       .forward = {}});
    options_.port = 0;
    options_.threads = 2;
    options_.read_timeout = milliseconds(400);
    options_.write_timeout = milliseconds(2000);
    options_.idle_timeout = milliseconds(3000);
    options_.max_body_bytes = int64_t{64} << 10;
    options_.max_header_bytes = 4096;
  }

  void Start() {
    auto server = Server::Start(options_, *context_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
  }

  Client Connect() { return Client(io_, server_->port()); }

  // rotor_api_requests_total{route, status} as /metrics shows it (0 when absent).
  int64_t Requests(std::string_view route, int status) {
    const std::string text = metrics_.Render();
    const std::string prefix =
        fmt::format(R"(rotor_api_requests_total{{route="{}",status="{}"}} )", route, status);
    const std::size_t at = text.find(prefix);
    return at == std::string::npos ? 0 : std::stoll(text.substr(at + prefix.size()));
  }

  // Requests(route, status) once it reaches `want` (a response is counted when its last byte
  // is written, which the client may see first), or after 2 s.
  int64_t RequestsReaching(std::string_view route, int status, int64_t want) {
    const auto deadline = Clock::now() + milliseconds(2000);
    int64_t n = Requests(route, status);
    while (n < want && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(5));
      n = Requests(route, status);
    }
    return n;
  }

  TempDir dir_;
  std::unique_ptr<encoders::Bundle> bundle_;
  std::unique_ptr<storage::UserStateStore> store_;
  common::MetricsRegistry metrics_;
  std::unique_ptr<ApiContext> context_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  net::io_context io_;
};

TEST_F(ServerTest, KeepAliveServesManyRequestsOnOneConnection) {
  Start();
  ASSERT_NE(server_->port(), 0);
  Client c = Connect();
  for (int i = 0; i < 5; ++i) {
    const HttpResponse r = c.Get("/healthz");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, R"({"status":"ok"})");
    EXPECT_TRUE(r.Has("Content-Type: application/json"));
    EXPECT_FALSE(r.Has("Connection: close"));
  }
  EXPECT_EQ(server_->open_connections(), 1);
  EXPECT_EQ(RequestsReaching("healthz", 200, 5), 5);
  const std::string text = metrics_.Render();
  EXPECT_THAT(text,
              HasSubstr("rotor_api_request_seconds_count{route=\"healthz\",status=\"200\"} 5"));
  EXPECT_THAT(text, HasSubstr("rotor_api_connections 1"));
  // HTTP/1.0 without keep-alive: answered, then closed.
  c.Send("GET /healthz HTTP/1.0\r\n\r\n");
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_THAT(r->head, StartsWith("HTTP/1.0 200"));
  EXPECT_TRUE(c.Closed());
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  Start();
  Client c = Connect();
  c.Send(
      "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
      "GET /v1/users/nobody HTTP/1.1\r\nHost: t\r\n\r\n" +
      Post("/v1/score", "not json") +
      "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"
      "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  const int want[] = {200, 404, 400, 200, 200};
  for (const int status : want) {
    const auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, status) << r->body;
  }
  EXPECT_TRUE(c.Closed());
  EXPECT_EQ(RequestsReaching("users", 404, 1), 1);
  EXPECT_EQ(RequestsReaching("score", 400, 1), 1);
}

TEST_F(ServerTest, ScoresOverTheWire) {
  Start();
  Client c = Connect();
  const std::string body =
      R"({"ts_ms":1767612010682,"candidates":[{"item":{"features":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]},"attrs":{"topic":"tech"}}]})";
  c.Send(Post("/v1/users/someone/score", body));
  const auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->status, 200) << r->body;
  const nlohmann::json json = nlohmann::json::parse(r->body);
  EXPECT_EQ(json["known"], false);
  EXPECT_EQ(json["scores"].size(), 1U);
  EXPECT_EQ(RequestsReaching("user_score", 200, 1), 1);
}

TEST_F(ServerTest, ConnectionsOverTheLimitGet503AndAreClosed) {
  options_.max_connections = 2;
  Start();
  Client a = Connect();
  Client b = Connect();
  EXPECT_EQ(a.Get("/healthz").status, 200);  // Both accepted and counted.
  EXPECT_EQ(b.Get("/healthz").status, 200);
  EXPECT_EQ(server_->open_connections(), 2);
  Client over = Connect();
  const auto r = over.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 503);
  EXPECT_THAT(r->body, HasSubstr(R"("error":"overloaded")"));
  EXPECT_TRUE(r->Has("Connection: close"));
  EXPECT_TRUE(over.Closed());
  EXPECT_THAT(metrics_.Render(), HasSubstr("rotor_api_connections_refused_total 1"));
  // The two still work; once one leaves, a new connection is served.
  EXPECT_EQ(a.Get("/healthz").status, 200);
  b.socket().close();
  for (int i = 0; i < 100 && server_->open_connections() > 1; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  Client next = Connect();
  EXPECT_EQ(next.Get("/healthz").status, 200);
}

TEST_F(ServerTest, AStalledClientGets408AndIsClosedWhileOthersAreServed) {
  Start();
  Client stalled_body = Connect();
  Client stalled_header = Connect();
  const auto start = Clock::now();
  stalled_body.Send("POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"ts_");
  stalled_header.Send("GET /healthz HTTP/1.1\r\nHost: t\r\n");
  // Meanwhile another client is served at once, again and again.
  Client other = Connect();
  for (int i = 0; i < 10; ++i) {
    const auto t0 = Clock::now();
    EXPECT_EQ(other.Get("/healthz").status, 200);
    EXPECT_LT(Clock::now() - t0, milliseconds(300));  // Not behind the 400 ms stall.
  }
  for (Client* c : {&stalled_body, &stalled_header}) {
    const auto r = c->Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 408);
    EXPECT_THAT(r->body, HasSubstr(R"("error":"request_timeout")"));
    EXPECT_TRUE(r->Has("Connection: close"));
    EXPECT_TRUE(c->Closed());
  }
  const auto waited = Clock::now() - start;
  EXPECT_GE(waited, milliseconds(350));  // read_timeout is 400 ms.
  EXPECT_LT(waited, milliseconds(2000));
  EXPECT_EQ(RequestsReaching("unmatched", 408, 2), 2);
}

TEST_F(ServerTest, AClientTricklingBytesCannotOutliveTheReadTimeout) {
  Start();
  Client c = Connect();
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ";
  const auto start = Clock::now();
  std::optional<HttpResponse> r;
  // One byte every 50 ms: each read makes progress, the whole request does not arrive in time.
  for (std::size_t i = 0; i < 40; ++i) {
    boost::system::error_code ec;
    net::write(c.socket(), net::buffer(i < request.size() ? &request[i] : "a", 1), ec);
    if (ec) {
      break;
    }
    std::this_thread::sleep_for(milliseconds(50));
    if (Clock::now() - start > milliseconds(600)) {
      break;
    }
  }
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 408);
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
}

TEST_F(ServerTest, AConnectionThatSaysNothingIsClosedAfterTheReadTimeout) {
  Start();  // read_timeout 400 ms, idle_timeout 3 s.
  Client silent = Connect();
  const auto t0 = Clock::now();
  EXPECT_TRUE(silent.Closed());
  EXPECT_GE(Clock::now() - t0, milliseconds(350));
  EXPECT_LT(Clock::now() - t0, milliseconds(2000));
}

TEST_F(ServerTest, HeadIsNotServedAndClosesWithoutABody) {
  Start();
  Client c = Connect();
  c.Send("HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  const auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 405);
  EXPECT_TRUE(r->Has("Allow: GET"));
  EXPECT_TRUE(r->Has("Content-Length: 0"));
  EXPECT_TRUE(c.Closed());
}

TEST_F(ServerTest, IdleKeepAliveConnectionsAreClosed) {
  options_.idle_timeout = milliseconds(200);
  Start();
  Client c = Connect();
  EXPECT_EQ(c.Get("/healthz").status, 200);
  const auto t0 = Clock::now();
  EXPECT_TRUE(c.Closed());  // Blocks until the server closes it.
  EXPECT_GE(Clock::now() - t0, milliseconds(150));
  EXPECT_LT(Clock::now() - t0, milliseconds(2000));
  for (int i = 0; i < 100 && server_->open_connections() > 0; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(server_->open_connections(), 0);
}

TEST_F(ServerTest, OversizedBodiesGet413WithoutBeingRead) {
  Start();
  {
    Client c = Connect();
    // Only the header is sent: the declared length alone is refused.
    c.Send("POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n");
    const auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 413);
    EXPECT_THAT(r->body, HasSubstr(R"("error":"body_too_large")"));
    EXPECT_THAT(r->body, HasSubstr("65536 bytes"));
    EXPECT_TRUE(c.Closed());
  }
  {
    Client c = Connect();
    // Chunked: refused once the chunks pass the limit, though the client keeps sending.
    c.Send("POST /v1/score HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    const std::string chunk = fmt::format("{:x}\r\n{}\r\n", 16384, std::string(16384, 'x'));
    boost::system::error_code ec;
    for (int i = 0; i < 5 && !ec; ++i) {
      net::write(c.socket(), net::buffer(chunk), ec);
    }
    const auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 413);
  }
  {
    Client c = Connect();
    c.Send("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(5000, 'h') + "\r\n\r\n");
    const auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 431);
    EXPECT_THAT(r->body, HasSubstr(R"("error":"headers_too_large")"));
  }
  EXPECT_EQ(RequestsReaching("unmatched", 413, 2), 2);
}

TEST_F(ServerTest, MalformedRequestsGet400AndAreClosed) {
  Start();
  for (const std::string_view bad :
       {std::string_view("GARBAGE\r\n\r\n"), std::string_view("GET /healthz HTTP/9.9\r\n\r\n"),
        std::string_view("GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n"),
        std::string_view("POST /v1/score HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
        std::string_view("GET  HTTP/1.1\r\n\r\n")}) {
    SCOPED_TRACE(bad);
    Client c = Connect();
    c.Send(bad);
    const auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 400);
    EXPECT_THAT(r->body, HasSubstr(R"("error":"bad_request")"));
    EXPECT_TRUE(c.Closed());
  }
  // Garbage from many clients at once changes nothing for the next one.
  std::mt19937 rng(7);
  std::vector<Client> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(Connect());
    std::string noise(static_cast<std::size_t>(rng() % 3000), '\0');
    for (char& ch : noise) {
      ch = static_cast<char>(rng());
    }
    boost::system::error_code ec;
    net::write(clients.back().socket(), net::buffer(noise), ec);
  }
  Client fine = Connect();
  EXPECT_EQ(fine.Get("/healthz").status, 200);
}

TEST_F(ServerTest, ExpectContinueIsAnsweredBeforeTheBody) {
  Start();
  Client c = Connect();
  const std::string body = R"({"ts_ms":1,"candidates":[]})";
  c.Send(
      fmt::format("POST /v1/users/u/score HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                  "Content-Length: {}\r\n\r\n",
                  body.size()));
  const auto interim = c.Read();
  ASSERT_TRUE(interim.has_value());
  EXPECT_EQ(interim->status, 100);
  c.Send(body);
  const auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200) << r->body;
}

TEST_F(ServerTest, StopClosesOpenConnectionsAndStopsListening) {
  Start();
  const uint16_t port = server_->port();
  Client idle = Connect();
  EXPECT_EQ(idle.Get("/healthz").status, 200);
  Client partial = Connect();
  partial.Send("GET /healthz HTTP/1.1\r\n");
  Client fresh = Connect();
  std::this_thread::sleep_for(milliseconds(50));
  const auto t0 = Clock::now();
  server_->Stop();
  EXPECT_LT(Clock::now() - t0, milliseconds(1500));
  EXPECT_TRUE(idle.Closed());
  EXPECT_TRUE(partial.Closed());
  EXPECT_TRUE(fresh.Closed());
  tcp::socket again(io_);
  boost::system::error_code ec;
  again.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  EXPECT_TRUE(ec) << "still accepting after Stop";
  server_->Stop();  // Idempotent.
  server_.reset();
}

TEST_F(ServerTest, StartRefusesBadAddressesAndBusyPorts) {
  options_.address = "not-an-address";
  EXPECT_EQ(Server::Start(options_, *context_).status().code(), StatusCode::kInvalidArgument);
  options_.address = "127.0.0.1";
  options_.threads = 0;
  EXPECT_EQ(Server::Start(options_, *context_).status().code(), StatusCode::kInvalidArgument);
  options_.threads = 1;
  Start();
  options_.port = server_->port();
  const auto busy = Server::Start(options_, *context_);
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(std::string(busy.status().message()), HasSubstr("cannot listen"));
}

TEST(ServerOptionsTest, FromConfig) {
  config::ApiOptions api;
  api.listen = "[::1]:9000";
  api.threads = 3;
  api.read_timeout_ms = 7;
  api.max_body_bytes = 2048;
  api.max_candidates = 5;
  api.max_users_per_request = 6;
  api.max_total_candidates = 50;
  const ServerOptions o = ServerOptionsFromConfig(api);
  EXPECT_EQ(o.address, "::1");
  EXPECT_EQ(o.port, 9000);
  EXPECT_EQ(o.threads, 3);
  EXPECT_EQ(o.read_timeout, milliseconds(7));
  EXPECT_EQ(o.max_body_bytes, 2048);
  const ApiLimits limits = ApiLimitsFromConfig(api);
  EXPECT_EQ(limits.max_candidates, 5);
  EXPECT_EQ(limits.max_users_per_request, 6);
  EXPECT_EQ(limits.max_total_candidates, 50);
  api.listen = "127.0.0.1:0";
  EXPECT_EQ(ServerOptionsFromConfig(api).address, "127.0.0.1");
  EXPECT_EQ(ServerOptionsFromConfig(api).port, 0);
}

}  // namespace
}  // namespace rotor::api
