// GroupConsumer: the input side of `rotor serve` (DESIGN section 5). It owns the consumer in
// the group (cooperative-sticky, manual offsets, read_committed) and everything about where
// consumption stands: on assignment it resumes each partition at the offset stored with the
// state, reads the group's committed offset (records below it are re-applied without being
// published), checks that the log still holds what the state needs next (a partition whose log
// lost those records, or is shorter than the state, stops: paused for good); it turns messages
// into records (never one twice), handles out-of-range positions, rewinds to the stored offsets
// after a failed delivery, and commits the group's offsets. It knows nothing of the output
// side: before a revoke it asks its Listener to drain, and a drain that abandoned batches only
// marks a rewind pending.

#ifndef ROTOR_PIPELINE_INTERNAL_GROUP_CONSUMER_H_
#define ROTOR_PIPELINE_INTERNAL_GROUP_CONSUMER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/topic_partition.h"
#include "config/daemon_config.h"
#include "pipeline/daemon.h"
#include "pipeline/internal/rdkafka_util.h"
#include "pipeline/internal/record_source.h"
#include "pipeline/internal/run_control.h"
#include "pipeline/processor.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline::internal {

// Lifecycle: Create checks the input topic's partition count against the state (stored the
// first time), makes the consumer and subscribes; the group is joined by the first Poll. Close
// leaves the group (revoking the partitions, which runs the Listener); destruction without Close
// drops the membership on the broker's session timeout. Borrows the store, the ShutdownClock,
// the FailureLatch and the Listener, which outlive it.
// Concurrency: one thread (the daemon's serving thread): the rebalance callbacks and error
// events run inside Poll and Close, on that thread.
// Limitations: one input topic. A stopped partition stays paused until it is revoked. The
// rebalance callbacks cannot return an error: rebalance_error() holds the first, and serving
// must stop on it.
class GroupConsumer final : public RecordSource {
 public:
  // The owner's part in a revoke (the consumer's only call back).
  class Listener {
   public:
    virtual ~Listener() = default;
    // Partitions are about to be revoked (or were lost): finish what is in flight while they
    // are still ours, so that their new owner starts from committed state and offsets.
    // Aborted: the batches in flight were abandoned instead (the consumer then rewinds before
    // taking more input); another error stops serving.
    virtual Status BeforeRevoke() = 0;
    // `revoked` are revoked (or lost): drop what was cached for them.
    virtual void AfterRevoke(std::span<const TopicPartition> revoked) = 0;
    // Restoring `partition` from the changelog: `done` of `total` records applied (inside the
    // assign callback, on the serving thread).
    virtual void OnRestoreProgress(int32_t /*partition*/, int64_t /*done*/, int64_t /*total*/) {}
    // An assignment took effect: `stored` partitions resume from state in the store, written
    // by a restore from the changelog or by a standby copy as well as by this instance (their
    // watermarks are in the store), `fresh` ones start with no state at all (a base is due in
    // the changelog before their first change).
    virtual void AfterAssign(std::span<const TopicPartition> /*stored*/,
                             std::span<const TopicPartition> /*fresh*/) {}
    // The partitions this instance owns from now on, and its member id, at the start of each
    // assignment (before the store's offsets are read) and after each revoke.
    virtual void OwnedChanged(const std::set<int32_t>& /*owned*/,
                              const std::string& /*member_id*/) {}
  };

  struct Stats {
    // Partitions stopped because their log lost records the state needs (docs/daemon.md).
    int64_t stopped_partitions = 0;
    // Records below the next offset to apply, skipped (a stale fetch after a seek).
    int64_t skipped_records = 0;
    // Partitions restored from the changelog, and the changelog records that took.
    int64_t restored_partitions = 0;
    int64_t restored_records = 0;
  };

  // `bootstrap` is the cluster's address; `input_partitions` the input topic's partition count
  // (from the start-up metadata check), which must match what the state was built with.
  static Result<std::unique_ptr<GroupConsumer>> Create(
      const config::DaemonConfig& config, const std::string& bootstrap, int32_t input_partitions,
      storage::UserStateStore& store, ShutdownClock& shutdown, FailureLatch& failure,
      Listener& listener, std::string_view api_url = {});
  ~GroupConsumer() override;
  GroupConsumer(const GroupConsumer&) = delete;
  GroupConsumer& operator=(const GroupConsumer&) = delete;

