// Delivery: the output side of `rotor serve` (DESIGN section 5). It owns the producer
// (idempotent, or transactional in exactly-once mode) and the one ledger of batches in flight:
// it produces each processed batch's messages, reads the delivery reports, classifies failures
// (ClassifyDeliveryError: transient ones are redone, permanent ones stop serving), purges the
// messages of abandoned batches, and runs the transactions (begin, send the group's offsets,
// commit, abort; with their timeouts). It knows nothing of the input side: a failed batch is
// reported to the caller, which abandons it and rewinds the consumer.

#ifndef ROTOR_PIPELINE_INTERNAL_DELIVERY_H_
#define ROTOR_PIPELINE_INTERNAL_DELIVERY_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/topic_partition.h"
#include "config/daemon_config.h"
#include "pipeline/internal/rdkafka_util.h"
#include "pipeline/internal/run_control.h"
#include "pipeline/internal/store_writer.h"
#include "pipeline/processor.h"

namespace rotor::pipeline::internal {

// A processed batch whose outputs were handed to the producer and whose state is not yet
// committed to RocksDB. Batches commit in order, each once its deliveries are confirmed
// (at-least-once) or the transaction holding it committed (exactly-once).
struct InFlight {
  PendingBatch batch;
  // The group's offsets to commit for it (the consumer's choice: assigned partitions that move
  // forward): with its transaction, or after its state (at-least-once, informational).
  PartitionOffsets group_offsets;
  int64_t records = 0;
  int64_t outstanding = 0;  // Messages produced and not yet reported on.
  int64_t bytes = 0;        // Its WriteBatch's (its outputs are freed once produced).
  bool failed = false;      // A message failed (or could not be produced).
  bool confirmed = false;   // Delivered (or its transaction committed): its state may commit.
  bool submitted = false;   // Handed to the writer.
};

// InFlightLedger: the batches a Processor has in flight, oldest first, with their delivery and
// commit progress. It is the Processor's in-flight queue seen from the Kafka side, and the one
// place the two are kept in step: every batch Processor::Process makes is Added here, in the
// order made (asserted: sequence numbers consecutive, and the Processor counting exactly one
// more batch than the ledger), and a batch leaves only from the front, through
// FinishCommitted (which hands it to Processor::Finish) or AbandonAll (Processor::Abandon, which
// drops every later batch too). Processor::in_flight() equals size() after every call
// (asserted).
//
// Lifecycle: borrows the Processor, which outlives it. A StoreWriter given to SubmitConfirmed
// holds pointers into the ledger's batches until it committed them: destroy (or Wait on) the
// writer first.
// Concurrency: single-threaded (the serving thread; delivery reports are served there too).
// Limitations: a batch that Process made but that never reached Add (Process failed) leaves the
// two out of step; the Processor must then only be destroyed, as its contract says.
class InFlightLedger {
 public:
  explicit InFlightLedger(Processor& processor) : processor_(processor) {}

  // Takes the batch Processor::Process made last.
  InFlight& Add(PendingBatch&& batch, PartitionOffsets group_offsets, int64_t records);
  // The batch in flight with this sequence number; null when it is no longer in flight (it was
  // abandoned, or its report came after a rewind).
  InFlight* Find(uint64_t seq);
  const InFlight* Find(uint64_t seq) const;
  // A delivery report on one message of batch `seq`: one fewer outstanding, and the batch
  // failed unless `delivered`. False when the batch is no longer in flight.
  bool Report(uint64_t seq, bool delivered);
  // At-least-once: confirms, oldest first, the batches whose messages were all delivered, up to
  // the first one still waiting for reports or failed (failpoint `delivery.after_confirm`
  // before each). Whether it stopped at a failed batch.
  bool ConfirmDelivered();
  // Exactly-once: confirms every batch (the transaction holding them committed).
  void ConfirmAll();
  // The open transaction's share: the group offsets of the batches not yet confirmed, merged
  // (the highest per partition), and whether one of those batches failed.
  PartitionOffsets UnconfirmedOffsets(bool& failed) const;
  // Hands the confirmed batches not yet handed over to `writer`, in order.
  void SubmitConfirmed(StoreWriter& writer);
  // Finishes, oldest first, the submitted batches the writer committed (sequence number up to
  // `committed`): `finished` sees each, then Processor::Finish takes its batch. How many.
  int64_t FinishCommitted(uint64_t committed, const std::function<void(const InFlight&)>& finished);
  // Drops every batch (Processor::Abandon of the oldest forgets them all).
  struct Dropped {
    int64_t batches = 0;
    int64_t records = 0;
  };
  Dropped AbandonAll();

