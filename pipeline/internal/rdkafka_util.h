// librdkafka plumbing shared by pipeline/'s .cc files: RAII handles, configuration with errors
// naming the property, the callbacks every client installs (logs, error events), and the
// translation of librdkafka errors into Status.

#ifndef ROTOR_PIPELINE_INTERNAL_RDKAFKA_UTIL_H_
#define ROTOR_PIPELINE_INTERNAL_RDKAFKA_UTIL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <librdkafka/rdkafka.h>

#include "common/status.h"
#include "common/topic_partition.h"
#include "config/daemon_config.h"
#include "pipeline/processor.h"

namespace rotor::pipeline::internal {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using HandlePtr = std::unique_ptr<rd_kafka_t, HandleDeleter>;
using PartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;
struct GroupMetadataDeleter {
  void operator()(rd_kafka_consumer_group_metadata_t* g) const {
    rd_kafka_consumer_group_metadata_destroy(g);
  }
};
using MessagePtr = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;
using GroupMetadataPtr = std::unique_ptr<rd_kafka_consumer_group_metadata_t, GroupMetadataDeleter>;

// A partition list holding `offsets` (each entry with its offset), in their order.
PartitionListPtr ToPartitionList(const PartitionOffsets& offsets);

// rd_kafka_conf_set_log_cb for every rotor client: librdkafka's log lines through spdlog
// (syslog levels 0-3 as errors, 4 as warnings, the rest as debug).
void LogCallback(const rd_kafka_t* rk, int level, const char* fac, const char* buf);

// What an error event (rd_kafka_conf_set_error_cb) means. A fatal one (the idempotent producer
// lost its guarantees, a fenced transactional producer) returns the Status serving must stop
// with, naming librdkafka's cause; the rest are logged as warnings (librdkafka retries them)
// and return nullopt.
std::optional<Status> FatalClientError(rd_kafka_t* rk, int err, const char* reason);

// Sets one property; InvalidArgument "kafka property '<key>' = '<value>': <librdkafka's reason>".
// A secret property's value (config::IsSecretProperty: passwords, secrets, keys) is shown as
// "(secret, not shown)" and masked wherever librdkafka's reason repeats it.
Status SetConf(rd_kafka_conf_t* conf, std::string_view key, std::string_view value);
Status SetConf(rd_kafka_conf_t* conf, const std::map<std::string, std::string>& properties);

// `text` with every occurrence of `secret` replaced by "***" (`text` itself when secret is
// empty).
std::string MaskSecret(std::string_view text, std::string_view secret);

// rd_kafka_new; on failure Unavailable/InvalidArgument with librdkafka's message. Takes the conf
// (freed by librdkafka on success, by the ConfPtr otherwise).
Result<HandlePtr> NewHandle(rd_kafka_type_t type, ConfPtr conf);

// Produces one message, copying key and value (key may be null), through rd_kafka_produceva
// (the RD_KAFKA_V_* macros of rd_kafka_producev use GNU statement expressions, which clang
// refuses under -Wpedantic). While librdkafka's queue is full it serves delivery reports for
// 10 ms and tries again, until `stop` (when given) is set: then it returns
// RD_KAFKA_RESP_ERR__QUEUE_FULL. Takes `headers` (may be null) in every case. `opaque` reaches
// the delivery report as the message's _private. A null `value` is a null value (a tombstone).
// `partition`: RD_KAFKA_PARTITION_UA lets the producer's partitioner place the message.
rd_kafka_resp_err_t ProduceCopy(rd_kafka_t* producer, const std::string& topic, const void* key,
                                std::size_t key_len, const void* value, std::size_t value_len,
                                rd_kafka_headers_t* headers, void* opaque = nullptr,
                                const std::atomic<bool>* stop = nullptr,
                                int32_t partition = RD_KAFKA_PARTITION_UA);

// A consumer that reads assigned partitions without joining a group or committing anything
// (a replay's reader, a changelog restore's): kafka.consumer_properties first, then settings
// the readers rely on, which win: group.id "<group_id>.<role>" (never joined), client.id
// "<client_id>-<role>", no auto commit or offset store, partition EOF events, read_committed,
// auto.offset.reset "error" (a position out of range is an error, not a jump); then
// `overrides` (fetch sizes). Polled with rd_kafka_consumer_poll.
Result<HandlePtr> NewAssignedConsumer(const std::string& bootstrap, const std::string& group_id,
                                      const std::string& client_id,
                                      const std::map<std::string, std::string>& properties,
                                      std::string_view role,
                                      const std::map<std::string, std::string>& overrides);

// The record `m` (a message without error) is, as the Processor takes it: views into `m`,
// which must outlive the record; its Kafka timestamp; `topic` has `partitions` partitions.
InputRecord RecordOf(const rd_kafka_message_t& m, std::string_view topic, int32_t partitions,
                     bool publish);

// A Status for `err`: Unavailable for transport errors and timeouts, FailedPrecondition for a
// fenced or fatally failed producer (it must stop: another instance owns its transactional.id,
// or its idempotence guarantees broke), Internal else; ok for RD_KAFKA_RESP_ERR_NO_ERROR.
Status FromKafka(rd_kafka_resp_err_t err, std::string_view context);
// Same for an rd_kafka_error_t, which it destroys (null is ok).
Status FromKafkaError(rd_kafka_error_t* error, std::string_view context);

// What a failed delivery (an error in a delivery report, or produce() refusing a message) means
// for the batch that holds the message.
enum class DeliveryError : unsigned char {
  // The same message may be delivered later: the broker was away or slow, a leader moved, the
  // message timed out in librdkafka's queue, or rotor purged it. Redo the batch.
  kTransient,
  // Sending it again fails again: the broker refuses the record (too large, invalid), the
  // client lacks rights, the topic does not exist, or the producer was fenced or failed
  // fatally. Stop serving; nothing of the batch may commit.
  kPermanent,
};
DeliveryError ClassifyDeliveryError(rd_kafka_resp_err_t err);

// One topic as the cluster's metadata lists it.
struct TopicMetadata {
  bool ok = false;     // The broker reported no error for it.
  std::string status;  // librdkafka's words for its error code ("Success" when ok).
  int32_t partitions = 0;
};
// Every topic of the cluster (all of them: a request naming topics would make a broker with
// auto.create.topics.enable create them with its defaults), read through `rk`. Unavailable
// with librdkafka's reason when no broker answered within `timeout_ms`.
Result<std::map<std::string, TopicMetadata, std::less<>>> ReadTopicMetadata(rd_kafka_t* rk,
                                                                            int timeout_ms);
// Start-up's check of what ReadTopicMetadata `found` on `bootstrap` (through any client): the
// partition count of topics[0] (the input) once every one of `topics` is available.
// Unavailable when no broker answered within kafka.connect_timeout_ms; FailedPrecondition
// naming the first missing topic and how to create it (for kafka.changelog_topic, also how to
// run without it).
Result<int32_t> RequireTopics(
    const Result<std::map<std::string, TopicMetadata, std::less<>>>& found,
    const config::KafkaOptions& kafka, std::string_view bootstrap,
    std::span<const std::string> topics);

// The first per-partition error in a list librdkafka filled (rd_kafka_committed and the like
// report a partition they could not read there, not in their return value), as FromKafka's
// Status naming the partition; ok when there is none.
Status FirstPartitionError(const rd_kafka_topic_partition_list_t* list, std::string_view context);

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_RDKAFKA_UTIL_H_
