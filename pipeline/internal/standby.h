// Standby replicas (kafka.standby_replicas; docs/daemon.md, "Standby replicas"): warm copies
// of input partitions another member of the group owns, kept in this instance's store by
// tailing their changelog partitions, so that taking one over re-applies only the input since
// the copy's last marker instead of restoring the whole partition from the changelog.
//
// Which partitions: every `standby_refresh_ms` the group is described (Kafka's DescribeGroups:
// its members and their assignments); with the members sorted by member id, this instance
// copies the partitions of the `standby_replicas` members before it (wrapping), minus what it
// owns. So each member's partitions have copies on the members after it, spread without a
// custom assignor, and a copy follows its partition when the group rebalances.
//
// How a copy is kept: a read_committed, assign-only consumer reads the changelog partition.
// A copy that starts from nothing (no position recorded, or one this instance owned since)
// drops the partition's local state and reads the changelog from its start: records before
// the first base are skipped, a base drops what was applied, and until the copy reaches the
// end it had when it started (the catch-up, over history compaction may have thinned) the
// partition has no stored input offset, so a takeover then restores it from the changelog as
// if there were no copy. Caught up, every marker commits the records since the previous one
// with the marker's input offset and watermark and the changelog position (info key
// `standby/<changelog topic>/<partition>`): the state at a marker is exactly the owner's at that
// input offset, and a restart resumes the copy there.
//
// Handing a partition over: the group consumer calls SetOwned with its new assignment before
// it reads the stored offsets (in the assign callback). SetOwned waits for the copy's apply step
// in progress, discards what was applied since the last marker, and ends the copy: a caught-up
// copy leaves its state and offset for the new owner (which re-applies the input from there
// without publishing what the group already published); one still catching up is dropped (the
// owner restores). The owner's writes are then the only ones to the partition.
//
// Limits: a copy that falls behind the compacted part of the changelog (more than the topic's
// min.compaction.lag.ms) may read thinned history between markers; a takeover then re-applies
// the input from a marker whose state had newer records than it says. Keep copies current (the
// lag is logged and reported). A copy is dropped and read again from the start each time it
// starts (after this instance owned the partition, or after a restart without a position).
//
// Concurrency: one thread of its own. SetOwned and Copies may be called from any thread; the
// store is shared with the serving loop, which never writes the copies' partitions (they are
// not assigned to it) while they are copies.

#ifndef ROTOR_PIPELINE_INTERNAL_STANDBY_H_
#define ROTOR_PIPELINE_INTERNAL_STANDBY_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "config/daemon_config.h"
#include "pipeline/internal/group_directory.h"
#include "pipeline/internal/rdkafka_util.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline::internal {

// The input partitions `self` keeps copies of: those of the `replicas` members before it in
// member-id order (wrapping around, never itself), minus `owned`. Empty when `self` is not
// among `members`.
std::set<int32_t> StandbyPartitions(std::vector<GroupMember> members, std::string_view self,
                                    int32_t replicas, const std::set<int32_t>& owned);

// The info key of a copy's changelog position.
std::string StandbyPositionKey(std::string_view changelog_topic, int32_t partition);

class Standby {
 public:
  // Starts the thread. `input_partitions`: the input topic's partition count.
  static Result<std::unique_ptr<Standby>> Start(const config::DaemonConfig& config,
                                                const std::string& bootstrap,
                                                int32_t input_partitions,
                                                storage::UserStateStore& store);
  ~Standby();
  Standby(const Standby&) = delete;
  Standby& operator=(const Standby&) = delete;

  // This instance's assignment now and its member id in the group. Returns once no copy of an
  // owned partition is being applied or will be: their state is the owner's from now on.
  void SetOwned(const std::set<int32_t>& owned, const std::string& member_id);

  // One copy as it stands.
  struct Copy {
    int32_t partition = 0;
    bool caught_up = false;
    int64_t input_offset = -1;  // The input offset its state covers (-1: none yet).
    int64_t position = -1;      // The next changelog offset it reads.
  };
  std::vector<Copy> Copies() const;
  // The first error that stopped the copies (they stop; serving goes on): OK while none.
  Status status() const;

 private:
  struct Tail {
    bool based = false;      // A base was read (or the copy resumed from a position).
    bool caught_up = false;  // Past the end it had when it started (or resumed).
    int64_t catch_up_end = 0;
    int64_t position = -1;
    int64_t input_offset = -1;
    std::optional<storage::StateBatch> pending;  // Applied since the last marker.
  };

  Standby(const config::DaemonConfig& config, int32_t input_partitions,
          storage::UserStateStore& store, HandlePtr consumer);
  void Loop();
  // The partitions to copy now; nullopt when that cannot be told (not in the group yet, or it
  // is rebalancing): the copies stay as they are.
  Result<std::optional<std::set<int32_t>>> Desired();
  Status ForgetPosition(int32_t partition);         // mu_ held.
  Status Reassign(const std::set<int32_t>& want);   // mu_ held.
  Status StartCopy(int32_t partition, Tail& tail);  // mu_ held.
  Status EndCopy(int32_t partition, Tail& tail);    // mu_ held.
  Status Apply(const rd_kafka_message_t& m);        // mu_ held.

  const config::DaemonConfig& config_;
  const int32_t input_partitions_;
  storage::UserStateStore& store_;
  HandlePtr consumer_;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  mutable std::mutex mu_;
  std::set<int32_t> owned_;        // Guarded by mu_.
  std::string member_id_;          // Guarded by mu_.
  std::set<int32_t> desired_;      // Guarded by mu_ (the last choice from the group).
  std::map<int32_t, Tail> tails_;  // Guarded by mu_: the copies being kept.
  bool reassign_ = false;          // Guarded by mu_: the consumer's assignment is out of date.
  Status status_;                  // Guarded by mu_.
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_STANDBY_H_
