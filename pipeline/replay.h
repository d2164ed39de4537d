// Replay: rebuilds state through the same Processor the daemon uses (DESIGN section 5,
// backfills and model upgrades), from one of two record sources:
//   - a JSON-lines event file (ReplayFile), without Kafka: nothing is published; the file's
//     line numbers are recorded as offsets of the pseudo-topic "file:<path>" (partition 0, or
//     with a partition count, the partition of each line's user), so a replay can be resumed;
//   - the input topic itself (ReplayKafka): a range of offsets or timestamps of every partition
//     or some, in parallel over partitions, with or without publishing. The offsets are those
//     of kafka.input_topic, recorded with the state as the daemon records them, so a replayed
//     state directory is one `rotor serve` continues from, and an interrupted replay resumes
//     exactly where it stopped.

#ifndef ROTOR_PIPELINE_REPLAY_H_
#define ROTOR_PIPELINE_REPLAY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "config/daemon_config.h"
#include "encoders/bundle.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline {

struct ReplayOptions {
  // The partition count of the input topic the events belong to (0: not given). With a count,
  // each line goes to the partition Kafka's Java client gives its user_id (murmur2 % count), as
  // it would in the topic, so each partition's event-time watermark, and with it user state
  // expiry (state.user_ttl_ms), is what the daemon computes. The count is recorded in the state
  // directory (as the daemon does); a directory that recorded another one is refused.
  int32_t partitions = 0;
};

struct ReplayStats {
  int64_t records = 0;
  int64_t events = 0;
  int64_t dead_letters = 0;
  int64_t duplicates = 0;
  int64_t restarted_histories = 0;  // state.user_ttl_ms: events that found their user expired.
  int64_t expired_users = 0;        // Users the expiry sweep deleted.
  // Kafka replay: messages published (0 without publishing), partitions replayed (to their
  // end, or nothing left to do), and those resumed from an offset the store held.
  int64_t published = 0;
  int32_t partitions = 0;
  int32_t resumed_partitions = 0;
  double seconds = 0;
};

// Replays every line of `path` into config.state.dir with `bundle` (the caller loads
// config.model.bundle, so that it names the file in its errors; pipeline.* and state.* apply),
// in micro-batches of pipeline.max_batch_events; resumes after the last line a previous replay
// of the same path committed. With state.user_ttl_ms > 0 the lines must be placed in their
// partitions: options.partitions, else the count the state directory recorded (for
// kafka.input_topic); with neither, InvalidArgument saying to pass --partitions. With
// state.user_ttl_ms 0 and no options.partitions, every line goes to partition 0, as before.
// Opens config.state.dir itself (the config's cache sizes, writes not synced; not created when
// only a recorded partition count could do, as above).
Result<ReplayStats> ReplayFile(const config::DaemonConfig& config, const encoders::Bundle& bundle,
                               const std::string& path, const ReplayOptions& options = {});
// The same into a store the caller opened on config.state.dir (the app's runtime), which stays
// open; it is flushed at the end.
Result<ReplayStats> ReplayFile(const config::DaemonConfig& config, const encoders::Bundle& bundle,
                               storage::UserStateStore& store, const std::string& path,
                               const ReplayOptions& options = {});

// Where a Kafka replay starts or ends in a partition.
struct OffsetSpec {
  enum class Kind : unsigned char {
    kEarliest,   // The log's start (its low watermark).
    kLatest,     // The log's end when the replay is planned (its high watermark).
    kOffset,     // `value`, an offset.
    kTimestamp,  // The first record stamped at or after `value` (ms since the epoch); the log's
                 // end when there is none.
  };
  Kind kind = Kind::kEarliest;
  int64_t value = 0;
};
// "earliest", "latest", an offset ("1500"), or a timestamp: "@" and milliseconds since the
// epoch ("@1767225600000") or an ISO-8601 UTC time ("@2026-01-01T00:00:00Z",
// "@2026-01-01T00:00:00.250Z"). InvalidArgument naming `text` otherwise.
Result<OffsetSpec> ParseOffsetSpec(std::string_view text);
// The canonical text of a spec (what ParseOffsetSpec reads back).
std::string OffsetSpecText(const OffsetSpec& spec);

