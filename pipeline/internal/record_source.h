// RecordSource: where the serving loop's input comes from (serve_loop.h): the consumer group
// (GroupConsumer) or offset ranges of the input topic (a replay's RangeSource).

#ifndef ROTOR_PIPELINE_INTERNAL_RECORD_SOURCE_H_
#define ROTOR_PIPELINE_INTERNAL_RECORD_SOURCE_H_

#include <vector>

#include "common/status.h"
#include "common/topic_partition.h"
#include "pipeline/internal/rdkafka_util.h"
#include "pipeline/internal/run_control.h"
#include "pipeline/processor.h"

namespace rotor::pipeline::internal {

// Where the loop's input comes from: Kafka messages, admitted as records. Single-threaded:
// the loop's thread calls everything.
class RecordSource {
 public:
  virtual ~RecordSource() = default;
  // One message or event (null when none came within `timeout_ms`).
  virtual MessagePtr Poll(int timeout_ms) = 0;
  // A message with an error set (an event: the end of a partition, a position out of range):
  // the source handles it; an error stops the loop. Messages of the fill in progress are not
  // admitted yet: what the event ends takes effect at the next Admit.
  virtual Status OnEvent(const rd_kafka_message_t& event) = 0;
  // The records to process from consumed `messages` (views into them), in order: the source
  // drops what is not (or no longer) to be applied and marks what is not to be published.
  // Called after every fill, an empty one too.
  virtual void Admit(const std::vector<MessagePtr>& messages,
                     std::vector<InputRecord>& records) = 0;
  // The consumer group's offsets to commit with `batch` (sent in its transaction, or committed
  // after its state): empty for a source without a group.
  virtual PartitionOffsets GroupOffsets(const PendingBatch& batch) const = 0;
  // At-least-once: `offsets` (a batch's GroupOffsets) are committed to the store.
  virtual void CommitAsync(const PartitionOffsets& offsets) = 0;
  // The group's metadata for a transaction (null without a group).
  virtual GroupMetadataPtr GroupMetadata() const = 0;
  // The first error the source hit outside a call (a rebalance callback's): the loop stops.
  virtual Status error() const = 0;
  // Batches were abandoned behind the loop's back (a revoke): Rewind before polling more.
  virtual bool rewind_pending() const = 0;
  // Goes back to what the store holds: every record after the last committed batch is read
  // again.
  virtual Status Rewind() = 0;
  // Nothing more will come (a range replayed to its end); never for a consumer group.
  virtual bool Exhausted() const = 0;
  // For the idle exit: whether partitions are assigned, every one consumed to its end, and
  // when the assignment last changed.
  virtual bool has_assignment() const = 0;
  virtual bool CaughtUp() const = 0;
  virtual SteadyClock::time_point last_assigned() const = 0;
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_RECORD_SOURCE_H_
