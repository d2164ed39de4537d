// Replay: rebuilds state from a JSON-lines event file without Kafka, through the same
// Processor the daemon uses (DESIGN section 5, backfills and model upgrades). Nothing is
// published; the file's line numbers are recorded as offsets of the pseudo-topic
// "file:<path>" partition 0, so a replay can be resumed.

#ifndef ROTOR_PIPELINE_REPLAY_H_
#define ROTOR_PIPELINE_REPLAY_H_

#include <cstdint>
#include <string>

#include "common/status.h"
#include "config/daemon_config.h"
#include "encoders/bundle.h"

namespace rotor::pipeline {

struct ReplayStats {
  int64_t records = 0;
  int64_t events = 0;
  int64_t dead_letters = 0;
  int64_t duplicates = 0;
  double seconds = 0;
};

// Replays every line of `path` into config.state.dir with `bundle` (the caller loads
// config.model.bundle, so that it names the file in its errors; pipeline.* and state.* apply),
// in micro-batches of pipeline.max_batch_events; resumes after the last line a previous replay
// of the same path committed.
Result<ReplayStats> ReplayFile(const config::DaemonConfig& config, const encoders::Bundle& bundle,
                               const std::string& path);

}  // namespace rotor::pipeline

#endif  // ROTOR_PIPELINE_REPLAY_H_
