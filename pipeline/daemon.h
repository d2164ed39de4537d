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

#include "common/status.h"
#include "config/daemon_config.h"
#include "encoders/bundle.h"
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
  // The most memory batches in flight held at once (their users' windows and WriteBatches),
  // against pipeline.max_inflight_bytes.
  int64_t peak_inflight_bytes = 0;
  double busy_seconds = 0;  // From the first consumed batch to the last commit.
};

// Lifecycle: Create validates everything (bundle, state directory, Kafka settings) and
// connects; Run serves until asked to stop; destruction closes the clients and the store.
// Concurrency: Run on one thread; `stop` may be set from any thread or a signal handler.
class Daemon {
 public:
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
