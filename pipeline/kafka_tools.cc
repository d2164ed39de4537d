#include "pipeline/kafka_tools.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <fstream>
#include <optional>
#include <set>
#include <thread>

#include <librdkafka/rdkafka.h>
// rdkafka_mock.h needs rdkafka.h first.

#include <librdkafka/rdkafka_mock.h>

#include "common/topic_partition.h"
#include "encoders/event_parser.h"
#include "pipeline/internal/partitioner.h"
#include "pipeline/internal/rdkafka_util.h"

namespace rotor::pipeline {
namespace {

using internal::ConfPtr;
using internal::HandlePtr;
using internal::MessagePtr;
using internal::NewHandle;
using internal::SetConf;

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Counts delivery failures of a producer (its opaque points at the counter).
void CountFailures(rd_kafka_t* /*rk*/, const rd_kafka_message_t* m, void* opaque) {
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    static_cast<std::atomic<int64_t>*>(opaque)->fetch_add(1);
  }
}

}  // namespace

std::optional<std::string> UserIdOfLine(std::string_view line) {
  return encoders::UserIdOfEvent(line);  // simdjson stays in encoders/.
}

std::map<std::string, std::string> ChangelogTopicConfigs() {
  return {{"cleanup.policy", "compact"}, {"min.compaction.lag.ms", "3600000"}};
}

Status CreateTopics(
    const std::string& bootstrap_servers, const std::vector<std::string>& topics,
    int32_t partitions, const std::map<std::string, std::string>& properties,
    const std::map<std::string, std::map<std::string, std::string>>& topic_configs) {
  ConfPtr conf(rd_kafka_conf_new());
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), properties));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "bootstrap.servers", bootstrap_servers));
  ROTOR_ASSIGN_OR_RETURN(HandlePtr admin, NewHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  std::vector<rd_kafka_NewTopic_t*> requests;
  std::array<char, 512> err{};
  for (const std::string& topic : topics) {
    rd_kafka_NewTopic_t* t =
        rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err.data(), err.size());
    if (t == nullptr) {
      for (rd_kafka_NewTopic_t* r : requests) {
        rd_kafka_NewTopic_destroy(r);
      }
      return Status::InvalidArgument("topic '{}': {}", topic, err.data());
    }
    requests.push_back(t);
    if (const auto configs = topic_configs.find(topic); configs != topic_configs.end()) {
      for (const auto& [name, value] : configs->second) {
        const rd_kafka_resp_err_t set =
            rd_kafka_NewTopic_set_config(t, name.c_str(), value.c_str());
        if (set != RD_KAFKA_RESP_ERR_NO_ERROR) {
          for (rd_kafka_NewTopic_t* r : requests) {
            rd_kafka_NewTopic_destroy(r);
          }
          return Status::InvalidArgument("topic '{}': setting {}: {}", topic, name,
                                         rd_kafka_err2str(set));
        }
      }
    }
  }
  rd_kafka_queue_t* queue = rd_kafka_queue_new(admin.get());
  rd_kafka_CreateTopics(admin.get(), requests.data(), requests.size(), nullptr, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 60000);
  Status out;
  if (event == nullptr) {
    out = Status::Unavailable("creating topics: no answer from {} in 60 s", bootstrap_servers);
  } else if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    out = Status::Unavailable("creating topics: {}", rd_kafka_event_error_string(event));
  } else {
    const rd_kafka_CreateTopics_result_t* result = rd_kafka_event_CreateTopics_result(event);
    std::size_t n = 0;
    const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(result, &n);
    for (std::size_t i = 0; i < n && out.ok(); ++i) {
      const rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        out = Status::Unavailable("creating topic '{}': {}", rd_kafka_topic_result_name(results[i]),
                                  rd_kafka_topic_result_error_string(results[i]));
      }
    }
  }
  if (event != nullptr) {
    rd_kafka_event_destroy(event);
  }
  rd_kafka_queue_destroy(queue);
  for (rd_kafka_NewTopic_t* r : requests) {
    rd_kafka_NewTopic_destroy(r);
  }
  ROTOR_RETURN_IF_ERROR(out);
  return WaitForPartitionsOnline(bootstrap_servers, topics, 60000, properties);
}

