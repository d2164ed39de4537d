// Processor: the Kafka-free heart of the pipeline. It turns one micro-batch of input records
// into the messages to publish (deltas, snapshots, dead letters) and the state to commit (new
// K/V rows, recent event ids and input offsets in one storage::StateBatch), exactly as DESIGN
// sections 4 and 5 describe. The Kafka side (pipeline/daemon.cc) feeds it and delivers what
// it returns.

#ifndef ROTOR_PIPELINE_PROCESSOR_H_
#define ROTOR_PIPELINE_PROCESSOR_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/topic_partition.h"
#include "config/daemon_config.h"
#include "encoders/bundle.h"
#include "storage/committed_view.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline {

// Dead-letter headers (the value is the message's original bytes, the key its original key).
inline constexpr std::string_view kHeaderError = "rotor.error";
inline constexpr std::string_view kHeaderErrorDetail = "rotor.error.detail";
inline constexpr std::string_view kHeaderSourceTopic = "rotor.source.topic";
inline constexpr std::string_view kHeaderSourcePartition = "rotor.source.partition";
inline constexpr std::string_view kHeaderSourceOffset = "rotor.source.offset";
// Present only when the dead letter holds a truncated copy: the original value's (key's) size in
// bytes. A dead letter keeps at most pipeline.max_message_bytes of the value and
// kDeadLetterKeyBytes of the key, so that it always fits the producer's message.max.bytes
// (an oversized input message would otherwise be refused again on its way to the dead-letter
// topic).
inline constexpr std::string_view kHeaderSourceValueBytes = "rotor.source.value_bytes";
inline constexpr std::string_view kHeaderSourceKeyBytes = "rotor.source.key_bytes";
inline constexpr std::size_t kDeadLetterKeyBytes = 4096;

// The store-wide info entry naming the model the state was computed with.
inline constexpr std::string_view kInfoModelId = "model_id";
// The store-wide info naming the dtype the state's K/V rows are kept in (state.kv_dtype): "f32",
// "bf16" or "f16". A state with a model id but no such info was made before the setting
// existed: f32.
inline constexpr std::string_view kInfoKvDtype = "kv_dtype";
// state.kv_dtype as the decoder and the store take it.
encoders::KvDtype KvDtypeOf(config::KvDtype dtype);
// The store-wide info entry holding input topic `topic`'s partition count (decimal): written by
// the daemon on its first start (a later start with another count is refused) and by
// `rotor replay --partitions N`. Users belong to partitions by it (murmur2 % count).
std::string InputPartitionsInfo(std::string_view topic);
// Checks `topic`'s partition count against the one `store` recorded, and records it the first
// time (the daemon at start-up, a Kafka replay). Adding partitions moves keys (murmur2 % N
// changes), so state built with another count no longer matches where users' events arrive:
// FailedPrecondition, naming `state_dir`.
Status CheckInputPartitions(storage::UserStateStore& store, std::string_view topic,
                            int32_t partitions, std::string_view state_dir);

// One consumed message. Views stay valid until Process returns.
struct InputRecord {
  std::string_view topic;
  int32_t partition = 0;
  int64_t offset = 0;
  bool has_key = false;
  std::string_view key;
  std::string_view value;
  // The record's Kafka timestamp (ms since the epoch), -1 when it has none (a file replay).
  // `ts_in_future` is judged against it, not the wall clock, so a record gets the same verdict
  // whenever it is applied: live, re-applied after a crash, restored or replayed.
  int64_t timestamp_ms = -1;
  // Partitions of the record's topic (0: unknown, e.g. a file replay). When known, the record
  // must sit in the partition Kafka's Java client gives its key: elsewhere, one user's events
  // would be split between partitions, instances and histories.
  int32_t partitions = 0;
  // false: the record's outputs were already published (Kafka's committed offset is past it):
  // apply it to state, publish nothing (not even a dead letter).
  bool publish = true;
};

// One message to produce.
struct OutputRecord {
  // kChangelog: the state changelog (kafka.changelog_topic), in the input record's partition.
  enum class Topic : unsigned char { kOutput, kDeadLetter, kChangelog };
  Topic topic = Topic::kOutput;
  // nullopt: produce the message without a key (a dead letter of a keyless input record), which
  // Kafka tells apart from an empty key.
  std::optional<std::string> key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
  // The partition to produce to (-1: the producer's partitioner, by key).
  int32_t partition = -1;
  // A null value (a changelog tombstone) instead of `value`.
  bool null_value = false;
};

// Counters since construction (or the last ResetStats).
struct ProcessorStats {
  int64_t records = 0;            // Input records seen.
  int64_t events = 0;             // Events decoded into state.
  int64_t replayed = 0;           // Of which re-applied without publishing.
  int64_t dead_letters = 0;       // Records refused (published or not).
  int64_t duplicates = 0;         // Events dropped as repeated event ids.
  int64_t deltas = 0;             // Delta messages made.
  int64_t snapshots = 0;          // Snapshot messages made.
  int64_t store_loads = 0;        // Users read from RocksDB (cache misses).
  int64_t abandoned_batches = 0;  // Batches dropped because delivery failed.
  int64_t quarantined_users = 0;  // Users whose stored state could not be read.
  // state.user_ttl_ms: events that found their user expired and started a fresh history (a
  // user the sweep had already deleted counts as a new user instead).
  int64_t restarted_histories = 0;
  // Users the expiry sweep deleted, counted as the batch is made: an abandoned batch's, or a
  // user deleted again before the first delete committed, count too.
  int64_t expired_users = 0;
  std::unordered_map<std::string, int64_t> rejects_by_code;
  // Wall-clock seconds of Process's parts: decoding and encoding the users (on the worker
  // pool), and batching their state and messages afterwards (on the caller's thread). The rest
  // of Process is reading the records (parse, featurize, the users' states).
  double decode_seconds = 0;
  double batch_seconds = 0;
};

