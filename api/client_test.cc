#include "api/client.h"

#include <chrono>
#include <string>

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

}  // namespace
}  // namespace rotor::api
