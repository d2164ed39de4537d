#include "pipeline/internal/delivery.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/failpoint.h"

namespace rotor::pipeline::internal {
namespace {

// Why a message could never be delivered, and what to change.
Status PermanentDeliveryFailure(rd_kafka_resp_err_t err, std::string_view topic,
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

}  // namespace

// --- InFlightLedger ---

InFlight& InFlightLedger::Add(PendingBatch&& batch, PartitionOffsets group_offsets,
                              int64_t records) {
  // The batch Process made last, and the Processor holds no batch the ledger does not.
  assert(batch.seq == last_seq_ + 1);
  assert(processor_.in_flight() == entries_.size() + 1);
  last_seq_ = batch.seq;
  InFlight& added = entries_.emplace_back(InFlight{.batch = std::move(batch),
                                                   .group_offsets = std::move(group_offsets),
                                                   .records = records,
                                                   .outstanding = 0,
                                                   .bytes = 0,
                                                   .failed = false,
                                                   .confirmed = false,
                                                   .submitted = false});
  CheckInStep();
  return added;
}

InFlight* InFlightLedger::Find(uint64_t seq) {
  return const_cast<InFlight*>(std::as_const(*this).Find(seq));
}

const InFlight* InFlightLedger::Find(uint64_t seq) const {
  if (entries_.empty() || seq < entries_.front().batch.seq) {
    return nullptr;
  }
  const uint64_t index = seq - entries_.front().batch.seq;
  return index < entries_.size() ? &entries_[index] : nullptr;
}

bool InFlightLedger::Report(uint64_t seq, bool delivered) {
  InFlight* batch = Find(seq);
  if (batch == nullptr) {
    return false;
  }
  --batch->outstanding;
  if (!delivered) {
    batch->failed = true;
  }
  return true;
}

bool InFlightLedger::ConfirmDelivered() {
  for (InFlight& b : entries_) {
    if (b.confirmed) {
      continue;
    }
    if (b.outstanding > 0) {
      return false;
    }
    if (b.failed) {
      return true;
    }
    ROTOR_FAILPOINT("delivery.after_confirm");  // Delivered; its state not yet committed.
    b.confirmed = true;
  }
  return false;
}

void InFlightLedger::ConfirmAll() {
  for (InFlight& b : entries_) {
    b.confirmed = true;
  }
}

PartitionOffsets InFlightLedger::UnconfirmedOffsets(bool& failed) const {
  PartitionOffsets merged;
  failed = false;
  for (const InFlight& b : entries_) {
    if (b.confirmed) {
      continue;  // Of an earlier transaction, waiting for the writer.
    }
    failed = failed || b.failed;
    for (const auto& [tp, offset] : b.group_offsets) {
      int64_t& next = merged[tp];
      next = std::max(next, offset);
    }
  }
  return merged;
}

void InFlightLedger::SubmitConfirmed(StoreWriter& writer) {
  for (InFlight& b : entries_) {
    if (!b.submitted) {
      if (!b.confirmed) {
        break;
      }
      writer.Submit(b.batch.seq, &b.batch.state);
      b.submitted = true;
    }
  }
}

int64_t InFlightLedger::FinishCommitted(uint64_t committed,
                                        const std::function<void(const InFlight&)>& finished) {
  int64_t n = 0;
  while (!entries_.empty() && entries_.front().submitted &&
         entries_.front().batch.seq <= committed) {
    InFlight& front = entries_.front();
    finished(front);
    processor_.Finish(std::move(front.batch));
    entries_.pop_front();
    ++n;
    CheckInStep();
  }
  return n;
}

InFlightLedger::Dropped InFlightLedger::AbandonAll() {
  Dropped dropped;
  if (entries_.empty()) {
    return dropped;
  }
  dropped.batches = static_cast<int64_t>(entries_.size());
  dropped.records = records();
  processor_.Abandon(std::move(entries_.front().batch));
  entries_.clear();
  CheckInStep();
  return dropped;
}

int64_t InFlightLedger::records() const {
  int64_t n = 0;
  for (const InFlight& b : entries_) {
    n += b.records;
  }
  return n;
}

int64_t InFlightLedger::held_bytes() const {
  int64_t bytes = processor_.held_bytes();
  for (const InFlight& b : entries_) {
    bytes += b.bytes;
  }
  return bytes;
}

void InFlightLedger::CheckInStep() const {
  assert(processor_.in_flight() == entries_.size());
}

// --- Delivery ---

Delivery::Delivery(Options options, Processor& processor, ShutdownClock& shutdown,
                   FailureLatch& failure)
    : options_(std::move(options)), shutdown_(shutdown), failure_(failure), ledger_(processor) {}

Delivery::~Delivery() = default;

Result<std::unique_ptr<Delivery>> Delivery::Create(const config::DaemonConfig& config,
                                                   const std::string& bootstrap,
                                                   const std::string& transactional_id,
                                                   Processor& processor, ShutdownClock& shutdown,
                                                   FailureLatch& failure) {
  const config::KafkaOptions& k = config.kafka;
  const bool exactly_once = config.delivery.mode == config::DeliveryMode::kExactlyOnce;
  std::unique_ptr<Delivery> d(
      new Delivery(Options{.output_topic = k.output_topic,
                           .dead_letter_topic = k.dead_letter_topic,
                           .changelog_topic = k.changelog_topic,
                           .exactly_once = exactly_once,
                           .transaction_timeout_ms = config.delivery.transaction_timeout_ms},
                   processor, shutdown, failure));
  ConfPtr conf(rd_kafka_conf_new());
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "bootstrap.servers", bootstrap));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "client.id", k.client_id));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "enable.idempotence", "true"));
  // Outputs are keyed by user like the input: placed the same way (the Java client's rule).
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "partitioner", "murmur2_random"));
  // Defaults that kafka.producer_properties may override: a short linger (latency), and a
  // bounded send queue (librdkafka's default allows 1 GiB; docs/configuration.md, Memory).
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "linger.ms", "2"));
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "queue.buffering.max.kbytes", "65536"));
  if (exactly_once) {
    ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "transactional.id", transactional_id));
    ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), "transaction.timeout.ms",
                                  std::to_string(config.delivery.transaction_timeout_ms)));
  }
  ROTOR_RETURN_IF_ERROR(SetConf(conf.get(), k.producer_properties));
  rd_kafka_conf_set_dr_msg_cb(conf.get(), DeliveryReport);
  rd_kafka_conf_set_log_cb(conf.get(), LogCallback);
  rd_kafka_conf_set_error_cb(conf.get(), OnError);
  rd_kafka_conf_set_opaque(conf.get(), d.get());
  ROTOR_ASSIGN_OR_RETURN(d->producer_, NewHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  return d;
}