Status WaitForPartitionsOnline(const std::string& bootstrap_servers,
                               const std::vector<std::string>& topics, int64_t timeout_ms,
                               const std::map<std::string, std::string>& properties) {
  ConfPtr conf(rd_kafka_conf_new());
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), properties));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "bootstrap.servers", bootstrap_servers));
  ROTOR_ASSIGN_OR_RETURN(HandlePtr client, NewHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  auto left_ms = [&] {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return static_cast<int>(std::clamp<int64_t>(left.count(), 1, 2000));
  };
  // Each attempt reads the metadata afresh (librdkafka answers from its cache otherwise), then
  // asks the leader of every partition not yet seen online for its offsets.
  std::set<TopicPartition> online;
  // What the last attempt that got the metadata found: the answer at the deadline when the
  // final attempt (given what time was left, down to 1 ms) got none, so a partition without a
  // leader or a missing topic is not reported as a metadata timeout.
  std::string known;
  bool known_missing = false;
  while (true) {
    std::string offline;  // The first topic or partition not online, and why.
    bool missing_topic = false;
    // All topics: a request naming ours would make a broker with auto.create.topics.enable
    // create them with its defaults.
    const rd_kafka_metadata_t* metadata = nullptr;
    const rd_kafka_resp_err_t err =
        rd_kafka_metadata(client.get(), 1, nullptr, &metadata, left_ms());
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      offline = fmt::format("no metadata from {}: {}", bootstrap_servers, rd_kafka_err2str(err));
    } else {
      for (const std::string& topic : topics) {
        const rd_kafka_metadata_topic_t* found = nullptr;
        for (int i = 0; i < metadata->topic_cnt; ++i) {
          if (topic == metadata->topics[i].topic) {
            found = &metadata->topics[i];
          }
        }
        if (found == nullptr || found->err != RD_KAFKA_RESP_ERR_NO_ERROR ||
            found->partition_cnt == 0) {
          missing_topic = true;
          offline =
              fmt::format("topic '{}' on {}: {}", topic, bootstrap_servers,
                          found == nullptr                           ? "not in the metadata"
                          : found->err != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_err2str(found->err)
                                                                     : "no partitions");
          break;
        }
        for (int i = 0; i < found->partition_cnt && offline.empty(); ++i) {
          const rd_kafka_metadata_partition_t& p = found->partitions[i];
          if (online.contains({topic, p.id})) {
            continue;
          }
          rd_kafka_resp_err_t why = p.err != RD_KAFKA_RESP_ERR_NO_ERROR ? p.err
                                    : p.leader < 0 ? RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE
                                                   : RD_KAFKA_RESP_ERR_NO_ERROR;
          if (why == RD_KAFKA_RESP_ERR_NO_ERROR) {
            int64_t low = 0;
            int64_t high = 0;
            why = rd_kafka_query_watermark_offsets(client.get(), topic.c_str(), p.id, &low, &high,
                                                   left_ms());
          }
          if (why == RD_KAFKA_RESP_ERR_NO_ERROR) {
            online.insert({topic, p.id});
          } else {
            offline = fmt::format("partition {} of topic '{}' on {} has no leader that answers: {}",
                                  p.id, topic, bootstrap_servers, rd_kafka_err2str(why));
          }
        }
        if (!offline.empty()) {
          break;
        }
      }
    }
    if (metadata != nullptr) {
      rd_kafka_metadata_destroy(metadata);
      known = offline;
      known_missing = missing_topic;
    }
    if (offline.empty()) {
      break;
    }
    if (Clock::now() >= deadline) {
      if (metadata == nullptr && !known.empty()) {
        offline = fmt::format("{} (then {})", known, offline);
        missing_topic = known_missing;
      }
      return missing_topic ? Status::NotFound("{} after {} ms", offline, timeout_ms)
                           : Status::Unavailable("{} after {} ms", offline, timeout_ms);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status::OK();
}

// ---- EmbeddedKafka ----

struct EmbeddedKafka::Impl {
  HandlePtr owner;  // The rd_kafka_t the mock cluster is attached to.
  rd_kafka_mock_cluster_t* cluster = nullptr;
  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;
  ~Impl() {
    if (cluster != nullptr) {
      rd_kafka_mock_cluster_destroy(cluster);
    }
  }
};

EmbeddedKafka::EmbeddedKafka(std::unique_ptr<Impl> impl, std::string bootstrap)
    : impl_(std::move(impl)), bootstrap_(std::move(bootstrap)) {}
EmbeddedKafka::~EmbeddedKafka() = default;

Result<std::unique_ptr<EmbeddedKafka>> EmbeddedKafka::Start(int brokers) {
  ConfPtr conf(rd_kafka_conf_new());
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "log_level", "3"));
  auto impl = std::make_unique<Impl>();
  ROTOR_ASSIGN_OR_RETURN(impl->owner, NewHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  impl->cluster = rd_kafka_mock_cluster_new(impl->owner.get(), brokers);
  if (impl->cluster == nullptr) {
    return Status::Unavailable("could not start the embedded Kafka mock cluster");
  }
  std::string bootstrap = rd_kafka_mock_cluster_bootstraps(impl->cluster);
  return std::unique_ptr<EmbeddedKafka>(new EmbeddedKafka(std::move(impl), std::move(bootstrap)));
}

