#include "pipeline/daemon.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/failpoint.h"
#include "pipeline/internal/feeder.h"
#include "pipeline/internal/rdkafka_util.h"
#include "pipeline/internal/store_writer.h"
#include "pipeline/kafka_tools.h"
#include "pipeline/processor.h"

namespace rotor::pipeline {
namespace {

using internal::ConfPtr;
using internal::FromKafka;
using internal::FromKafkaError;
using internal::HandlePtr;
using internal::MessagePtr;
using internal::NewHandle;
using internal::PartitionListPtr;
using internal::SetConf;
using SteadyClock = std::chrono::steady_clock;

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double Seconds(SteadyClock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// The store-wide info entry holding this state directory's instance id.
constexpr std::string_view kInfoInstanceId = "instance_id";

// A random 64-bit id in hex.
std::string NewInstanceId() {
  std::random_device random;
  const uint64_t id = (uint64_t{random()} << 32) ^ uint64_t { random() };
  return fmt::format("{:016x}", id);
}

void LogCallback(const rd_kafka_t* /*rk*/, int level, const char* fac, const char* buf) {
  if (level <= 3) {
    spdlog::error("kafka {}: {}", fac, buf);
  } else if (level <= 4) {
    spdlog::warn("kafka {}: {}", fac, buf);
  } else {
    spdlog::debug("kafka {}: {}", fac, buf);
  }
}

}  // namespace

struct Daemon::Impl {
  config::DaemonConfig config;
  RunOptions run;
  std::unique_ptr<EmbeddedKafka> embedded;
  std::string bootstrap;
  std::unique_ptr<encoders::Bundle> bundle;
  std::unique_ptr<storage::UserStateStore> store;
  std::unique_ptr<internal::StoreWriter> writer;  // Commits to `store`, in batch order.
  std::unique_ptr<Processor> processor;
  HandlePtr producer;
  HandlePtr consumer;
  bool exactly_once = false;
  std::string transactional_id;  // exactly_once only.
  int64_t delivery_failures = 0;
  rd_kafka_resp_err_t last_delivery_error = RD_KAFKA_RESP_ERR_NO_ERROR;
  // A permanent failure (a delivery the broker refused for good, a fenced producer): serving
  // stops with it, and no batch that was not confirmed before it may commit. Set once.
  Status fatal;
  // The Run caller's stop flag, for the waits inside librdkafka callbacks.
  const std::atomic<bool>* stop_flag = nullptr;
  std::optional<SteadyClock::time_point> stop_seen;  // When Stopping() was first seen.

  // A processed batch whose outputs were handed to the producer and whose state is not yet
  // committed to RocksDB. Batches commit in order, each once its deliveries are confirmed
  // (at-least-once) or the transaction holding it committed (exactly-once).
  struct InFlight {
    PendingBatch batch;
    PartitionListPtr offsets;  // KafkaOffsets(batch).
    int64_t records = 0;
    int64_t outstanding = 0;  // Messages produced and not yet reported on.
    int64_t bytes = 0;        // Its WriteBatch's (its outputs are freed once produced).
    bool failed = false;      // A message failed (or could not be produced).
    bool confirmed = false;   // Delivered (or its transaction committed): its state may commit.
    bool submitted = false;   // Handed to the writer.
  };
  // Oldest first; sequence numbers consecutive (batch.seq), which the delivery reports carry.
  std::deque<InFlight> in_flight;
  bool transaction_open = false;
  SteadyClock::time_point transaction_began{};
  // A delivery failed while serving a rebalance callback: the batches were abandoned, and the
  // partitions must go back to the stored offsets before more input is taken.
  bool rewind_pending = false;

  // Assigned partitions of the input topic: the Kafka committed offset at assignment (records
  // below it were already published).
  std::map<int32_t, int64_t> publish_from;
  // Next input offset to apply per assigned partition: the store's offset, advanced as records
  // join a batch. A consumer that goes back (an offset reset, a re-fetch after a revoke and
  // re-assign) must not apply a record twice.
  std::map<int32_t, int64_t> apply_from;
  // Partitions of the input topic at start-up (records are checked against murmur2(key) % it).
  int32_t input_partitions = 0;
  // Assigned partitions that are paused for good, with the reason: their log no longer holds
  // the records the state needs next (CheckHistory). Nothing of theirs is applied.
  std::map<int32_t, std::string> stopped;
  // When input last arrived or partitions were last assigned (the idle exit's clock).
  SteadyClock::time_point last_activity = SteadyClock::now();
  std::atomic<int64_t> processed_records{0};
  std::unique_ptr<internal::Feeder> feeder;  // The embedded demo's --feed (else null).
  DaemonStats stats;
  SteadyClock::time_point last_commit{};
  Status rebalance_error;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;
  ~Impl() {
    feeder.reset();
    consumer.reset();
    producer.reset();
    writer.reset();  // Finishes its commits first.
    processor.reset();
    store.reset();
    embedded.reset();
  }

  // Served on the Serve thread (rd_kafka_poll and rd_kafka_flush on the producer).
  static void DeliveryReport(rd_kafka_t* /*rk*/, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    InFlight* batch = self->FindInFlight(reinterpret_cast<uintptr_t>(m->_private));
    if (batch != nullptr) {
      --batch->outstanding;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (batch != nullptr) {
        batch->failed = true;
      }
      const std::string topic = rd_kafka_topic_name(m->rkt);
      if (self->delivery_failures++ == 0 || m->err != self->last_delivery_error) {
        spdlog::warn("delivery to '{}' failed: {}", topic, rd_kafka_err2str(m->err));
      }
      self->last_delivery_error = m->err;
      if (internal::ClassifyDeliveryError(m->err) == internal::DeliveryError::kPermanent) {
        self->Fail(PermanentDeliveryFailure(m->err, topic, m->len));
      }
    }
  }

  // Records the first permanent failure; serving stops with it.
  void Fail(Status failure) {
    if (fatal.ok()) {
      spdlog::error("{}", failure);
      fatal = std::move(failure);
    }
  }

