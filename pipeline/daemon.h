// Daemon: `rotor serve`. Consumes the input topic in a consumer group, runs each micro-batch
// through the Processor, delivers its messages (idempotently, or in a Kafka transaction in
// exactly-once mode) and commits its state and input offsets to RocksDB (DESIGN sections 4-5).
// Batches are pipelined: the next is decoded while earlier ones are being delivered, and their
// state commits in order once they are confirmed (docs/daemon.md).

#ifndef ROTOR_PIPELINE_DAEMON_H_
#define ROTOR_PIPELINE_DAEMON_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "common/topic_partition.h"
#include "config/daemon_config.h"
#include "encoders/bundle.h"
#include "storage/committed_view.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline {

// How one run behaves beyond the config file (command-line flags).
struct RunOptions {
  // > 0: return from Run once no input arrived for this long (and any feed is done).
  int64_t exit_when_idle_ms = 0;
  // Embedded demo: produce this JSON-lines file into the input topic while serving, at most
  // feed_max_ahead events ahead of what the daemon has processed (the mock cluster keeps only
  // about 5 MiB per partition).
  std::string feed_file;
  int64_t feed_max_ahead = 20000;
  // The URL this instance's HTTP API is reached at ("http://10.0.0.5:8470"; host '*': the
  // address the group coordinator sees it connect from), advertised to the group so that the
  // other instances forward requests for its partitions here; empty: none advertised, and the
  // group's owners are not looked up (OwnerOf says so).
  std::string api_url;
};

// The owner of an input partition this instance does not own, as the group's last description
// says (api.owners_refresh_ms): its advertised API URL, or why none is known now.
struct PartitionOwner {
  std::string api_url;  // Empty when unknown.
  std::string reason;   // Why unknown: rebalancing, no owner, no address advertised, ...
};

// Counters of a run.
struct DaemonStats {
  int64_t records = 0;
  int64_t events = 0;
  int64_t replayed = 0;
  int64_t dead_letters = 0;
  int64_t duplicates = 0;
  int64_t deltas = 0;
  int64_t snapshots = 0;
  // state.user_ttl_ms: users the sweep deleted, and events that restarted an expired history.
  int64_t expired_users = 0;
  int64_t restarted_histories = 0;
  int64_t batches = 0;
  int64_t failed_batches = 0;  // Batches whose delivery failed and were retried.
  int64_t transactions = 0;    // Transactions committed (exactly-once mode).
  int64_t fed = 0;             // Events the embedded feeder produced.
  // Partitions stopped because their log lost records the state needs (docs/daemon.md).
  int64_t stopped_partitions = 0;
  // Records below the next offset to apply, skipped (a stale fetch after a seek).
  int64_t skipped_records = 0;
  // Partitions restored from the state changelog, and the changelog records applied.
  int64_t restored_partitions = 0;
  int64_t restored_records = 0;
  // The most memory batches in flight held at once (their users' windows and WriteBatches),
  // against pipeline.max_inflight_bytes.
  int64_t peak_inflight_bytes = 0;
  double busy_seconds = 0;  // From the first consumed batch to the last commit.
  // Where the serving loop's thread spent its time (seconds; the daemon's exit log line
  // "loop: ..." prints them): filling batches, processing them (of which decoding and encoding
  // on the worker pool, and batching state and messages), dispatching them to the producer,
  // waiting for deliveries and commits, and idle (polls that found no input). What is left of
  // processing is reading the records (parse, featurize, dedupe, the users' states).
  struct LoopTime {
    double fill = 0;
    double process = 0;
    double decode = 0;
    double batch = 0;
    double dispatch = 0;
    double wait = 0;
    double idle = 0;
  } loop_seconds;
  int64_t processed_batches = 0;  // Batches processed, committed or not.
};

// The store options the config asks for (state.dir, its cache and memtable sizes, sync_writes;
// created when missing): how the daemon, and the app's runtime that lends it a store, open
// config.state.dir.
storage::StoreOptions StoreOptionsFor(const config::DaemonConfig& config);

// What the app lends a Daemon, opened once by the app's runtime (and shared with the HTTP API);
// everything here must outlive the Daemon.
struct DaemonResources {
  const encoders::Bundle* bundle = nullptr;  // Required: config.model.bundle, loaded.
  // Required: opened on config.state.dir (StoreOptionsFor gives the config's sizes).
  storage::UserStateStore* store = nullptr;
  // Optional: where the daemon registers its metrics (docs/daemon.md, "Readiness and
  // metrics"); null: the metrics are kept but not exported.
  common::MetricsRegistry* metrics = nullptr;
  // Optional, of the bundle's model: where the hot-window cache publishes each committed
  // batch's users for the API's reads (storage/committed_view.h); null: not published.
  storage::CommittedView* committed_view = nullptr;
};

