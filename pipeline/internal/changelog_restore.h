// Restoring one input partition's state from the state changelog (docs/daemon.md, "State
// changelog"): a partition assigned with no local state reads its changelog partition instead
// of replaying the input, then resumes the input where the restored state ends.
//
// What is restored: the records after the partition's last base record (the start of the
// history the state holds), up to the last marker whose next offset is within `limit` (the
// group's committed offset: records past it may belong to batches whose outputs were never
// confirmed, and their input is re-applied instead). That marker is found from the end
// backwards (in exactly-once mode, under read_committed, the last marker is within the limit:
// one chunk); then one forward pass applies the rows and users, committing every
// `commit_records` records without RocksDB's write-ahead log (a bulk load), flushes them, and
// commits the marker's offset and watermark last, logged. A base met after
// changes were applied (a history restarted after a fallback) deletes what was applied of the
// older one. A restore interrupted by a crash leaves users of the partition without its
// offset: the next assignment restores again over them (every record is a put or a delete of
// one key, so applying it twice changes nothing).
//
// Open transactions: read_committed stops at the partition's last stable offset, so a
// transaction still open on the changelog partition (a previous owner killed inside one, until
// the broker aborts it on its transaction timeout) would hide everything committed after its
// first record, and the restore would end at an older state than the group's offsets. So when
// the last stable marker within the limit is short of it, the restore waits for every
// transaction open then to end (up to delivery.transaction_timeout_ms plus a minute; past that
// it restores what is stable) and looks again. A stable marker at the limit itself needs no
// wait: the state there is what the group committed, whatever the open transaction holds.
//
// Concurrency: runs on the caller's thread (the consumer's assign callback); writes only the
// partition's users, offset and watermark through its own batches.

#ifndef ROTOR_PIPELINE_INTERNAL_CHANGELOG_RESTORE_H_
#define ROTOR_PIPELINE_INTERNAL_CHANGELOG_RESTORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/status.h"
#include "config/daemon_config.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline::internal {

struct RestoreResult {
  // The input offset the restored state resumes at; nullopt when nothing was restored (an empty
  // changelog partition, no base, or no marker within the limit after it: the state is empty).
  std::optional<int64_t> next_offset;
  bool based = false;           // The changelog partition has a base record.
  int64_t records = 0;          // Changelog records applied.
  int64_t changelog_bytes = 0;  // Their keys and values.
  double seconds = 0;
};

// Progress of the second pass: records applied so far, and the records it will apply.
using RestoreProgress = std::function<void(int64_t done, int64_t total)>;

// Restores input partition `partition` of config.kafka.input_topic from partition `partition`
// of config.kafka.changelog_topic on `bootstrap`, into `store`. `limit`: the group's
// committed offset of the input partition (< 0: none, and nothing is restored). Unavailable
// when the changelog cannot be read within kafka.connect_timeout_ms; Corruption for a record
// that does not decode (naming its offset).
Result<RestoreResult> RestoreFromChangelog(const config::DaemonConfig& config,
                                           const std::string& bootstrap, int32_t partition,
                                           int64_t limit, storage::UserStateStore& store,
                                           const RestoreProgress& progress = {},
                                           int64_t commit_records = 16384);

// Deletes the local state of input partition `partition` of `topic` (its users: those the
// Java-client partitioner puts there over `partitions` partitions; its offset and watermark),
// committed, so a restore rebuilds it from nothing. Users held elsewhere (the processor's cache)
// are the caller's: the partition must not be assigned to the processor meanwhile.
Status DropPartitionState(storage::UserStateStore& store, const std::string& topic,
                          int32_t partition, int32_t partitions);

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_CHANGELOG_RESTORE_H_
