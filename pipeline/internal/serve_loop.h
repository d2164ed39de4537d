// The serving loop, between a record source and an output sink (docs/architecture.md,
// "Source -> processor -> sink"): poll a batch from the source, admit it, process it, dispatch
// it to the sink; confirmed batches commit their state in order (on the store writer's
// thread) and finish; a failed delivery or an aborted transaction abandons the batches in
// flight and rewinds the source; stopping (or the source running out) drains what is in
// flight. `rotor serve` runs it between the consumer group (GroupConsumer) and the producer
// (Delivery, idempotent or transactional); `rotor replay --kafka` between offset ranges of the
// input topic (RangeSource) and the producer or nothing (DiscardSink); `rotor replay --file`
// between a file's lines (FileSource) and nothing. So a replay applies exactly what serving
// applies, batch for batch, through the same code.

#ifndef ROTOR_PIPELINE_INTERNAL_SERVE_LOOP_H_
#define ROTOR_PIPELINE_INTERNAL_SERVE_LOOP_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/topic_partition.h"
#include "config/daemon_config.h"
#include "pipeline/internal/delivery.h"
#include "pipeline/internal/rdkafka_util.h"
#include "pipeline/internal/record_source.h"
#include "pipeline/internal/run_control.h"
#include "pipeline/internal/store_writer.h"
#include "pipeline/processor.h"

namespace rotor::pipeline::internal {

// The sink of a replay that publishes nothing: a batch is confirmed once dispatched (its
// outputs, if any, dropped); the state still commits in order through the writer.
class DiscardSink final : public OutputSink {
 public:
  explicit DiscardSink(Processor& processor) : ledger_(processor) {}
  bool transactional() const override { return false; }
  Status Dispatch(PendingBatch&& batch, PartitionOffsets group_offsets, int64_t records) override;
  // Nothing to serve: waits `timeout_ms` (the loop's back-pressure waits for the writer).
  void Poll(int timeout_ms) override;
  Result<bool> ConfirmDelivered() override { return ledger_.ConfirmDelivered(); }
  Status CommitTransaction(const rd_kafka_consumer_group_metadata_t* /*group*/) override;
  bool transaction_open() const override { return false; }
  SteadyClock::time_point transaction_began() const override { return {}; }
  int64_t transactions() const override { return 0; }
  InFlightLedger::Dropped AbandonInFlight() override { return ledger_.AbandonAll(); }
  void DropAfterFailure() override { ledger_.AbandonAll(); }
  void Flush(int /*max_ms*/) override {}
  InFlightLedger& ledger() override { return ledger_; }
  const InFlightLedger& ledger() const override { return ledger_; }

 private:
  InFlightLedger ledger_;
};

// What the loop's owner sees of it (the daemon's readiness and metrics); every call on the
// loop's thread. The defaults do nothing.
class LoopObserver {
 public:
  virtual ~LoopObserver() = default;
  // Every turn of the loop, before a batch is filled.
  virtual void OnTurn() {}
  // `batch` was processed from `records`, whose first message was polled at `polled`.
  virtual void OnProcessed(const PendingBatch& /*batch*/, std::span<const InputRecord> /*records*/,
                           SteadyClock::time_point /*polled*/) {}
  // Batches were confirmed (before their state goes to the writer): the ledger shows which.
  virtual void OnConfirmed(const InFlightLedger& /*ledger*/) {}
  // A batch's state is committed; it finishes after this.
  virtual void OnCommitted(const InFlight& /*batch*/) {}
  // Batches were abandoned (their records are read again).
  virtual void OnAbandoned(int64_t /*batches*/) {}
  // Whether the idle exit may happen now (the embedded demo's feed must be done).
  virtual bool MayExitIdle() { return true; }
};

struct LoopOptions {
  config::PipelineOptions pipeline;
  // Exactly-once: how long a transaction stays open at most (delivery.commit_interval_ms).
  std::chrono::milliseconds commit_interval{100};
  // > 0: Run returns once no input arrived for this long, every partition is consumed to its
  // end and nothing is in flight (RunOptions::exit_when_idle_ms).
  int64_t exit_when_idle_ms = 0;
};

struct LoopStats {
  int64_t batches = 0;         // Committed.
  int64_t failed_batches = 0;  // Abandoned and redone.
  int64_t peak_inflight_bytes = 0;
  std::optional<SteadyClock::time_point> first_batch;
  SteadyClock::time_point last_commit{};
  // Where the loop's thread spent its time (seconds), for finding what limits throughput:
  // filling batches (polling the source, waiting for input), processing them (parse, decode,
  // encode, batching the state), dispatching them to the sink (producing), and waiting on
  // back-pressure (deliveries, transactions and the store writer's commits). Polls that found
  // no input at all count as idle.
  double idle_seconds = 0;
  double fill_seconds = 0;
  double process_seconds = 0;
  double dispatch_seconds = 0;
  double wait_seconds = 0;
  int64_t processed_batches = 0;  // Batches processed (committed or not).
  int64_t processed_records = 0;
  // From the first batch processed to the last one committed.
  double busy_seconds() const;
};

// Lifecycle: borrows everything, which outlives it. Concurrency: one thread (Run's); Drain may
// also be called from inside the source's callbacks on that thread (a revoke).
class ServeLoop {
 public:
  ServeLoop(const LoopOptions& options, RecordSource& source, OutputSink& sink,
            Processor& processor, StoreWriter& writer, ShutdownClock& shutdown,
            FailureLatch& failure, LoopObserver& observer);

  // Serves until `stop` (checked at least every 100 ms and between batches), the idle exit, or
  // the source is exhausted; then drains what is in flight. An error stops it (the caller then
  // calls AbandonAfterFailure).
  Status Run(const std::atomic<bool>& stop);
  // Waits until nothing is in flight: every delivery confirmed and committed (or the
  // transaction committed), giving up after delivery.shutdown_timeout_ms when stopping
  // (Aborted: the batches were dropped).
  Status Drain();
  // After Run failed: nothing unconfirmed commits, the batches are dropped, the sink purged.
  void AbandonAfterFailure(const Status& why);

  const LoopStats& stats() const { return stats_; }

 private:
  Status Settle(bool rewind = true);
  Status Advance();
  Status AbandonUnconfirmed(std::string_view why);
  Status CommitTransaction(bool rewind = true);
  Status CommitTransactionInLoop();

  LoopOptions options_;
  RecordSource& source_;
  OutputSink& sink_;
  Processor& processor_;
  StoreWriter& writer_;
  ShutdownClock& shutdown_;
  FailureLatch& failure_;
  LoopObserver& observer_;
  const bool exactly_once_;
  SteadyClock::time_point last_input_ = SteadyClock::now();
  LoopStats stats_;
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_SERVE_LOOP_H_
