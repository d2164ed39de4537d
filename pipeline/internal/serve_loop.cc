#include "pipeline/internal/serve_loop.h"

#include <algorithm>
#include <chrono>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>

#include <spdlog/spdlog.h>

namespace rotor::pipeline::internal {

std::string_view Polled::key() const {
  if (message != nullptr) {
    return message->key == nullptr
               ? std::string_view()
               : std::string_view(static_cast<const char*>(message->key), message->key_len);
  }
  return record.has_key ? record.key : std::string_view();
}

Status DiscardSink::Dispatch(PendingBatch&& batch, PartitionOffsets group_offsets,
                             int64_t records) {
  InFlight& dispatched = ledger_.Add(std::move(batch), std::move(group_offsets), records);
  std::vector<OutputRecord>().swap(dispatched.batch.outputs);
  dispatched.bytes = dispatched.batch.state.ApproximateBytes();
  return Status::OK();
}

void DiscardSink::Poll(int timeout_ms) {
  if (timeout_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
  }
}

Status DiscardSink::CommitTransaction(const rd_kafka_consumer_group_metadata_t* /*group*/) {
  ledger_.ConfirmAll();
  return Status::OK();
}

namespace {

double SecondsSince(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

}  // namespace

double LoopStats::busy_seconds() const {
  if (!first_batch) {
    return 0.0;
  }
  return std::chrono::duration<double>(last_commit - *first_batch).count();
}

ServeLoop::ServeLoop(const LoopOptions& options, RecordSource& source, OutputSink& sink,
                     Processor& processor, StoreWriter& writer, ShutdownClock& shutdown,
                     FailureLatch& failure, LoopObserver& observer)
    : options_(options),
      source_(source),
      sink_(sink),
      processor_(processor),
      writer_(writer),
      shutdown_(shutdown),
      failure_(failure),
      observer_(observer),
      exactly_once_(sink.transactional()) {}

Status ServeLoop::Run(const std::atomic<bool>& stop) {
  const config::PipelineOptions& opt = options_.pipeline;
  std::vector<Polled> messages;
  std::unordered_set<std::string_view> batch_keys;  // Into `messages`.
  std::vector<InputRecord> records;
  SteadyClock::time_point batch_polled{};
  const InFlightLedger& ledger = sink_.ledger();
  bool exhausted = false;
  while (!stop.load()) {
    ROTOR_RETURN_IF_ERROR(failure_.status());
    ROTOR_RETURN_IF_ERROR(source_.error());
    observer_.OnTurn();
    ROTOR_RETURN_IF_ERROR(exactly_once_ ? Advance() : Settle());
    if (source_.Exhausted() && !source_.rewind_pending()) {
      exhausted = true;
      break;
    }
    // Fill a batch: up to max_batch_events, waiting at most max_batch_wait_ms once one arrived.
    // While batches are in flight, an empty poll returns at once to settle them.
    messages.clear();
    SteadyClock::time_point deadline{};
    // Memory: the batch stops filling once its distinct users' windows would take what is left
    // of pipeline.max_inflight_bytes (at least one message, so serving always moves on).
    batch_keys.clear();
    const auto fill_began = SteadyClock::now();
    const int64_t held = ledger.held_bytes();
    while (static_cast<int64_t>(messages.size()) < opt.max_batch_events && !stop.load() &&
           !source_.rewind_pending() &&
           (messages.empty() ||
            held + static_cast<int64_t>(batch_keys.size() + 1) * processor_.user_bytes() <=
                opt.max_inflight_bytes)) {
      int timeout = ledger.empty() ? 100 : 1;
      if (!messages.empty()) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now())
                .count();
        if (left <= 0) {
          break;
        }
        timeout = static_cast<int>(std::min<int64_t>(left, timeout));
      }
      Polled m = source_.Poll(timeout);
      if (m.empty()) {
        if (!ledger.empty()) {
          sink_.Poll(0);  // Delivery reports.
        }
        if (messages.empty()) {
          break;  // Nothing yet: check stop, idle and stats, then poll again.
        }
        continue;
      }
      if (m.event()) {
        ROTOR_RETURN_IF_ERROR(source_.OnEvent(*m.message));
        continue;
      }
      if (messages.empty()) {
        batch_polled = SteadyClock::now();
        deadline = batch_polled + std::chrono::milliseconds(opt.max_batch_wait_ms);
      }
      batch_keys.emplace(m.key());
      messages.push_back(std::move(m));
    }
    // A fill that found nothing is idle time, not the cost of a batch.
    (messages.empty() ? stats_.idle_seconds : stats_.fill_seconds) += SecondsSince(fill_began);
    ROTOR_RETURN_IF_ERROR(source_.error());
    if (source_.rewind_pending()) {
      // Batches were abandoned during a rebalance: what was consumed since is read again.
      messages.clear();
      ROTOR_RETURN_IF_ERROR(source_.Rewind());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    const auto now = SteadyClock::now();
    if (messages.empty()) {
      // An empty fill is admitted too: a source may end what it saw the end of meanwhile.
      records.clear();
      source_.Admit(messages, records);
      if (source_.Exhausted()) {
        exhausted = true;
        break;
      }
      if (exactly_once_ && sink_.transaction_open()) {
        // No input: commit now rather than keep the outputs waiting for the interval.
        ROTOR_RETURN_IF_ERROR(CommitTransactionInLoop());
      }
      ROTOR_RETURN_IF_ERROR(source_.error());
      // Idle means: partitions assigned, nothing in flight, any feed fully produced, every
      // partition consumed to its end, and nothing new for exit_when_idle_ms.
      if (options_.exit_when_idle_ms > 0 && observer_.MayExitIdle() && source_.has_assignment() &&
          ledger.empty() && source_.CaughtUp() &&
          now - std::max(last_input_, source_.last_assigned()) >
              std::chrono::milliseconds(options_.exit_when_idle_ms)) {
        spdlog::info("no input for {} ms: stopping", options_.exit_when_idle_ms);
        break;
      }
      continue;
    }
    last_input_ = now;
    if (!stats_.first_batch) {
      stats_.first_batch = now;
    }
    // A revoke during the fill: the messages of partitions no longer ours are dropped (their
    // new owner consumes them from the committed offsets).
    records.clear();
    source_.Admit(messages, records);
    if (records.empty()) {
      continue;
    }
    const auto process_began = SteadyClock::now();
    ROTOR_ASSIGN_OR_RETURN(PendingBatch batch, processor_.Process(records));
    ++stats_.processed_batches;
    stats_.processed_records += static_cast<int64_t>(records.size());
    const auto dispatch_began = SteadyClock::now();
    stats_.process_seconds += std::chrono::duration<double>(dispatch_began - process_began).count();
    observer_.OnProcessed(batch, records, batch_polled);
    PartitionOffsets group_offsets = source_.GroupOffsets(batch);
    ROTOR_RETURN_IF_ERROR(sink_.Dispatch(std::move(batch), std::move(group_offsets),
                                         static_cast<int64_t>(records.size())));
    const auto wait_began = SteadyClock::now();
    stats_.dispatch_seconds += std::chrono::duration<double>(wait_began - dispatch_began).count();
    stats_.peak_inflight_bytes = std::max(stats_.peak_inflight_bytes, ledger.held_bytes());
    const auto in_flight_max = static_cast<std::size_t>(opt.max_inflight_batches);
    const auto full = [&] {
      return ledger.size() >= in_flight_max || ledger.held_bytes() > opt.max_inflight_bytes;
    };
    if (exactly_once_) {
      ROTOR_RETURN_IF_ERROR(Advance());
      // Commit when the transaction is old or large enough, or at once when a message could
      // not be produced (the commit then aborts it).
      if (full() || ledger.back().failed ||
          SteadyClock::now() - sink_.transaction_began() >= options_.commit_interval) {
        ROTOR_RETURN_IF_ERROR(CommitTransactionInLoop());
      }
      // Back-pressure: the writer holds at most max_inflight_batches (and max_inflight_bytes of)
      // committed batches.
      if (full()) {
        ROTOR_RETURN_IF_ERROR(writer_.Wait());
        ROTOR_RETURN_IF_ERROR(Advance());
      }
      stats_.wait_seconds += SecondsSince(wait_began);
      continue;
    }
    // Back-pressure: at most max_inflight_batches (and max_inflight_bytes) waiting for their
    // deliveries and commits.
    while (!ledger.empty() && full() && !stop.load()) {
      sink_.Poll(1);
      ROTOR_RETURN_IF_ERROR(Settle());
    }
    stats_.wait_seconds += SecondsSince(wait_began);
  }
  // Stopping, idle or exhausted: what is in flight is delivered and committed before returning.
  Status drained = Drain();
  if (!drained.ok() && drained.code() != StatusCode::kAborted) {
    return drained;
  }
  if (!drained.ok() && exhausted) {
    // The last batches were not delivered: the source's end is not in the store yet.
    return Status::Unavailable(
        "the last batches were not delivered ({}); nothing of them was "
        "committed: run again to resume",
        drained.message());
  }
  return Status::OK();
}

Status ServeLoop::Settle(bool rewind) {
  ROTOR_ASSIGN_OR_RETURN(const bool failed, sink_.ConfirmDelivered());
  ROTOR_RETURN_IF_ERROR(Advance());
  if (!failed) {
    return Status::OK();
  }
  ROTOR_RETURN_IF_ERROR(AbandonUnconfirmed("a message of the oldest failed"));
  if (!rewind) {
    return Status::Aborted("a delivery failed");
  }
  ROTOR_RETURN_IF_ERROR(source_.Rewind());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  return Status::OK();
}

Status ServeLoop::Advance() {
  ROTOR_RETURN_IF_ERROR(writer_.status());
  InFlightLedger& ledger = sink_.ledger();
  observer_.OnConfirmed(ledger);
  ledger.SubmitConfirmed(writer_);
  ledger.FinishCommitted(writer_.committed(), [&](const InFlight& done) {
    if (!exactly_once_) {
      source_.CommitAsync(done.group_offsets);
    }
    ++stats_.batches;
    stats_.last_commit = SteadyClock::now();
    observer_.OnCommitted(done);
  });
  return Status::OK();
}

Status ServeLoop::AbandonUnconfirmed(std::string_view why) {
  ROTOR_RETURN_IF_ERROR(writer_.Wait());
  ROTOR_RETURN_IF_ERROR(Advance());
  const InFlightLedger& ledger = sink_.ledger();
  if (ledger.empty()) {
    return Status::OK();
  }
  spdlog::warn("{} batch(es) of {} records not delivered ({}); retrying from the stored offsets",
               ledger.size(), ledger.records(), why);
  const int64_t abandoned = sink_.AbandonInFlight().batches;
  stats_.failed_batches += abandoned;
  observer_.OnAbandoned(abandoned);
  return failure_.status();
}

Status ServeLoop::CommitTransaction(bool rewind) {
  if (!sink_.transaction_open()) {
    return Status::OK();
  }
  Status committed = sink_.CommitTransaction(source_.GroupMetadata().get());
  if (committed.ok()) {
    return Advance();
  }
  if (committed.code() != StatusCode::kAborted) {
    return committed;  // The producer is unusable: the caller stops, committing none of it.
  }
  ROTOR_RETURN_IF_ERROR(AbandonUnconfirmed(committed.message()));
  if (rewind) {
    ROTOR_RETURN_IF_ERROR(source_.Rewind());
  }
  return committed;
}

Status ServeLoop::CommitTransactionInLoop() {
  Status committed = CommitTransaction();
  if (committed.code() == StatusCode::kAborted) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return Status::OK();
  }
  return committed;
}

Status ServeLoop::Drain() {
  if (exactly_once_) {
    ROTOR_RETURN_IF_ERROR(CommitTransaction(/*rewind=*/false));
  }
  const InFlightLedger& ledger = sink_.ledger();
  while (!ledger.empty()) {
    if (!exactly_once_ && shutdown_.PastDeadline()) {
      ROTOR_RETURN_IF_ERROR(
          AbandonUnconfirmed("not delivered within delivery.shutdown_timeout_ms"));
      return Status::Aborted("stopping: undelivered batches dropped");
    }
    if (!exactly_once_) {
      sink_.Poll(10);
      ROTOR_RETURN_IF_ERROR(Settle(/*rewind=*/false));
    }
    if (!ledger.empty() && ledger.back().confirmed) {
      ROTOR_RETURN_IF_ERROR(writer_.Wait());
      ROTOR_RETURN_IF_ERROR(Advance());
    }
  }
  return Status::OK();
}

void ServeLoop::AbandonAfterFailure(const Status& why) {
  failure_.Fail(why);
  if (writer_.Wait().ok()) {
    (void)Advance();
  }
  sink_.DropAfterFailure();
}

}  // namespace rotor::pipeline::internal