// What one Process call produced; hand it back to Finish once delivered and committed, or to
// Abandon when delivery failed.
struct PendingBatch {
  uint64_t seq = 0;  // Order of Process calls, from 1.
  std::vector<OutputRecord> outputs;
  storage::StateBatch state;
  // Next input offset per (topic, partition) after this batch.
  std::vector<std::pair<TopicPartition, int64_t>> next_offsets;
  // The users this batch changed (their new state is held by the Processor until Finish).
  std::vector<std::string> users;
  // Event-time watermark per (topic, partition) after this batch (the largest ts_ms applied
  // from it), for the partitions that have one; committed with the offsets.
  std::vector<std::pair<TopicPartition, int64_t>> watermarks;
  int64_t events = 0;
};

// Lifecycle: borrows the bundle and the store, which outlive it.
//
// Batches may be in flight: Process may be called again before the previous batch is finished,
// and the next batch then builds on the previous batches' state (a pipelined daemon decodes
// batch n+1 while batch n is being delivered). The hot-window cache holds only committed state;
// the state of users touched by batches in flight is held apart until the last batch that
// touched them is finished. Finish batches in the order Process made them. Abandon the oldest
// batch in flight when its delivery failed: that drops it and every later batch (they were
// computed from its state); discard those without finishing them. The next batch reloads the
// users from RocksDB. After Process fails (a storage or internal error) the Processor must
// only be destroyed.
//
// User state expiry (state.user_ttl_ms > 0; docs/daemon.md, "User state expiry"): each input
// partition has an event-time watermark, the largest ts_ms applied from it, committed with its
// offset. An event whose user's last event is more than the TTL before its partition's
// watermark (as it was before the event) finds the user expired: the stored window and recent
// ids are dropped, in the same commit, and the event starts a fresh history at position 0.
// Each batch also sweeps state.ttl_sweep_users_per_batch stored users (a cursor over every user
// that wraps around; partitions by murmur2, with the partition count of the records seen) and
// deletes the expired ones. The watermark only grows, so an expired user stays expired, and
// whether the sweep already deleted it changes no state and no output.
// Concurrency: single-threaded (one decoder, one cache).
class Processor {
 public:
  using Clock = std::function<int64_t()>;  // Milliseconds since the Unix epoch.

  // Of `state`, reads window_cache_bytes (the hot-window cache and the windows held for
  // batches in flight), user_ttl_ms and ttl_sweep_users_per_batch. Loads the watermarks.
  // `view` (optional, outlives the Processor, of the bundle's model): the hot-window cache
  // publishes every finished batch's users into it with the batch's next offsets, for readers
  // on other threads (the API); see storage/committed_view.h.
  static Result<std::unique_ptr<Processor>> Create(const encoders::Bundle& bundle,
                                                   storage::UserStateStore& store,
                                                   const config::PipelineOptions& pipeline,
                                                   const config::OutputOptions& output,
                                                   const config::StateOptions& state, Clock clock,
                                                   storage::CommittedView* view = nullptr);
  ~Processor();
  Processor(const Processor&) = delete;
  Processor& operator=(const Processor&) = delete;

  // Processes `records` (in offset order within each partition). Fails only on a storage or
  // internal error (bad input never fails it: it becomes a dead letter).
  Result<PendingBatch> Process(std::span<const InputRecord> records);
  // The oldest batch in flight was delivered and its state committed: keep its users hot.
  void Finish(PendingBatch&& batch);
  // The oldest batch in flight was not committed: forget its in-memory effects and those of
  // every later batch.
  void Abandon(PendingBatch&& batch);
  // Drops the cached users of `partitions` (revoked ones: their state may change elsewhere);
  // the other partitions' users stay hot. Call with no batch in flight.
  void DropPartitions(std::span<const TopicPartition> partitions);
  // From now on every batch also makes the state changelog's messages (OutputRecord kChangelog,
  // in the input record's partition; storage::ChangelogRecord for the format): for each input
  // partition it holds records of, the changes to its users, then a marker with the
  // partition's next offset and watermark (docs/daemon.md, "State changelog").
  void EnableChangelog();
  // `partition`'s state starts empty (assigned with no stored state, and not restored): the
  // next batch with its records writes the changelog's base record first (again after an
  // Abandon). Forgotten on DropPartitions.
  void MarkFresh(const TopicPartition& partition);
  // Reads the event-time watermarks of `partitions` from the store again (after a restore
  // wrote them there). Call with no batch in flight holding their records.
  Status ReloadWatermarks(std::span<const TopicPartition> partitions);
  // Batches processed and neither finished nor abandoned.
  std::size_t in_flight() const;
  // Bytes of the user windows held for batches in flight (WindowCache::EntryBytes each).
  int64_t held_bytes() const;
  // The hot-window cache (committed state only): bytes charged and users held.
  int64_t cache_bytes() const;
  int64_t cached_users() const;
  // The most one user can cost when it joins a batch: a full window and a full set of recent
  // event ids held, and its share of the batch's WriteBatch (the daemon's bound on what a batch
  // may add).
  int64_t user_bytes() const;
  // The most bytes (key, value and headers) one message Process makes can take: a snapshot of
  // a full window, or a dead letter. The daemon refuses to start when that is over the
  // producer's message.max.bytes, rather than fail on the first such message.
  Result<int64_t> LargestMessageBytes(std::string_view input_topic) const;

  const ProcessorStats& stats() const;
  const std::string& model_id() const;

 private:
  struct Impl;
  explicit Processor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rotor::pipeline

#endif  // ROTOR_PIPELINE_PROCESSOR_H_
