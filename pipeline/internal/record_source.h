// RecordSource: where the serving loop's input comes from (serve_loop.h): the consumer group
// (GroupConsumer), offset ranges of the input topic (a replay's RangeSource), or the lines of
// a JSON-lines file (a file replay's FileSource).

#ifndef ROTOR_PIPELINE_INTERNAL_RECORD_SOURCE_H_
#define ROTOR_PIPELINE_INTERNAL_RECORD_SOURCE_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/topic_partition.h"
#include "pipeline/internal/rdkafka_util.h"
#include "pipeline/internal/run_control.h"
#include "pipeline/processor.h"

namespace rotor::pipeline::internal {

// One thing a source polled: a Kafka message (a record, or an event when its err is set), or
// a record of a source that is not Kafka (a file's line), which the source makes when polled.
// It owns the bytes its record's views point into until the loop is done with the batch.
struct Polled {
  struct Line {
    std::string text;
    std::optional<std::string> key;  // The line's user_id; nullopt: none found.
  };
  MessagePtr message;
  std::unique_ptr<Line> line;  // With `record`, whose key and value point into it.
  InputRecord record;

  bool empty() const { return message == nullptr && line == nullptr; }
  // An event (a Kafka message with its err set).
  bool event() const { return message != nullptr && message->err != RD_KAFKA_RESP_ERR_NO_ERROR; }
  // The record's key as the fill counts distinct users ("" when it has none).
  std::string_view key() const;
};

// Where the loop's input comes from: Kafka messages, admitted as records. Single-threaded:
// the loop's thread calls everything.
class RecordSource {
 public:
  virtual ~RecordSource() = default;
  // One message, event or record (empty when none came within `timeout_ms`).
  virtual Polled Poll(int timeout_ms) = 0;
  // A message with an error set (an event: the end of a partition, a position out of range):
  // the source handles it; an error stops the loop. Messages of the fill in progress are not
  // admitted yet: what the event ends takes effect at the next Admit.
  virtual Status OnEvent(const rd_kafka_message_t& event) = 0;
  // The records to process from consumed `messages` (views into them), in order: the source
  // drops what is not (or no longer) to be applied and marks what is not to be published.
  // Called after every fill, an empty one too.
  virtual void Admit(const std::vector<Polled>& polled, std::vector<InputRecord>& records) = 0;
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

// What a source without a consumer group (a replay's) answers for the group's parts: no group
// offsets or metadata, no error or rewind from outside, always "assigned".
class GrouplessSource : public RecordSource {
 public:
  PartitionOffsets GroupOffsets(const PendingBatch& /*batch*/) const override { return {}; }
  void CommitAsync(const PartitionOffsets& /*offsets*/) override {}
  GroupMetadataPtr GroupMetadata() const override { return nullptr; }
  Status error() const override { return Status::OK(); }
  bool rewind_pending() const override { return false; }
  bool has_assignment() const override { return true; }
  SteadyClock::time_point last_assigned() const override { return {}; }
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_RECORD_SOURCE_H_
