#include "common/topic_partition.h"

#include <unordered_set>

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace rotor {
namespace {

TEST(TopicPartitionTest, OrdersByTopicThenPartition) {
  const TopicPartition a0{"a", 0};
  const TopicPartition a1{"a", 1};
  const TopicPartition b0{"b", 0};
  EXPECT_LT(a0, a1);
  EXPECT_LT(a1, b0);
  EXPECT_EQ(a1, (TopicPartition{"a", 1}));
  EXPECT_NE(a0, a1);
  // "a1" sorts after "a" whatever the partitions: the topic decides first.
  EXPECT_LT((TopicPartition{"a", 9}), (TopicPartition{"a1", 0}));
}

TEST(TopicPartitionTest, KeysMapsAndHashSets) {
  PartitionOffsets offsets;
  offsets[{"events", 1}] = 10;
  offsets[{"events", 0}] = 5;
  offsets[{"events", 1}] = 12;
  ASSERT_EQ(offsets.size(), 2U);
  EXPECT_EQ(offsets.begin()->first.partition, 0);
  EXPECT_EQ(offsets.at({"events", 1}), 12);

  std::unordered_set<TopicPartition> seen = {{"events", 0}, {"events", 1}, {"other", 0}};
  EXPECT_EQ(seen.size(), 3U);
  EXPECT_TRUE(seen.contains({"events", 1}));
  EXPECT_FALSE(seen.contains({"events", 2}));
  EXPECT_EQ(std::hash<TopicPartition>()({"t", 3}), std::hash<TopicPartition>()({"t", 3}));
}

TEST(TopicPartitionTest, FormatsAsRotorsMessagesNameAPartition) {
  EXPECT_EQ(fmt::format("{}", TopicPartition{"events", 3}), "partition 3 of 'events'");
}

}  // namespace
}  // namespace rotor