// Progress of a Kafka replay, as ReplayKafka reports it every progress_interval_ms and once at
// the end.
struct ReplayProgress {
  int32_t partitions = 0;       // Partitions in the plan (with records to replay or not).
  int32_t partitions_done = 0;  // Partitions replayed up to their end.
  int64_t records_total = 0;    // Offsets in the plan's ranges still to replay at the start.
  int64_t records_done = 0;     // Offsets of those passed (records applied, and markers).
  int64_t events = 0;           // Events decoded into state.
  double seconds = 0;           // Since the replay started.
  bool finished = false;        // The last report.
};

// A Kafka replay's request (`rotor replay --kafka`). Start and end offsets per partition: the
// partition's own spec when given, else the one for all.
struct KafkaReplayOptions {
  std::vector<int32_t> partitions;  // Of kafka.input_topic; empty: every partition.
  OffsetSpec start{.kind = OffsetSpec::Kind::kEarliest, .value = 0};
  OffsetSpec end{.kind = OffsetSpec::Kind::kLatest, .value = 0};
  std::map<int32_t, OffsetSpec> start_of;
  std::map<int32_t, OffsetSpec> end_of;
  // Whether `end` (or an end_of) was given. When not, a partition an earlier replay was
  // interrupted in ends where that replay planned to (recorded in the state directory), even
  // when the topic grew since; one it finished catches up to `end` (latest).
  bool end_given = false;
  // Publish the outputs (deltas, snapshots, dead letters) to kafka.output_topic and
  // kafka.dead_letter_topic, at least once: a batch's state commits after its messages were
  // delivered (an idempotent producer), so an interruption re-publishes at most the batches
  // that were not committed. false: state only, nothing is produced.
  bool publish = false;
  // Workers, each replaying its share of the partitions with its own consumer and processor
  // (0: one per partition up to the machine's cores).
  int32_t jobs = 0;
  // Called from the replaying thread every progress_interval_ms, and once at the end.
  std::function<void(const ReplayProgress&)> on_progress;
  int64_t progress_interval_ms = 1000;
  // Set from another thread (a signal): every worker commits its current batch and stops;
  // ReplayKafka then returns Aborted, and a rerun resumes.
  const std::atomic<bool>* stop = nullptr;
};

// Replays kafka.input_topic into `store` (opened on config.state.dir by the caller, which
// keeps it open; flushed at the end) with `bundle`, through the daemon's Processor: the same
// records give the same state, byte for byte, as `rotor serve` (records stamped with their
// Kafka timestamps; partitions checked as the daemon checks them).
//
// The plan: each partition's range [start, end) is resolved once against the cluster (its
// watermarks; timestamps through ListOffsets), and the end recorded in the state directory. A
// partition whose offset the store already holds resumes there (its start spec is not used);
// one that has none starts at its spec. Refused (FailedPrecondition, naming the partition):
// a stored offset below the log's start (retention deleted records the state needs); an
// `earliest` start of a partition whose log lost its beginning, unless
// pipeline.allow_history_gaps or an explicit start; an offset outside the log. Memory is
// bounded by the config as the daemon's is (pipeline.max_batch_events and max_inflight_bytes
// per batch, state.window_cache_bytes shared by the workers, the consumer's fetch queue).
// With more than one job and state.user_ttl_ms > 0, the expiry sweep is off (every worker
// would sweep every user); expiry itself is applied as always, and a later `rotor serve`
// sweeps.
Result<ReplayStats> ReplayKafka(const config::DaemonConfig& config, const encoders::Bundle& bundle,
                                storage::UserStateStore& store, const KafkaReplayOptions& options);

}  // namespace rotor::pipeline

#endif  // ROTOR_PIPELINE_REPLAY_H_
