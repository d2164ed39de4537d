#include "pipeline/daemon.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/topic_partition.h"
#include "pipeline/internal/delivery.h"
#include "pipeline/internal/feeder.h"
#include "pipeline/internal/group_consumer.h"
#include "pipeline/internal/rdkafka_util.h"
#include "pipeline/internal/run_control.h"
#include "pipeline/internal/store_writer.h"
#include "pipeline/internal/transactional_id.h"
#include "pipeline/kafka_tools.h"
#include "pipeline/processor.h"

namespace rotor::pipeline {
namespace {

using internal::MessagePtr;
using internal::SteadyClock;

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double Seconds(SteadyClock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

// What the daemon opened (bundle, store, processor, writer) and the two Kafka sides it
// connects: the GroupConsumer (input, offsets, rebalances) and Delivery (producer,
// transactions, the ledger of batches in flight). Impl moves batches from one to the other and
// decides what a failure means: a failed delivery abandons the batches and rewinds the
// consumer; a revoke drains what is in flight first (the GroupConsumer's Listener).
struct Daemon::Impl final : internal::GroupConsumer::Listener {
  config::DaemonConfig config;
  RunOptions run;
  std::unique_ptr<EmbeddedKafka> embedded;
  std::string bootstrap;
  std::unique_ptr<encoders::Bundle> bundle;
  std::unique_ptr<storage::UserStateStore> store;
  std::unique_ptr<internal::StoreWriter> writer;  // Commits to `store`, in batch order.
  std::unique_ptr<Processor> processor;
  std::unique_ptr<internal::Delivery> delivery;       // The producer and the batches in flight.
  std::unique_ptr<internal::GroupConsumer> consumer;  // The input and where it stands.
  bool exactly_once = false;
  std::string transactional_id;  // exactly_once only.
  // The first permanent failure (a delivery the broker refused for good, a fenced producer):
  // serving stops with it, and no batch that was not confirmed before it may commit.
  internal::FailureLatch failure;
  // The Run caller's stop flag, for the waits inside librdkafka callbacks, and the shutdown
  // deadline it starts.
  internal::ShutdownClock shutdown;
  // When input last arrived (the idle exit's clock, with the consumer's last assignment).
  SteadyClock::time_point last_input = SteadyClock::now();
  std::atomic<int64_t> processed_records{0};
  std::unique_ptr<internal::Feeder> feeder;  // The embedded demo's --feed (else null).
  DaemonStats stats;
  SteadyClock::time_point last_commit{};

  explicit Impl(const config::DaemonConfig& c)
      : config(c),
        exactly_once(c.delivery.mode == config::DeliveryMode::kExactlyOnce),
        shutdown(c.delivery.shutdown_timeout_ms) {}
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;
  ~Impl() override {
    feeder.reset();
    consumer.reset();
    writer.reset();  // Finishes its commits (of batches the delivery ledger holds) first.
    delivery.reset();
    processor.reset();
    store.reset();
    embedded.reset();
  }

  // GroupConsumer::Listener: a revoke first finishes what is in flight while the partitions
  // are still ours, then drops the cached users (they may belong to the revoked partitions).
  Status BeforeRevoke() override { return Drain(); }
  void AfterRevoke() override { processor->ClearCache(); }

  // The two clients and the start-up checks, in the order that lets each check fail before
  // anything is consumed: the producer, the message size limit, the transactions (fencing a
  // zombie), the topics, then the consumer (the partition count, the subscription).
  Status Connect() {
    if (exactly_once) {
      ROTOR_ASSIGN_OR_RETURN(transactional_id,
                             internal::TransactionalId(config.delivery.transactional_id,
                                                       config.kafka.group_id, *store));
    }
    ROTOR_ASSIGN_OR_RETURN(delivery, internal::Delivery::Create(config, bootstrap, transactional_id,
                                                                *processor, shutdown, failure));
    ROTOR_RETURN_IF_ERROR(CheckMessageSizes());
    if (exactly_once) {
      // Fences any zombie with the same transactional.id and aborts its open transaction.
      ROTOR_RETURN_IF_ERROR(delivery->InitTransactions());
    }
    ROTOR_ASSIGN_OR_RETURN(const int32_t input_partitions, CheckTopics());
    ROTOR_ASSIGN_OR_RETURN(
        consumer, internal::GroupConsumer::Create(config, bootstrap, input_partitions, *store,
                                                  shutdown, failure, *this));
    return Status::OK();
  }

  // Every message the daemon can make must fit the producer's message.max.bytes: one that does
  // not is refused by librdkafka, and its batch could never be delivered.
  Status CheckMessageSizes() {
    ROTOR_ASSIGN_OR_RETURN(const int64_t limit, delivery->MessageMaxBytes());
    ROTOR_ASSIGN_OR_RETURN(const int64_t largest,
                           processor->LargestMessageBytes(config.kafka.input_topic));
    if (largest > limit) {
      return Status::InvalidArgument(
          "the largest message rotor may produce is {} bytes (a snapshot of a full {}-row window "
          "in output.dtype {}, or a dead letter of up to pipeline.max_message_bytes = {}), over "
          "the producer's message.max.bytes = {}: raise kafka.producer_properties "
          "message.max.bytes (and the topics' max.message.bytes), or lower the others",
          largest, bundle->config().window, config::OutputDtypeName(config.output.dtype),
          config.pipeline.max_message_bytes, limit);
    }
    return Status::OK();
  }

  // Before serving: the cluster answers within kafka.connect_timeout_ms and the three topics
  // exist. Otherwise start-up fails with a message naming what is wrong, rather than a daemon
  // that retries forever with nothing to consume. Fetching the output topics' metadata also
  // saves the first batches the wait for it (a few hundred ms on a fresh topic,
  // docs/performance.md). The input topic's partition count.
  Result<int32_t> CheckTopics() {
    const config::KafkaOptions& k = config.kafka;
    auto found = delivery->ReadTopics(k.connect_timeout_ms);
    if (!found.ok()) {
      return Status::Unavailable(
          "kafka.bootstrap_servers '{}': no broker answered within kafka.connect_timeout_ms = {} "
          "({})",
          bootstrap, k.connect_timeout_ms, found.status().message());
    }
    for (const std::string& topic : {k.input_topic, k.output_topic, k.dead_letter_topic}) {
      const auto it = found->find(topic);
      if (it == found->end() || !it->second.ok || it->second.partitions == 0) {
        return Status::FailedPrecondition(
            "topic '{}' is not available on '{}' ({}); create the topics with `rotor topics`",
            topic, bootstrap, it == found->end() ? "it does not exist" : it->second.status);
      }
    }
    return found->at(k.input_topic).partitions;
  }

  // At-least-once: serves delivery reports and confirms the oldest batches whose messages were
  // all delivered, in order; their state goes to the writer. A failed one is abandoned with
  // every later batch and the partitions rewound (Aborted when `rewind` is false: the caller
  // rewinds).
  Status Settle(bool rewind = true) {
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

  // Hands confirmed batches to the writer in order, and finishes those it committed: their
  // users stay hot, and (at-least-once) their offsets go to Kafka too.
  Status Advance() {
    ROTOR_RETURN_IF_ERROR(writer->status());
    internal::InFlightLedger& ledger = delivery->ledger();
    ledger.SubmitConfirmed(*writer);
    ledger.FinishCommitted(writer->committed(), [&](const internal::InFlight& done) {
      if (!exactly_once) {
        consumer->CommitAsync(done.group_offsets);
      }
      processed_records += done.records;
      ++stats.batches;
      last_commit = SteadyClock::now();
    });
    return Status::OK();
  }

  // Commits every confirmed batch, then drops the rest (the processor forgets their state).
  Status AbandonUnconfirmed(std::string_view why) {
    ROTOR_RETURN_IF_ERROR(writer->Wait());
    ROTOR_RETURN_IF_ERROR(Advance());
    const internal::InFlightLedger& ledger = delivery->ledger();
    if (ledger.empty()) {
      return Status::OK();
    }
    spdlog::warn("{} batch(es) of {} records not delivered ({}); retrying from the stored offsets",
                 ledger.size(), ledger.records(), why);
    stats.failed_batches += delivery->AbandonInFlight().batches;
    return failure.status();
  }

  // Exactly-once: commits the open transaction with the input offsets of every batch in it
  // (the unconfirmed ones), then hands their state to the writer (a crash in between re-applies
  // without publishing). On an abortable error the transaction is aborted and the batches
  // abandoned: Aborted, after a rewind when `rewind` is true.
  Status CommitTransaction(bool rewind = true) {
    if (!delivery->transaction_open()) {
      return Status::OK();
    }
    const Status committed = delivery->CommitTransaction(consumer->GroupMetadata().get());
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

  // CommitTransaction for the serving loop: an aborted transaction was rewound already, so
  // after a short back-off serving goes on; only a fatal error is returned.
  Status CommitTransactionInLoop() {
    Status committed = CommitTransaction();
    if (committed.code() == StatusCode::kAborted) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      return Status::OK();
    }
    return committed;
  }

  // Waits until nothing is in flight: every delivery confirmed and committed (or the
  // transaction committed). Aborted when batches had to be abandoned; the caller rewinds.
  Status Drain() {
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

  // After serving stopped on an error: batches already confirmed (delivered, or in a committed
  // transaction) still commit their state; every other batch is dropped, its messages purged
  // and an open transaction aborted, so nothing unconfirmed reaches RocksDB, not even through
  // the drain of the revoke that closing the consumer triggers. A restart redoes them.
  void AbandonAfterFailure(const Status& why) {
    failure.Fail(why);
    if (writer->Wait().ok()) {
      (void)Advance();
    }
    delivery->DropAfterFailure();
  }

  void LogStats(double seconds) const {
    const ProcessorStats& p = processor->stats();
    spdlog::info(
        "{} events ({:.0f}/s busy), {} replayed without publishing, {} dead letters, {} "
        "duplicates, "
        "{} deltas, {} snapshots, {} batches ({} retried), {} store loads",
        p.events, seconds > 0 ? static_cast<double>(p.events) / seconds : 0.0, p.replayed,
        p.dead_letters, p.duplicates, p.deltas, p.snapshots, stats.batches, stats.failed_batches,
        p.store_loads);
  }

  Status Serve(const std::atomic<bool>& stop);
};

Status Daemon::Impl::Serve(const std::atomic<bool>& stop) {
  const config::PipelineOptions& opt = config.pipeline;
  const auto commit_interval = std::chrono::milliseconds(config.delivery.commit_interval_ms);
  std::vector<MessagePtr> messages;
  std::unordered_set<std::string_view> batch_keys;  // Into `messages`.
  std::vector<InputRecord> records;
  auto last_stats = SteadyClock::now();
  std::optional<SteadyClock::time_point> first_batch;
  while (!stop.load()) {
    ROTOR_RETURN_IF_ERROR(failure.status());
    ROTOR_RETURN_IF_ERROR(consumer->rebalance_error());
    ROTOR_RETURN_IF_ERROR(exactly_once ? Advance() : Settle());
    // Fill a batch: up to max_batch_events, waiting at most max_batch_wait_ms once one arrived.
    // While batches are in flight, an empty poll returns at once to settle them.
    messages.clear();
    SteadyClock::time_point deadline{};
    // Memory: the batch stops filling once its distinct users' windows would take what is left
    // of pipeline.max_inflight_bytes (at least one message, so serving always moves on).
    batch_keys.clear();
    const internal::InFlightLedger& ledger = delivery->ledger();
    const int64_t held = ledger.held_bytes();
    while (static_cast<int64_t>(messages.size()) < opt.max_batch_events && !stop.load() &&
           !consumer->rewind_pending() &&
           (messages.empty() ||
            held + static_cast<int64_t>(batch_keys.size() + 1) * processor->user_bytes() <=
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
      MessagePtr m = consumer->Poll(timeout);
      if (!m) {
        if (!ledger.empty()) {
          delivery->Poll(0);  // Delivery reports.
        }
        if (messages.empty()) {
          break;  // Nothing yet: check stop, idle and stats, then poll again.
        }
        continue;
      }
      if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
        ROTOR_RETURN_IF_ERROR(consumer->OnOffsetOutOfRange(m->partition));
        continue;
      }
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          spdlog::warn("consumer: {}", rd_kafka_message_errstr(m.get()));
        }
        continue;
      }
      if (messages.empty()) {
        deadline = SteadyClock::now() + std::chrono::milliseconds(opt.max_batch_wait_ms);
      }
      batch_keys.emplace(m->key == nullptr
                             ? std::string_view()
                             : std::string_view(static_cast<const char*>(m->key), m->key_len));
      messages.push_back(std::move(m));
    }
    ROTOR_RETURN_IF_ERROR(consumer->rebalance_error());
    if (consumer->rewind_pending()) {
      // Batches were abandoned during a rebalance: what was consumed since is read again.
      messages.clear();
      ROTOR_RETURN_IF_ERROR(consumer->Rewind());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    const auto now = SteadyClock::now();
    if (config.log.stats_interval_ms > 0 &&
        now - last_stats > std::chrono::milliseconds(config.log.stats_interval_ms)) {
      last_stats = now;
      LogStats(first_batch ? Seconds(last_commit - *first_batch) : 0.0);
    }
    if (messages.empty()) {
      if (exactly_once && delivery->transaction_open()) {
        // No input: commit now rather than keep the outputs waiting for the interval.
        ROTOR_RETURN_IF_ERROR(CommitTransactionInLoop());
      }
      ROTOR_RETURN_IF_ERROR(consumer->rebalance_error());
      // Idle means: partitions assigned, nothing in flight, any feed fully produced, every
      // partition consumed to its end, and nothing new for exit_when_idle_ms.
      if (run.exit_when_idle_ms > 0 && (feeder == nullptr || feeder->done()) &&
          consumer->has_assignment() && ledger.empty() && consumer->CaughtUp() &&
          now - std::max(last_input, consumer->last_assigned()) >
              std::chrono::milliseconds(run.exit_when_idle_ms)) {
        spdlog::info("no input for {} ms: stopping", run.exit_when_idle_ms);
        break;
      }
      continue;
    }
    last_input = now;
    if (!first_batch) {
      first_batch = now;
    }
    // A revoke during the fill: the messages of partitions no longer ours are dropped (their
    // new owner consumes them from the committed offsets).
    records.clear();
    consumer->Admit(messages, records);
    if (records.empty()) {
      continue;
    }
    ROTOR_ASSIGN_OR_RETURN(PendingBatch batch, processor->Process(records));
    PartitionOffsets group_offsets = consumer->GroupOffsets(batch);
    ROTOR_RETURN_IF_ERROR(delivery->Dispatch(std::move(batch), std::move(group_offsets),
                                             static_cast<int64_t>(records.size())));
    stats.peak_inflight_bytes = std::max(stats.peak_inflight_bytes, ledger.held_bytes());
    const auto in_flight_max = static_cast<std::size_t>(opt.max_inflight_batches);
    const auto full = [&] {
      return ledger.size() >= in_flight_max || ledger.held_bytes() > opt.max_inflight_bytes;
    };
    if (exactly_once) {
      ROTOR_RETURN_IF_ERROR(Advance());
      // Commit when the transaction is old or large enough, or at once when a message could
      // not be produced (the commit then aborts it).
      if (full() || ledger.back().failed ||
          SteadyClock::now() - delivery->transaction_began() >= commit_interval) {
        ROTOR_RETURN_IF_ERROR(CommitTransactionInLoop());
      }
      // Back-pressure: the writer holds at most max_inflight_batches (and max_inflight_bytes of)
      // committed batches.
      if (full()) {
        ROTOR_RETURN_IF_ERROR(writer->Wait());
        ROTOR_RETURN_IF_ERROR(Advance());
      }
      continue;
    }
    // Back-pressure: at most max_inflight_batches (and max_inflight_bytes) waiting for their
    // deliveries and commits.
    while (!ledger.empty() && full() && !stop.load()) {
      delivery->Poll(1);
      ROTOR_RETURN_IF_ERROR(Settle());
    }
  }
  // Stopping (or idle): what is in flight is delivered and committed before returning.
  Status drained = Drain();
  if (!drained.ok() && drained.code() != StatusCode::kAborted) {
    return drained;
  }
  if (first_batch) {
    stats.busy_seconds = Seconds(last_commit - *first_batch);
  }
  LogStats(stats.busy_seconds);
  return Status::OK();
}

Daemon::Daemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Daemon::~Daemon() = default;

Result<std::unique_ptr<Daemon>> Daemon::Create(const config::DaemonConfig& config, RunOptions run) {
  ROTOR_RETURN_IF_ERROR(config::ValidateDaemonConfig(config));
  auto impl = std::make_unique<Impl>(config);
  impl->run = std::move(run);
  {
    auto bundle = encoders::Bundle::Load(config.model.bundle);
    if (!bundle.ok()) {
      return Status(
          bundle.status().code(),
          fmt::format("model.bundle '{}': {}", config.model.bundle, bundle.status().message()));
    }
    impl->bundle = std::make_unique<encoders::Bundle>(std::move(bundle).value());
  }
  auto store = storage::UserStateStore::Open({.path = config.state.dir,
                                              .block_cache_bytes = config.state.block_cache_bytes,
                                              .write_buffer_bytes = config.state.write_buffer_bytes,
                                              .sync_writes = config.state.sync_writes,
                                              .create_if_missing = true});
  if (!store.ok()) {
    return Status(store.status().code(),
                  fmt::format("state.dir '{}': {}", config.state.dir, store.status().message()));
  }
  impl->store = std::move(store).value();
  impl->writer = std::make_unique<internal::StoreWriter>(*impl->store);
  ROTOR_ASSIGN_OR_RETURN(impl->processor,
                         Processor::Create(*impl->bundle, *impl->store, config.pipeline,
                                           config.output, config.state.window_cache_bytes, WallMs));
  if (config.kafka.embedded) {
    ROTOR_ASSIGN_OR_RETURN(impl->embedded, EmbeddedKafka::Start(1));
    for (const std::string& topic :
         {config.kafka.input_topic, config.kafka.output_topic, config.kafka.dead_letter_topic}) {
      ROTOR_RETURN_IF_ERROR(impl->embedded->CreateTopic(topic, config.kafka.embedded_partitions));
    }
    impl->bootstrap = impl->embedded->bootstrap_servers();
    spdlog::info("embedded Kafka (librdkafka mock cluster) at {}", impl->bootstrap);
  } else {
    impl->bootstrap = config.kafka.bootstrap_servers;
  }
  ROTOR_RETURN_IF_ERROR(impl->Connect());
  spdlog::info(
      "serving model {} ({}), input '{}' -> output '{}', dead letters '{}', {} delivery, "
      "state in '{}'",
      impl->bundle->model_id().substr(0, 12), encoders::VariantName(impl->bundle->config().variant),
      config.kafka.input_topic, config.kafka.output_topic, config.kafka.dead_letter_topic,
      config::DeliveryModeName(config.delivery.mode), config.state.dir);
  return std::unique_ptr<Daemon>(new Daemon(std::move(impl)));
}

Status Daemon::Run(const std::atomic<bool>& stop) {
  Impl& d = *impl_;
  d.shutdown.Watch(&stop);
  if (!d.run.feed_file.empty()) {
    d.feeder =
        std::make_unique<internal::Feeder>(d.bootstrap, d.config.kafka.input_topic, d.run.feed_file,
                                           d.run.feed_max_ahead, d.processed_records);
    d.feeder->Start();
  }
  Status served = d.Serve(stop);
  if (!served.ok()) {
    d.AbandonAfterFailure(served);
  }
  if (d.feeder != nullptr) {
    d.feeder->Stop();
  }
  // Leave the group (revokes our partitions), then flush what is queued and sync the store.
  const Status closed = d.consumer->Close();
  if (!closed.ok()) {
    spdlog::warn("{}", closed);
  }
  // Every batch is confirmed or dropped by now, so nothing that must arrive is still queued;
  // what is left (messages of dropped batches) gets a bounded wait, not an unbounded one.
  d.delivery->Flush(10000);
  const Status flushed = d.store->Flush();
  if (served.ok() && !flushed.ok()) {
    served = flushed;
  }
  d.stats.transactions = d.delivery->transactions();
  d.stats.stopped_partitions = d.consumer->stats().stopped_partitions;
  d.stats.skipped_records = d.consumer->stats().skipped_records;
  const ProcessorStats& p = d.processor->stats();
  d.stats.fed = d.feeder != nullptr ? d.feeder->fed() : 0;
  d.stats.records = p.records;
  d.stats.events = p.events;
  d.stats.replayed = p.replayed;
  d.stats.dead_letters = p.dead_letters;
  d.stats.duplicates = p.duplicates;
  d.stats.deltas = p.deltas;
  d.stats.snapshots = p.snapshots;
  return served;
}

DaemonStats Daemon::stats() const {
  return impl_->stats;
}

const std::string& Daemon::transactional_id() const {
  return impl_->transactional_id;
}

const std::string& Daemon::bootstrap_servers() const {
  return impl_->bootstrap;
}

const encoders::Bundle& Daemon::bundle() const {
  return *impl_->bundle;
}

Result<std::optional<storage::UserState>> Daemon::LoadUser(const std::string& user) const {
  const encoders::ModelConfig& cfg = impl_->bundle->config();
  return impl_->store->LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
}

}  // namespace rotor::pipeline