  bool empty() const { return entries_.empty(); }
  // Input records the batches in flight were made from.
  int64_t records() const;
  std::size_t size() const { return entries_.size(); }
  const InFlight& back() const { return entries_.back(); }
  // Memory held for the batches in flight: their users' windows (Processor::held_bytes) and
  // their WriteBatches.
  int64_t held_bytes() const;

 private:
  void CheckInStep() const;

  Processor& processor_;
  std::deque<InFlight> entries_;  // Oldest first; sequence numbers consecutive.
  uint64_t last_seq_ = 0;         // The last batch Added (0: none yet).
};

// Where the loop's outputs go, with the ledger of batches in flight (delivery.h).
class OutputSink {
 public:
  virtual ~OutputSink() = default;
  // Transactional (exactly-once): batches are confirmed by CommitTransaction, not by their
  // delivery reports.
  virtual bool transactional() const = 0;
  virtual Status Dispatch(PendingBatch&& batch, PartitionOffsets group_offsets,
                          int64_t records) = 0;
  virtual void Poll(int timeout_ms) = 0;
  virtual Result<bool> ConfirmDelivered() = 0;
  virtual Status CommitTransaction(const rd_kafka_consumer_group_metadata_t* group) = 0;
  virtual bool transaction_open() const = 0;
  virtual SteadyClock::time_point transaction_began() const = 0;
  virtual int64_t transactions() const = 0;
  virtual InFlightLedger::Dropped AbandonInFlight() = 0;
  virtual void DropAfterFailure() = 0;
  virtual void Flush(int max_ms) = 0;
  virtual InFlightLedger& ledger() = 0;
  virtual const InFlightLedger& ledger() const = 0;
};

// Lifecycle: Create makes the producer (nothing is sent yet); InitTransactions (exactly-once)
// before the first Dispatch. Destruction destroys the producer, dropping what is still queued:
// Flush first. Borrows the Processor, the ShutdownClock and the FailureLatch, which outlive it.
// Concurrency: one thread (the daemon's serving thread); the delivery reports and error events
// are served by Poll and the calls that poll the producer, on that thread.
// Limitations: one transaction at a time; a failed abort is not retried (the broker aborts the
// transaction on its timeout, or a restart fences it).
class Delivery final : public OutputSink {
 public:
  // `bootstrap` is the cluster's address (the embedded one or kafka.bootstrap_servers);
  // `transactional_id` is used in exactly-once mode (delivery.mode) only.
  static Result<std::unique_ptr<Delivery>> Create(const config::DaemonConfig& config,
                                                  const std::string& bootstrap,
                                                  const std::string& transactional_id,
                                                  Processor& processor, ShutdownClock& shutdown,
                                                  FailureLatch& failure);
  ~Delivery() override;
  Delivery(const Delivery&) = delete;
  Delivery& operator=(const Delivery&) = delete;

  // Start-up. The producer's message.max.bytes.
  Result<int64_t> MessageMaxBytes() const;
  // Start-up: every message `processor` can make (a snapshot of a full window of `window`
  // rows, a dead letter, a changelog record) fits message.max.bytes; one that does not would be
  // refused by librdkafka and its batch could never be delivered. InvalidArgument naming the
  // settings otherwise.
  Status CheckMessageSizes(const Processor& processor, const config::DaemonConfig& config,
                           int64_t window) const;
  // Exactly-once: fences any zombie with the same transactional.id and aborts its open
  // transaction.
  Status InitTransactions();
  // Every topic the cluster's metadata lists, through the producer (which so learns the
  // output topics' leaders before the first batch); Unavailable when no broker answered in
  // `timeout_ms`.
  Result<std::map<std::string, TopicMetadata, std::less<>>> ReadTopics(int timeout_ms);

