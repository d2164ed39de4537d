#include "pipeline/internal/rdkafka_util.h"

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

}  // namespace
}  // namespace rotor::pipeline::internal
