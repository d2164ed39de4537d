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

using internal::SteadyClock;
using internal::WallMs;

}  // namespace

storage::StoreOptions StoreOptionsFor(const config::DaemonConfig& config) {
  return {.path = config.state.dir,
          .block_cache_bytes = config.state.block_cache_bytes,
          .write_buffer_bytes = config.state.write_buffer_bytes,
          .sync_writes = config.state.sync_writes,
          .create_if_missing = true,
          .wal = config.state.wal,
          .kv_dtype = KvDtypeOf(config.state.kv_dtype)};
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
  loop = std::make_unique<internal::ServeLoop>(
      internal::LoopOptions{
          .pipeline = config.pipeline,
          .commit_interval = std::chrono::milliseconds(config.delivery.commit_interval_ms),
          .exit_when_idle_ms = run.exit_when_idle_ms},
      *consumer, *delivery, *processor, *writer, shutdown, failure, *this);
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
      p.dead_letters, p.duplicates, p.deltas, p.snapshots, loop->stats().batches,
      loop->stats().failed_batches, p.store_loads, p.expired_users, p.restarted_histories);
  // bench/load.py (loop_seconds) reads this line; python/tests/test_bench_scripts.py holds one.
  const internal::LoopStats& l = loop->stats();
  spdlog::info(
      "loop: {} batches of {:.0f} records on average; its thread spent {:.2f} s filling batches, "
      "{:.2f} s processing them ({:.2f} s reading records, {:.2f} s decoding on {} worker(s), "
      "{:.2f} s batching state and messages), {:.2f} s dispatching, {:.2f} s waiting for "
      "deliveries and commits, {:.2f} s idle",
      l.processed_batches,
      l.processed_batches > 0
          ? static_cast<double>(l.processed_records) / static_cast<double>(l.processed_batches)
          : 0.0,
      l.fill_seconds, l.process_seconds, l.process_seconds - p.decode_seconds - p.batch_seconds,
      p.decode_seconds, config.pipeline.workers, p.batch_seconds, l.dispatch_seconds,
      l.wait_seconds, l.idle_seconds);
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

Status Daemon::Impl::Serve(const std::atomic<bool>& stop) {
  PublishStatus(/*force=*/true);
  ROTOR_RETURN_IF_ERROR(loop->Run(stop));
  LogStats(loop->stats().busy_seconds());
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
    d.loop->AbandonAfterFailure(served);
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
  const internal::LoopStats& loop = d.loop->stats();
  d.stats.batches = loop.batches;
  d.stats.failed_batches = loop.failed_batches;
  d.stats.peak_inflight_bytes = loop.peak_inflight_bytes;
  d.stats.busy_seconds = loop.busy_seconds();
  d.stats.processed_batches = loop.processed_batches;
  d.stats.loop_seconds = {.fill = loop.fill_seconds,
                          .process = loop.process_seconds,
                          .decode = d.processor->stats().decode_seconds,
                          .batch = d.processor->stats().batch_seconds,
                          .dispatch = loop.dispatch_seconds,
                          .wait = loop.wait_seconds,
                          .idle = loop.idle_seconds};
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
