#include "pipeline/internal/standby.h"

#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace rotor::pipeline::internal {
namespace {

GroupMember Member(std::string id, std::vector<int32_t> partitions) {
  return {.id = std::move(id),
          .client_id = "rotor",
          .host = "/127.0.0.1",
          .partitions = std::move(partitions)};
}

// Members sorted by id form a ring; a member copies the partitions of the `replicas` members
// before it, never its own or what it owns, and nothing when it is not in the group.
TEST(StandbyPartitionsTest, EachMemberCopiesThePartitionsOfTheMembersBeforeItInIdOrder) {
  const std::vector<GroupMember> members = {
      Member("m-c", {4, 5}),
      Member("m-a", {0, 1}),
      Member("m-b", {2, 3}),
  };
  EXPECT_EQ(StandbyPartitions(members, "m-a", 1, {0, 1}), (std::set<int32_t>{4, 5}));
  EXPECT_EQ(StandbyPartitions(members, "m-b", 1, {2, 3}), (std::set<int32_t>{0, 1}));
  EXPECT_EQ(StandbyPartitions(members, "m-c", 1, {4, 5}), (std::set<int32_t>{2, 3}));
  // Two replicas: the two members before; more replicas than other members: every other one.
  EXPECT_EQ(StandbyPartitions(members, "m-a", 2, {0, 1}), (std::set<int32_t>{2, 3, 4, 5}));
  EXPECT_EQ(StandbyPartitions(members, "m-a", 16, {0, 1}), (std::set<int32_t>{2, 3, 4, 5}));
  // What this instance owns already (the group described before its last assignment) is not
  // copied.
  EXPECT_EQ(StandbyPartitions(members, "m-a", 1, {0, 1, 5}), (std::set<int32_t>{4}));
  EXPECT_TRUE(StandbyPartitions(members, "m-x", 1, {}).empty());
  EXPECT_TRUE(StandbyPartitions({Member("m-a", {0})}, "m-a", 1, {0}).empty());
  EXPECT_TRUE(StandbyPartitions(members, "m-a", 0, {0, 1}).empty());
  // Every partition has a copy on another member with one replica.
  std::set<int32_t> covered;
  for (const auto& m : members) {
    const std::set<int32_t> own(m.partitions.begin(), m.partitions.end());
    for (const int32_t p : StandbyPartitions(members, m.id, 1, own)) {
      EXPECT_FALSE(own.contains(p));
      covered.insert(p);
    }
  }
  EXPECT_EQ(covered, (std::set<int32_t>{0, 1, 2, 3, 4, 5}));
}

TEST(StandbyPartitionsTest, ThePositionKeyNamesTheChangelogAndThePartition) {
  EXPECT_EQ(StandbyPositionKey("g.changelog", 3), "standby/g.changelog/3");
}

}  // namespace
}  // namespace rotor::pipeline::internal
