#include "pipeline/internal/group_directory.h"

#include <gtest/gtest.h>

namespace rotor::pipeline::internal {
namespace {

// The API's address travels in the group consumer's client.id after an '@' and comes back out
// of the group's description as it went in.
TEST(GroupDirectoryTest, TheAdvertisedUrlRoundTripsThroughTheClientId) {
  EXPECT_EQ(ClientIdWithApi("rotor", ""), "rotor");
  EXPECT_EQ(ClientIdWithApi("rotor", "http://10.0.0.5:8470"), "rotor@http://10.0.0.5:8470");
  EXPECT_EQ(AdvertisedApi("rotor@http://10.0.0.5:8470", "/10.9.9.9"), "http://10.0.0.5:8470");
  EXPECT_EQ(AdvertisedApi(ClientIdWithApi("team@rotor", "http://rotor-0.rotor:8470"), "/h"),
            "http://rotor-0.rotor:8470");
  // A member that advertises nothing (the API off, another tool in the group).
  EXPECT_EQ(AdvertisedApi("rotor", "/10.0.0.5"), "");
  EXPECT_EQ(AdvertisedApi("rdkafka", ""), "");
  EXPECT_EQ(AdvertisedApi("me@example.com", "/10.0.0.5"), "");
}

// A wildcard host takes the address the coordinator saw the member connect from.
TEST(GroupDirectoryTest, AWildcardHostBecomesTheMembersAddress) {
  EXPECT_EQ(AdvertisedApi("rotor@http://*:8470", "/10.0.0.5"), "http://10.0.0.5:8470");
  EXPECT_EQ(AdvertisedApi("rotor@http://*:8470", "10.0.0.5"), "http://10.0.0.5:8470");
  EXPECT_EQ(AdvertisedApi("rotor@http://*:8470", "/fd00::5"), "http://[fd00::5]:8470");
  EXPECT_EQ(AdvertisedApi("rotor@http://*:8470", "/"), "");
}

}  // namespace
}  // namespace rotor::pipeline::internal