  // Adds a processed batch to the ledger and hands its messages to the producer (in
  // exactly-once mode inside the open transaction, beginning one if needed). Its state commits
  // later, once it is confirmed. A message the producer refused for good fails the latch and
  // returns its failure; a transient refusal only fails the batch.
  Status Dispatch(PendingBatch&& batch, PartitionOffsets group_offsets, int64_t records) override;
  // Serves delivery reports for up to `timeout_ms`.
  void Poll(int timeout_ms) override;
  // At-least-once: serves delivery reports and confirms the delivered batches in order. True
  // when the oldest unconfirmed batch failed: the caller abandons the batches in flight and
  // rewinds. The latched failure, if any.
  Result<bool> ConfirmDelivered() override;
  // Exactly-once: commits the open transaction with the merged group offsets of its batches
  // (`group` is the consumer's group metadata, which fences a zombie member) and confirms them.
  // OK also when no transaction is open. Aborted when the transaction had to be aborted (a
  // message failed, or an abortable error): it is no longer open whatever the abort's outcome,
  // a failed abort fails the latch, and the caller abandons the batches and rewinds. Any other
  // error fails the latch (the producer is unusable). Never commits once the latch failed.
  Status CommitTransaction(const rd_kafka_consumer_group_metadata_t* group) override;
  bool transactional() const override { return options_.exactly_once; }
  bool transaction_open() const override { return transaction_open_; }
  SteadyClock::time_point transaction_began() const override { return transaction_began_; }
  int64_t transactions() const override { return transactions_; }

  // Drops every batch in flight (the caller committed the confirmed ones first), then drops
  // their messages still queued in librdkafka and waits for the reports of those already sent,
  // so that none reaches the broker after the batches' redo (which would put an older copy of a
  // row after a newer one). Gives up waiting when asked to stop (the redo then never comes).
  InFlightLedger::Dropped AbandonInFlight() override;
  // After serving failed: aborts an open transaction, drops every batch in flight and purges
  // every message (queued and in flight), so nothing unconfirmed can commit.
  void DropAfterFailure() override;
  // Waits up to `max_ms` for what is still queued (messages of dropped batches at most).
  void Flush(int max_ms) override;

  InFlightLedger& ledger() override { return ledger_; }
  const InFlightLedger& ledger() const override { return ledger_; }

 private:
  struct Options {
    std::string output_topic;
    std::string dead_letter_topic;
    std::string changelog_topic;
    bool exactly_once = false;
    int64_t transaction_timeout_ms = 0;
  };
  Delivery(Options options, Processor& processor, ShutdownClock& shutdown, FailureLatch& failure);

  static void DeliveryReport(rd_kafka_t* rk, const rd_kafka_message_t* m, void* opaque);
  static void OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque);
  const std::string& TopicOf(const OutputRecord& out) const;
  rd_kafka_resp_err_t Produce(const OutputRecord& out, uint64_t seq) const;
  template <class F>
  Status TransactionCall(F call, std::string_view what);

  Options options_;
  ShutdownClock& shutdown_;
  FailureLatch& failure_;
  InFlightLedger ledger_;
  bool transaction_open_ = false;
  SteadyClock::time_point transaction_began_{};
  int64_t transactions_ = 0;  // Committed.
  int64_t delivery_failures_ = 0;
  rd_kafka_resp_err_t last_delivery_error_ = RD_KAFKA_RESP_ERR_NO_ERROR;
  HandlePtr producer_;  // Last: destroyed first, while the ledger its reports name still lives.
};

}  // namespace rotor::pipeline::internal

#endif  // ROTOR_PIPELINE_INTERNAL_DELIVERY_H_