  // Why a message could never be delivered, and what to change.
  static Status PermanentDeliveryFailure(rd_kafka_resp_err_t err, std::string_view topic,
                                         std::size_t bytes) {
    std::string hint;
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
        err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE) {
      hint = fmt::format(
          "; a {}-byte message is over a limit: raise the topic's max.message.bytes and "
          "kafka.producer_properties message.max.bytes, or shrink the output (output.dtype "
          "bf16, a smaller model window)",
          bytes);
    } else if (err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
               err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
               err == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED) {
      hint = "; grant the producer's principal the missing rights";
    } else if (err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
               err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      hint = "; create the topic (`rotor topics`)";
    }
    return Status::FailedPrecondition(
        "delivery to '{}' failed permanently: {} ({}){}; stopping with nothing of the undelivered "
        "batches committed (a restart redoes them)",
        topic, rd_kafka_err2str(err), rd_kafka_err2name(err), hint);
  }

  // The batch in flight with this sequence number; null when it is no longer in flight (it was
  // abandoned, or its report came after a rewind).
  InFlight* FindInFlight(uintptr_t seq) {
    if (in_flight.empty() || seq < in_flight.front().batch.seq) {
      return nullptr;
    }
    const uintptr_t index = seq - in_flight.front().batch.seq;
    return index < in_flight.size() ? &in_flight[index] : nullptr;
  }

