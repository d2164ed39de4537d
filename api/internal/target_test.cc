#include "api/internal/target.h"

#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace rotor::api::internal {
namespace {

TEST(TargetTest, SplitsRawSegmentsAndDecodesTheQuery) {
  std::string why;
  const auto t = ParseTarget("/v1/users/a%2Fb/tensors?dtype=bf16&x=a+b%21&&flag", why);
  ASSERT_TRUE(t.has_value()) << why;
  EXPECT_EQ(t->segments, (std::vector<std::string_view>{"v1", "users", "a%2Fb", "tensors"}));
  using Query = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(t->query, (Query{{"dtype", "bf16"}, {"x", "a b!"}, {"flag", ""}}));
  const auto root = ParseTarget("/", why);
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->segments, (std::vector<std::string_view>{""}));
  const auto trailing = ParseTarget("/healthz/", why);
  ASSERT_TRUE(trailing.has_value());
  EXPECT_EQ(trailing->segments, (std::vector<std::string_view>{"healthz", ""}));
  const auto fragment = ParseTarget("/metrics?a=1#frag", why);
  ASSERT_TRUE(fragment.has_value());
  EXPECT_EQ(fragment->query.size(), 1U);
}

TEST(TargetTest, RefusesNonPathsAndBadQueryEscapes) {
  std::string why;
  EXPECT_FALSE(ParseTarget("", why).has_value());
  EXPECT_FALSE(ParseTarget("http://host/healthz", why).has_value());
  EXPECT_FALSE(ParseTarget("*", why).has_value());
  EXPECT_FALSE(ParseTarget("/a?b=%4", why).has_value());
  EXPECT_FALSE(ParseTarget("/a?%zz=1", why).has_value());
}

TEST(TargetTest, PercentDecoding) {
  EXPECT_EQ(PercentDecode("a%20b%2fc%2F", false), "a b/c/");
  EXPECT_EQ(PercentDecode("a+b", false), "a+b");
  EXPECT_EQ(PercentDecode("a+b", true), "a b");
  EXPECT_EQ(PercentDecode("%00%ff", false), std::string("\0\xff", 2));
  EXPECT_FALSE(PercentDecode("%", false).has_value());
  EXPECT_FALSE(PercentDecode("%a", false).has_value());
  EXPECT_FALSE(PercentDecode("%ag", false).has_value());
  EXPECT_EQ(PercentDecode("", false), "");
}

}  // namespace
}  // namespace rotor::api::internal
