#include "pipeline/internal/rdkafka_util.h"

#include <map>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rotor::pipeline::internal {
namespace {

TEST(ClassifyDeliveryErrorTest, OutagesAndTimeoutsAreRedoneRefusalsStop) {
  for (const rd_kafka_resp_err_t err :
       {RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__TRANSPORT,
        RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__PURGE_QUEUE,
        RD_KAFKA_RESP_ERR__PURGE_INFLIGHT, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS}) {
    EXPECT_EQ(ClassifyDeliveryError(err), DeliveryError::kTransient) << rd_kafka_err2name(err);
  }
  // Redoing these fails the same way: the old daemon redid them forever.
  for (const rd_kafka_resp_err_t err :
       {RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_RECORD,
        RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
        RD_KAFKA_RESP_ERR__FATAL, RD_KAFKA_RESP_ERR__FENCED, RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
        RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH}) {
    EXPECT_EQ(ClassifyDeliveryError(err), DeliveryError::kPermanent) << rd_kafka_err2name(err);
  }
}

TEST(FromKafkaTest, AFencedProducerMustStopNotRetry) {
  // Aborted means "redo the transaction" to the daemon; a fenced producer can redo nothing.
  for (const rd_kafka_resp_err_t err :
       {RD_KAFKA_RESP_ERR__FENCED, RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
        RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH, RD_KAFKA_RESP_ERR__FATAL}) {
    const Status s = FromKafka(err, "producing");
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  }
  EXPECT_EQ(FromKafka(RD_KAFKA_RESP_ERR__TRANSPORT, "x").code(), StatusCode::kUnavailable);
  EXPECT_TRUE(FromKafka(RD_KAFKA_RESP_ERR_NO_ERROR, "x").ok());
}

TEST(FirstPartitionErrorTest, APartitionThatCouldNotBeReadIsAnError) {
  PartitionListPtr list(rd_kafka_topic_partition_list_new(3));
  rd_kafka_topic_partition_list_add(list.get(), "events", 0)->offset = 12;
  rd_kafka_topic_partition_list_add(list.get(), "events", 1)->err =
      RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED;
  rd_kafka_topic_partition_list_add(list.get(), "events", 2)->offset = RD_KAFKA_OFFSET_INVALID;
  const Status s = FirstPartitionError(list.get(), "reading the group's committed offsets");
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.ToString();
  EXPECT_NE(s.message().find("partition 1 of 'events'"), std::string::npos) << s.ToString();
  list->elems[1].err = RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE;
  EXPECT_EQ(FirstPartitionError(list.get(), "x").code(), StatusCode::kUnavailable);
  list->elems[1].err = RD_KAFKA_RESP_ERR_NO_ERROR;
  EXPECT_TRUE(FirstPartitionError(list.get(), "x").ok());
}

// A full send queue (the broker away) is waited on, but not past a stop: the daemon's loop
// used to spin in here with nothing to end it.
TEST(ProduceCopyTest, AFullQueueGivesUpWhenAskedToStop) {
  ConfPtr conf(rd_kafka_conf_new());
  ASSERT_TRUE(SetConf(conf.get(), "bootstrap.servers", "127.0.0.1:1").ok());
  ASSERT_TRUE(SetConf(conf.get(), "queue.buffering.max.messages", "1").ok());
  ASSERT_TRUE(SetConf(conf.get(), "log_level", "0").ok());
  auto producer = NewHandle(RD_KAFKA_PRODUCER, std::move(conf));
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  const std::string topic = "t";
  std::atomic<bool> stop{false};
  EXPECT_EQ(ProduceCopy(producer->get(), topic, nullptr, 0, "a", 1, nullptr, nullptr, &stop),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  stop = true;
  EXPECT_EQ(ProduceCopy(producer->get(), topic, nullptr, 0, "b", 1, nullptr, nullptr, &stop),
            RD_KAFKA_RESP_ERR__QUEUE_FULL);
  rd_kafka_purge(producer->get(), RD_KAFKA_PURGE_F_QUEUE);
}

using ::testing::HasSubstr;
using ::testing::Not;

// librdkafka refuses an unknown property; the message names it and shows an ordinary value.
TEST(RdkafkaUtilTest, SetConfErrorsNameThePropertyAndShowOrdinaryValues) {
  const ConfPtr conf(rd_kafka_conf_new());
  const Status s = SetConf(conf.get(), "linger.msec", "25");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("kafka property 'linger.msec' = '25': "));
}

// A secret's value never reaches the message, even where librdkafka's own reason repeats it.
TEST(RdkafkaUtilTest, SetConfNeverShowsASecretValue) {
  const ConfPtr conf(rd_kafka_conf_new());
  Status s = SetConf(conf.get(), "sasl.passw0rd.typo", "hunter2");  // Unknown: refused.
  ASSERT_FALSE(s.ok());
  // Not a secret by name (no "password"): shown.
  EXPECT_THAT(std::string(s.message()), HasSubstr("'hunter2'"));

  s = SetConf(conf.get(), "my.password", "hunter2");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("hunter2")));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("kafka property 'my.password' = (secret, not shown): "));

  // An enum property whose reason quotes the bad value ("Invalid value "..." for ...").
  s = SetConf(conf.get(), "security.protocol", "hunter2");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("hunter2"));  // Not secret.

  const std::map<std::string, std::string> props = {{"ssl.key.password", "x"},
                                                    {"x.client.secret", "hunter2"}};
  s = SetConf(conf.get(), props);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("hunter2")));
  EXPECT_THAT(std::string(s.message()), HasSubstr("'x.client.secret'"));
}

// A reason that repeats a secret value is masked too (librdkafka echoes enum values).
TEST(RdkafkaUtilTest, SecretValuesAreMaskedInsideLibrdkafkasReason) {
  EXPECT_EQ(MaskSecret("Invalid value \"hunter2\" for property", "hunter2"),
            "Invalid value \"***\" for property");
  EXPECT_EQ(MaskSecret("no value here", "hunter2"), "no value here");
  EXPECT_EQ(MaskSecret("reason", ""), "reason");
}

}  // namespace
}  // namespace rotor::pipeline::internal
