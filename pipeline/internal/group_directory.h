// The consumer group as other parts of the daemon need to see it: its members, their
// assignments, and the API address each advertises (docs/api.md, "Several instances").
//
// DescribeGroup asks the group coordinator (Kafka's DescribeGroups) for the members of a stable
// group; standby replicas choose their partitions from it (standby.h) and the API finds a
// partition's owner through Owners.
//
// Addresses: a member's API URL travels in its group consumer's client.id, after an '@'
// ("rotor@http://10.0.0.5:8470"), so the group's own description says who owns a partition
// and where to reach it in one answer: no extra topic, and never an address of a member that
// left. A URL with host '*' ("rotor@http://*:8470", api.listen on a wildcard address) takes
// the host the coordinator saw the member connect from.

#ifndef ROTOR_PIPELINE_INTERNAL_GROUP_DIRECTORY_H_
#define ROTOR_PIPELINE_INTERNAL_GROUP_DIRECTORY_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "config/daemon_config.h"
#include "pipeline/internal/rdkafka_util.h"

namespace rotor::pipeline::internal {

// One member of the consumer group as its coordinator describes it.
struct GroupMember {
  std::string id;
  std::string client_id;            // The member's client.id.
  std::string host;                 // Where it connected from, as the coordinator saw it.
  std::vector<int32_t> partitions;  // Of the input topic.
};

// The members of `group` and their assignments of `topic`'s partitions; nullopt while the
// group is not stable (rebalancing: the assignments are being changed).
Result<std::optional<std::vector<GroupMember>>> DescribeGroup(rd_kafka_t* rk,
                                                              const std::string& group,
                                                              const std::string& topic,
                                                              int timeout_ms);

// The client.id of a group consumer that advertises `api_url` ("" advertises nothing).
std::string ClientIdWithApi(std::string_view client_id, std::string_view api_url);
// The API URL a member advertises in its client id ("" when none), a '*' host replaced by
// `host` (the coordinator's "/10.0.0.5" or "10.0.0.5"; an IPv6 address gets brackets).
std::string AdvertisedApi(std::string_view client_id, std::string_view host);

// Who owns which input partition, from the group's description every api.owners_refresh_ms
// (and soon after Refresh). One thread of its own; Find and Refresh from any thread.
class Owners {
 public:
  static Result<std::unique_ptr<Owners>> Start(const config::DaemonConfig& config,
                                               const std::string& bootstrap);
  ~Owners();
  Owners(const Owners&) = delete;
  Owners& operator=(const Owners&) = delete;

  struct Found {
    std::string member_id;  // Empty when no owner is known; `reason` says why.
    std::string api_url;    // Empty when the owner advertises none.
    std::string reason;
  };
  Found Find(int32_t partition) const;
  // Describe the group again soon (this instance's assignment changed).
  void Refresh();

 private:
  Owners(const config::DaemonConfig& config, HandlePtr handle);
  void Loop();

  const config::DaemonConfig& config_;
  HandlePtr handle_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;                      // Guarded by mu_.
  bool refresh_ = false;                   // Guarded by mu_.
  std::map<int32_t, GroupMember> owners_;  // Guarded by mu_: by input partition.
  std::string unknown_reason_;             // Guarded by mu_: why owners_ is empty.
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_GROUP_DIRECTORY_H_
