// Replay: rebuilds state from a JSON-lines event file without Kafka, through the same
// Processor the daemon uses (DESIGN section 5, backfills and model upgrades). Nothing is
// published; the file's line numbers are recorded as offsets of the pseudo-topic
// "file:<path>" (partition 0, or with a partition count, the partition of each line's user),
// so a replay can be resumed.

#ifndef ROTOR_PIPELINE_REPLAY_H_
#define ROTOR_PIPELINE_REPLAY_H_

#include <cstdint>
#include <string>

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

}  // namespace rotor::pipeline

#endif  // ROTOR_PIPELINE_REPLAY_H_
