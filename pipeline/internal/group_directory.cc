#include "pipeline/internal/group_directory.h"

#include <chrono>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace rotor::pipeline::internal {
namespace {

struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct AdminOptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
};

constexpr std::string_view kApiMark = "@http://";

}  // namespace

Result<std::optional<std::vector<GroupMember>>> DescribeGroup(rd_kafka_t* rk,
                                                              const std::string& group,
                                                              const std::string& topic,
                                                              int timeout_ms) {
  std::unique_ptr<rd_kafka_queue_t, QueueDeleter> queue(rd_kafka_queue_new(rk));
  std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter> options(
      rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS));
  char errstr[256] = {};
  if (rd_kafka_AdminOptions_set_request_timeout(options.get(), timeout_ms, errstr,
                                                sizeof(errstr)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Internal("describing group '{}': {}", group, errstr);
  }
  const char* groups[] = {group.c_str()};
  rd_kafka_DescribeConsumerGroups(rk, groups, 1, options.get(), queue.get());
  std::unique_ptr<rd_kafka_event_t, EventDeleter> event(
      rd_kafka_queue_poll(queue.get(), timeout_ms + 1000));
  if (!event) {
    return Status::Unavailable("describing group '{}': no answer within {} ms", group, timeout_ms);
  }
  ROTOR_RETURN_IF_ERROR(
      FromKafka(rd_kafka_event_error(event.get()), fmt::format("describing group '{}'", group)));
  const auto* result = rd_kafka_event_DescribeConsumerGroups_result(event.get());
  size_t count = 0;
  const rd_kafka_ConsumerGroupDescription_t** found =
      rd_kafka_DescribeConsumerGroups_result_groups(result, &count);
  std::vector<GroupMember> members;
  if (count == 0) {
    return members;
  }
  if (const rd_kafka_error_t* error = rd_kafka_ConsumerGroupDescription_error(found[0])) {
    return FromKafka(rd_kafka_error_code(error), fmt::format("describing group '{}'", group));
  }
  if (rd_kafka_ConsumerGroupDescription_state(found[0]) != RD_KAFKA_CONSUMER_GROUP_STATE_STABLE) {
    return std::optional<std::vector<GroupMember>>();
  }
  const size_t n = rd_kafka_ConsumerGroupDescription_member_count(found[0]);
  for (size_t i = 0; i < n; ++i) {
    const rd_kafka_MemberDescription_t* m = rd_kafka_ConsumerGroupDescription_member(found[0], i);
    GroupMember& member = members.emplace_back();
    member.id = rd_kafka_MemberDescription_consumer_id(m);
    member.client_id = rd_kafka_MemberDescription_client_id(m);
    member.host = rd_kafka_MemberDescription_host(m);
    const rd_kafka_topic_partition_list_t* parts =
        rd_kafka_MemberAssignment_partitions(rd_kafka_MemberDescription_assignment(m));
    for (int j = 0; parts != nullptr && j < parts->cnt; ++j) {
      if (topic == parts->elems[j].topic) {
        member.partitions.push_back(parts->elems[j].partition);
      }
    }
  }
  return std::optional(std::move(members));
}

std::string ClientIdWithApi(std::string_view client_id, std::string_view api_url) {
  if (api_url.empty()) {
    return std::string(client_id);
  }
  return fmt::format("{}@{}", client_id, api_url);
}

std::string AdvertisedApi(std::string_view client_id, std::string_view host) {
  const std::size_t at = client_id.rfind(kApiMark);
  if (at == std::string_view::npos) {
    return {};
  }
  std::string url(client_id.substr(at + 1));
  constexpr std::string_view kWildcard = "http://*:";
  if (url.starts_with(kWildcard)) {
    std::string_view h = host;
    if (h.starts_with('/')) {
      h.remove_prefix(1);
    }
    if (h.empty()) {
      return {};
    }
    const bool v6 = h.find(':') != std::string_view::npos && !h.starts_with('[');
    url = fmt::format("http://{}{}{}:{}", v6 ? "[" : "", h, v6 ? "]" : "",
                      url.substr(kWildcard.size()));
  }
  return url;
}

Result<std::unique_ptr<Owners>> Owners::Start(const config::DaemonConfig& config,
                                              const std::string& bootstrap) {
  const config::KafkaOptions& k = config.kafka;
  ROTOR_ASSIGN_OR_RETURN(
      HandlePtr handle,
      NewAssignedConsumer(bootstrap, k.group_id, k.client_id, k.consumer_properties, "owners",
                          {{"enable.partition.eof", "false"}}));
  std::unique_ptr<Owners> owners(new Owners(config, std::move(handle)));
  owners->thread_ = std::thread([o = owners.get()] { o->Loop(); });
  return owners;
}

Owners::Owners(const config::DaemonConfig& config, HandlePtr handle)
    : config_(config),
      handle_(std::move(handle)),
      unknown_reason_("the group is not described yet") {}

Owners::~Owners() {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

Owners::Found Owners::Find(int32_t partition) const {
  const std::lock_guard<std::mutex> lock(mu_);
  Found found;
  if (owners_.empty()) {
    found.reason = unknown_reason_;
    return found;
  }
  const auto it = owners_.find(partition);
  if (it == owners_.end()) {
    found.reason = fmt::format("no member of group '{}' is assigned partition {} of '{}'",
                               config_.kafka.group_id, partition, config_.kafka.input_topic);
    return found;
  }
  found.member_id = it->second.id;
  found.api_url = AdvertisedApi(it->second.client_id, it->second.host);
  if (found.api_url.empty()) {
    found.reason = fmt::format(
        "the owner of partition {} (member {}, client.id '{}') advertises "
        "no API address",
        partition, it->second.id, it->second.client_id);
  }
  return found;
}

void Owners::Refresh() {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    refresh_ = true;
  }
  wake_.notify_all();
}

void Owners::Loop() {
  const auto period = std::chrono::milliseconds(config_.api.owners_refresh_ms);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    Result<std::optional<std::vector<GroupMember>>> described =
        DescribeGroup(handle_.get(), config_.kafka.group_id, config_.kafka.input_topic,
                      static_cast<int>(config_.kafka.connect_timeout_ms));
    lock.lock();
    owners_.clear();
    if (!described.ok()) {
      unknown_reason_ =
          fmt::format("the group's owners are not known: {}", described.status().message());
      spdlog::warn("api: {} (trying again in {} ms)", unknown_reason_, period.count());
    } else if (!described->has_value()) {
      unknown_reason_ = fmt::format("group '{}' is rebalancing", config_.kafka.group_id);
    } else {
      for (const GroupMember& member : **described) {
        for (const int32_t p : member.partitions) {
          owners_[p] = member;
        }
      }
      unknown_reason_ = fmt::format("group '{}' has no member", config_.kafka.group_id);
    }
    // While rebalancing (or after a refresh request), look again soon.
    const bool soon = !described.ok() || !described->has_value();
    wake_.wait_for(lock, soon ? std::min(period, std::chrono::milliseconds(200)) : period,
                   [this] { return stop_ || refresh_; });
    refresh_ = false;
  }
}

}  // namespace rotor::pipeline::internal