Status EmbeddedKafka::CreateTopic(const std::string& topic, int32_t partitions) {
  return internal::FromKafka(
      rd_kafka_mock_topic_create(impl_->cluster, topic.c_str(), partitions, 1),
      fmt::format("creating embedded topic '{}'", topic));
}

Status EmbeddedKafka::SetPartitionLeader(const std::string& topic, int32_t partition,
                                         int32_t leader) {
  return internal::FromKafka(
      rd_kafka_mock_partition_set_leader(impl_->cluster, topic.c_str(), partition, leader),
      fmt::format("setting the leader of partition {} of embedded topic '{}'", partition, topic));
}

Status EmbeddedKafka::SetBrokerDown(int32_t id, bool down) {
  const rd_kafka_resp_err_t err = down ? rd_kafka_mock_broker_set_down(impl_->cluster, id)
                                       : rd_kafka_mock_broker_set_up(impl_->cluster, id);
  return internal::FromKafka(
      err, fmt::format("setting embedded broker {} {}", id, down ? "down" : "up"));
}

Status EmbeddedKafka::SetBrokerRoundTrip(int32_t id, int rtt_ms) {
  return internal::FromKafka(rd_kafka_mock_broker_set_rtt(impl_->cluster, id, rtt_ms),
                             fmt::format("setting embedded broker {}'s round trip", id));
}

void EmbeddedKafka::PushRequestErrors(int16_t api_key, const std::vector<int>& errors) {
  std::vector<rd_kafka_resp_err_t> codes;
  codes.reserve(errors.size());
  for (const int e : errors) {
    codes.push_back(static_cast<rd_kafka_resp_err_t>(e));
  }
  rd_kafka_mock_push_request_errors_array(impl_->cluster, api_key, codes.size(), codes.data());
}

void EmbeddedKafka::DelayRequests(int32_t id, int16_t api_key, int count, int delay_ms) {
  for (int i = 0; i < count; ++i) {
    rd_kafka_mock_broker_push_request_error_rtts(impl_->cluster, id, api_key, 1,
                                                 RD_KAFKA_RESP_ERR_NO_ERROR, delay_ms);
  }
}

// ---- ProduceJsonLines ----

Result<ProduceResult> ProduceJsonLines(const std::string& path, const ProduceOptions& options) {
  std::ifstream in(path);
  if (!in) {
    return Status::IOError("cannot read events file '{}'", path);
  }
  std::atomic<int64_t> failures{0};
  ConfPtr conf(rd_kafka_conf_new());
  // Defaults, then the caller's properties, then what the producer relies on.
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "linger.ms", "5"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), options.properties));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "bootstrap.servers", options.bootstrap_servers));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "enable.idempotence", "true"));
  // Keys go where Kafka's Java client puts them (internal/partitioner.h), not where
  // librdkafka's default (CRC32) would: one user, one partition, whoever produces. Set last, so
  // `properties` cannot change it.
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "partitioner", "murmur2_random"));
  rd_kafka_conf_set_dr_msg_cb(conf.get(), CountFailures);
  rd_kafka_conf_set_opaque(conf.get(), &failures);
  ROTOR_ASSIGN_OR_RETURN(HandlePtr producer, NewHandle(RD_KAFKA_PRODUCER, std::move(conf)));

  ProduceResult result;
  const auto start = Clock::now();
  std::string line;
  while ((options.limit < 0 || result.sent < options.limit) && std::getline(in, line)) {
    if (line.empty()) {
      continue;
    }
    if (options.stop != nullptr && options.stop->load()) {
      break;
    }
    while (options.may_send && !options.may_send(result.sent)) {
      if (options.stop != nullptr && options.stop->load()) {
        break;
      }
      rd_kafka_poll(producer.get(), 1);
    }
    if (options.rate_per_s > 0) {
      const double due = static_cast<double>(result.sent) / options.rate_per_s;
      const double ahead = due - SecondsSince(start);
      if (ahead > 0.0005) {
        rd_kafka_poll(producer.get(), 0);
        std::this_thread::sleep_for(std::chrono::duration<double>(ahead));
      }
    }
    const std::optional<std::string> user = UserIdOfLine(line);
    const char* key = user.has_value() ? user->data() : nullptr;
    const std::size_t key_len = user.has_value() ? user->size() : 0;
    ROTOR_RETURN_IF_ERROR(
        internal::FromKafka(internal::ProduceCopy(producer.get(), options.topic, key, key_len,
                                                  line.data(), line.size(), nullptr),
                            "producing an event"));
    ++result.sent;
    rd_kafka_poll(producer.get(), 0);
  }
  while (rd_kafka_outq_len(producer.get()) > 0) {
    rd_kafka_flush(producer.get(), 1000);
  }
  result.failed = failures.load();
  result.seconds = SecondsSince(start);
  return result;
}

