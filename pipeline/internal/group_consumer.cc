#include "pipeline/internal/group_consumer.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>

#include "common/failpoint.h"
#include "pipeline/internal/changelog_restore.h"
#include "pipeline/internal/group_directory.h"

namespace rotor::pipeline::internal {

GroupConsumer::GroupConsumer(Options options, storage::UserStateStore& store,
                             ShutdownClock& shutdown, FailureLatch& failure, Listener& listener)
    : options_(std::move(options)),
      store_(store),
      shutdown_(shutdown),
      failure_(failure),
      listener_(listener) {}

GroupConsumer::~GroupConsumer() = default;

Result<std::unique_ptr<GroupConsumer>> GroupConsumer::Create(
    const config::DaemonConfig& config, const std::string& bootstrap, int32_t input_partitions,
    storage::UserStateStore& store, ShutdownClock& shutdown, FailureLatch& failure,
    Listener& listener, std::string_view api_url) {
  const config::KafkaOptions& k = config.kafka;
  // The input topic's partition count, stored with the state the first time.
  ROTOR_RETURN_IF_ERROR(
      CheckInputPartitions(store, k.input_topic, input_partitions, config.state.dir));

  std::unique_ptr<GroupConsumer> c(
      new GroupConsumer(Options{.config = config,
                                .bootstrap = bootstrap,
                                .input_topic = k.input_topic,
                                .input_partitions = input_partitions,
                                .connect_timeout_ms = k.connect_timeout_ms,
                                .transaction_timeout_ms = config.delivery.transaction_timeout_ms,
                                .allow_history_gaps = config.pipeline.allow_history_gaps},
                        store, shutdown, failure, listener));
  ConfPtr conf(rd_kafka_conf_new());
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "bootstrap.servers", bootstrap));
  // The API's address rides in the client.id, where the group's description shows it to the
  // other members (group_directory.h).
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "client.id", ClientIdWithApi(k.client_id, api_url)));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "group.id", k.group_id));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "enable.auto.commit", "false"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "enable.auto.offset.store", "false"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "isolation.level", "read_committed"));
  // Never jump: an out-of-range position is reported (OnOffsetOutOfRange decides).
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "auto.offset.reset", "error"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "partition.assignment.strategy", "cooperative-sticky"));
  ROTOR_RETURN_IF_ERROR(
      SetConf(conf.get(), "session.timeout.ms", std::to_string(k.session_timeout_ms)));
  // Prefetched input, bounded below librdkafka's 64 MiB default; kafka.consumer_properties
  // may override it.
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "queued.max.messages.kbytes", "16384"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), k.consumer_properties));
  rd_kafka_conf_set_rebalance_cb(conf.get(), Rebalance);
  rd_kafka_conf_set_log_cb(conf.get(), LogCallback);
  rd_kafka_conf_set_error_cb(conf.get(), OnError);
  rd_kafka_conf_set_opaque(conf.get(), c.get());
  ROTOR_ASSIGN_OR_RETURN(c->consumer_, NewHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  rd_kafka_poll_set_consumer(c->consumer_.get());
  PartitionListPtr topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), k.input_topic.c_str(), RD_KAFKA_PARTITION_UA);
  ROTOR_RETURN_IF_ERROR(FromKafka(rd_kafka_subscribe(c->consumer_.get(), topics.get()),
                                  fmt::format("subscribing to '{}'", k.input_topic)));
  return c;
}

// The consumer's error events (served by its polls on the serving thread): a fatal one stops
// serving, the rest are logged while librdkafka retries.
void GroupConsumer::OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  if (auto fatal = FatalClientError(rk, err, reason)) {
    static_cast<GroupConsumer*>(opaque)->failure_.Fail(std::move(*fatal));
  }
}

void GroupConsumer::Rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                              rd_kafka_topic_partition_list_t* parts, void* opaque) {
  auto* self = static_cast<GroupConsumer*>(opaque);
  const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    self->OnAssign(rk, parts, cooperative);
  } else {
    self->OnRevoke(rk, parts, cooperative, rd_kafka_assignment_lost(rk) != 0);
  }
}

