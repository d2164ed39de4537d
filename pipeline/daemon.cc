// Daemon: start-up (validate, open, connect, the start-up checks), the serving loop, stats and
// shutdown. It orchestrates: the input side is internal/group_consumer.h, the output side
// internal/delivery.h, and the commit side of the loop is daemon_commit.cc (Daemon::Impl is
// declared in internal/daemon_impl.h).

#include "pipeline/daemon.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/topic_partition.h"
#include "pipeline/internal/daemon_impl.h"
#include "pipeline/internal/partitioner.h"
#include "pipeline/internal/rdkafka_util.h"
#include "pipeline/internal/transactional_id.h"

namespace rotor::pipeline {
namespace {

using internal::MessagePtr;
using internal::SteadyClock;
using internal::WallMs;

double Seconds(SteadyClock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

storage::StoreOptions StoreOptionsFor(const config::DaemonConfig& config) {
  return {.path = config.state.dir,
          .block_cache_bytes = config.state.block_cache_bytes,
          .write_buffer_bytes = config.state.write_buffer_bytes,
          .sync_writes = config.state.sync_writes,
          .create_if_missing = true};
}

std::string_view PartitionPhaseName(PartitionPhase phase) {
  switch (phase) {
    case PartitionPhase::kRestoring:
      return "restoring";
    case PartitionPhase::kConsuming:
      return "consuming";
    case PartitionPhase::kStopped:
      return "stopped";
  }
  return "unknown";
}

bool DaemonStatus::ready() const {
  return serving && std::all_of(partitions.begin(), partitions.end(), [](const PartitionReport& r) {
           return r.phase == PartitionPhase::kConsuming;
         });
}

Status Daemon::Impl::Connect() {
  if (exactly_once) {
    ROTOR_ASSIGN_OR_RETURN(
        transactional_id,
        internal::TransactionalId(config.delivery.transactional_id, config.kafka.group_id, *store));
  }
  ROTOR_ASSIGN_OR_RETURN(delivery, internal::Delivery::Create(config, bootstrap, transactional_id,
                                                              *processor, shutdown, failure));
  ROTOR_RETURN_IF_ERROR(delivery->CheckMessageSizes(*processor, config, bundle->config().window));
  if (exactly_once) {
    // Fences any zombie with the same transactional.id and aborts its open transaction.
    ROTOR_RETURN_IF_ERROR(delivery->InitTransactions());
  }
  ROTOR_ASSIGN_OR_RETURN(input_partitions, CheckTopics());
  ROTOR_ASSIGN_OR_RETURN(
      consumer, internal::GroupConsumer::Create(config, bootstrap, input_partitions, *store,
                                                shutdown, failure, *this, run.api_url));
  if (config.kafka.standby_replicas > 0) {
    ROTOR_ASSIGN_OR_RETURN(standby,
                           internal::Standby::Start(config, bootstrap, input_partitions, *store));
  }
  // The embedded cluster has one instance: every partition is here.
  if (!run.api_url.empty() && !config.kafka.embedded) {
    ROTOR_ASSIGN_OR_RETURN(owners, internal::Owners::Start(config, bootstrap));
    spdlog::info("api: advertising {} to group '{}'", run.api_url, config.kafka.group_id);
  }
  return Status::OK();
}

Result<int32_t> Daemon::Impl::CheckTopics() const {
  const config::KafkaOptions& k = config.kafka;
  const auto found = delivery->ReadTopics(k.connect_timeout_ms);
  std::vector<std::string> topics = {k.input_topic, k.output_topic, k.dead_letter_topic};
  if (!k.changelog_topic.empty()) {
    topics.push_back(k.changelog_topic);
  }
  ROTOR_ASSIGN_OR_RETURN(const int32_t partitions,
                         internal::RequireTopics(found, k, bootstrap, topics));
  if (!k.changelog_topic.empty() && found->at(k.changelog_topic).partitions != partitions) {
    return Status::FailedPrecondition(
        "kafka.changelog_topic '{}' has {} partitions, kafka.input_topic '{}' has {}: the "
        "changelog must be partitioned like the input (partition p holds the state of input "
        "partition p)",
        k.changelog_topic, found->at(k.changelog_topic).partitions, k.input_topic, partitions);
  }
  return partitions;
}

void Daemon::Impl::LogStats(double seconds) const {
  const ProcessorStats& p = processor->stats();
  spdlog::info(
      "{} events ({:.0f}/s busy), {} replayed without publishing, {} dead letters, {} "
      "duplicates, "
      "{} deltas, {} snapshots, {} batches ({} retried), {} store loads, {} expired users "
      "deleted, {} histories restarted",
      p.events, seconds > 0 ? static_cast<double>(p.events) / seconds : 0.0, p.replayed,
      p.dead_letters, p.duplicates, p.deltas, p.snapshots, stats.batches, stats.failed_batches,
      p.store_loads, p.expired_users, p.restarted_histories);
}

void Daemon::Impl::PublishStatus(bool force) {
  const auto now = SteadyClock::now();
  const uint64_t changes = consumer->changes();
  if (!force && changes == status_changes && now - last_status < std::chrono::milliseconds(500)) {
    return;
  }
  status_changes = changes;
  last_status = now;
  DaemonStatus status;
  status.serving = consumer->assignments() > 0;
  if (!status.serving) {
    status.reason = "waiting for the group's assignment";
  } else {
    status.partitions = consumer->Progress();
    int64_t waiting = 0;
    for (const PartitionReport& r : status.partitions) {
      if (r.phase != PartitionPhase::kConsuming && waiting++ == 0) {
        status.reason = r.reason;
      }
    }
    if (waiting > 1) {
      status.reason += fmt::format(" (and {} more partitions not consuming)", waiting - 1);
    }
  }
  metrics->SetStatus(status);
  metrics->SyncTransactions(delivery->transactions());
  metrics->SyncStoppedPartitions(consumer->stats().stopped_partitions);
  const internal::InFlightLedger& ledger = delivery->ledger();
  int64_t caught_up = 0;
  int64_t catching_up = 0;
  if (standby != nullptr) {
    for (const internal::Standby::Copy& copy : standby->Copies()) {
      ++(copy.caught_up ? caught_up : catching_up);
    }
  }
  metrics->SetUsage({.inflight_bytes = ledger.held_bytes(),
                     .inflight_batches = static_cast<int64_t>(ledger.size()),
                     .window_cache_bytes = processor->cache_bytes(),
                     .window_cache_users = processor->cached_users(),
                     .store = store->Properties(),
                     .standby_caught_up = caught_up,
                     .standby_catching_up = catching_up});
  {
    const std::lock_guard<std::mutex> lock(status_mu);
    std::swap(published, status);
  }
  // The previous status is freed here, outside the lock.
}

void Daemon::Impl::AfterAssign(std::span<const TopicPartition> stored,
                               std::span<const TopicPartition> fresh) {
  if (const Status reloaded = processor->ReloadWatermarks(stored); !reloaded.ok()) {
    failure.Fail(reloaded);
  }
  if (!config.kafka.changelog_topic.empty()) {
    for (const TopicPartition& tp : fresh) {
      processor->MarkFresh(tp);
    }
  }
}

void Daemon::Impl::OnRestoreProgress(int32_t partition, int64_t done, int64_t total) {
  DaemonStatus status;
  {
    const std::lock_guard<std::mutex> lock(status_mu);
    status = published;
  }
  status.serving = true;
  status.reason = fmt::format(
      "partition {} of '{}' is restoring from the changelog '{}': {} of {} records applied",
      partition, config.kafka.input_topic, config.kafka.changelog_topic, done, total);
  auto it =
      std::find_if(status.partitions.begin(), status.partitions.end(),
                   [&](const PartitionReport& r) { return r.partition.partition == partition; });
  if (it == status.partitions.end()) {
    PartitionReport report;
    report.partition = TopicPartition{config.kafka.input_topic, partition};
    status.partitions.push_back(std::move(report));
    it = status.partitions.end() - 1;
  }
  it->phase = PartitionPhase::kRestoring;
  it->reason = status.reason;
  metrics->SetStatus(status);
  const std::lock_guard<std::mutex> lock(status_mu);
  std::swap(published, status);
}

void Daemon::Impl::PublishStopped(const Status& served) {
  DaemonStatus status;
  if (served.ok()) {
    status.reason = "not serving: the daemon stopped";
  } else {
    status.reason = fmt::format("serving failed: {}", served.message());
    status.partitions = consumer->Progress();
    for (PartitionReport& r : status.partitions) {
      r.phase = PartitionPhase::kStopped;
      r.reason = status.reason;
    }
  }
  metrics->SetStatus(status);
  metrics->SyncTransactions(delivery->transactions());
  metrics->SyncStoppedPartitions(consumer->stats().stopped_partitions);
  const std::lock_guard<std::mutex> lock(status_mu);
  std::swap(published, status);
}

void Daemon::Impl::ObserveConfirmed() {
  internal::InFlightLedger& ledger = delivery->ledger();
  const int64_t now_ms = WallMs();
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

Status Daemon::Impl::Serve(const std::atomic<bool>& stop) {
  const config::PipelineOptions& opt = config.pipeline;
  const auto commit_interval = std::chrono::milliseconds(config.delivery.commit_interval_ms);
  std::vector<MessagePtr> messages;
  std::unordered_set<std::string_view> batch_keys;  // Into `messages`.
  std::vector<InputRecord> records;
  auto last_stats = SteadyClock::now();
  std::optional<SteadyClock::time_point> first_batch;
  SteadyClock::time_point batch_polled{};
  PublishStatus(/*force=*/true);
  while (!stop.load()) {
    ROTOR_RETURN_IF_ERROR(failure.status());
    ROTOR_RETURN_IF_ERROR(consumer->rebalance_error());
    PublishStatus();
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
        batch_polled = SteadyClock::now();
        deadline = batch_polled + std::chrono::milliseconds(opt.max_batch_wait_ms);
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
    metrics->CountProcessed(processor->stats(), batch);
    BatchTiming timing;
    timing.seq = batch.seq;
    timing.polled = batch_polled;
    for (const InputRecord& r : records) {
      if (r.publish && r.timestamp_ms >= 0) {
        timing.timestamps_ms.push_back(r.timestamp_ms);
      }
    }
    PartitionOffsets group_offsets = consumer->GroupOffsets(batch);
    ROTOR_RETURN_IF_ERROR(delivery->Dispatch(std::move(batch), std::move(group_offsets),
                                             static_cast<int64_t>(records.size())));
    timings.push_back(std::move(timing));
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

Result<std::unique_ptr<Daemon>> Daemon::Create(const config::DaemonConfig& config,
                                               const DaemonResources& resources, RunOptions run) {
  ROTOR_RETURN_IF_ERROR(config::ValidateDaemonConfig(config));
  if (resources.bundle == nullptr || resources.store == nullptr) {
    return Status::InvalidArgument(
        "a daemon needs a model bundle and a state store (DaemonResources)");
  }
  auto impl = std::make_unique<Impl>(config);
  impl->run = std::move(run);
  impl->bundle = resources.bundle;
  impl->store = resources.store;
  common::MetricsRegistry* registry = resources.metrics;
  if (registry == nullptr) {
    impl->owned_metrics = std::make_unique<common::MetricsRegistry>();
    registry = impl->owned_metrics.get();
  }
  ROTOR_ASSIGN_OR_RETURN(impl->metrics,
                         internal::DaemonMetrics::Create(*registry, impl->bundle->model_id()));
  impl->writer = std::make_unique<internal::StoreWriter>(*impl->store);
  ROTOR_ASSIGN_OR_RETURN(
      impl->processor,
      Processor::Create(*impl->bundle, *impl->store, config.pipeline, config.output, config.state,
                        WallMs, resources.committed_view));
  if (!config.kafka.changelog_topic.empty()) {
    impl->processor->EnableChangelog();
  }
  if (config.kafka.embedded) {
    ROTOR_ASSIGN_OR_RETURN(impl->embedded, EmbeddedKafka::Start(1));
    for (const std::string& topic :
         {config.kafka.input_topic, config.kafka.output_topic, config.kafka.dead_letter_topic,
          config.kafka.changelog_topic}) {
      if (!topic.empty()) {
        ROTOR_RETURN_IF_ERROR(impl->embedded->CreateTopic(topic, config.kafka.embedded_partitions));
      }
    }
    impl->bootstrap = impl->embedded->bootstrap_servers();
    spdlog::info("embedded Kafka (librdkafka mock cluster) at {}", impl->bootstrap);
  } else {
    impl->bootstrap = config.kafka.bootstrap_servers;
  }
  ROTOR_RETURN_IF_ERROR(impl->Connect());
  impl->published.reason = "not serving: Run has not started";
  spdlog::info(
      "serving model {} ({}), input '{}' -> output '{}', dead letters '{}', {} delivery, "
      "state in '{}'",
      impl->bundle->model_id().substr(0, 12), encoders::VariantName(impl->bundle->config().variant),
      config.kafka.input_topic, config.kafka.output_topic, config.kafka.dead_letter_topic,
      config::DeliveryModeName(config.delivery.mode), config.state.dir);
  return std::unique_ptr<Daemon>(new Daemon(std::move(impl)));
}

Result<std::unique_ptr<Daemon>> Daemon::Create(const config::DaemonConfig& config, RunOptions run) {
  ROTOR_RETURN_IF_ERROR(config::ValidateDaemonConfig(config));
  auto bundle = encoders::Bundle::Load(config.model.bundle);
  if (!bundle.ok()) {
    return Status(bundle.status().code(), fmt::format("model.bundle '{}': {}", config.model.bundle,
                                                      bundle.status().message()));
  }
  auto owned_bundle = std::make_unique<encoders::Bundle>(std::move(bundle).value());
  auto store = storage::UserStateStore::Open(StoreOptionsFor(config));
  if (!store.ok()) {
    return Status(store.status().code(),
                  fmt::format("state.dir '{}': {}", config.state.dir, store.status().message()));
  }
  std::unique_ptr<storage::UserStateStore> owned_store = std::move(store).value();
  ROTOR_ASSIGN_OR_RETURN(
      std::unique_ptr<Daemon> daemon,
      Create(config, DaemonResources{.bundle = owned_bundle.get(), .store = owned_store.get()},
             std::move(run)));
  daemon->impl_->owned_bundle = std::move(owned_bundle);
  daemon->impl_->owned_store = std::move(owned_store);
  return daemon;
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
  d.PublishStopped(served);
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
  d.stats.restored_partitions = d.consumer->stats().restored_partitions;
  d.stats.restored_records = d.consumer->stats().restored_records;
  const ProcessorStats& p = d.processor->stats();
  d.stats.fed = d.feeder != nullptr ? d.feeder->fed() : 0;
  d.stats.records = p.records;
  d.stats.events = p.events;
  d.stats.replayed = p.replayed;
  d.stats.dead_letters = p.dead_letters;
  d.stats.duplicates = p.duplicates;
  d.stats.deltas = p.deltas;
  d.stats.snapshots = p.snapshots;
  d.stats.expired_users = p.expired_users;
  d.stats.restarted_histories = p.restarted_histories;
  return served;
}

DaemonStats Daemon::stats() const {
  return impl_->stats;
}

DaemonStatus Daemon::status() const {
  const std::lock_guard<std::mutex> lock(impl_->status_mu);
  return impl_->published;
}

int32_t Daemon::PartitionOf(std::string_view user) const {
  return internal::JavaPartition(user, impl_->input_partitions);
}

PartitionOwner Daemon::OwnerOf(int32_t partition) const {
  const Impl& d = *impl_;
  if (d.owners == nullptr) {
    return {.api_url = {},
            .reason = d.config.kafka.embedded
                          ? "the embedded cluster has one instance"
                          : "this instance looks up no owners (rotor serve without the API)"};
  }
  internal::Owners::Found found = d.owners->Find(partition);
  {
    const std::lock_guard<std::mutex> lock(d.member_mu);
    if (!found.member_id.empty() && found.member_id == d.member_id) {
      return {.api_url = {},
              .reason = fmt::format("the group assigns partition {} to this instance, which is "
                                    "taking it over",
                                    partition)};
    }
  }
  return {.api_url = std::move(found.api_url), .reason = std::move(found.reason)};
}

const std::string& Daemon::input_topic() const {
  return impl_->config.kafka.input_topic;
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
