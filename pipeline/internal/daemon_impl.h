// Daemon::Impl, declared here so that its methods can live in more than one file, the way
// RocksDB splits DBImpl across db_impl_*.cc: pipeline/daemon.cc (start-up, running the serving
// loop, stats, shutdown) and pipeline/daemon_commit.cc (what the daemon observes of the loop:
// readiness, metrics, latencies). The loop itself is internal/serve_loop.h, between the
// GroupConsumer and Delivery. Only those two files include it.

#ifndef ROTOR_PIPELINE_INTERNAL_DAEMON_IMPL_H_
#define ROTOR_PIPELINE_INTERNAL_DAEMON_IMPL_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "config/daemon_config.h"
#include "encoders/bundle.h"
#include "pipeline/daemon.h"
#include "pipeline/internal/daemon_metrics.h"
#include "pipeline/internal/delivery.h"
#include "pipeline/internal/feeder.h"
#include "pipeline/internal/group_consumer.h"
#include "pipeline/internal/group_directory.h"
#include "pipeline/internal/run_control.h"
#include "pipeline/internal/serve_loop.h"
#include "pipeline/internal/standby.h"
#include "pipeline/internal/store_writer.h"
#include "pipeline/kafka_tools.h"
#include "pipeline/processor.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline {

// What the daemon opened (bundle, store, processor, writer) and the two Kafka sides it
// connects: the GroupConsumer (input, offsets, rebalances) and Delivery (producer,
// transactions, the ledger of batches in flight). Impl moves batches from one to the other and
// decides what a failure means: a failed delivery abandons the batches and rewinds the
// consumer; a revoke drains what is in flight first (the GroupConsumer's Listener).
struct Daemon::Impl final : internal::GroupConsumer::Listener, internal::LoopObserver {
  config::DaemonConfig config;
  RunOptions run;
  std::unique_ptr<EmbeddedKafka> embedded;
  std::string bootstrap;
  // Lent by the app (DaemonResources), or opened by Create(config, run) and owned here.
  std::unique_ptr<encoders::Bundle> owned_bundle;
  std::unique_ptr<storage::UserStateStore> owned_store;
  std::unique_ptr<common::MetricsRegistry> owned_metrics;  // When no registry was lent.
  const encoders::Bundle* bundle = nullptr;
  storage::UserStateStore* store = nullptr;
  std::unique_ptr<internal::DaemonMetrics> metrics;
  std::unique_ptr<internal::StoreWriter> writer;  // Commits to `store`, in batch order.
  std::unique_ptr<Processor> processor;
  std::unique_ptr<internal::Delivery> delivery;       // The producer and the batches in flight.
  std::unique_ptr<internal::GroupConsumer> consumer;  // The input and where it stands.
  // The serving loop between the two (made once both exist).
  std::unique_ptr<internal::ServeLoop> loop;
  // Warm copies of other members' partitions (kafka.standby_replicas > 0; else null).
  std::unique_ptr<internal::Standby> standby;
  // The group's owners, for the API's forwarding (RunOptions::api_url set; else null).
  std::unique_ptr<internal::Owners> owners;
  mutable std::mutex member_mu;
  std::string member_id;  // Guarded by member_mu: this instance's in the group ("" before).
  bool exactly_once = false;
  std::string transactional_id;  // exactly_once only.
  // The first permanent failure (a delivery the broker refused for good, a fenced producer):
  // serving stops with it, and no batch that was not confirmed before it may commit.
  internal::FailureLatch failure;
  // The Run caller's stop flag, for the waits inside librdkafka callbacks, and the shutdown
  // deadline it starts.
  internal::ShutdownClock shutdown;
  std::atomic<int64_t> processed_records{0};  // Committed (the feeder's pace).
  std::unique_ptr<internal::Feeder> feeder;   // The embedded demo's --feed (else null).
  DaemonStats stats;
  internal::SteadyClock::time_point last_stats_log = internal::SteadyClock::now();
  int32_t input_partitions = 0;  // The input topic's, found at start-up.

  // What status() returns: the serving loop publishes it (PublishStatus), API threads copy it.
  mutable std::mutex status_mu;
  DaemonStatus published;                  // Guarded by status_mu.
  uint64_t status_changes = ~uint64_t{0};  // GroupConsumer::changes() at the last publish.
  internal::SteadyClock::time_point last_status{};