Status Delivery::CheckMessageSizes(const Processor& processor, const config::DaemonConfig& config,
                                   int64_t window) const {
  ROTOR_ASSIGN_OR_RETURN(const int64_t limit, MessageMaxBytes());
  ROTOR_ASSIGN_OR_RETURN(const int64_t largest,
                         processor.LargestMessageBytes(config.kafka.input_topic));
  if (largest > limit) {
    return Status::InvalidArgument(
        "the largest message rotor may produce is {} bytes (a snapshot of a full {}-row window "
        "in output.dtype {}, or a dead letter of up to pipeline.max_message_bytes = {}), over "
        "the producer's message.max.bytes = {}: raise kafka.producer_properties "
        "message.max.bytes (and the topics' max.message.bytes), or lower the others",
        largest, window, config::OutputDtypeName(config.output.dtype),
        config.pipeline.max_message_bytes, limit);
  }
  return Status::OK();
}

Result<int64_t> Delivery::MessageMaxBytes() const {
  std::array<char, 32> value{};
  std::size_t size = value.size();
  if (rd_kafka_conf_get(rd_kafka_conf(producer_.get()), "message.max.bytes", value.data(), &size) !=
      RD_KAFKA_CONF_OK) {
    return Status::Internal("reading the producer's message.max.bytes");
  }
  return static_cast<int64_t>(std::strtoll(value.data(), nullptr, 10));
}

Status Delivery::InitTransactions() {
  return FromKafkaError(rd_kafka_init_transactions(producer_.get(), 60000), "init_transactions");
}

Result<std::map<std::string, TopicMetadata, std::less<>>> Delivery::ReadTopics(int timeout_ms) {
  return ReadTopicMetadata(producer_.get(), timeout_ms);
}