// Where one assigned input partition stands (docs/daemon.md, "Readiness and metrics").
//   kRestoring: assigned, and the state is still behind what the group already published
//     (the records between the stored offset and the group's committed offset are being
//     re-applied without publishing, the re-apply rule).
//   kConsuming: the state covers everything published; new input is applied and published.
//   kStopped: paused for good, because its log lost records the state needs, or serving failed.
enum class PartitionPhase : unsigned char { kRestoring, kConsuming, kStopped };
std::string_view PartitionPhaseName(PartitionPhase phase);  // "restoring", ...

struct PartitionReport {
  TopicPartition partition;
  PartitionPhase phase = PartitionPhase::kRestoring;
  int64_t next_offset = -1;     // The next input offset to apply (-1: unknown yet).
  int64_t high_watermark = -1;  // The log's end as the consumer last saw it (-1: unknown).
  // Records between where consumption stands (the next offset to apply, or the consumer's
  // position when that is past it, e.g. after transaction markers; the log's start when
  // neither is known yet) and the high watermark; -1 when the high watermark is unknown.
  int64_t lag = -1;
  std::string reason;  // Why restoring or stopped; empty when consuming.
};

// The daemon's readiness, as the serving loop last published it.
struct DaemonStatus {
  // Run has joined the group and received its first assignment (possibly of no partition: then
  // serving with an empty list, ready), and has not stopped.
  bool serving = false;
  // Empty when serving and every partition is consuming; otherwise why not, e.g. "waiting for
  // the group's assignment" or "partition 3 of 'rotor.events' is restoring: 120 records to
  // re-apply".
  std::string reason;
  std::vector<PartitionReport> partitions;  // The assigned partitions, in order.

  // Serving, and every assigned partition consuming (what `GET /readyz` answers 200 to).
  bool ready() const;
};

// Lifecycle: Create validates everything (bundle, state directory, Kafka settings) and
// connects; Run serves until asked to stop; destruction closes the clients and the store.
// Concurrency: Run on one thread; `stop` may be set from any thread or a signal handler.
// status(), PartitionOf(), OwnerOf(), input_topic() and LoadUser() may be called from any thread at
// any time (the HTTP API's threads); stats() only when Run is not running.
class Daemon {
 public:
  // With lent resources (the app's runtime): the bundle, store and metrics registry stay the
  // caller's. InvalidArgument when the bundle or the store is missing.
  static Result<std::unique_ptr<Daemon>> Create(const config::DaemonConfig& config,
                                                const DaemonResources& resources,
                                                RunOptions run = {});
  // Self-contained: loads config.model.bundle and opens config.state.dir (StoreOptionsFor)
  // itself, and exports no metrics.
  static Result<std::unique_ptr<Daemon>> Create(const config::DaemonConfig& config,
                                                RunOptions run = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Serves until `stop` is true (checked at least every 100 ms and between batches; the batches
  // in flight are delivered and committed first) or the idle exit. Then leaves the
  // group cleanly, flushes the producer and syncs the store. An error (e.g. the store failing,
  // the producer fenced) stops serving and is returned; state stays consistent.
  Status Run(const std::atomic<bool>& stop);

  DaemonStats stats() const;
  // Readiness: a copy of what the serving loop last published (on every assignment change,
  // and at most every 500 ms otherwise). Never waits for the loop longer than that copy.
  DaemonStatus status() const;
  // The input partition `user`'s events belong to: Kafka's Java-client partitioner (murmur2)
  // over the input topic's partition count found at start-up, as the daemon routes and checks
  // records.
  int32_t PartitionOf(std::string_view user) const;
  // Who owns `partition` when this instance does not (the API's forwarding).
  PartitionOwner OwnerOf(int32_t partition) const;
  const std::string& input_topic() const;
  const std::string& bootstrap_servers() const;
  // The producer's transactional.id (exactly_once; empty otherwise).
  const std::string& transactional_id() const;
  const encoders::Bundle& bundle() const;
  // One user's committed state.
  Result<std::optional<storage::UserState>> LoadUser(const std::string& user) const;

 private:
  struct Impl;
  explicit Daemon(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rotor::pipeline

#endif  // ROTOR_PIPELINE_DAEMON_H_
