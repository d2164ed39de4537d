// Small Kafka utilities around the daemon: an in-process mock cluster (the embedded default and
// the fault-injection harness), a producer of JSON-lines event files (the demo feeder and the
// load generator) and a topic reader (tests, the demo, `rotor consume`). librdkafka stays in
// the .cc files.

#ifndef ROTOR_PIPELINE_KAFKA_TOOLS_H_
#define ROTOR_PIPELINE_KAFKA_TOOLS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace rotor::pipeline {

// librdkafka's mock cluster (rdkafka_mock.h) hosted in this process: real Kafka protocol on
// loopback ports, no transactions, no compaction, at most about 5 MiB (or 100000 messages)
// kept per partition before the oldest are dropped.
//
// Lifecycle: the cluster lives until destruction; clients must be closed first.
// Concurrency: fault-injection calls are thread-safe (librdkafka locks the cluster).
class EmbeddedKafka {
 public:
  static Result<std::unique_ptr<EmbeddedKafka>> Start(int brokers = 1);
  ~EmbeddedKafka();
  EmbeddedKafka(const EmbeddedKafka&) = delete;
  EmbeddedKafka& operator=(const EmbeddedKafka&) = delete;

  const std::string& bootstrap_servers() const { return bootstrap_; }
  Status CreateTopic(const std::string& topic, int32_t partitions);
  // Takes broker `id` (1-based) down (connections closed, refused) or back up.
  Status SetBrokerDown(int32_t id, bool down);
  // The next `errors.size()` requests of Kafka API `api_key` (0 = Produce, 1 = Fetch, ...)
  // fail with these error codes (librdkafka's rd_kafka_resp_err_t values).
  void PushRequestErrors(int16_t api_key, const std::vector<int>& errors);
  // The next `count` requests of Kafka API `api_key` to broker `id` succeed, but their responses
  // come `delay_ms` late (a slow broker: a client's request times out meanwhile).
  // (Metadata requests are never delayed by it: the mock answers them without looking.)
  void DelayRequests(int32_t id, int16_t api_key, int count, int delay_ms);
  // Every response of broker `id` comes `rtt_ms` late from now on (0: on time again).
  Status SetBrokerRoundTrip(int32_t id, int rtt_ms);
  // Makes broker `leader` (1-based) the leader of the partition; -1 leaves it without one.
  Status SetPartitionLeader(const std::string& topic, int32_t partition, int32_t leader);

 private:
  struct Impl;
  explicit EmbeddedKafka(std::unique_ptr<Impl> impl, std::string bootstrap);
  std::unique_ptr<Impl> impl_;
  std::string bootstrap_;
};

// Creates `topics` with `partitions` partitions each (replication factor 1); topics that
// already exist are left as they are. `properties` are extra librdkafka properties of the admin
// client (`rotor topics` passes kafka.producer_properties: the admin client is a producer
// handle, and security settings are the same for both); bootstrap.servers is always
// `bootstrap_servers`.
//
// It returns once every partition of every topic answers its leader (see
// WaitForPartitionsOnline), not when the controller has accepted the request: a producer that
// starts at once could otherwise lose records.
// `topic_configs` gives topic-level settings of some of them (cleanup.policy, ...).
Status CreateTopics(
    const std::string& bootstrap_servers, const std::vector<std::string>& topics,
    int32_t partitions, const std::map<std::string, std::string>& properties = {},
    const std::map<std::string, std::map<std::string, std::string>>& topic_configs = {});

// The topic settings of a state changelog (docs/daemon.md, "State changelog"): compacted, and
// never compacted within min.compaction.lag.ms of a write, so a restore always finds the
// uncompacted tail it may have to leave out (records past the group's committed offset).
std::map<std::string, std::string> ChangelogTopicConfigs();

// Waits until every partition of `topics` has a leader that answers a ListOffsets request,
// for at most `timeout_ms`; Unavailable naming the first partition that did not (and why)
// after that, NotFound for a topic the cluster does not know by then.
//
// Why: a partition is in the metadata before its leader has loaded it. A produce request that
// reaches it then fails (NOT_LEADER_OR_FOLLOWER) while a later request of the same idempotent
// producer, sent meanwhile, may succeed: the broker takes any first sequence number from a
// producer it holds no state for (KAFKA-15591, fixed only in brokers of 2026), and
// librdkafka 2.0 then counts the failed records as delivered and never resends them.
Status WaitForPartitionsOnline(const std::string& bootstrap_servers,
                               const std::vector<std::string>& topics, int64_t timeout_ms,
                               const std::map<std::string, std::string>& properties = {});

// The partition of a record keyed `key` in a topic of `partitions` partitions, as Kafka's Java
// client places it: toPositive(murmur2(key)) % partitions; -1 when partitions < 1. Where
// `rotor produce` puts a user, and what the daemon checks (`wrong_partition`).
int32_t JavaPartitionOf(std::string_view key, int32_t partitions);

// The "user_id" string of one JSON event line (the message key the input topic expects), or
// nullopt when the line is not a JSON object with a string user_id.
std::optional<std::string> UserIdOfLine(std::string_view line);

// Options of ProduceJsonLines.
struct ProduceOptions {
  std::string bootstrap_servers;
  std::string topic;
  double rate_per_s = 0;  // 0: as fast as possible.
  int64_t limit = -1;     // Lines to send (-1: all).
  // Extra librdkafka producer properties (kafka.producer_properties); they may change the
  // defaults (linger.ms 5) but not bootstrap.servers or enable.idempotence (true).
  std::map<std::string, std::string> properties;
  // Called before each message with the number sent so far; returning false waits 1 ms and
  // asks again (the embedded demo uses it to bound how far the feeder runs ahead).
  std::function<bool(int64_t)> may_send;
  const std::atomic<bool>* stop = nullptr;
};

struct ProduceResult {
  int64_t sent = 0;
  int64_t failed = 0;  // Delivery failures after librdkafka's retries.
  double seconds = 0;
};

// Sends every line of a JSON-lines file to `topic`, keyed by the line's "user_id" string
// (lines without one are sent unkeyed: the daemon dead-letters them), waiting for delivery.
// Keyed lines go to the partition Kafka's Java client would choose (partitioner
// murmur2_random, whatever `properties` says; internal::JavaPartition computes it).
Result<ProduceResult> ProduceJsonLines(const std::string& path, const ProduceOptions& options);

// One consumed message.
struct TopicMessage {
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::optional<std::string> key;  // nullopt: the message has no key (not even an empty one).
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct ReadOptions {
  std::string bootstrap_servers;
  std::string topic;
  bool read_committed = true;
  // Stop after this many messages (-1: no limit), or when nothing arrived for idle_ms after
  // every partition reached its end, or after timeout_ms in all.
  int64_t max_messages = -1;
  int64_t idle_ms = 2000;
  int64_t timeout_ms = 60000;
  // Extra librdkafka consumer properties (kafka.consumer_properties: security.protocol, sasl.*,
  // ...). The reader's own settings win: bootstrap.servers, group.id, enable.auto.commit,
  // enable.partition.eof and isolation.level (from read_committed).
  std::map<std::string, std::string> properties;
  std::function<void(const TopicMessage&)> on_message;  // Instead of collecting, when set.
};

// Reads `topic` from the beginning (no consumer group; every partition assigned).
Result<std::vector<TopicMessage>> ReadTopic(const ReadOptions& options);

}  // namespace rotor::pipeline

#endif  // ROTOR_PIPELINE_KAFKA_TOOLS_H_