void GroupConsumer::OnAssign(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts,
                             bool cooperative) {
  std::set<int32_t> owned = Owned();
  for (int i = 0; i < parts->cnt; ++i) {
    owned.insert(parts->elems[i].partition);
  }
  listener_.OwnedChanged(owned, MemberId(rk));
  auto stored = store_.LoadOffsets();
  if (!stored.ok()) {
    rebalance_error_ = stored.status();
    return;
  }
  auto read = ReadCommitted(rk, parts);
  if (!read.ok()) {
    rebalance_error_ = read.status();
    return;
  }
  const PartitionListPtr committed = std::move(read).value();
  std::vector<TopicPartition> with_state;  // Restored, or resuming from the store.
  std::vector<TopicPartition> fresh;
  for (int i = 0; i < parts->cnt; ++i) {
    rd_kafka_topic_partition_t& p = parts->elems[i];
    const auto found = stored->find({p.topic, p.partition});
    std::optional<int64_t> next;
    if (found != stored->end()) {
      next = found->second;
    }
    const int64_t kafka_committed = committed->elems[i].offset;
    if (next && *next < kafka_committed && !options_.config.kafka.changelog_topic.empty()) {
      // Local state behind the group: the input between is re-applied, unless retention
      // deleted it. Then the partition's local state is dropped and restored from the
      // changelog instead (it would stop otherwise).
      auto lost = InputDeletedBefore(p.partition, *next);
      if (!lost.ok()) {
        rebalance_error_ = std::move(lost).status();
        return;
      }
      if (*lost) {
        spdlog::warn(
            "partition {}: the local state ends at offset {}, the group's at {}, and the input "
            "between was deleted: dropping the partition's local state to restore it from '{}'",
            p.partition, *next, kafka_committed, options_.config.kafka.changelog_topic);
        const Status dropped =
            DropPartitionState(store_, p.topic, p.partition, options_.input_partitions);
        if (!dropped.ok()) {
          rebalance_error_ = dropped;
          return;
        }
        next.reset();
      }
    }
    if (!next && !options_.config.kafka.changelog_topic.empty()) {
      // No local state: restore what the group's previous owners committed from the changelog
      // rather than replay the input (which retention may have cut).
      auto r = RestoreFromChangelog(options_.config, options_.bootstrap, p.partition,
                                    kafka_committed, store_, [&](int64_t done, int64_t total) {
                                      listener_.OnRestoreProgress(p.partition, done, total);
                                    });
      if (!r.ok()) {
        rebalance_error_ = std::move(r).status();
        return;
      }
      if (r->next_offset) {
        next = r->next_offset;
        ++stats_.restored_partitions;
        stats_.restored_records += r->records;
      }
    }
    if (!next) {
      fresh.push_back(TopicPartition{p.topic, p.partition});
    } else {
      with_state.push_back(TopicPartition{p.topic, p.partition});
    }
    const int64_t resume = next.value_or(RD_KAFKA_OFFSET_BEGINNING);
    p.offset = resume;
    publish_from_[p.partition] = kafka_committed;
    if (next) {
      apply_from_[p.partition] = *next;
    } else {
      apply_from_.erase(p.partition);
    }
    const Status history = CheckHistory(p.partition, next);
    if (!history.ok()) {
      if (history.code() != StatusCode::kOutOfRange) {
        rebalance_error_ = history;
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
  const Status s = cooperative ? FromKafkaError(rd_kafka_incremental_assign(rk, parts), "assigning")
                               : FromKafka(rd_kafka_assign(rk, parts), "assigning");
  if (!s.ok()) {
    rebalance_error_ = s;
    return;
  }
  PausePartitions(parts);
  listener_.AfterAssign(with_state, fresh);
  // The idle clock starts once the assignment took effect: reading the committed offsets can
  // wait out another instance's open transaction, and that wait is not idleness.
  last_assigned_ = SteadyClock::now();
  ++assignments_;
  ++changes_;
}

void GroupConsumer::OnRevoke(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts,
                             bool cooperative, bool lost) {
  // Finish what is in flight while the partitions are still ours: its state and offsets are
  // committed before their new owner starts from them.
  const Status drained = listener_.BeforeRevoke();
  ROTOR_FAILPOINT("rebalance.revoke_after_drain");
  if (!drained.ok()) {
    if (drained.code() != StatusCode::kAborted) {
      rebalance_error_ = drained;
    } else {
      rewind_pending_ = true;  // The abandoned batches' records are consumed again.
    }
  }
  std::vector<TopicPartition> revoked;
  revoked.reserve(static_cast<std::size_t>(parts->cnt));
  for (int i = 0; i < parts->cnt; ++i) {
    publish_from_.erase(parts->elems[i].partition);
    apply_from_.erase(parts->elems[i].partition);
    stopped_.erase(parts->elems[i].partition);
    spdlog::info("partition {}: {}", parts->elems[i].partition, lost ? "lost" : "revoked");
    revoked.push_back(TopicPartition{parts->elems[i].topic, parts->elems[i].partition});
  }
  listener_.AfterRevoke(revoked);
  listener_.OwnedChanged(Owned(), MemberId(rk));
  ++changes_;
  const Status s = cooperative
                       ? FromKafkaError(rd_kafka_incremental_unassign(rk, parts), "unassigning")
                       : FromKafka(rd_kafka_assign(rk, nullptr), "unassigning");
  if (!s.ok()) {
    spdlog::warn("{}", s);
  }
}

// The partitions assigned now.
std::set<int32_t> GroupConsumer::Owned() const {
  std::set<int32_t> owned;
  for (const auto& [partition, unused] : publish_from_) {
    owned.insert(partition);
  }
  return owned;
}

// This member's id in the group ("" before it joined).
std::string GroupConsumer::MemberId(rd_kafka_t* rk) {
  char* id = rd_kafka_memberid(rk);
  if (id == nullptr) {
    return "";
  }
  std::string out(id);
  rd_kafka_mem_free(rk, id);
  return out;
}

// The group's committed offsets of `parts`. An error for one partition fails the read like an
// error of the whole call: taken as "nothing committed", it would make this instance publish
// again everything the partition's previous owner published. Transient coordinator errors are
// retried for up to a minute past the transaction timeout (offsets a zombie left in an open
// transaction stay unreadable until the broker aborts it), unless asked to stop.
Result<PartitionListPtr> GroupConsumer::ReadCommitted(
    rd_kafka_t* rk, const rd_kafka_topic_partition_list_t* parts) const {
  const auto deadline = SteadyClock::now() + std::chrono::seconds(60) +
                        std::chrono::milliseconds(options_.transaction_timeout_ms);
  while (true) {
    PartitionListPtr committed(rd_kafka_topic_partition_list_copy(parts));
    constexpr std::string_view kWhat = "reading the group's committed offsets";
    const rd_kafka_resp_err_t call = rd_kafka_committed(rk, committed.get(), 30000);
    const Status read = call != RD_KAFKA_RESP_ERR_NO_ERROR
                            ? FromKafka(call, kWhat)
                            : FirstPartitionError(committed.get(), kWhat);
    if (read.ok()) {
      return committed;
    }
    // Unavailable: the coordinator moved, restarts or did not answer in time.
    if (read.code() != StatusCode::kUnavailable || SteadyClock::now() > deadline ||
        shutdown_.Stopping()) {
      return read;
    }
    spdlog::warn("{} (retrying)", read);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

// Whether the input log of `partition` still holds every record the state needs next: from
// `next` (the store's next offset; nullopt: nothing applied yet, so from offset 0) on. When
// Kafka deleted records the state never saw (retention, DeleteRecords), or the log is shorter
// than the state (the topic was recreated, an unclean leader election truncated it), going on
// would give users partial histories with wrong positions. OutOfRange then, naming the gap;
// another error when the log's bounds could not be read.
Status GroupConsumer::CheckHistory(int32_t partition, std::optional<int64_t> next) const {
  ROTOR_ASSIGN_OR_RETURN(const auto bounds, InputBounds(partition));
  const auto [low, high] = bounds;
  const std::string& topic = options_.input_topic;
  if (next && *next > high) {
    return Status::OutOfRange(
        "partition {} of '{}' ends at offset {}, but the state has applied it up to {}: the "
        "topic was recreated or its log truncated. Point state.dir at a fresh directory to "
        "rebuild from what the topic holds now",
        partition, topic, high, *next);
  }
  if (next.value_or(0) < low && (next || !options_.allow_history_gaps)) {
    return Status::OutOfRange(
        "partition {} of '{}' starts at offset {}, but the state needs the records from {}: "
        "they were deleted (retention or DeleteRecords) before rotor applied them, so users' "
        "histories would have gaps{}",
        partition, topic, low, next.value_or(0),
        next ? "" : ". Set pipeline.allow_history_gaps: true to start from the log's start anyway");
  }
  return Status::OK();
}

// Whether the input log of `partition` starts after `next` (retention or DeleteRecords took
// records the state has not applied).
Result<bool> GroupConsumer::InputDeletedBefore(int32_t partition, int64_t next) const {
  ROTOR_ASSIGN_OR_RETURN(const auto bounds, InputBounds(partition));
  return next < bounds.first;
}

// The input log of `partition`: its first offset and its end, from the broker.
Result<std::pair<int64_t, int64_t>> GroupConsumer::InputBounds(int32_t partition) const {
  int64_t low = 0;
  int64_t high = 0;
  const std::string& topic = options_.input_topic;
  ROTOR_RETURN_IF_ERROR(FromKafka(
      rd_kafka_query_watermark_offsets(consumer_.get(), topic.c_str(), partition, &low, &high,
                                       static_cast<int>(options_.connect_timeout_ms)),
      fmt::format("reading the bounds of partition {} of '{}'", partition, topic)));
  return std::pair(low, high);
}

// Pauses `partition` for good (until it is revoked): its records are not applied.
void GroupConsumer::StopPartition(int32_t partition, const Status& why) {
  spdlog::error("partition {}: stopped: {}", partition, why.message());
  stopped_[partition] = why.message();
  ++stats_.stopped_partitions;
  ++changes_;
}

// Pauses the stopped partitions among `parts` (after assigning them).
void GroupConsumer::PausePartitions(const rd_kafka_topic_partition_list_t* parts) const {
  PartitionListPtr paused(rd_kafka_topic_partition_list_new(parts->cnt));
  for (int i = 0; i < parts->cnt; ++i) {
    if (stopped_.contains(parts->elems[i].partition)) {
      rd_kafka_topic_partition_list_add(paused.get(), parts->elems[i].topic,
                                        parts->elems[i].partition);
    }
  }
  if (paused->cnt > 0) {
    const Status s = FromKafka(rd_kafka_pause_partitions(consumer_.get(), paused.get()),
                               "pausing the stopped partitions");
    if (!s.ok()) {
      spdlog::warn("{}", s);
    }
  }
}

// The next offset of `partition` to apply; nullopt when nothing is known yet (no state, no
// record consumed).
std::optional<int64_t> GroupConsumer::NextToApply(int32_t partition) const {
  const auto next = apply_from_.find(partition);
  return next == apply_from_.end() ? std::nullopt : std::optional(next->second);
}

MessagePtr GroupConsumer::PollMessage(int timeout_ms) {
  return MessagePtr(rd_kafka_consumer_poll(consumer_.get(), timeout_ms));
}

Status GroupConsumer::OnEvent(const rd_kafka_message_t& event) {
  if (event.err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
    return OnOffsetOutOfRange(event.partition);
  }
  if (event.err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    spdlog::warn("consumer: {}", rd_kafka_message_errstr(&event));
  }
  return Status::OK();
}

Status GroupConsumer::OnOffsetOutOfRange(int32_t partition) {
  const std::string& topic = options_.input_topic;
  const std::optional<int64_t> from = NextToApply(partition);
  const Status history = CheckHistory(partition, from);
  if (history.code() == StatusCode::kOutOfRange) {
    StopPartition(partition, history);
    PartitionListPtr one(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(one.get(), topic.c_str(), partition);
    PausePartitions(one.get());
    return Status::OK();
  }
  ROTOR_RETURN_IF_ERROR(history);
  spdlog::warn("partition {}: offset out of range; going back to {}", partition,
               from ? std::to_string(*from) : std::string("the beginning"));
  // A partition whose fetch failed this way cannot be sought (librdkafka answers _STATE): it is
  // assigned again, at the offset.
  PartitionListPtr one(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(one.get(), topic.c_str(), partition)->offset =
      from.value_or(RD_KAFKA_OFFSET_BEGINNING);
  if (std::string_view(rd_kafka_rebalance_protocol(consumer_.get())) == "COOPERATIVE") {
    ROTOR_RETURN_IF_ERROR(FromKafkaError(rd_kafka_incremental_unassign(consumer_.get(), one.get()),
                                         "unassigning to reset"));
    return FromKafkaError(rd_kafka_incremental_assign(consumer_.get(), one.get()),
                          "assigning again at the stored offset");
  }
  // Eager: the whole assignment again, every other partition at its next offset to apply.
  PartitionListPtr all(rd_kafka_topic_partition_list_new(static_cast<int>(publish_from_.size())));
  for (const auto& [p, unused] : publish_from_) {
    rd_kafka_topic_partition_list_add(all.get(), topic.c_str(), p)->offset =
        NextToApply(p).value_or(RD_KAFKA_OFFSET_BEGINNING);
  }
  ROTOR_RETURN_IF_ERROR(
      FromKafka(rd_kafka_assign(consumer_.get(), all.get()), "assigning again to reset"));
  PausePartitions(all.get());
  return Status::OK();
}

void GroupConsumer::Admit(const std::vector<MessagePtr>& messages,
                          std::vector<InputRecord>& records) {
  for (const MessagePtr& m : messages) {
    AdmitOne(*m, records);
  }
}

void GroupConsumer::Admit(const std::vector<Polled>& polled, std::vector<InputRecord>& records) {
  for (const Polled& p : polled) {
    AdmitOne(*p.message, records);
  }
}

void GroupConsumer::AdmitOne(const rd_kafka_message_t& m, std::vector<InputRecord>& records) {
  const auto it = publish_from_.find(m.partition);
  if (it == publish_from_.end() || stopped_.contains(m.partition)) {
    return;
  }
  const auto [next, unseen] = apply_from_.try_emplace(m.partition, m.offset);
  if (m.offset < next->second) {
    // A fetch from before a seek can still arrive; each skipped record is counted and logged
    // (the log is checked for truncation when the position leaves its range).
    ++stats_.skipped_records;
    spdlog::warn("partition {}: offset {} is below {}, already applied: skipping", m.partition,
                 m.offset, next->second);
    return;
  }
  next->second = m.offset + 1;
  records.push_back(
      RecordOf(m, options_.input_topic, options_.input_partitions, m.offset >= it->second));
}

PartitionOffsets GroupConsumer::GroupOffsets(const PendingBatch& batch) const {
  PartitionOffsets offsets;
  for (const auto& [tp, next] : batch.next_offsets) {
    const auto it = publish_from_.find(tp.partition);
    if (it == publish_from_.end() || next <= it->second) {
      continue;
    }
    offsets[tp] = next;
  }
  return offsets;
}

void GroupConsumer::CommitAsync(const PartitionOffsets& offsets) {
  if (offsets.empty()) {
    return;
  }
  const PartitionListPtr list = ToPartitionList(offsets);
  const rd_kafka_resp_err_t err = rd_kafka_commit(consumer_.get(), list.get(), 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::warn("committing offsets to Kafka: {}", rd_kafka_err2str(err));
  }
}

GroupMetadataPtr GroupConsumer::GroupMetadata() const {
  return GroupMetadataPtr(rd_kafka_consumer_group_metadata(consumer_.get()));
}

Status GroupConsumer::Rewind() {
  rewind_pending_ = false;
  ++changes_;
  ROTOR_ASSIGN_OR_RETURN(auto stored, store_.LoadOffsets());
  const std::string& topic = options_.input_topic;
  PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(publish_from_.size())));
  for (const auto& [partition, unused] : publish_from_) {
    if (stopped_.contains(partition)) {
      continue;  // Paused: nothing of it is consumed.
    }
    const auto found = stored.find({topic, partition});
    if (found != stored.end()) {
      apply_from_[partition] = found->second;
    } else {
      apply_from_.erase(partition);
    }
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset =
        found == stored.end() ? RD_KAFKA_OFFSET_BEGINNING : found->second;
  }
  if (list->cnt == 0) {
    return Status::OK();
  }
  return FromKafkaError(rd_kafka_seek_partitions(consumer_.get(), list.get(), 30000),
                        "seeking back to the stored offsets");
}

bool GroupConsumer::CaughtUp() const {
  const std::string& topic = options_.input_topic;
  // The consumer's positions too: they move past transaction markers, which the next offset to
  // apply does not.
  PartitionListPtr positions(
      rd_kafka_topic_partition_list_new(static_cast<int>(publish_from_.size())));
  for (const auto& [partition, unused] : publish_from_) {
    rd_kafka_topic_partition_list_add(positions.get(), topic.c_str(), partition);
  }
  if (rd_kafka_position(consumer_.get(), positions.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return false;
  }
  int i = 0;
  for (const auto& [partition, unused] : publish_from_) {
    const int64_t fetched = positions->elems[i++].offset;
    if (stopped_.contains(partition)) {
      continue;
    }
    int64_t low = 0;
    int64_t high = 0;
    if (rd_kafka_get_watermark_offsets(consumer_.get(), topic.c_str(), partition, &low, &high) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
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

std::vector<PartitionReport> GroupConsumer::Progress() const {
  const std::string& topic = options_.input_topic;
  std::vector<PartitionReport> out;
  out.reserve(publish_from_.size());
  PartitionListPtr positions(
      rd_kafka_topic_partition_list_new(static_cast<int>(publish_from_.size())));
  for (const auto& [partition, unused] : publish_from_) {
    rd_kafka_topic_partition_list_add(positions.get(), topic.c_str(), partition);
  }
  const bool have_positions =
      rd_kafka_position(consumer_.get(), positions.get()) == RD_KAFKA_RESP_ERR_NO_ERROR;
  int i = 0;
  for (const auto& [partition, publish_from] : publish_from_) {
    PartitionReport& r = out.emplace_back();
    r.partition = {topic, partition};
    const int64_t position = have_positions ? positions->elems[i].offset : -1;
    ++i;
    const std::optional<int64_t> next = NextToApply(partition);
    r.next_offset = next.value_or(-1);
    int64_t low = -1;
    int64_t high = -1;
    if (rd_kafka_get_watermark_offsets(consumer_.get(), topic.c_str(), partition, &low, &high) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        high < 0) {
      low = -1;
      high = -1;
    }
    r.high_watermark = high;
    // Where consumption stands: the next offset to apply, or the position when it is past it
    // (transaction markers take offsets no record is applied at). Without either (no state for
    // the partition, nothing consumed yet), the log's start, where consumption begins.
    const int64_t at = std::max({r.next_offset, position, std::max<int64_t>(low, 0)});
    if (high >= 0) {
      r.lag = std::max<int64_t>(0, high - at);
    }
    if (const auto stopped = stopped_.find(partition); stopped != stopped_.end()) {
      r.phase = PartitionPhase::kStopped;
      r.reason = fmt::format("{} is stopped: {}", r.partition, stopped->second);
      continue;
    }
    // Without a next offset yet (no state for the partition, nothing consumed), applying
    // starts at the log's start.
    const int64_t from = next.value_or(std::max<int64_t>(low, 0));
    if (publish_from >= 0 && from < publish_from) {
      r.phase = PartitionPhase::kRestoring;
      r.reason = fmt::format(
          "{} is restoring: {} records to re-apply (offsets {} to {}, which the group published "
          "already)",
          r.partition, publish_from - from, from, publish_from - 1);
    } else {
      r.phase = PartitionPhase::kConsuming;
    }
  }
  return out;
}

Status GroupConsumer::Close() {
  return FromKafka(rd_kafka_consumer_close(consumer_.get()), "closing the consumer");
}

}  // namespace rotor::pipeline::internal