  // One message or event (null when none came within `timeout_ms`); serves the rebalance
  // callbacks.
  MessagePtr PollMessage(int timeout_ms);
  Polled Poll(int timeout_ms) override {
    return Polled{.message = PollMessage(timeout_ms), .line = nullptr, .record = {}};
  }
  // An event Poll returned: an out-of-range position (OnOffsetOutOfRange), the end of a
  // partition (nothing to do), another error (logged).
  Status OnEvent(const rd_kafka_message_t& event) override;
  // The consumer's position in `partition` is out of the log's range (auto.offset.reset is
  // "error": librdkafka never jumps to another offset by itself). When the log still holds
  // what the state needs next, consumption goes back there; otherwise the partition stops.
  Status OnOffsetOutOfRange(int32_t partition);
  // The records to process from consumed `messages` (views into them): messages of partitions
  // no longer ours (revoked during the fill) or stopped are dropped, and those below the next
  // offset to apply (a fetch from before a seek) skipped, counted and logged; the next offset
  // to apply moves past the rest. Records below the group's committed offset are marked not to
  // be published.
  void Admit(const std::vector<MessagePtr>& messages, std::vector<InputRecord>& records);
  void Admit(const std::vector<Polled>& polled, std::vector<InputRecord>& records) override;
  // The group's offsets to commit for `batch`: only partitions still assigned, and only where
  // they move the group's committed offset forward.
  PartitionOffsets GroupOffsets(const PendingBatch& batch) const override;
  // At-least-once: commits `offsets` to the group, asynchronously (informational: the store's
  // offsets are the truth); a failure is logged.
  void CommitAsync(const PartitionOffsets& offsets) override;
  // The group's metadata for send_offsets_to_transaction (its generation fences a zombie).
  GroupMetadataPtr GroupMetadata() const override;
  // After a failed delivery: every assigned partition that is not stopped goes back to its
  // offset in the store. It does what a pending rewind asked for, and clears it.
  Status Rewind() override;
  // A revoke abandoned the batches in flight: Rewind before taking more input.
  bool rewind_pending() const override { return rewind_pending_; }
  // The first error of a rebalance callback; serving must stop with it.
  const Status& rebalance_error() const { return rebalance_error_; }
  Status error() const override { return rebalance_error_; }
  bool Exhausted() const override { return false; }
  bool has_assignment() const override { return !publish_from_.empty(); }
  // Whether every assigned partition that is not stopped was consumed up to its end (the high
  // watermark of the last fetch). A resumed run skips what it applied before, so counting
  // records cannot tell.
  bool CaughtUp() const override;
  // When an assignment last took effect (the epoch before any).
  SteadyClock::time_point last_assigned() const override { return last_assigned_; }
  // Assignments that took effect so far (one with no partition counts too).
  int64_t assignments() const { return assignments_; }
  // Grows whenever a partition's phase may have changed other than by records being applied:
  // an assignment, a revoke, a stopped partition, a rewind.
  uint64_t changes() const { return changes_; }
  // Where every assigned partition stands, in partition order (docs/daemon.md, "Readiness and
  // metrics"): stopped (with its reason); restoring while the next offset to apply is below
  // the group's committed offset at assignment (those records were published by the group
  // already, and are re-applied without publishing); consuming otherwise. The watermarks and
  // positions are librdkafka's cached ones: no request to the broker.
  std::vector<PartitionReport> Progress() const;
  // Leaves the group: the partitions are revoked (the Listener drains) first.
  Status Close();
  int32_t input_partitions() const { return options_.input_partitions; }
  const Stats& stats() const { return stats_; }

 private:
  struct Options {
    config::DaemonConfig config;  // For the changelog restores.
    std::string bootstrap;
    std::string input_topic;
    int32_t input_partitions = 0;
    int64_t connect_timeout_ms = 0;
    int64_t transaction_timeout_ms = 0;
    bool allow_history_gaps = false;
  };
  GroupConsumer(Options options, storage::UserStateStore& store, ShutdownClock& shutdown,
                FailureLatch& failure, Listener& listener);

  static void Rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t* parts, void* opaque);
  static void OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque);
  void OnAssign(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts, bool cooperative);
  void OnRevoke(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts, bool cooperative,
                bool lost);
  Result<PartitionListPtr> ReadCommitted(rd_kafka_t* rk,
                                         const rd_kafka_topic_partition_list_t* parts) const;
  Status CheckHistory(int32_t partition, std::optional<int64_t> next) const;
  Result<bool> InputDeletedBefore(int32_t partition, int64_t next) const;
  Result<std::pair<int64_t, int64_t>> InputBounds(int32_t partition) const;
  std::set<int32_t> Owned() const;
  static std::string MemberId(rd_kafka_t* rk);
  void StopPartition(int32_t partition, const Status& why);
  void AdmitOne(const rd_kafka_message_t& m, std::vector<InputRecord>& records);
  void PausePartitions(const rd_kafka_topic_partition_list_t* parts) const;
  std::optional<int64_t> NextToApply(int32_t partition) const;

  Options options_;
  storage::UserStateStore& store_;
  ShutdownClock& shutdown_;
  FailureLatch& failure_;
  Listener& listener_;
  // Assigned partitions of the input topic: the Kafka committed offset at assignment (records
  // below it were already published).
  std::map<int32_t, int64_t> publish_from_;
  // Next input offset to apply per assigned partition: the store's offset, advanced as records
  // are admitted. A consumer that goes back (an offset reset, a re-fetch after a revoke and
  // re-assign) must not apply a record twice.
  std::map<int32_t, int64_t> apply_from_;
  // Assigned partitions that are paused for good, with the reason: their log no longer holds
  // the records the state needs next (CheckHistory). Nothing of theirs is applied.
  std::map<int32_t, std::string> stopped_;
  bool rewind_pending_ = false;
  Status rebalance_error_;
  SteadyClock::time_point last_assigned_{};
  int64_t assignments_ = 0;
  uint64_t changes_ = 0;
  Stats stats_;
  HandlePtr consumer_;  // Last: destroyed first.
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_GROUP_CONSUMER_H_