// Served on the serving thread (rd_kafka_poll and rd_kafka_flush on the producer).
void Delivery::DeliveryReport(rd_kafka_t* /*rk*/, const rd_kafka_message_t* m, void* opaque) {
  auto* self = static_cast<Delivery*>(opaque);
  // The batch's sequence number travels as the message's opaque, not as a pointer.
  self->ledger_.Report(reinterpret_cast<uintptr_t>(m->_private),
                       m->err == RD_KAFKA_RESP_ERR_NO_ERROR);
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    const std::string topic = rd_kafka_topic_name(m->rkt);
    if (self->delivery_failures_++ == 0 || m->err != self->last_delivery_error_) {
      spdlog::warn("delivery to '{}' failed: {}", topic, rd_kafka_err2str(m->err));
    }
    self->last_delivery_error_ = m->err;
    if (ClassifyDeliveryError(m->err) == DeliveryError::kPermanent) {
      self->failure_.Fail(PermanentDeliveryFailure(m->err, topic, m->len));
    }
  }
}

// librdkafka's error events (served by the polls on the serving thread). A fatal one (the
// idempotent producer lost its guarantees, a fenced transactional producer) stops serving; the
// rest are logged while librdkafka retries.
void Delivery::OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  if (auto fatal = FatalClientError(rk, err, reason)) {
    static_cast<Delivery*>(opaque)->failure_.Fail(std::move(*fatal));
  }
}

const std::string& Delivery::TopicOf(const OutputRecord& out) const {
  switch (out.topic) {
    case OutputRecord::Topic::kOutput:
      return options_.output_topic;
    case OutputRecord::Topic::kDeadLetter:
      return options_.dead_letter_topic;
    case OutputRecord::Topic::kChangelog:
      return options_.changelog_topic;
  }
  return options_.output_topic;
}

// Produces one message, waiting while librdkafka's queue is full.
rd_kafka_resp_err_t Delivery::Produce(const OutputRecord& out, uint64_t seq) const {
  const std::string& topic = TopicOf(out);
  rd_kafka_headers_t* headers = nullptr;
  if (!out.headers.empty()) {
    headers = rd_kafka_headers_new(out.headers.size());
    for (const auto& [name, value] : out.headers) {
      rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                          static_cast<ssize_t>(value.size()));
    }
  }
  return ProduceCopy(producer_.get(), topic, out.key ? out.key->data() : nullptr,
                     out.key ? out.key->size() : 0, out.null_value ? nullptr : out.value.data(),
                     out.null_value ? 0 : out.value.size(), headers,
                     reinterpret_cast<void*>(  // NOLINT(performance-no-int-to-ptr)
                         static_cast<uintptr_t>(seq)),
                     shutdown_.flag(), out.partition);
}

Status Delivery::Dispatch(PendingBatch&& batch, PartitionOffsets group_offsets, int64_t records) {
  InFlight& dispatched = ledger_.Add(std::move(batch), std::move(group_offsets), records);
  if (options_.exactly_once && !transaction_open_) {
    Status began = FromKafkaError(rd_kafka_begin_transaction(producer_.get()), "begin_transaction");
    if (!began.ok()) {
      dispatched.failed = true;
      return began;
    }
    transaction_open_ = true;
    transaction_began_ = SteadyClock::now();
  }
  // Reports may arrive while producing (ProduceCopy serves them when the queue is full), so
  // the batch is counted in flight message by message.
  for (const OutputRecord& out : dispatched.batch.outputs) {
    ++dispatched.outstanding;
    const rd_kafka_resp_err_t err = Produce(out, dispatched.batch.seq);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // The batch can no longer be confirmed: it is redone, or (permanent) serving stops.
      --dispatched.outstanding;
      dispatched.failed = true;
      const std::string_view topic = TopicOf(out);
      if (ClassifyDeliveryError(err) == DeliveryError::kPermanent) {
        failure_.Fail(PermanentDeliveryFailure(err, topic, out.value.size()));
        return failure_.status();
      }
      spdlog::warn("producing to '{}': {}", topic, rd_kafka_err2str(err));
      break;
    }
  }
  // librdkafka copied them (its send queue is bounded by queue.buffering.max.kbytes); a redo
  // makes them again from the input.
  std::vector<OutputRecord>().swap(dispatched.batch.outputs);
  dispatched.bytes = dispatched.batch.state.ApproximateBytes();
  return Status::OK();
}

