#include "api/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rotor::api {
namespace {

using ::testing::HasSubstr;

TEST(ClientTest, ParsesHttpUrls) {
  auto plain = ParseHttpUrl("http://127.0.0.1:8470");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->host, "127.0.0.1");
  EXPECT_EQ(plain->port, 8470);
  EXPECT_EQ(plain->prefix, "");
  auto named = ParseHttpUrl("http://rotor-1/behind/a/proxy/");
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->host, "rotor-1");
  EXPECT_EQ(named->port, 80);
  EXPECT_EQ(named->prefix, "/behind/a/proxy");
  auto v6 = ParseHttpUrl("http://[::1]:9000");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 9000);

  for (const char* bad :
       {"https://h:1", "h:1", "http://", "http://:80", "http://h:0", "http://h:65536",
        "http://h:8x", "http://[::1", "http://[::1]x", "http://h:1/?q=1"}) {
    auto got = ParseHttpUrl(bad);
    ASSERT_FALSE(got.ok()) << bad;
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(got.status().message(), HasSubstr(bad));
  }
}

TEST(ClientTest, PercentEncodesOnePathSegment) {
  EXPECT_EQ(PercentEncodeSegment("u-42_a.b~"), "u-42_a.b~");
  EXPECT_EQ(PercentEncodeSegment("a/b c+%"), "a%2Fb%20c%2B%25");
  EXPECT_EQ(PercentEncodeSegment("\xc3\xa9"), "%C3%A9");
  EXPECT_EQ(PercentEncodeSegment(""), "");
}

TEST(ClientTest, AnUnreachableServerIsUnavailableNamingIt) {
  // Port 1 on loopback: nothing listens there (connection refused).
  const HttpUrl url{.host = "127.0.0.1", .port = 1, .prefix = ""};
  auto got =
      HttpRequest(url, "GET", "/healthz", {},
                  {.timeout = std::chrono::seconds(5), .max_body_bytes = 1 << 20, .headers = {}});
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("GET /healthz on 127.0.0.1:1: connecting"));
}

// A listening socket that never accepts: the kernel completes connections into its backlog, so a
// request to it connects and then hears nothing (a frozen owner, SIGSTOPped or swapping).
class SilentListener {
 public:
  SilentListener() : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t size = sizeof(address);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size), 0);
    url_ = "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port));
  }
  ~SilentListener() { close(fd_); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  const std::string& url() const { return url_; }

 private:
  int fd_;
  std::string url_;
};

// A frozen owner costs one timeout, then is not asked again for the cooldown; and forwards
// beyond max_in_flight are refused at once instead of taking more server threads.
TEST(ClientTest, TheForwarderGivesUpOnAFrozenOwnerAndBoundsForwardsInFlight) {
  using std::chrono::milliseconds;
  using Clock = std::chrono::steady_clock;
  const auto forward = HttpForwarder(
      {.timeout = milliseconds(300), .max_in_flight = 1, .cooldown = milliseconds(60000)});
  const SilentListener frozen;
  const Request request{.method = "GET", .target = "/v1/users/u", .body = {}, .forwarded = false};

  auto began = Clock::now();
  Result<Response> got = forward(frozen.url(), request);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_GE(Clock::now() - began, milliseconds(250));

  began = Clock::now();
  got = forward(frozen.url(), request);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("not asked again"));
  EXPECT_LT(Clock::now() - began, milliseconds(200));

  // One forward in flight (to another frozen owner): a second one is refused at once.
  const SilentListener other;
  auto first = std::async(std::launch::async, [&] { return forward(other.url(), request); });
  std::this_thread::sleep_for(milliseconds(100));
  const SilentListener third;
  began = Clock::now();
  got = forward(third.url(), request);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kResourceExhausted) << got.status().ToString();
  EXPECT_LT(Clock::now() - began, milliseconds(200));
  EXPECT_EQ(first.get().status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace rotor::api
