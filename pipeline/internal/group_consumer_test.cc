// GroupConsumer on its own against librdkafka's mock cluster: where it resumes (the store's
// offsets), what it marks as already published (the group's committed offset), what it never
// admits twice, the partition-count check, and its only call back, the revoke.

#include "pipeline/internal/group_consumer.h"

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include "pipeline/internal/testing.h"
#include "pipeline/kafka_tools.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline::internal {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kTopic = "events";
constexpr std::string_view kGroup = "rotor-group-consumer-test";

// Records the calls a revoke makes; BeforeRevoke answers `drained`.
class RecordingListener : public GroupConsumer::Listener {
 public:
  Status BeforeRevoke() override {
    calls.emplace_back("before");
    return drained;
  }
  void AfterRevoke(std::span<const TopicPartition> partitions) override {
    calls.emplace_back("after");
    revoked.insert(revoked.end(), partitions.begin(), partitions.end());
  }

  Status drained;
  std::vector<std::string> calls;
  std::vector<TopicPartition> revoked;  // What AfterRevoke was told, in order.
};

class GroupConsumerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto kafka = EmbeddedKafka::Start(1);
    ASSERT_TRUE(kafka.ok()) << kafka.status().ToString();
    kafka_ = std::move(kafka).value();
    ASSERT_TRUE(kafka_->CreateTopic(std::string(kTopic), 1).ok());
    auto store = storage::UserStateStore::Open(
        {.path = dir_.path(), .sync_writes = false, .create_if_missing = true});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    config_.kafka.input_topic = std::string(kTopic);
    config_.kafka.group_id = std::string(kGroup);
    config_.state.dir = dir_.path();
  }

  void TearDown() override {
    consumer_.reset();
    store_.reset();
  }

  // `n` messages into partition 0, offsets 0..n-1.
  void ProduceMessages(int n) const {
    ConfPtr conf(rd_kafka_conf_new());
    ASSERT_TRUE(SetConf(conf.get(), "bootstrap.servers", kafka_->bootstrap_servers()).ok());
    auto producer = NewHandle(RD_KAFKA_PRODUCER, std::move(conf));
    ASSERT_TRUE(producer.ok()) << producer.status().ToString();
    rd_kafka_topic_t* topic =
        rd_kafka_topic_new(producer->get(), std::string(kTopic).c_str(), nullptr);
    for (int i = 0; i < n; ++i) {
      std::string value = fmt::format("v{}", i);
      ASSERT_EQ(rd_kafka_produce(topic, 0, RD_KAFKA_MSG_F_COPY, value.data(), value.size(), nullptr,
                                 0, nullptr),
                0);
    }
    rd_kafka_topic_destroy(topic);
    ASSERT_EQ(rd_kafka_flush(producer->get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  // Commits `offset` as the group's offset of partition 0, as a previous owner would have.
  void CommitGroupOffset(int64_t offset) const {
    ConfPtr conf(rd_kafka_conf_new());
    ASSERT_TRUE(SetConf(conf.get(), "bootstrap.servers", kafka_->bootstrap_servers()).ok());
    ASSERT_TRUE(SetConf(conf.get(), "group.id", std::string(kGroup)).ok());
    auto consumer = NewHandle(RD_KAFKA_CONSUMER, std::move(conf));
    ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
    const PartitionListPtr offsets = ToPartitionList({{{std::string(kTopic), 0}, offset}});
    ASSERT_EQ(rd_kafka_commit(consumer->get(), offsets.get(), 0), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_consumer_close(consumer->get());
  }

  void StoreOffset(int64_t next) const {
    storage::StateBatch batch = store_->NewBatch();
    ASSERT_TRUE(batch.SetOffset(kTopic, 0, next).ok());
    ASSERT_TRUE(store_->Commit(batch).ok());
  }

  Result<std::unique_ptr<GroupConsumer>> Create(int32_t partitions = 1) {
    return GroupConsumer::Create(config_, kafka_->bootstrap_servers(), partitions, *store_,
                                 shutdown_, failure_, listener_);
  }

  // Polls until a message of offset `last` arrived (or 20 s passed); the messages, not events.
  std::vector<MessagePtr> PollUntil(int64_t last) {
    std::vector<MessagePtr> messages;
    const auto deadline = SteadyClock::now() + std::chrono::seconds(20);
    while (SteadyClock::now() < deadline) {
      MessagePtr m = consumer_->PollMessage(100);
      if (!m || m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        continue;
      }
      const int64_t offset = m->offset;
      messages.push_back(std::move(m));
      if (offset >= last) {
        break;
      }
    }
    return messages;
  }

  testing::TempDir dir_{"rotor_group_consumer_test"};
  std::unique_ptr<EmbeddedKafka> kafka_;
  std::unique_ptr<storage::UserStateStore> store_;
  config::DaemonConfig config_;
  ShutdownClock shutdown_{15000};
  FailureLatch failure_;
  RecordingListener listener_;
  std::unique_ptr<GroupConsumer> consumer_;
};

// Progress: a partition whose stored offset (4) is below the group's committed offset (7) is
// restoring until the records in between are admitted, then consuming; the lag counts from the
// next offset to apply to the high watermark.
TEST_F(GroupConsumerTest, ProgressIsRestoringUntilTheGroupsOffsetThenConsumingWithLag) {
  ASSERT_NO_FATAL_FAILURE(ProduceMessages(10));
  ASSERT_NO_FATAL_FAILURE(StoreOffset(4));
  ASSERT_NO_FATAL_FAILURE(CommitGroupOffset(7));
  auto consumer = Create();
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  consumer_ = std::move(consumer).value();
  EXPECT_EQ(consumer_->assignments(), 0);
  EXPECT_TRUE(consumer_->Progress().empty());
  const uint64_t changes = consumer_->changes();

  std::vector<MessagePtr> messages = PollUntil(9);
  ASSERT_EQ(messages.size(), 6U);
  EXPECT_EQ(consumer_->assignments(), 1);
  EXPECT_GT(consumer_->changes(), changes);
  std::vector<PartitionReport> progress = consumer_->Progress();
  ASSERT_EQ(progress.size(), 1U);
  EXPECT_EQ(progress[0].partition, (TopicPartition{std::string(kTopic), 0}));
  EXPECT_EQ(progress[0].phase, PartitionPhase::kRestoring);
  EXPECT_EQ(progress[0].next_offset, 4);
  EXPECT_EQ(progress[0].high_watermark, 10);
  EXPECT_EQ(progress[0].reason,
            "partition 0 of 'events' is restoring: 3 records to re-apply (offsets 4 to 6, which "
            "the group published already)");

  // Offsets 4 and 5 applied: still restoring, one left.
  std::vector<MessagePtr> first;
  first.push_back(std::move(messages[0]));
  first.push_back(std::move(messages[1]));
  std::vector<InputRecord> records;
  consumer_->Admit(first, records);
  ASSERT_EQ(records.size(), 2U);
  progress = consumer_->Progress();
  EXPECT_EQ(progress[0].phase, PartitionPhase::kRestoring);
  EXPECT_EQ(progress[0].next_offset, 6);
  EXPECT_NE(progress[0].reason.find("1 records to re-apply"), std::string::npos)
      << progress[0].reason;

  // Offset 6 applied: consuming (the records from 7 on are published).
  std::vector<MessagePtr> third;
  third.push_back(std::move(messages[2]));
  records.clear();
  consumer_->Admit(third, records);
  progress = consumer_->Progress();
  EXPECT_EQ(progress[0].phase, PartitionPhase::kConsuming);
  EXPECT_TRUE(progress[0].reason.empty()) << progress[0].reason;
  EXPECT_EQ(progress[0].next_offset, 7);

  std::vector<MessagePtr> rest;
  for (std::size_t i = 3; i < messages.size(); ++i) {
    rest.push_back(std::move(messages[i]));
  }
  records.clear();
  consumer_->Admit(rest, records);
  progress = consumer_->Progress();
  EXPECT_EQ(progress[0].phase, PartitionPhase::kConsuming);
  EXPECT_EQ(progress[0].next_offset, 10);
  EXPECT_EQ(progress[0].lag, 0);
}

TEST_F(GroupConsumerTest, ResumesAtTheStoredOffsetAndPublishesOnlyFromTheGroupsOffset) {
  ASSERT_NO_FATAL_FAILURE(ProduceMessages(10));
  ASSERT_NO_FATAL_FAILURE(StoreOffset(4));
  ASSERT_NO_FATAL_FAILURE(CommitGroupOffset(7));
  auto consumer = Create();
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  consumer_ = std::move(consumer).value();

  const std::vector<MessagePtr> messages = PollUntil(9);
  std::vector<InputRecord> records;
  consumer_->Admit(messages, records);
  ASSERT_EQ(records.size(), 6U) << "not resumed at the store's offset 4";
  for (const InputRecord& r : records) {
    EXPECT_EQ(r.topic, kTopic);
    EXPECT_EQ(r.partitions, 1);
    EXPECT_EQ(r.value, fmt::format("v{}", r.offset));
    EXPECT_EQ(r.publish, r.offset >= 7) << "offset " << r.offset;
  }
  EXPECT_EQ(records.front().offset, 4);
  EXPECT_TRUE(consumer_->has_assignment());
  EXPECT_TRUE(consumer_->CaughtUp());
  EXPECT_TRUE(consumer_->rebalance_error().ok()) << consumer_->rebalance_error().ToString();

  // The same messages again (a fetch from before a seek): none is admitted twice.
  std::vector<InputRecord> again;
  consumer_->Admit(messages, again);
  EXPECT_TRUE(again.empty());
  EXPECT_EQ(consumer_->stats().skipped_records, 6);

  // Only offsets that move the group's committed offset (7) forward are committed for a batch.
  PendingBatch batch{.seq = 0,
                     .outputs = {},
                     .state = store_->NewBatch(),
                     .next_offsets = {{{std::string(kTopic), 0}, 6}},
                     .users = {},
                     .watermarks = {},
                     .events = 0};
  EXPECT_TRUE(consumer_->GroupOffsets(batch).empty());
  batch.next_offsets = {{{std::string(kTopic), 0}, 10}};
  EXPECT_EQ(consumer_->GroupOffsets(batch), (PartitionOffsets{{{std::string(kTopic), 0}, 10}}));

  // A rewind goes back to the store's offset: the records from 4 on are admitted again.
  ASSERT_TRUE(consumer_->Rewind().ok());
  const std::vector<MessagePtr> redone = PollUntil(9);
  std::vector<InputRecord> replayed;
  consumer_->Admit(redone, replayed);
  ASSERT_FALSE(replayed.empty());
  EXPECT_EQ(replayed.front().offset, 4);
  EXPECT_EQ(replayed.back().offset, 9);
}

// The revoke is the consumer's one call back: it asks the owner to drain, then to drop its
// cache of the revoked partitions (named); a drain that abandoned batches leaves a rewind pending,
// which Rewind clears.
TEST_F(GroupConsumerTest, ARevokeDrainsFirstAndAnAbandonedDrainLeavesARewindPending) {
  ASSERT_NO_FATAL_FAILURE(ProduceMessages(3));
  auto consumer = Create();
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  consumer_ = std::move(consumer).value();
  ASSERT_EQ(PollUntil(2).size(), 3U);
  listener_.drained = Status::Aborted("batches abandoned");
  EXPECT_TRUE(consumer_->Close().ok());
  EXPECT_EQ(listener_.calls, (std::vector<std::string>{"before", "after"}));
  EXPECT_EQ(listener_.revoked, (std::vector<TopicPartition>{{std::string(kTopic), 0}}));
  EXPECT_TRUE(consumer_->rewind_pending());
  EXPECT_TRUE(consumer_->rebalance_error().ok()) << "an abandoned drain is not an error";
  EXPECT_FALSE(consumer_->has_assignment());
  EXPECT_TRUE(consumer_->Rewind().ok());
  EXPECT_FALSE(consumer_->rewind_pending());
}

TEST_F(GroupConsumerTest, AnInputTopicWithAnotherPartitionCountThanTheStatesIsRefused) {
  auto first = Create(1);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  first->reset();
  auto other = Create(2);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(other.status().message().find("has 2 partitions"), std::string::npos)
      << other.status().ToString();
}

}  // namespace
}  // namespace rotor::pipeline::internal
