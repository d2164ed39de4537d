// Daemon::Impl as the serving loop's observer (internal/serve_loop.h): readiness published on
// every turn, the periodic stats line, and the metrics of each batch: processed, confirmed
// (event-to-publish latency), committed (batch latency), abandoned. The loop itself, with the
// commit side (confirmed batches into RocksDB in order, failed ones into abandoned batches and
// rewinds), is internal/serve_loop.cc.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <span>

#include "pipeline/daemon.h"
#include "pipeline/internal/daemon_impl.h"

namespace rotor::pipeline {

void Daemon::Impl::OnTurn() {
  PublishStatus();
  const auto now = internal::SteadyClock::now();
  if (config.log.stats_interval_ms > 0 &&
      now - last_stats_log > std::chrono::milliseconds(config.log.stats_interval_ms)) {
    last_stats_log = now;
    LogStats(loop->stats().busy_seconds());
  }
}

void Daemon::Impl::OnProcessed(const PendingBatch& batch, std::span<const InputRecord> records,
                               internal::SteadyClock::time_point polled) {
  metrics->CountProcessed(processor->stats(), batch);
  BatchTiming timing;
  timing.seq = batch.seq;
  timing.polled = polled;
  for (const InputRecord& r : records) {
    if (r.publish && r.timestamp_ms >= 0) {
      timing.timestamps_ms.push_back(r.timestamp_ms);
    }
  }
  timings.push_back(std::move(timing));
}

void Daemon::Impl::OnConfirmed(const internal::InFlightLedger& ledger) {
  const int64_t now_ms = internal::WallMs();
  for (auto it = timings.begin(); it != timings.end();) {
    if (it->confirmed) {
      ++it;
      continue;
    }
    const internal::InFlight* batch = ledger.Find(it->seq);
    if (batch == nullptr) {
      it = timings.erase(it);  // Abandoned: its redo is another batch.
      continue;
    }
    if (!batch->confirmed) {
      break;  // Batches are confirmed in order.
    }
    for (const int64_t ts : it->timestamps_ms) {
      metrics->ObserveEventToPublishSeconds(static_cast<double>(std::max<int64_t>(0, now_ms - ts)) /
                                            1000.0);
    }
    it->timestamps_ms = {};
    it->confirmed = true;
    ++it;
  }
}

void Daemon::Impl::OnCommitted(const internal::InFlight& done) {
  processed_records += done.records;
  metrics->CountBatchCommitted();
  // Its timing (the older ones left are of abandoned batches).
  while (!timings.empty() && timings.front().seq < done.batch.seq) {
    timings.pop_front();
  }
  if (!timings.empty() && timings.front().seq == done.batch.seq) {
    metrics->ObserveBatchSeconds(
        std::chrono::duration<double>(internal::SteadyClock::now() - timings.front().polled)
            .count());
    timings.pop_front();
  }
}

void Daemon::Impl::OnAbandoned(int64_t batches) {
  metrics->CountFailedBatches(batches);
}

}  // namespace rotor::pipeline