void Delivery::Poll(int timeout_ms) {
  rd_kafka_poll(producer_.get(), timeout_ms);
}

Result<bool> Delivery::ConfirmDelivered() {
  rd_kafka_poll(producer_.get(), 0);
  ROTOR_RETURN_IF_ERROR(failure_.status());
  return ledger_.ConfirmDelivered();
}

Status Delivery::CommitTransaction(const rd_kafka_consumer_group_metadata_t* group) {
  if (!transaction_open_) {
    return Status::OK();
  }
  bool failed = false;
  const PartitionOffsets merged = ledger_.UnconfirmedOffsets(failed);
  ROTOR_RETURN_IF_ERROR(failure_.status());  // Never commit what a permanent failure touched.
  Status s = failed ? Status::Aborted("a message could not be produced") : Status::OK();
  if (s.ok() && !merged.empty()) {
    const PartitionListPtr offsets = ToPartitionList(merged);
    s = TransactionCall(
        [&] {
          return rd_kafka_send_offsets_to_transaction(producer_.get(), offsets.get(), group,
                                                      shutdown_.CallTimeoutMs());
        },
        "send_offsets_to_transaction");
  }
  if (s.ok()) {
    s = TransactionCall(
        [&] { return rd_kafka_commit_transaction(producer_.get(), shutdown_.CallTimeoutMs()); },
        "commit_transaction");
  }
  if (s.ok()) {
    // Kafka has the outputs and the group's offsets; RocksDB not yet the state.
    ROTOR_FAILPOINT("txn.after_commit");
    transaction_open_ = false;
    ++transactions_;
    ledger_.ConfirmAll();
    return Status::OK();
  }
  if (s.code() != StatusCode::kAborted) {
    failure_.Fail(s);  // The producer is unusable: the caller stops, committing none of it.
    return s;
  }
  spdlog::warn("aborting the transaction: {}", s);
  // Whatever the abort's outcome, this transaction is over for us: a failed abort stops
  // serving, and the broker aborts it on the transaction timeout or when a restart fences it.
  transaction_open_ = false;
  const Status aborted = FromKafkaError(
      rd_kafka_abort_transaction(producer_.get(), shutdown_.CallTimeoutMs()), "abort_transaction");
  if (!aborted.ok()) {
    failure_.Fail(aborted);
  }
  return s;
}

// Runs a transactional call, retrying retriable errors for up to the transaction timeout (the
// broker aborts the transaction after that anyway); Aborted when the transaction must be
// aborted, another error when the producer is unusable.
template <class F>
Status Delivery::TransactionCall(F call, std::string_view what) {
  const auto deadline =
      SteadyClock::now() + std::chrono::milliseconds(options_.transaction_timeout_ms);
  while (true) {
    if (shutdown_.PastDeadline()) {
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

InFlightLedger::Dropped Delivery::AbandonInFlight() {
  const InFlightLedger::Dropped dropped = ledger_.AbandonAll();
  if (dropped.batches == 0) {
    return dropped;
  }
  // In exactly-once mode the abort has purged them already.
  const rd_kafka_resp_err_t purged = rd_kafka_purge(producer_.get(), RD_KAFKA_PURGE_F_QUEUE);
  if (purged != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::warn("purging the abandoned batches' messages: {}", rd_kafka_err2str(purged));
  }
  while (rd_kafka_outq_len(producer_.get()) > 0 && !shutdown_.Stopping()) {
    rd_kafka_poll(producer_.get(), 10);
  }
  return dropped;
}

void Delivery::DropAfterFailure() {
  if (options_.exactly_once && transaction_open_) {
    transaction_open_ = false;
    const Status aborted =
        FromKafkaError(rd_kafka_abort_transaction(producer_.get(), 10000), "abort_transaction");
    if (!aborted.ok()) {
      spdlog::warn("{}", aborted);
    }
  }
  (void)ledger_.AbandonAll();
  rd_kafka_purge(producer_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

void Delivery::Flush(int max_ms) {
  for (int waited_ms = 0; rd_kafka_outq_len(producer_.get()) > 0 && waited_ms < max_ms;
       waited_ms += 100) {
    rd_kafka_flush(producer_.get(), 100);
  }
}

}  // namespace rotor::pipeline::internal
