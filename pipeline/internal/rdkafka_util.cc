#include "pipeline/internal/rdkafka_util.h"

#include <array>
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

#include "config/daemon_config.h"

namespace rotor::pipeline::internal {

PartitionListPtr ToPartitionList(const PartitionOffsets& offsets) {
  PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size())));
  for (const auto& [tp, offset] : offsets) {
    rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition)->offset = offset;
  }
  return list;
}

void LogCallback(const rd_kafka_t* /*rk*/, int level, const char* fac, const char* buf) {
  if (level <= 3) {
    spdlog::error("kafka {}: {}", fac, buf);
  } else if (level <= 4) {
    spdlog::warn("kafka {}: {}", fac, buf);
  } else {
    spdlog::debug("kafka {}: {}", fac, buf);
  }
}

std::optional<Status> FatalClientError(rd_kafka_t* rk, int err, const char* reason) {
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    std::array<char, 512> why{};
    const rd_kafka_resp_err_t cause = rd_kafka_fatal_error(rk, why.data(), why.size());
    return FromKafka(cause == RD_KAFKA_RESP_ERR_NO_ERROR ? RD_KAFKA_RESP_ERR__FATAL : cause,
                     fmt::format("kafka: fatal error: {}", why.data()));
  }
  spdlog::warn("kafka: {} ({})", reason, rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)));
  return std::nullopt;
}

Status SetConf(rd_kafka_conf_t* conf, std::string_view key, std::string_view value) {
  std::array<char, 512> err{};
  const std::string k(key);
  const std::string v(value);
  if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err.data(), err.size()) != RD_KAFKA_CONF_OK) {
    if (config::IsSecretProperty(key)) {
      return Status::InvalidArgument("kafka property '{}' = (secret, not shown): {}", key,
                                     MaskSecret(err.data(), value));
    }
    return Status::InvalidArgument("kafka property '{}' = '{}': {}", key, value, err.data());
  }
  return Status::OK();
}

std::string MaskSecret(std::string_view text, std::string_view secret) {
  std::string out(text);
  if (secret.empty()) {
    return out;
  }
  for (std::size_t at = out.find(secret); at != std::string::npos; at = out.find(secret, at + 3)) {
    out.replace(at, secret.size(), "***");
  }
  return out;
}

Status SetConf(rd_kafka_conf_t* conf, const std::map<std::string, std::string>& properties) {
  for (const auto& [key, value] : properties) {
    ROTOR_RETURN_IF_ERROR(SetConf(conf, key, value));
  }
  return Status::OK();
}

Result<HandlePtr> NewHandle(rd_kafka_type_t type, ConfPtr conf) {
  std::array<char, 512> err{};
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), err.data(), err.size());
  if (rk == nullptr) {
    return Status::InvalidArgument("creating the Kafka {}: {}",
                                   type == RD_KAFKA_PRODUCER ? "producer" : "consumer", err.data());
  }
  (void)conf.release();  // Owned by rk now.
  return HandlePtr(rk);
}

rd_kafka_resp_err_t ProduceCopy(rd_kafka_t* producer, const std::string& topic, const void* key,
                                std::size_t key_len, const void* value, std::size_t value_len,
                                rd_kafka_headers_t* headers, void* opaque,
                                const std::atomic<bool>* stop, int32_t partition) {
  std::array<rd_kafka_vu_t, 7> vus{};
  std::size_t n = 0;
  vus[n].vtype = RD_KAFKA_VTYPE_TOPIC;
  vus[n++].u.cstr = topic.c_str();
  if (partition != RD_KAFKA_PARTITION_UA) {
    vus[n].vtype = RD_KAFKA_VTYPE_PARTITION;
    vus[n++].u.i32 = partition;
  }
  vus[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  vus[n++].u.i = RD_KAFKA_MSG_F_COPY;
  vus[n].vtype = RD_KAFKA_VTYPE_KEY;
  vus[n].u.mem.ptr = const_cast<void*>(key);  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  vus[n++].u.mem.size = key_len;
  vus[n].vtype = RD_KAFKA_VTYPE_VALUE;
  vus[n].u.mem.ptr = const_cast<void*>(value);  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  vus[n++].u.mem.size = value_len;
  if (headers != nullptr) {
    vus[n].vtype = RD_KAFKA_VTYPE_HEADERS;
    vus[n++].u.headers = headers;
  }
  if (opaque != nullptr) {
    vus[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vus[n++].u.ptr = opaque;
  }
  while (true) {
    rd_kafka_error_t* error = rd_kafka_produceva(producer, vus.data(), n);
    if (error == nullptr) {
      return RD_KAFKA_RESP_ERR_NO_ERROR;  // librdkafka owns the headers now.
    }
    const rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    rd_kafka_error_destroy(error);
    if (code != RD_KAFKA_RESP_ERR__QUEUE_FULL || (stop != nullptr && stop->load())) {
      if (headers != nullptr) {
        rd_kafka_headers_destroy(headers);
      }
      return code;
    }
    rd_kafka_poll(producer, 10);
  }
}

Result<HandlePtr> NewAssignedConsumer(const std::string& bootstrap, const std::string& group_id,
                                      const std::string& client_id,
                                      const std::map<std::string, std::string>& properties,
                                      std::string_view role,
                                      const std::map<std::string, std::string>& overrides) {
  ConfPtr conf(rd_kafka_conf_new());
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), properties));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "bootstrap.servers", bootstrap));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "client.id", fmt::format("{}-{}", client_id, role)));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "group.id", fmt::format("{}.{}", group_id, role)));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "enable.auto.commit", "false"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "enable.auto.offset.store", "false"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "enable.partition.eof", "true"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "isolation.level", "read_committed"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "auto.offset.reset", "error"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), overrides));
  rd_kafka_conf_set_log_cb(conf.get(), LogCallback);
  ROTOR_ASSIGN_OR_RETURN(HandlePtr consumer, NewHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  rd_kafka_poll_set_consumer(consumer.get());
  return consumer;
}