// ---- ReadTopic ----

Result<std::vector<TopicMessage>> ReadTopic(const ReadOptions& options) {
  ConfPtr conf(rd_kafka_conf_new());
  // The caller's properties first: the reader's own settings below must win (without
  // partition EOF events, for one, it would never notice the end of the topic).
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), options.properties));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "bootstrap.servers", options.bootstrap_servers));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "group.id", "rotor-reader-unused"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "enable.auto.commit", "false"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "enable.partition.eof", "true"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "isolation.level",
                                options.read_committed ? "read_committed" : "read_uncommitted"));
  ROTOR_ASSIGN_OR_RETURN(HandlePtr consumer, NewHandle(RD_KAFKA_CONSUMER, std::move(conf)));

  const rd_kafka_metadata_t* metadata = nullptr;
  rd_kafka_topic_t* topic_handle =
      rd_kafka_topic_new(consumer.get(), options.topic.c_str(), nullptr);
  const rd_kafka_resp_err_t meta_err =
      rd_kafka_metadata(consumer.get(), 0, topic_handle, &metadata, 10000);
  rd_kafka_topic_destroy(topic_handle);
  ROTOR_RETURN_IF_ERROR(
      internal::FromKafka(meta_err, fmt::format("reading metadata of '{}'", options.topic)));
  int partitions = 0;
  if (metadata->topic_cnt == 1 && metadata->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    partitions = metadata->topics[0].partition_cnt;
  }
  rd_kafka_metadata_destroy(metadata);
  if (partitions == 0) {
    return Status::NotFound("topic '{}' does not exist or has no partitions", options.topic);
  }
  internal::PartitionListPtr list(rd_kafka_topic_partition_list_new(partitions));
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list.get(), options.topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  ROTOR_RETURN_IF_ERROR(
      internal::FromKafka(rd_kafka_assign(consumer.get(), list.get()), "assigning partitions"));

  std::vector<TopicMessage> out;
  std::vector<bool> at_end(static_cast<std::size_t>(partitions), false);
  int64_t count = 0;
  const auto start = Clock::now();
  auto last_message = Clock::now();
  while (options.max_messages < 0 || count < options.max_messages) {
    if (SecondsSince(start) * 1000 > static_cast<double>(options.timeout_ms)) {
      break;
    }
    const bool all_at_end = std::all_of(at_end.begin(), at_end.end(), [](bool b) { return b; });
    if (all_at_end && SecondsSince(last_message) * 1000 > static_cast<double>(options.idle_ms)) {
      break;
    }
    MessagePtr m(rd_kafka_consumer_poll(consumer.get(), 100));
    if (!m) {
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end[static_cast<std::size_t>(m->partition)] = true;
      continue;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      continue;  // Transient fetch errors: librdkafka retries.
    }
    at_end[static_cast<std::size_t>(m->partition)] = false;
    last_message = Clock::now();
    TopicMessage msg;
    msg.partition = m->partition;
    msg.offset = m->offset;
    msg.timestamp_ms = rd_kafka_message_timestamp(m.get(), nullptr);
    if (m->key != nullptr) {
      msg.key.emplace(static_cast<const char*>(m->key), m->key_len);
    }
    if (m->payload != nullptr) {
      msg.value.assign(static_cast<const char*>(m->payload), m->len);
    }
    rd_kafka_headers_t* headers = nullptr;
    if (rd_kafka_message_headers(m.get(), &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name = nullptr;
      const void* value = nullptr;
      std::size_t size = 0;
      for (std::size_t i = 0;
           rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
           ++i) {
        msg.headers.emplace_back(name, std::string(static_cast<const char*>(value), size));
      }
    }
    ++count;
    if (options.on_message) {
      options.on_message(msg);
    } else {
      out.push_back(std::move(msg));
    }
  }
  rd_kafka_consumer_close(consumer.get());
  return out;
}

int32_t JavaPartitionOf(std::string_view key, int32_t partitions) {
  return internal::JavaPartition(key, partitions);
}

}  // namespace rotor::pipeline