  static void Rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t* parts, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      self->OnAssign(rk, parts, cooperative);
    } else {
      self->OnRevoke(rk, parts, cooperative, rd_kafka_assignment_lost(rk) != 0);
    }
  }

  void OnAssign(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts, bool cooperative) {
    auto stored = store->LoadOffsets();
    if (!stored.ok()) {
      rebalance_error = stored.status();
      return;
    }
    auto read = ReadCommitted(rk, parts);
    if (!read.ok()) {
      rebalance_error = read.status();
      return;
    }
    const PartitionListPtr committed = std::move(read).value();
    for (int i = 0; i < parts->cnt; ++i) {
      rd_kafka_topic_partition_t& p = parts->elems[i];
      const auto found = stored->find({p.topic, p.partition});
      const int64_t resume = found == stored->end() ? RD_KAFKA_OFFSET_BEGINNING : found->second;
      const int64_t kafka_committed = committed->elems[i].offset;
      p.offset = resume;
      publish_from[p.partition] = kafka_committed;
      if (found != stored->end()) {
        apply_from[p.partition] = found->second;
      } else {
        apply_from.erase(p.partition);
      }
      const Status history = CheckHistory(
          p.partition, found == stored->end() ? std::nullopt : std::optional(found->second));
      if (!history.ok()) {
        if (history.code() != StatusCode::kOutOfRange) {
          rebalance_error = history;
          return;
        }
        StopPartition(p.partition, history);
      } else if (kafka_committed >= 0 && kafka_committed > resume) {
        spdlog::info(
            "partition {}: assigned, resuming at {} from the state store; offsets below {} were "
            "already published and are re-applied to state without publishing",
            p.partition,
            resume == RD_KAFKA_OFFSET_BEGINNING ? std::string("the beginning")
                                                : std::to_string(resume),
            kafka_committed);
      } else {
        spdlog::info("partition {}: assigned, resuming at {}", p.partition,
                     resume == RD_KAFKA_OFFSET_BEGINNING ? std::string("the beginning")
                                                         : std::to_string(resume));
      }
    }
    ROTOR_FAILPOINT("rebalance.before_assign");
    const Status s = cooperative
                         ? FromKafkaError(rd_kafka_incremental_assign(rk, parts), "assigning")
                         : FromKafka(rd_kafka_assign(rk, parts), "assigning");
    if (!s.ok()) {
      rebalance_error = s;
      return;
    }
    PausePartitions(parts);
    // The idle clock starts once the assignment took effect: reading the committed offsets can
    // wait out another instance's open transaction, and that wait is not idleness.
    last_activity = SteadyClock::now();
  }

  // Whether the input log of `partition` still holds every record the state needs next: from
  // `next` (the store's next offset; nullopt: nothing applied yet, so from offset 0) on. When
  // Kafka deleted records the state never saw (retention, DeleteRecords), or the log is shorter
  // than the state (the topic was recreated, an unclean leader election truncated it), going
  // on would give users partial histories with wrong positions. OutOfRange then, naming the gap;
  // another error when the log's bounds could not be read.
  Status CheckHistory(int32_t partition, std::optional<int64_t> next) const {
    int64_t low = 0;
    int64_t high = 0;
    const std::string& topic = config.kafka.input_topic;
    ROTOR_RETURN_IF_ERROR(
        FromKafka(rd_kafka_query_watermark_offsets(consumer.get(), topic.c_str(), partition, &low,
                                                   &high, config.kafka.connect_timeout_ms),
                  fmt::format("reading the bounds of partition {} of '{}'", partition, topic)));
    if (next && *next > high) {
      return Status::OutOfRange(
          "partition {} of '{}' ends at offset {}, but the state has applied it up to {}: the "
          "topic was recreated or its log truncated. Point state.dir at a fresh directory to "
          "rebuild from what the topic holds now",
          partition, topic, high, *next);
    }
    if (next.value_or(0) < low && (next || !config.pipeline.allow_history_gaps)) {
      return Status::OutOfRange(
          "partition {} of '{}' starts at offset {}, but the state needs the records from {}: "
          "they were deleted (retention or DeleteRecords) before rotor applied them, so users' "
          "histories would have gaps{}",
          partition, topic, low, next.value_or(0),
          next ? ""
               : ". Set pipeline.allow_history_gaps: true to start from the log's start anyway");
    }
    return Status::OK();
  }

  // Pauses `partition` for good (until it is revoked): its records are not applied.
  void StopPartition(int32_t partition, const Status& why) {
    spdlog::error("partition {}: stopped: {}", partition, why.message());
    stopped[partition] = why.message();
    ++stats.stopped_partitions;
  }

  // Pauses the stopped partitions among `parts` (after assigning them).
  void PausePartitions(const rd_kafka_topic_partition_list_t* parts) const {
    PartitionListPtr paused(rd_kafka_topic_partition_list_new(parts->cnt));
    for (int i = 0; i < parts->cnt; ++i) {
      if (stopped.contains(parts->elems[i].partition)) {
        rd_kafka_topic_partition_list_add(paused.get(), parts->elems[i].topic,
                                          parts->elems[i].partition);
      }
    }
    if (paused->cnt > 0) {
      const Status s = FromKafka(rd_kafka_pause_partitions(consumer.get(), paused.get()),
                                 "pausing the stopped partitions");
      if (!s.ok()) {
        spdlog::warn("{}", s);
      }
    }
  }

  // The consumer's position in `partition` is out of the log's range (auto.offset.reset is
  // "error": librdkafka never jumps to another offset by itself). When the log still holds
  // what the state needs next, consumption goes back there; otherwise the partition stops.
  Status OnOffsetOutOfRange(int32_t partition) {
    const std::optional<int64_t> from = NextToApply(partition);
    const Status history = CheckHistory(partition, from);
    if (history.code() == StatusCode::kOutOfRange) {
      StopPartition(partition, history);
      PartitionListPtr one(rd_kafka_topic_partition_list_new(1));
      rd_kafka_topic_partition_list_add(one.get(), config.kafka.input_topic.c_str(), partition);
      PausePartitions(one.get());
      return Status::OK();
    }
    ROTOR_RETURN_IF_ERROR(history);
    spdlog::warn("partition {}: offset out of range; going back to {}", partition,
                 from ? std::to_string(*from) : std::string("the beginning"));
    // A partition whose fetch failed this way cannot be sought (librdkafka answers _STATE):
    // it is assigned again, at the offset.
    PartitionListPtr one(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(one.get(), config.kafka.input_topic.c_str(), partition)
        ->offset = from.value_or(RD_KAFKA_OFFSET_BEGINNING);
    if (std::string_view(rd_kafka_rebalance_protocol(consumer.get())) == "COOPERATIVE") {
      ROTOR_RETURN_IF_ERROR(FromKafkaError(rd_kafka_incremental_unassign(consumer.get(), one.get()),
                                           "unassigning to reset"));
      return FromKafkaError(rd_kafka_incremental_assign(consumer.get(), one.get()),
                            "assigning again at the stored offset");
    }
    // Eager: the whole assignment again, every other partition at its next offset to apply.
    PartitionListPtr all(rd_kafka_topic_partition_list_new(static_cast<int>(publish_from.size())));
    for (const auto& [p, unused] : publish_from) {
      rd_kafka_topic_partition_list_add(all.get(), config.kafka.input_topic.c_str(), p)->offset =
          NextToApply(p).value_or(RD_KAFKA_OFFSET_BEGINNING);
    }
    ROTOR_RETURN_IF_ERROR(
        FromKafka(rd_kafka_assign(consumer.get(), all.get()), "assigning again to reset"));
    PausePartitions(all.get());
    return Status::OK();
  }

  // The next offset of `partition` to apply; nullopt when nothing is known yet (no state, no
  // record consumed).
  std::optional<int64_t> NextToApply(int32_t partition) const {
    const auto next = apply_from.find(partition);
    return next == apply_from.end() ? std::nullopt : std::optional(next->second);
  }

  // The group's committed offsets of `parts`. An error for one partition fails the read like an
  // error of the whole call: taken as "nothing committed", it would make this instance publish
  // again everything the partition's previous owner published. Transient coordinator errors
  // are retried for up to a minute past the transaction timeout (offsets a zombie left in an
  // open transaction stay unreadable until the broker aborts it), unless asked to stop.
  Result<PartitionListPtr> ReadCommitted(rd_kafka_t* rk,
                                         const rd_kafka_topic_partition_list_t* parts) const {
    const auto deadline = SteadyClock::now() + std::chrono::seconds(60) +
                          std::chrono::milliseconds(config.delivery.transaction_timeout_ms);
    while (true) {
      PartitionListPtr committed(rd_kafka_topic_partition_list_copy(parts));
      constexpr std::string_view kWhat = "reading the group's committed offsets";
      const rd_kafka_resp_err_t call = rd_kafka_committed(rk, committed.get(), 30000);
      const Status read = call != RD_KAFKA_RESP_ERR_NO_ERROR
                              ? FromKafka(call, kWhat)
                              : internal::FirstPartitionError(committed.get(), kWhat);
      if (read.ok()) {
        return committed;
      }
      // Unavailable: the coordinator moved, restarts or did not answer in time.
      if (read.code() != StatusCode::kUnavailable || SteadyClock::now() > deadline || Stopping()) {
        return read;
      }
      spdlog::warn("{} (retrying)", read);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }

  void OnRevoke(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts, bool cooperative,
                bool lost) {
    // Finish what is in flight while the partitions are still ours: its state and offsets are
    // committed before their new owner starts from them.
    const Status drained = Drain();
    ROTOR_FAILPOINT("rebalance.revoke_after_drain");
    if (!drained.ok()) {
      if (drained.code() != StatusCode::kAborted) {
        rebalance_error = drained;
      } else {
        rewind_pending = true;  // The abandoned batches' records are consumed again.
      }
    }
    for (int i = 0; i < parts->cnt; ++i) {
      publish_from.erase(parts->elems[i].partition);
      apply_from.erase(parts->elems[i].partition);
      stopped.erase(parts->elems[i].partition);
      spdlog::info("partition {}: {}", parts->elems[i].partition, lost ? "lost" : "revoked");
    }
    processor->ClearCache();
    const Status s = cooperative
                         ? FromKafkaError(rd_kafka_incremental_unassign(rk, parts), "unassigning")
                         : FromKafka(rd_kafka_assign(rk, nullptr), "unassigning");
    if (!s.ok()) {
      spdlog::warn("{}", s);
    }
  }

  Status Connect() {
    const config::KafkaOptions& k = config.kafka;
    // Producer.
    ConfPtr pconf(rd_kafka_conf_new());
    ROTOR_RETURN_IF_ERROR(SetConf(pconf.get(), "bootstrap.servers", bootstrap));
    ROTOR_RETURN_IF_ERROR(SetConf(pconf.get(), "client.id", k.client_id));
    ROTOR_RETURN_IF_ERROR(SetConf(pconf.get(), "enable.idempotence", "true"));
    // Outputs are keyed by user like the input: placed the same way (the Java client's rule).
    ROTOR_RETURN_IF_ERROR(SetConf(pconf.get(), "partitioner", "murmur2_random"));
    // Defaults that kafka.producer_properties may override: a short linger (latency), and a
    // bounded send queue (librdkafka's default allows 1 GiB; docs/configuration.md, Memory).
    ROTOR_RETURN_IF_ERROR(SetConf(pconf.get(), "linger.ms", "2"));
    ROTOR_RETURN_IF_ERROR(SetConf(pconf.get(), "queue.buffering.max.kbytes", "65536"));
    if (exactly_once) {
      ROTOR_ASSIGN_OR_RETURN(transactional_id, TransactionalId());
      ROTOR_RETURN_IF_ERROR(SetConf(pconf.get(), "transactional.id", transactional_id));
      ROTOR_RETURN_IF_ERROR(SetConf(pconf.get(), "transaction.timeout.ms",
                                    std::to_string(config.delivery.transaction_timeout_ms)));
    }
    ROTOR_RETURN_IF_ERROR(SetConf(pconf.get(), k.producer_properties));
    rd_kafka_conf_set_dr_msg_cb(pconf.get(), DeliveryReport);
    rd_kafka_conf_set_log_cb(pconf.get(), LogCallback);
    rd_kafka_conf_set_error_cb(pconf.get(), OnError);
    rd_kafka_conf_set_opaque(pconf.get(), this);
    ROTOR_ASSIGN_OR_RETURN(producer, NewHandle(RD_KAFKA_PRODUCER, std::move(pconf)));
    ROTOR_RETURN_IF_ERROR(CheckMessageSizes());
    if (exactly_once) {
      // Fences any zombie with the same transactional.id and aborts its open transaction.
      ROTOR_RETURN_IF_ERROR(
          FromKafkaError(rd_kafka_init_transactions(producer.get(), 60000), "init_transactions"));
    }
    ROTOR_RETURN_IF_ERROR(CheckTopics());
    // Consumer.
    ConfPtr cconf(rd_kafka_conf_new());
    ROTOR_RETURN_IF_ERROR(SetConf(cconf.get(), "bootstrap.servers", bootstrap));
    ROTOR_RETURN_IF_ERROR(SetConf(cconf.get(), "client.id", k.client_id));
    ROTOR_RETURN_IF_ERROR(SetConf(cconf.get(), "group.id", k.group_id));
    ROTOR_RETURN_IF_ERROR(SetConf(cconf.get(), "enable.auto.commit", "false"));
    ROTOR_RETURN_IF_ERROR(SetConf(cconf.get(), "enable.auto.offset.store", "false"));
    ROTOR_RETURN_IF_ERROR(SetConf(cconf.get(), "isolation.level", "read_committed"));
    // Never jump: an out-of-range position is reported (OnOffsetOutOfRange decides).
    ROTOR_RETURN_IF_ERROR(SetConf(cconf.get(), "auto.offset.reset", "error"));
    ROTOR_RETURN_IF_ERROR(
        SetConf(cconf.get(), "partition.assignment.strategy", "cooperative-sticky"));
    ROTOR_RETURN_IF_ERROR(
        SetConf(cconf.get(), "session.timeout.ms", std::to_string(k.session_timeout_ms)));
    // Prefetched input, bounded below librdkafka's 64 MiB default; kafka.consumer_properties
    // may override it.
    ROTOR_RETURN_IF_ERROR(SetConf(cconf.get(), "queued.max.messages.kbytes", "16384"));
    ROTOR_RETURN_IF_ERROR(SetConf(cconf.get(), k.consumer_properties));
    rd_kafka_conf_set_rebalance_cb(cconf.get(), Rebalance);
    rd_kafka_conf_set_log_cb(cconf.get(), LogCallback);
    rd_kafka_conf_set_error_cb(cconf.get(), OnError);
    rd_kafka_conf_set_opaque(cconf.get(), this);
    ROTOR_ASSIGN_OR_RETURN(consumer, NewHandle(RD_KAFKA_CONSUMER, std::move(cconf)));
    rd_kafka_poll_set_consumer(consumer.get());
    PartitionListPtr topics(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(topics.get(), k.input_topic.c_str(), RD_KAFKA_PARTITION_UA);
    return FromKafka(rd_kafka_subscribe(consumer.get(), topics.get()),
                     fmt::format("subscribing to '{}'", k.input_topic));
  }

  // delivery.transactional_id, or by default "<group_id>-<instance id>", the instance id made
  // once per state directory and kept in it. A restart of the instance (same state directory)
  // keeps its id, so it fences its own zombie; replicas (each with its own state directory)
  // never share one, which a hostname-derived default did not guarantee (cloned containers,
  // copied configs), and which made them fence each other in a crash loop.
  Result<std::string> TransactionalId() {
    if (!config.delivery.transactional_id.empty()) {
      return config.delivery.transactional_id;
    }
    ROTOR_ASSIGN_OR_RETURN(std::optional<std::string> id, store->LoadInfo(kInfoInstanceId));
    if (!id) {
      id = NewInstanceId();
      storage::StateBatch batch = store->NewBatch();
      ROTOR_RETURN_IF_ERROR(batch.PutInfo(kInfoInstanceId, *id));
      ROTOR_RETURN_IF_ERROR(store->Commit(batch));
    }
    return fmt::format("{}-{}", config.kafka.group_id, *id);
  }

  // Every message the daemon can make must fit the producer's message.max.bytes: one that does
  // not is refused by librdkafka, and its batch could never be delivered.
  Status CheckMessageSizes() {
    std::array<char, 32> value{};
    std::size_t size = value.size();
    if (rd_kafka_conf_get(rd_kafka_conf(producer.get()), "message.max.bytes", value.data(),
                          &size) != RD_KAFKA_CONF_OK) {
      return Status::Internal("reading the producer's message.max.bytes");
    }
    const int64_t limit = std::strtoll(value.data(), nullptr, 10);
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

  // librdkafka's error events (served by the polls on the Serve thread). A fatal one (the
  // idempotent producer lost its guarantees, a fenced transactional producer) stops serving;
  // the rest are logged while librdkafka retries.
  static void OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      std::array<char, 512> why{};
      const rd_kafka_resp_err_t cause = rd_kafka_fatal_error(rk, why.data(), why.size());
      self->Fail(FromKafka(cause == RD_KAFKA_RESP_ERR_NO_ERROR ? RD_KAFKA_RESP_ERR__FATAL : cause,
                           fmt::format("kafka: fatal error: {}", why.data())));
      return;
    }
    spdlog::warn("kafka: {} ({})", reason,
                 rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)));
  }

  // Before serving: the cluster answers within kafka.connect_timeout_ms and the three topics
  // exist. Otherwise start-up fails with a message naming what is wrong, rather than a daemon
  // that retries forever with nothing to consume. Fetching the output topics' metadata also
  // saves the first batches the wait for it (a few hundred ms on a fresh topic,
  // docs/performance.md).
  Status CheckTopics() {
    const config::KafkaOptions& k = config.kafka;
    // All topics: a request naming ours would make a broker with auto.create.topics.enable
    // create them with its defaults.
    const rd_kafka_metadata_t* metadata = nullptr;
    const rd_kafka_resp_err_t err =
        rd_kafka_metadata(producer.get(), 1, nullptr, &metadata, k.connect_timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Status::Unavailable(
          "kafka.bootstrap_servers '{}': no broker answered within kafka.connect_timeout_ms = {} "
          "({})",
          bootstrap, k.connect_timeout_ms, rd_kafka_err2str(err));
    }
    std::map<std::string, std::pair<rd_kafka_resp_err_t, int>, std::less<>> found;
    for (int i = 0; i < metadata->topic_cnt; ++i) {
      const rd_kafka_metadata_topic_t& t = metadata->topics[i];
      found[t.topic] = {t.err, t.partition_cnt};
    }
    rd_kafka_metadata_destroy(metadata);
    input_partitions = found.contains(k.input_topic) ? found[k.input_topic].second : 0;
    for (const std::string& topic : {k.input_topic, k.output_topic, k.dead_letter_topic}) {
      const auto it = found.find(topic);
      if (it == found.end() || it->second.first != RD_KAFKA_RESP_ERR_NO_ERROR ||
          it->second.second == 0) {
        return Status::FailedPrecondition(
            "topic '{}' is not available on '{}' ({}); create the topics with `rotor topics`",
            topic, bootstrap,
            it == found.end() ? "it does not exist" : rd_kafka_err2str(it->second.first));
      }
    }
    return RememberInputPartitions();
  }

  // The input topic's partition count, stored with the state the first time. Adding partitions
  // moves keys (murmur2 % N changes), so state built with another count no longer matches where
  // users' events arrive: start-up refuses it.
  Status RememberInputPartitions() {
    const std::string name = InputPartitionsInfo(config.kafka.input_topic);
    ROTOR_ASSIGN_OR_RETURN(const std::optional<std::string> stored, store->LoadInfo(name));
    const std::string now = std::to_string(input_partitions);
    if (stored && *stored != now) {
      return Status::FailedPrecondition(
          "topic '{}' has {} partitions, but the state in '{}' was built when it had {}: keys "
          "moved between partitions. Rebuild the state in a fresh state.dir (rotor replay)",
          config.kafka.input_topic, now, config.state.dir, *stored);
    }
    if (!stored) {
      storage::StateBatch batch = store->NewBatch();
      ROTOR_RETURN_IF_ERROR(batch.PutInfo(name, now));
      ROTOR_RETURN_IF_ERROR(store->Commit(batch));
    }
    return Status::OK();
  }

  const std::string& TopicOf(const OutputRecord& out) const {
    return out.topic == OutputRecord::Topic::kOutput ? config.kafka.output_topic
                                                     : config.kafka.dead_letter_topic;
  }

  // Produces one message, waiting while librdkafka's queue is full.
  rd_kafka_resp_err_t Produce(const OutputRecord& out, void* opaque) const {
    const std::string& topic = TopicOf(out);
    rd_kafka_headers_t* headers = nullptr;
    if (!out.headers.empty()) {
      headers = rd_kafka_headers_new(out.headers.size());
      for (const auto& [name, value] : out.headers) {
        rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                            static_cast<ssize_t>(value.size()));
      }
    }
    return internal::ProduceCopy(producer.get(), topic, out.key ? out.key->data() : nullptr,
                                 out.key ? out.key->size() : 0, out.value.data(), out.value.size(),
                                 headers, opaque, stop_flag);
  }

  // The offsets to commit to Kafka for a batch: only partitions still assigned and only when
  // they move the group's committed offset forward.
  PartitionListPtr KafkaOffsets(const PendingBatch& batch) {
    PartitionListPtr list(
        rd_kafka_topic_partition_list_new(static_cast<int>(batch.next_offsets.size())));
    for (const auto& [tp, next] : batch.next_offsets) {
      const auto it = publish_from.find(tp.second);
      if (it == publish_from.end() || next <= it->second) {
        continue;
      }
      rd_kafka_topic_partition_list_add(list.get(), tp.first.c_str(), tp.second)->offset = next;
    }
    return list;
  }

  // Hands a processed batch to the producer (in exactly-once mode inside the open transaction,
  // beginning one if needed). Its state is committed later, by Settle or CommitTransaction.
  Status Dispatch(PendingBatch&& batch, int64_t records) {
    if (exactly_once && !transaction_open) {
      ROTOR_RETURN_IF_ERROR(
          FromKafkaError(rd_kafka_begin_transaction(producer.get()), "begin_transaction"));
      transaction_open = true;
      transaction_began = SteadyClock::now();
    }
    PartitionListPtr offsets = KafkaOffsets(batch);
    const uint64_t seq = batch.seq;
    in_flight.push_back(InFlight{.batch = std::move(batch),
                                 .offsets = std::move(offsets),
                                 .records = records,
                                 .outstanding = 0,
                                 .failed = false,
                                 .confirmed = false,
                                 .submitted = false});
    // Reports may arrive while producing (ProduceCopy serves them when the queue is full), so
    // the batch is counted in flight message by message.
    for (const OutputRecord& out : in_flight.back().batch.outputs) {
      ++in_flight.back().outstanding;
      // The batch's sequence number travels as the message's opaque, not as a pointer.
      const rd_kafka_resp_err_t err =
          Produce(out, reinterpret_cast<void*>(  // NOLINT(performance-no-int-to-ptr)
                           static_cast<uintptr_t>(seq)));
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        // The batch can no longer be confirmed: it is redone, or (permanent) serving stops.
        --in_flight.back().outstanding;
        in_flight.back().failed = true;
        const std::string_view topic = TopicOf(out);
        if (internal::ClassifyDeliveryError(err) == internal::DeliveryError::kPermanent) {
          Fail(PermanentDeliveryFailure(err, topic, out.value.size()));
          return fatal;
        }
        spdlog::warn("producing to '{}': {}", topic, rd_kafka_err2str(err));
        break;
      }
    }
    // librdkafka copied them (its send queue is bounded by queue.buffering.max.kbytes); a redo
    // makes them again from the input.
    InFlight& dispatched = in_flight.back();
    std::vector<OutputRecord>().swap(dispatched.batch.outputs);
    dispatched.bytes = dispatched.batch.state.ApproximateBytes();
    return Status::OK();
  }

  // Memory held for the batches in flight: their users' windows and their WriteBatches.
  int64_t InflightBytes() const {
    int64_t bytes = processor->held_bytes();
    for (const InFlight& b : in_flight) {
      bytes += b.bytes;
    }
    return bytes;
  }

  // At-least-once: serves delivery reports and confirms the oldest batches whose messages were
  // all delivered, in order; their state goes to the writer. A failed one is abandoned with
  // every later batch and the partitions rewound (Aborted when `rewind` is false: the caller
  // rewinds).
  Status Settle(bool rewind = true) {
    rd_kafka_poll(producer.get(), 0);
    ROTOR_RETURN_IF_ERROR(fatal);
    bool failed = false;
    for (InFlight& b : in_flight) {
      if (b.confirmed) {
        continue;
      }
      if (b.outstanding > 0) {
        break;
      }
      if (b.failed) {
        failed = true;
        break;
      }
      ROTOR_FAILPOINT("delivery.after_confirm");  // Delivered; its state not yet committed.
      b.confirmed = true;
    }
    ROTOR_RETURN_IF_ERROR(Advance());
    if (!failed) {
      return Status::OK();
    }
    ROTOR_RETURN_IF_ERROR(AbandonUnconfirmed("a message of the oldest failed"));
    if (!rewind) {
      return Status::Aborted("a delivery failed");
    }
    ROTOR_RETURN_IF_ERROR(Rewind());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return Status::OK();
  }

  // Hands confirmed batches to the writer in order, and finishes those it committed: their
  // users stay hot, and (at-least-once) their offsets go to Kafka too.
  Status Advance() {
    ROTOR_RETURN_IF_ERROR(writer->status());
    for (InFlight& b : in_flight) {
      if (!b.submitted) {
        if (!b.confirmed) {
          break;
        }
        writer->Submit(b.batch.seq, &b.batch.state);
        b.submitted = true;
      }
    }
    const uint64_t committed = writer->committed();
    while (!in_flight.empty() && in_flight.front().submitted &&
           in_flight.front().batch.seq <= committed) {
      InFlight& front = in_flight.front();
      if (!exactly_once && front.offsets->cnt > 0) {
        // Informational for at-least-once (the store's offsets are the truth); async.
        const rd_kafka_resp_err_t err = rd_kafka_commit(consumer.get(), front.offsets.get(), 1);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
          spdlog::warn("committing offsets to Kafka: {}", rd_kafka_err2str(err));
        }
      }
      processed_records += front.records;
      processor->Finish(std::move(front.batch));
      ++stats.batches;
      last_commit = SteadyClock::now();
      in_flight.pop_front();
    }
    return Status::OK();
  }

  // Commits every confirmed batch, then drops the rest (the processor forgets their state).
  Status AbandonUnconfirmed(std::string_view why) {
    ROTOR_RETURN_IF_ERROR(writer->Wait());
    ROTOR_RETURN_IF_ERROR(Advance());
    if (in_flight.empty()) {
      return Status::OK();
    }
    int64_t records = 0;
    for (const InFlight& b : in_flight) {
      records += b.records;
    }
    spdlog::warn("{} batch(es) of {} records not delivered ({}); retrying from the stored offsets",
                 in_flight.size(), records, why);
    stats.failed_batches += static_cast<int64_t>(in_flight.size());
    processor->Abandon(std::move(in_flight.front().batch));
    in_flight.clear();
    SettleAbandonedMessages();
    return fatal;
  }

  // Drops the abandoned batches' messages still queued in librdkafka and waits for the reports
  // of those already sent, so that none of them reaches the broker after the batches' redo
  // (which would put an older copy of a row after a newer one). In exactly-once mode the abort
  // has purged them already. Gives up waiting when asked to stop (the redo then never comes).
  void SettleAbandonedMessages() const {
    const rd_kafka_resp_err_t purged = rd_kafka_purge(producer.get(), RD_KAFKA_PURGE_F_QUEUE);
    if (purged != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::warn("purging the abandoned batches' messages: {}", rd_kafka_err2str(purged));
    }
    while (rd_kafka_outq_len(producer.get()) > 0 && !Stopping()) {
      rd_kafka_poll(producer.get(), 10);
    }
  }

  bool Stopping() const { return stop_flag != nullptr && stop_flag->load(); }

  // Whether a stop was asked more than delivery.shutdown_timeout_ms ago: what is still in
  // flight is then dropped uncommitted rather than waited for.
  bool PastShutdownDeadline() {
    if (!Stopping()) {
      return false;
    }
    const auto now = SteadyClock::now();
    if (!stop_seen) {
      stop_seen = now;
    }
    return now - *stop_seen > std::chrono::milliseconds(config.delivery.shutdown_timeout_ms);
  }

  // The timeout for a blocking transaction call: the transaction's own (-1) while serving, what
  // is left of delivery.shutdown_timeout_ms once stopping.
  int TransactionTimeoutMs() {
    if (!Stopping()) {
      return -1;
    }
    (void)PastShutdownDeadline();  // Starts the clock.
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(
            *stop_seen + std::chrono::milliseconds(config.delivery.shutdown_timeout_ms) -
            SteadyClock::now())
            .count();
    return static_cast<int>(std::max<int64_t>(left, 1));
  }

  // Exactly-once: commits the open transaction with the input offsets of every batch in it
  // (the unconfirmed ones), then hands their state to the writer (a crash in between re-applies
  // without publishing). On an abortable error the transaction is aborted and the batches
  // abandoned: Aborted, after a rewind when `rewind` is true.
  Status CommitTransaction(bool rewind = true) {
    if (!transaction_open) {
      return Status::OK();
    }
    std::map<std::pair<std::string, int32_t>, int64_t> merged;
    bool failed = false;
    for (const InFlight& b : in_flight) {
      if (b.confirmed) {
        continue;  // Of an earlier transaction, waiting for the writer.
      }
      failed = failed || b.failed;
      for (int i = 0; i < b.offsets->cnt; ++i) {
        const rd_kafka_topic_partition_t& p = b.offsets->elems[i];
        int64_t& next = merged[{p.topic, p.partition}];
        next = std::max(next, p.offset);
      }
    }
    ROTOR_RETURN_IF_ERROR(fatal);  // Never commit what a permanent failure touched.
    Status s = failed ? Status::Aborted("a message could not be produced") : Status::OK();
    if (s.ok() && !merged.empty()) {
      PartitionListPtr offsets(rd_kafka_topic_partition_list_new(static_cast<int>(merged.size())));
      for (const auto& [tp, next] : merged) {
        rd_kafka_topic_partition_list_add(offsets.get(), tp.first.c_str(), tp.second)->offset =
            next;
      }
      rd_kafka_consumer_group_metadata_t* group = rd_kafka_consumer_group_metadata(consumer.get());
      s = TransactionCall(
          [&] {
            return rd_kafka_send_offsets_to_transaction(producer.get(), offsets.get(), group,
                                                        TransactionTimeoutMs());
          },
          "send_offsets_to_transaction");
      rd_kafka_consumer_group_metadata_destroy(group);
    }
    if (s.ok()) {
      s = TransactionCall(
          [&] { return rd_kafka_commit_transaction(producer.get(), TransactionTimeoutMs()); },
          "commit_transaction");
    }
    if (s.ok()) {
      // Kafka has the outputs and the group's offsets; RocksDB not yet the state.
      ROTOR_FAILPOINT("txn.after_commit");
      transaction_open = false;
      ++stats.transactions;
      for (InFlight& b : in_flight) {
        b.confirmed = true;
      }
      return Advance();
    }
    if (s.code() != StatusCode::kAborted) {
      Fail(s);  // The producer is unusable: the caller stops, committing none of it.
      return s;
    }
    spdlog::warn("aborting the transaction: {}", s);
    // Whatever the abort's outcome, this transaction is over for us: a failed abort stops
    // serving, and the broker aborts it on the transaction timeout or when a restart fences it.
    transaction_open = false;
    const Status aborted = FromKafkaError(
        rd_kafka_abort_transaction(producer.get(), TransactionTimeoutMs()), "abort_transaction");
    if (!aborted.ok()) {
      Fail(aborted);
    }
    ROTOR_RETURN_IF_ERROR(AbandonUnconfirmed(s.message()));
    if (rewind) {
      ROTOR_RETURN_IF_ERROR(Rewind());
    }
    return s;
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
    while (!in_flight.empty()) {
      if (!exactly_once && PastShutdownDeadline()) {
        ROTOR_RETURN_IF_ERROR(
            AbandonUnconfirmed("not delivered within delivery.shutdown_timeout_ms"));
        return Status::Aborted("stopping: undelivered batches dropped");
      }
      if (!exactly_once) {
        rd_kafka_poll(producer.get(), 10);
        ROTOR_RETURN_IF_ERROR(Settle(/*rewind=*/false));
      }
      if (!in_flight.empty() && in_flight.back().confirmed) {
        ROTOR_RETURN_IF_ERROR(writer->Wait());
        ROTOR_RETURN_IF_ERROR(Advance());
      }
    }
    return Status::OK();
  }

  // Runs a transactional call, retrying retriable errors for up to the transaction timeout
  // (the broker aborts the transaction after that anyway); Aborted when the transaction must be
  // aborted, another error when the producer is unusable.
  template <class F>
  Status TransactionCall(F call, std::string_view what) {
    const auto deadline =
        SteadyClock::now() + std::chrono::milliseconds(config.delivery.transaction_timeout_ms);
    while (true) {
      if (PastShutdownDeadline()) {
        return Status::Aborted("{}: not done within delivery.shutdown_timeout_ms", what);
      }
      rd_kafka_error_t* error = call();
      if (error == nullptr) {
        return Status::OK();
      }
      const std::string message = rd_kafka_error_string(error);
      const bool retriable = rd_kafka_error_is_retriable(error) != 0;
      const bool abortable = rd_kafka_error_txn_requires_abort(error) != 0;
      const bool unusable = rd_kafka_error_is_fatal(error) != 0;
      rd_kafka_error_destroy(error);
      if (unusable) {
        return Status::FailedPrecondition("{}: fatal: {}", what, message);
      }
      if (abortable || !retriable || SteadyClock::now() > deadline) {
        return Status::Aborted("{}: {}", what, message);
      }
      spdlog::warn("{}: {} (retrying)", what, message);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  // After a failed delivery: every assigned partition goes back to the offset in the store.
  Status Rewind() {
    ROTOR_ASSIGN_OR_RETURN(auto stored, store->LoadOffsets());
    PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(publish_from.size())));
    for (const auto& [partition, unused] : publish_from) {
      if (stopped.contains(partition)) {
        continue;  // Paused: nothing of it is consumed.
      }
      const auto found = stored.find({config.kafka.input_topic, partition});
      if (found != stored.end()) {
        apply_from[partition] = found->second;
      } else {
        apply_from.erase(partition);
      }
      rd_kafka_topic_partition_list_add(list.get(), config.kafka.input_topic.c_str(), partition)
          ->offset = found == stored.end() ? RD_KAFKA_OFFSET_BEGINNING : found->second;
    }
    if (list->cnt == 0) {
      return Status::OK();
    }
    return FromKafkaError(rd_kafka_seek_partitions(consumer.get(), list.get(), 30000),
                          "seeking back to the stored offsets");
  }

  // Whether every assigned partition that is not stopped was consumed up to its end (the high
  // watermark of the last fetch). A resumed run skips what it applied before, so counting
  // records cannot tell.
  bool CaughtUp() const {
    // The consumer's positions too: they move past transaction markers, which the next offset
    // to apply does not.
    PartitionListPtr positions(
        rd_kafka_topic_partition_list_new(static_cast<int>(publish_from.size())));
    for (const auto& [partition, unused] : publish_from) {
      rd_kafka_topic_partition_list_add(positions.get(), config.kafka.input_topic.c_str(),
                                        partition);
    }
    if (rd_kafka_position(consumer.get(), positions.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return false;
    }
    int i = 0;
    for (const auto& [partition, unused] : publish_from) {
      const int64_t fetched = positions->elems[i++].offset;
      if (stopped.contains(partition)) {
        continue;
      }
      int64_t low = 0;
      int64_t high = 0;
      if (rd_kafka_get_watermark_offsets(consumer.get(), config.kafka.input_topic.c_str(),
                                         partition, &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR ||
          high < 0) {
        return false;
      }
      const int64_t position = std::max(fetched, NextToApply(partition).value_or(low));
      if (position < high) {
        return false;
      }
    }
    return true;
  }

  void LogStats(double seconds) const {
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

  Status Serve(const std::atomic<bool>& stop);

  // After serving stopped on an error: batches already confirmed (delivered, or in a committed
  // transaction) still commit their state; every other batch is dropped, its messages purged
  // and an open transaction aborted, so nothing unconfirmed reaches RocksDB, not even through
  // the drain of the revoke that closing the consumer triggers. A restart redoes them.
  void AbandonAfterFailure(const Status& why) {
    Fail(why);
    if (writer->Wait().ok()) {
      (void)Advance();
    }
    if (exactly_once && transaction_open) {
      transaction_open = false;
      const Status aborted =
          FromKafkaError(rd_kafka_abort_transaction(producer.get(), 10000), "abort_transaction");
      if (!aborted.ok()) {
        spdlog::warn("{}", aborted);
      }
    }
    if (!in_flight.empty()) {
      processor->Abandon(std::move(in_flight.front().batch));
      in_flight.clear();
    }
    rd_kafka_purge(producer.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  }
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
    ROTOR_RETURN_IF_ERROR(fatal);
    ROTOR_RETURN_IF_ERROR(rebalance_error);
    ROTOR_RETURN_IF_ERROR(exactly_once ? Advance() : Settle());
    // Fill a batch: up to max_batch_events, waiting at most max_batch_wait_ms once one arrived.
    // While batches are in flight, an empty poll returns at once to settle them.
    messages.clear();
    SteadyClock::time_point deadline{};
    // Memory: the batch stops filling once its distinct users' windows would take what is left
    // of pipeline.max_inflight_bytes (at least one message, so serving always moves on).
    batch_keys.clear();
    const int64_t held = InflightBytes();
    while (static_cast<int64_t>(messages.size()) < opt.max_batch_events && !stop.load() &&
           !rewind_pending &&
           (messages.empty() ||
            held + static_cast<int64_t>(batch_keys.size() + 1) * processor->user_bytes() <=
                opt.max_inflight_bytes)) {
      int timeout = in_flight.empty() ? 100 : 1;
      if (!messages.empty()) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now())
                .count();
        if (left <= 0) {
          break;
        }
        timeout = static_cast<int>(std::min<int64_t>(left, timeout));
      }
      MessagePtr m(rd_kafka_consumer_poll(consumer.get(), timeout));
      if (!m) {
        if (!in_flight.empty()) {
          rd_kafka_poll(producer.get(), 0);  // Delivery reports.
        }
        if (messages.empty()) {
          break;  // Nothing yet: check stop, idle and stats, then poll again.
        }
        continue;
      }
      if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
        ROTOR_RETURN_IF_ERROR(OnOffsetOutOfRange(m->partition));
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
    ROTOR_RETURN_IF_ERROR(rebalance_error);
    if (rewind_pending) {
      // Batches were abandoned during a rebalance: what was consumed since is read again.
      rewind_pending = false;
      messages.clear();
      ROTOR_RETURN_IF_ERROR(Rewind());
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
      if (exactly_once && transaction_open) {
        // No input: commit now rather than keep the outputs waiting for the interval.
        ROTOR_RETURN_IF_ERROR(CommitTransactionInLoop());
      }
      ROTOR_RETURN_IF_ERROR(rebalance_error);
      // Idle means: partitions assigned, nothing in flight, any feed fully produced, every
      // partition consumed to its end, and nothing new for exit_when_idle_ms.
      if (run.exit_when_idle_ms > 0 && (feeder == nullptr || feeder->done()) &&
          !publish_from.empty() && in_flight.empty() && CaughtUp() &&
          now - last_activity > std::chrono::milliseconds(run.exit_when_idle_ms)) {
        spdlog::info("no input for {} ms: stopping", run.exit_when_idle_ms);
        break;
      }
      continue;
    }
    last_activity = now;
    if (!first_batch) {
      first_batch = now;
    }
    // A revoke during the fill: drop the messages of partitions no longer ours (their new
    // owner consumes them from the committed offsets).
    records.clear();
    for (const MessagePtr& m : messages) {
      const auto it = publish_from.find(m->partition);
      if (it == publish_from.end() || stopped.contains(m->partition)) {
        continue;
      }
      const auto [next, unseen] = apply_from.try_emplace(m->partition, m->offset);
      if (m->offset < next->second) {
        // A fetch from before a seek can still arrive; each skipped record is counted and
        // logged (the log is checked for truncation when the position leaves its range).
        ++stats.skipped_records;
        spdlog::warn("partition {}: offset {} is below {}, already applied: skipping", m->partition,
                     m->offset, next->second);
        continue;
      }
      next->second = m->offset + 1;
      InputRecord r;
      r.topic = config.kafka.input_topic;
      r.partition = m->partition;
      r.offset = m->offset;
      r.has_key = m->key != nullptr;
      if (r.has_key) {
        r.key = std::string_view(static_cast<const char*>(m->key), m->key_len);
      }
      if (m->payload != nullptr) {
        r.value = std::string_view(static_cast<const char*>(m->payload), m->len);
      }
      r.timestamp_ms = rd_kafka_message_timestamp(m.get(), nullptr);
      r.partitions = input_partitions;
      r.publish = m->offset >= it->second;
      records.push_back(r);
    }
    if (records.empty()) {
      continue;
    }
    ROTOR_ASSIGN_OR_RETURN(PendingBatch batch, processor->Process(records));
    ROTOR_RETURN_IF_ERROR(Dispatch(std::move(batch), static_cast<int64_t>(records.size())));
    stats.peak_inflight_bytes = std::max(stats.peak_inflight_bytes, InflightBytes());
    const auto in_flight_max = static_cast<std::size_t>(opt.max_inflight_batches);
    const auto full = [&] {
      return in_flight.size() >= in_flight_max || InflightBytes() > opt.max_inflight_bytes;
    };
    if (exactly_once) {
      ROTOR_RETURN_IF_ERROR(Advance());
      // Commit when the transaction is old or large enough, or at once when a message could
      // not be produced (the commit then aborts it).
      if (full() || in_flight.back().failed ||
          SteadyClock::now() - transaction_began >= commit_interval) {
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
    while (!in_flight.empty() && full() && !stop.load()) {
      rd_kafka_poll(producer.get(), 1);
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
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->run = std::move(run);
  impl->exactly_once = config.delivery.mode == config::DeliveryMode::kExactlyOnce;
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
                                           config.output, config.state, WallMs));
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
  d.stop_flag = &stop;
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
  const Status closed =
      FromKafka(rd_kafka_consumer_close(d.consumer.get()), "closing the consumer");
  if (!closed.ok()) {
    spdlog::warn("{}", closed);
  }
  // Every batch is confirmed or dropped by now, so nothing that must arrive is still queued;
  // what is left (messages of dropped batches) gets a bounded wait, not an unbounded one.
  for (int waited_ms = 0; rd_kafka_outq_len(d.producer.get()) > 0 && waited_ms < 10000;
       waited_ms += 100) {
    rd_kafka_flush(d.producer.get(), 100);
  }
  const Status flushed = d.store->Flush();
  if (served.ok() && !flushed.ok()) {
    served = flushed;
  }
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