  // The batches in flight as the metrics see them, oldest first: when their first record was
  // polled, and the Kafka timestamps of their published records.
  struct BatchTiming {
    uint64_t seq = 0;
    internal::SteadyClock::time_point polled{};
    std::vector<int64_t> timestamps_ms;
    bool confirmed = false;  // Its event-to-publish latencies were observed.
  };
  std::deque<BatchTiming> timings;

  explicit Impl(const config::DaemonConfig& c)
      : config(c),
        exactly_once(c.delivery.mode == config::DeliveryMode::kExactlyOnce),
        shutdown(c.delivery.shutdown_timeout_ms) {}
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;
  ~Impl() override {
    standby.reset();  // Its thread writes to the store.
    owners.reset();
    feeder.reset();
    loop.reset();
    consumer.reset();
    writer.reset();  // Finishes its commits (of batches the delivery ledger holds) first.
    delivery.reset();
    processor.reset();
    owned_store.reset();
    embedded.reset();
  }

  // GroupConsumer::Listener: a revoke first finishes what is in flight while the partitions
  // are still ours, then drops the cached users of the revoked partitions only (their state
  // may change on another instance; the partitions kept stay hot).
  Status BeforeRevoke() override { return loop != nullptr ? loop->Drain() : Status::OK(); }
  void AfterRevoke(std::span<const TopicPartition> revoked) override {
    processor->DropPartitions(revoked);
  }
  // A partition resuming from the store (restored, a standby copy) has its watermark there; a
  // fresh one gets a changelog base.
  void AfterAssign(std::span<const TopicPartition> stored,
                   std::span<const TopicPartition> fresh) override;
  // The standby copies end for the partitions this instance owns now.
  // The group's owners are looked up again.
  void OwnedChanged(const std::set<int32_t>& owned, const std::string& member) override {
    if (standby != nullptr) {
      standby->SetOwned(owned, member);
    }
    if (owners != nullptr) {
      {
        const std::lock_guard<std::mutex> lock(member_mu);
        member_id = member;
      }
      owners->Refresh();
    }
  }
  // Readiness while the assign callback restores: the partition restoring, with its progress.
  void OnRestoreProgress(int32_t partition, int64_t done, int64_t total) override;

  // --- daemon.cc: start-up, the serving loop, stats ---

  // The two clients and the start-up checks, in the order that lets each check fail before
  // anything is consumed: the producer, the message size limit, the transactions (fencing a
  // zombie), the topics, then the consumer (the partition count, the subscription).
  Status Connect();

  // Before serving: the cluster answers within kafka.connect_timeout_ms and the three topics
  // exist. Otherwise start-up fails with a message naming what is wrong, rather than a daemon
  // that retries forever with nothing to consume. Fetching the output topics' metadata also
  // saves the first batches the wait for it (a few hundred ms on a fresh topic,
  // docs/performance.md). The input topic's partition count.
  Result<int32_t> CheckTopics() const;

  // Runs the serving loop until `stop` (or the idle exit), then logs the stats.
  Status Serve(const std::atomic<bool>& stop);

  void LogStats(double seconds) const;

  // Publishes the status (and the polled gauges) when the consumer's assignment changed, or
  // `force`, or 500 ms after the last publish. Cheap: librdkafka's cached watermarks, RocksDB's
  // in-memory properties, one mutex-protected swap.
  void PublishStatus(bool force = false);
  // Publishes that Run ended: not serving, with why (`served` is Run's outcome).
  void PublishStopped(const Status& served);

  // --- daemon_commit.cc: what the daemon observes of the loop (LoopObserver) ---

  // Status publishing and the periodic stats line.
  void OnTurn() override;
  // Counts the batch and keeps its timing (its records' Kafka timestamps) for the latencies.
  void OnProcessed(const PendingBatch& batch, std::span<const InputRecord> records,
                   internal::SteadyClock::time_point polled) override;
  // The batches the delivery side confirmed since the last call: their event-to-publish
  // latencies (called before their state is submitted).
  void OnConfirmed(const internal::InFlightLedger& ledger) override;
  // A committed batch: its records count for the feeder, its batch latency is observed.
  void OnCommitted(const internal::InFlight& done) override;
  void OnAbandoned(int64_t batches) override;
  bool MayExitIdle() override { return feeder == nullptr || feeder->done(); }
};

}  // namespace rotor::pipeline

#endif  // ROTOR_PIPELINE_INTERNAL_DAEMON_IMPL_H_
