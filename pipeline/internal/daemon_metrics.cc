#include "pipeline/internal/daemon_metrics.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

#include "encoders/event_parser.h"
#include "encoders/roofline.h"

#ifndef ROTOR_VERSION
#define ROTOR_VERSION "unknown"
#endif

namespace rotor::pipeline::internal {
namespace {

constexpr std::string_view kDeadLettersHelp =
    "Input records refused (dead letters, published or re-applied), by the reason code of their "
    "rotor.error header.";
constexpr std::string_view kPublishedHelp =
    "Messages handed to the producer, by kind (a batch redone after a failed delivery counts "
    "again).";
constexpr std::string_view kLagHelp =
    "Records of the input partition not yet applied: its high watermark as the consumer last saw "
    "it minus where consumption stands; -1 unknown, 0 once no longer assigned here.";
constexpr std::string_view kPhaseHelp =
    "Phase of the input partition: 0 restoring, 1 consuming, 2 stopped, -1 no longer assigned "
    "here.";

uint64_t Growth(int64_t now, int64_t before) {
  return now > before ? static_cast<uint64_t>(now - before) : 0;
}

}  // namespace

std::vector<double> PipelineSecondsBuckets() {
  return {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30};
}

Result<std::unique_ptr<DaemonMetrics>> DaemonMetrics::Create(common::MetricsRegistry& registry,
                                                             std::string_view model_id) {
  std::unique_ptr<DaemonMetrics> m(new DaemonMetrics(registry));
  common::MetricsRegistry& r = registry;
  ROTOR_ASSIGN_OR_RETURN(m->records_,
                         r.AddCounter("rotor_input_records_total", "Input records consumed."));
  ROTOR_ASSIGN_OR_RETURN(
      m->events_,
      r.AddCounter("rotor_events_total", "Events applied to user state (re-applied ones too)."));
  ROTOR_ASSIGN_OR_RETURN(
      m->replayed_,
      r.AddCounter(
          "rotor_replayed_events_total",
          "Events re-applied to state without publishing (the group had published them)."));
  for (int code = 0; code <= static_cast<int>(encoders::RejectCode::kCorruptState); ++code) {
    const std::string reason(encoders::RejectCodeName(static_cast<encoders::RejectCode>(code)));
    ROTOR_ASSIGN_OR_RETURN(
        m->dead_letters_[reason],
        r.AddCounter("rotor_dead_letters_total", kDeadLettersHelp, {{"reason", reason}}));
  }
  ROTOR_ASSIGN_OR_RETURN(m->duplicates_,
                         r.AddCounter("rotor_duplicates_total",
                                      "Events dropped as repeated event ids of their user."));
  ROTOR_ASSIGN_OR_RETURN(m->deltas_, r.AddCounter("rotor_published_messages_total", kPublishedHelp,
                                                  {{"kind", "delta"}}));
  ROTOR_ASSIGN_OR_RETURN(m->snapshots_, r.AddCounter("rotor_published_messages_total",
                                                     kPublishedHelp, {{"kind", "snapshot"}}));
  ROTOR_ASSIGN_OR_RETURN(
      m->dead_letter_messages_,
      r.AddCounter("rotor_published_messages_total", kPublishedHelp, {{"kind", "dead_letter"}}));
  ROTOR_ASSIGN_OR_RETURN(
      m->batches_,
      r.AddCounter("rotor_batches_total", "Micro-batches delivered and committed to the store."));
  ROTOR_ASSIGN_OR_RETURN(
      m->failed_batches_,
      r.AddCounter("rotor_failed_batches_total",
                   "Micro-batches whose delivery failed (or whose transaction aborted) and that "
                   "were redone."));
  ROTOR_ASSIGN_OR_RETURN(m->transactions_total_,
                         r.AddCounter("rotor_transactions_total",
                                      "Kafka transactions committed (exactly-once delivery)."));
  ROTOR_ASSIGN_OR_RETURN(m->expired_users_,
                         r.AddCounter("rotor_expired_users_total",
                                      "Users the expiry sweep deleted (state.user_ttl_ms)."));
  ROTOR_ASSIGN_OR_RETURN(
      m->restarted_histories_,
      r.AddCounter("rotor_restarted_histories_total",
                   "Events that found their user expired and started a fresh history."));
  ROTOR_ASSIGN_OR_RETURN(
      m->stopped_partitions_total_,
      r.AddCounter("rotor_stopped_partitions_total",
                   "Input partitions stopped because their log lost records the state needs."));
  ROTOR_ASSIGN_OR_RETURN(
      m->ready_,
      r.AddGauge("rotor_ready",
                 "1 when the daemon serves and every assigned partition is consuming, else 0."));
  ROTOR_ASSIGN_OR_RETURN(
      m->inflight_bytes_,
      r.AddGauge("rotor_inflight_bytes",
                 "Bytes held for batches in flight (their users' windows and write batches)."));
  ROTOR_ASSIGN_OR_RETURN(
      m->inflight_batches_,
      r.AddGauge("rotor_inflight_batches", "Batches processed and not yet committed."));
  ROTOR_ASSIGN_OR_RETURN(m->cache_bytes_,
                         r.AddGauge("rotor_window_cache_bytes",
                                    "Bytes of the hot-window cache (committed user state)."));
  ROTOR_ASSIGN_OR_RETURN(m->cache_users_, r.AddGauge("rotor_window_cache_users",
                                                     "Users held in the hot-window cache."));
  ROTOR_ASSIGN_OR_RETURN(
      m->standby_caught_up_,
      r.AddGauge("rotor_standby_partitions_caught_up",
                 "Standby copies of other members' partitions kept current from the changelog."));
  ROTOR_ASSIGN_OR_RETURN(
      m->standby_catching_up_,
      r.AddGauge("rotor_standby_partitions_catching_up",
                 "Standby copies still reading their changelog partition's history."));
  ROTOR_ASSIGN_OR_RETURN(
      m->live_data_bytes_,
      r.AddGauge("rotor_rocksdb_live_data_bytes",
                 "RocksDB rocksdb.estimate-live-data-size over every column family (bytes)."));
  ROTOR_ASSIGN_OR_RETURN(
      m->memtable_bytes_,
      r.AddGauge("rotor_rocksdb_memtable_bytes",
                 "RocksDB rocksdb.cur-size-all-mem-tables over every column family (bytes)."));
  ROTOR_ASSIGN_OR_RETURN(
      m->block_cache_bytes_,
      r.AddGauge("rotor_rocksdb_block_cache_usage_bytes",
                 "RocksDB rocksdb.block-cache-usage: the shared block cache, memtables charged "
                 "to it included (bytes)."));
  ROTOR_ASSIGN_OR_RETURN(
      m->pending_compaction_bytes_,
      r.AddGauge("rotor_rocksdb_pending_compaction_bytes",
                 "RocksDB rocksdb.estimate-pending-compaction-bytes over every column family."));
  ROTOR_ASSIGN_OR_RETURN(
      m->delayed_write_rate_,
      r.AddGauge("rotor_rocksdb_delayed_write_rate_bytes",
                 "RocksDB rocksdb.actual-delayed-write-rate: the write rate RocksDB throttles to "
                 "(bytes/s; 0 when not throttling)."));
  ROTOR_ASSIGN_OR_RETURN(
      m->write_stopped_,
      r.AddGauge("rotor_rocksdb_write_stopped",
                 "RocksDB rocksdb.is-write-stopped: 1 while RocksDB stops writes."));
  ROTOR_ASSIGN_OR_RETURN(
      m->batch_seconds_,
      r.AddHistogram("rotor_batch_seconds",
                     "Seconds from a batch's first record being polled to its state committed.",
                     PipelineSecondsBuckets()));
  ROTOR_ASSIGN_OR_RETURN(
      m->event_to_publish_,
      r.AddHistogram("rotor_event_to_publish_seconds",
                     "Seconds from an input record's Kafka timestamp to the confirmation of its "
                     "batch's outputs (delivered, or their transaction committed).",
                     PipelineSecondsBuckets()));
  ROTOR_ASSIGN_OR_RETURN(common::Gauge * build,
                         r.AddGauge("rotor_build_info",
                                    "1, labelled with rotor's version, the SIMD target the "
                                    "encoder kernels run and the served model's id.",
                                    {{"version", ROTOR_VERSION},
                                     {"simd_target", encoders::KernelTarget()},
                                     {"model_id", std::string(model_id)}}));
  build->Set(1);
  m->ready_->Set(0);
  return m;
}

common::Counter* DaemonMetrics::DeadLetters(const std::string& reason) {
  if (const auto it = dead_letters_.find(reason); it != dead_letters_.end()) {
    return it->second;
  }
  auto added =
      registry_.AddCounter("rotor_dead_letters_total", kDeadLettersHelp, {{"reason", reason}});
  if (!added.ok()) {
    if (!warned_) {
      spdlog::warn("metrics: {}", added.status());
      warned_ = true;
    }
    return nullptr;
  }
  return dead_letters_[reason] = *added;
}

DaemonMetrics::PartitionGauges* DaemonMetrics::Partition(const TopicPartition& tp) {
  if (const auto it = partitions_.find(tp); it != partitions_.end()) {
    return &it->second;
  }
  const common::MetricLabels labels = {{"topic", tp.topic},
                                       {"partition", std::to_string(tp.partition)}};
  auto lag = registry_.AddGauge("rotor_consumer_lag", kLagHelp, labels);
  auto phase = registry_.AddGauge("rotor_partition_phase", kPhaseHelp, labels);
  if (!lag.ok() || !phase.ok()) {
    if (!warned_) {
      spdlog::warn("metrics: {}", !lag.ok() ? lag.status() : phase.status());
      warned_ = true;
    }
    return nullptr;
  }
  return &(partitions_[tp] = PartitionGauges{.lag = *lag, .phase = *phase});
}

void DaemonMetrics::CountProcessed(const ProcessorStats& now, const PendingBatch& batch) {
  records_->Increment(Growth(now.records, counted_.records));
  events_->Increment(Growth(now.events, counted_.events));
  replayed_->Increment(Growth(now.replayed, counted_.replayed));
  duplicates_->Increment(Growth(now.duplicates, counted_.duplicates));
  deltas_->Increment(Growth(now.deltas, counted_.deltas));
  snapshots_->Increment(Growth(now.snapshots, counted_.snapshots));
  expired_users_->Increment(Growth(now.expired_users, counted_.expired_users));
  restarted_histories_->Increment(Growth(now.restarted_histories, counted_.restarted_histories));
  if (now.dead_letters != counted_.dead_letters) {
    for (const auto& [reason, n] : now.rejects_by_code) {
      const auto before = counted_.rejects_by_code.find(reason);
      const uint64_t grown =
          Growth(n, before == counted_.rejects_by_code.end() ? 0 : before->second);
      if (grown > 0) {
        if (common::Counter* c = DeadLetters(reason); c != nullptr) {
          c->Increment(grown);
        }
      }
    }
  }
  counted_ = now;
  uint64_t dead_letters = 0;
  for (const OutputRecord& out : batch.outputs) {
    dead_letters += out.topic == OutputRecord::Topic::kDeadLetter ? 1 : 0;
  }
  dead_letter_messages_->Increment(dead_letters);
}

void DaemonMetrics::SyncTransactions(int64_t total) {
  transactions_total_->Increment(Growth(total, transactions_));
  transactions_ = std::max(transactions_, total);
}

void DaemonMetrics::SyncStoppedPartitions(int64_t total) {
  stopped_partitions_total_->Increment(Growth(total, stopped_partitions_));
  stopped_partitions_ = std::max(stopped_partitions_, total);
}

void DaemonMetrics::SetStatus(const DaemonStatus& status) {
  ready_->Set(status.ready() ? 1 : 0);
  std::map<TopicPartition, bool> seen;
  for (const PartitionReport& r : status.partitions) {
    PartitionGauges* g = Partition(r.partition);
    if (g == nullptr) {
      continue;
    }
    g->lag->Set(static_cast<double>(r.lag));
    g->phase->Set(static_cast<double>(static_cast<int>(r.phase)));
    seen[r.partition] = true;
  }
  for (auto& [tp, g] : partitions_) {
    if (!seen.contains(tp)) {
      g.lag->Set(0);
      g.phase->Set(-1);
    }
  }
}

void DaemonMetrics::SetUsage(const Usage& usage) {
  inflight_bytes_->Set(static_cast<double>(usage.inflight_bytes));
  inflight_batches_->Set(static_cast<double>(usage.inflight_batches));
  cache_bytes_->Set(static_cast<double>(usage.window_cache_bytes));
  cache_users_->Set(static_cast<double>(usage.window_cache_users));
  standby_caught_up_->Set(static_cast<double>(usage.standby_caught_up));
  standby_catching_up_->Set(static_cast<double>(usage.standby_catching_up));
  live_data_bytes_->Set(static_cast<double>(usage.store.live_data_bytes));
  memtable_bytes_->Set(static_cast<double>(usage.store.memtable_bytes));
  block_cache_bytes_->Set(static_cast<double>(usage.store.block_cache_bytes));
  pending_compaction_bytes_->Set(static_cast<double>(usage.store.pending_compaction_bytes));
  delayed_write_rate_->Set(static_cast<double>(usage.store.delayed_write_rate));
  write_stopped_->Set(static_cast<double>(usage.store.write_stopped));
}

}  // namespace rotor::pipeline::internal