InputRecord RecordOf(const rd_kafka_message_t& m, std::string_view topic, int32_t partitions,
                     bool publish) {
  InputRecord r;
  r.topic = topic;
  r.partition = m.partition;
  r.offset = m.offset;
  r.has_key = m.key != nullptr;
  if (r.has_key) {
    r.key = std::string_view(static_cast<const char*>(m.key), m.key_len);
  }
  if (m.payload != nullptr) {
    r.value = std::string_view(static_cast<const char*>(m.payload), m.len);
  }
  r.timestamp_ms = rd_kafka_message_timestamp(&m, nullptr);
  r.partitions = partitions;
  r.publish = publish;
  return r;
}

Status FromKafka(rd_kafka_resp_err_t err, std::string_view context) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
      return Status::OK();
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
      return Status::Unavailable("{}: {}", context, rd_kafka_err2str(err));
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR_TRANSACTION_COORDINATOR_FENCED:
      return Status::FailedPrecondition(
          "{}: {}: the producer was fenced (another instance uses its transactional.id, or this "
          "one stalled past transaction.timeout.ms)",
          context, rd_kafka_err2str(err));
    case RD_KAFKA_RESP_ERR__FATAL:
      return Status::FailedPrecondition("{}: {}", context, rd_kafka_err2str(err));
    default:
      return Status::Internal("{}: {} ({})", context, rd_kafka_err2str(err),
                              rd_kafka_err2name(err));
  }
}

Status FromKafkaError(rd_kafka_error_t* error, std::string_view context) {
  if (error == nullptr) {
    return Status::OK();
  }
  Status out = FromKafka(rd_kafka_error_code(error), context);
  if (!out.ok()) {
    out = Status(out.code(), fmt::format("{}: {}", context, rd_kafka_error_string(error)));
  }
  rd_kafka_error_destroy(error);
  return out;
}

Result<std::map<std::string, TopicMetadata, std::less<>>> ReadTopicMetadata(rd_kafka_t* rk,
                                                                            int timeout_ms) {
  const rd_kafka_metadata_t* metadata = nullptr;
  const rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, nullptr, &metadata, timeout_ms);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Unavailable("{}", rd_kafka_err2str(err));
  }
  std::map<std::string, TopicMetadata, std::less<>> topics;
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& t = metadata->topics[i];
    topics[t.topic] = {.ok = t.err == RD_KAFKA_RESP_ERR_NO_ERROR,
                       .status = rd_kafka_err2str(t.err),
                       .partitions = t.partition_cnt};
  }
  rd_kafka_metadata_destroy(metadata);
  return topics;
}

Result<int32_t> RequireTopics(
    const Result<std::map<std::string, TopicMetadata, std::less<>>>& found,
    const config::KafkaOptions& kafka, std::string_view bootstrap,
    std::span<const std::string> topics) {
  if (!found.ok()) {
    return Status::Unavailable(
        "kafka.bootstrap_servers '{}': no broker answered within kafka.connect_timeout_ms = {} "
        "({})",
        bootstrap, kafka.connect_timeout_ms, found.status().message());
  }
  for (const std::string& topic : topics) {
    const auto it = found->find(topic);
    if (it == found->end() || !it->second.ok || it->second.partitions == 0) {
      return Status::FailedPrecondition(
          "topic '{}' is not available on '{}' ({}); create the topics with `rotor topics`{}",
          topic, bootstrap, it == found->end() ? "it does not exist" : it->second.status,
          topic == kafka.changelog_topic ? ", or set kafka.changelog_topic: \"\" to run without a "
                                           "state changelog"
                                         : "");
    }
  }
  return found->at(topics.front()).partitions;
}

Status FirstPartitionError(const rd_kafka_topic_partition_list_t* list, std::string_view context) {
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& p = list->elems[i];
    if (p.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return FromKafka(p.err,
                       fmt::format("{}: partition {} of '{}'", context, p.partition, p.topic));
    }
  }
  return Status::OK();
}

DeliveryError ClassifyDeliveryError(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:  // Metadata not yet refreshed after a change.
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_PREFERRED_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_ELIGIBLE_LEADERS_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS:
      return DeliveryError::kTransient;
    default:
      // Everything else, refusals of the record (MSG_SIZE_TOO_LARGE, INVALID_RECORD,
      // RECORD_LIST_TOO_LARGE, CORRUPT_MESSAGE), authorization, unknown topics, fencing and
      // fatal idempotence errors among them: redoing the batch would fail the same way forever.
      return DeliveryError::kPermanent;
  }
}

}  // namespace rotor::pipeline::internal
