// DaemonMetrics: the serving loop's Prometheus metrics (docs/daemon.md, "Readiness and
// metrics"), registered in the common::MetricsRegistry the app lends the daemon (or one of the
// daemon's own when none is lent). The loop calls it where it counts DaemonStats, and hands it
// what it publishes as DaemonStatus; the counters and histograms are lock-free, so `GET
// /metrics` never waits for the loop.

#ifndef ROTOR_PIPELINE_INTERNAL_DAEMON_METRICS_H_
#define ROTOR_PIPELINE_INTERNAL_DAEMON_METRICS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "pipeline/daemon.h"
#include "pipeline/processor.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline::internal {

// Bucket bounds of the daemon's latency histograms, in seconds: 0.5 ms to 30 s, 1-2-5 steps.
std::vector<double> PipelineSecondsBuckets();

// Lifecycle: Create registers every metric it knows up front (dead-letter reasons included);
// per-partition series and an unknown reason code are registered on first sight. Borrows the
// registry, which outlives it.
// Concurrency: the serving thread only (the metrics it updates are read by Render from any
// thread).
// Limitations: a series is never removed (the registry's rule): a partition no longer assigned
// keeps its series, at phase -1 and lag 0. A registration that fails later (another module
// took the name with another help) is logged once and its updates dropped.
class DaemonMetrics {
 public:
  static Result<std::unique_ptr<DaemonMetrics>> Create(common::MetricsRegistry& registry,
                                                       std::string_view model_id);

  // After Processor::Process made `batch`: what the processor counted since the last call
  // (records, events, replayed, dead letters by reason, duplicates, deltas, snapshots, expired
  // users, restarted histories) and the dead letters the batch publishes.
  void CountProcessed(const ProcessorStats& now, const PendingBatch& batch);
  void CountBatchCommitted() { batches_->Increment(); }
  void CountFailedBatches(int64_t n) { failed_batches_->Increment(static_cast<uint64_t>(n)); }
  // Totals so far (only the growth since the last call is added).
  void SyncTransactions(int64_t total);
  void SyncStoppedPartitions(int64_t total);

  void ObserveBatchSeconds(double seconds) { batch_seconds_->Observe(seconds); }
  void ObserveEventToPublishSeconds(double seconds) { event_to_publish_->Observe(seconds); }

  // The status the loop publishes: rotor_ready, and each partition's lag and phase.
  void SetStatus(const DaemonStatus& status);
  struct Usage {
    int64_t inflight_bytes = 0;
    int64_t inflight_batches = 0;
    int64_t window_cache_bytes = 0;
    int64_t window_cache_users = 0;
    storage::StoreProperties store;
    int64_t standby_caught_up = 0;    // Standby copies (kafka.standby_replicas) caught up,
    int64_t standby_catching_up = 0;  // and still reading their changelog's history.
  };
  void SetUsage(const Usage& usage);

 private:
  struct PartitionGauges {
    common::Gauge* lag = nullptr;
    common::Gauge* phase = nullptr;
  };
  explicit DaemonMetrics(common::MetricsRegistry& registry) : registry_(registry) {}
  common::Counter* DeadLetters(const std::string& reason);
  PartitionGauges* Partition(const TopicPartition& tp);

  common::MetricsRegistry& registry_;
  ProcessorStats counted_;  // What the processor had counted at the last CountProcessed.
  int64_t transactions_ = 0;
  int64_t stopped_partitions_ = 0;
  common::Counter* records_ = nullptr;
  common::Counter* events_ = nullptr;
  common::Counter* replayed_ = nullptr;
  common::Counter* duplicates_ = nullptr;
  common::Counter* deltas_ = nullptr;
  common::Counter* snapshots_ = nullptr;
  common::Counter* dead_letter_messages_ = nullptr;
  common::Counter* batches_ = nullptr;
  common::Counter* failed_batches_ = nullptr;
  common::Counter* transactions_total_ = nullptr;
  common::Counter* expired_users_ = nullptr;
  common::Counter* restarted_histories_ = nullptr;
  common::Counter* stopped_partitions_total_ = nullptr;
  std::map<std::string, common::Counter*, std::less<>> dead_letters_;  // By reason.
  std::map<TopicPartition, PartitionGauges> partitions_;
  common::Gauge* ready_ = nullptr;
  common::Gauge* inflight_bytes_ = nullptr;
  common::Gauge* inflight_batches_ = nullptr;
  common::Gauge* cache_bytes_ = nullptr;
  common::Gauge* cache_users_ = nullptr;
  common::Gauge* standby_caught_up_ = nullptr;
  common::Gauge* standby_catching_up_ = nullptr;
  common::Gauge* live_data_bytes_ = nullptr;
  common::Gauge* memtable_bytes_ = nullptr;
  common::Gauge* block_cache_bytes_ = nullptr;
  common::Gauge* pending_compaction_bytes_ = nullptr;
  common::Gauge* delayed_write_rate_ = nullptr;
  common::Gauge* write_stopped_ = nullptr;
  common::Histogram* batch_seconds_ = nullptr;
  common::Histogram* event_to_publish_ = nullptr;
  bool warned_ = false;  // A late registration failed (logged once).
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_DAEMON_METRICS_H_
