// Daemon::Impl, the commit side of the serving loop: confirmed batches go to the store writer
// in order and finish once RocksDB has them; a failed delivery or an aborted transaction
// abandons the batches in flight and rewinds the consumer; a drain (stopping, or before a
// revoke) waits until nothing is in flight. The loop itself is in daemon.cc.

#include <chrono>
#include <string_view>
#include <thread>

#include <spdlog/spdlog.h>

#include "pipeline/daemon.h"
#include "pipeline/internal/daemon_impl.h"

namespace rotor::pipeline {

Status Daemon::Impl::Settle(bool rewind) {
  ROTOR_ASSIGN_OR_RETURN(const bool failed, delivery->ConfirmDelivered());
  ROTOR_RETURN_IF_ERROR(Advance());
  if (!failed) {
    return Status::OK();
  }
  ROTOR_RETURN_IF_ERROR(AbandonUnconfirmed("a message of the oldest failed"));
  if (!rewind) {
    return Status::Aborted("a delivery failed");
  }
  ROTOR_RETURN_IF_ERROR(consumer->Rewind());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  return Status::OK();
}

Status Daemon::Impl::Advance() {
  ROTOR_RETURN_IF_ERROR(writer->status());
  internal::InFlightLedger& ledger = delivery->ledger();
  ObserveConfirmed();
  ledger.SubmitConfirmed(*writer);
  ledger.FinishCommitted(writer->committed(), [&](const internal::InFlight& done) {
    if (!exactly_once) {
      consumer->CommitAsync(done.group_offsets);
    }
    processed_records += done.records;
    ++stats.batches;
    last_commit = internal::SteadyClock::now();
    metrics->CountBatchCommitted();
    // Its timing (the older ones left are of abandoned batches).
    while (!timings.empty() && timings.front().seq < done.batch.seq) {
      timings.pop_front();
    }
    if (!timings.empty() && timings.front().seq == done.batch.seq) {
      metrics->ObserveBatchSeconds(
          std::chrono::duration<double>(last_commit - timings.front().polled).count());
      timings.pop_front();
    }
  });
  return Status::OK();
}

Status Daemon::Impl::AbandonUnconfirmed(std::string_view why) {
  ROTOR_RETURN_IF_ERROR(writer->Wait());
  ROTOR_RETURN_IF_ERROR(Advance());
  const internal::InFlightLedger& ledger = delivery->ledger();
  if (ledger.empty()) {
    return Status::OK();
  }
  spdlog::warn("{} batch(es) of {} records not delivered ({}); retrying from the stored offsets",
               ledger.size(), ledger.records(), why);
  const int64_t abandoned = delivery->AbandonInFlight().batches;
  stats.failed_batches += abandoned;
  metrics->CountFailedBatches(abandoned);
  return failure.status();
}

Status Daemon::Impl::CommitTransaction(bool rewind) {
  if (!delivery->transaction_open()) {
    return Status::OK();
  }
  Status committed = delivery->CommitTransaction(consumer->GroupMetadata().get());
  if (committed.ok()) {
    return Advance();
  }
  if (committed.code() != StatusCode::kAborted) {
    return committed;  // The producer is unusable: the caller stops, committing none of it.
  }
  ROTOR_RETURN_IF_ERROR(AbandonUnconfirmed(committed.message()));
  if (rewind) {
    ROTOR_RETURN_IF_ERROR(consumer->Rewind());
  }
  return committed;
}

Status Daemon::Impl::CommitTransactionInLoop() {
  Status committed = CommitTransaction();
  if (committed.code() == StatusCode::kAborted) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return Status::OK();
  }
  return committed;
}

Status Daemon::Impl::Drain() {
  if (exactly_once) {
    ROTOR_RETURN_IF_ERROR(CommitTransaction(/*rewind=*/false));
  }
  const internal::InFlightLedger& ledger = delivery->ledger();
  while (!ledger.empty()) {
    if (!exactly_once && shutdown.PastDeadline()) {
      ROTOR_RETURN_IF_ERROR(
          AbandonUnconfirmed("not delivered within delivery.shutdown_timeout_ms"));
      return Status::Aborted("stopping: undelivered batches dropped");
    }
    if (!exactly_once) {
      delivery->Poll(10);
      ROTOR_RETURN_IF_ERROR(Settle(/*rewind=*/false));
    }
    if (!ledger.empty() && ledger.back().confirmed) {
      ROTOR_RETURN_IF_ERROR(writer->Wait());
      ROTOR_RETURN_IF_ERROR(Advance());
    }
  }
  return Status::OK();
}

void Daemon::Impl::AbandonAfterFailure(const Status& why) {
  failure.Fail(why);
  if (writer->Wait().ok()) {
    (void)Advance();
  }
  delivery->DropAfterFailure();
}

}  // namespace rotor::pipeline
