// The ledger of batches in flight on its own (a real Processor making empty batches, a real
// StoreWriter, no Kafka), and Delivery's transactions against librdkafka's mock cluster with
// errors injected into EndTxn, the request that commits or aborts a transaction.

#include "pipeline/internal/delivery.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include "encoders/bundle.h"
#include "pipeline/internal/testing.h"
#include "pipeline/kafka_tools.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline::internal {
namespace {

using std::chrono::milliseconds;

constexpr int16_t kEndTxn = 26;  // Kafka API key of EndTxn.

// A bundle, a store and a Processor to make batches with.
class BatchSource {
 public:
  BatchSource() {
    auto bundle =
        encoders::Bundle::Load(std::string(ROTOR_GOLDEN_DIR) + "/siren.bundle.safetensors");
    EXPECT_TRUE(bundle.ok()) << bundle.status().ToString();
    bundle_ = std::make_unique<encoders::Bundle>(std::move(bundle).value());
    auto store = storage::UserStateStore::Open(
        {.path = dir_.path(), .sync_writes = false, .create_if_missing = true});
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    config::StateOptions state;
    state.window_cache_bytes = 0;
    auto processor = Processor::Create(*bundle_, *store_, config::PipelineOptions{},
                                       config::OutputOptions{}, state, [] { return int64_t{0}; });
    EXPECT_TRUE(processor.ok()) << processor.status().ToString();
    processor_ = std::move(processor).value();
  }

  // A batch of `records` (none: an empty batch, with no message to produce).
  PendingBatch Next(const std::vector<InputRecord>& records = {}) {
    auto batch = processor_->Process(records);
    EXPECT_TRUE(batch.ok()) << batch.status().ToString();
    return std::move(batch).value();
  }

  // A batch with one message: the dead letter of a record that is not JSON.
  PendingBatch NextWithOneMessage() {
    return Next({InputRecord{.topic = "events",
                             .partition = 0,
                             .offset = next_offset_++,
                             .has_key = true,
                             .key = "user",
                             .value = "{not json"}});
  }

  Processor& processor() { return *processor_; }
  storage::UserStateStore& store() { return *store_; }

 private:
  testing::TempDir dir_{"rotor_delivery_test"};
  std::unique_ptr<encoders::Bundle> bundle_;
  std::unique_ptr<storage::UserStateStore> store_;
  std::unique_ptr<Processor> processor_;
  int64_t next_offset_ = 0;
};

PartitionOffsets At(int32_t partition, int64_t offset) {
  return {{{"events", partition}, offset}};
}

class InFlightLedgerTest : public ::testing::Test {
 protected:
  // Adds a batch whose `messages` messages are all waiting for their delivery reports.
  InFlight& Add(int64_t messages, PartitionOffsets offsets = {}, int64_t records = 1) {
    InFlight& added = ledger_.Add(source_.Next(), std::move(offsets), records);
    added.outstanding = messages;
    return added;
  }

  // Sequence numbers of the confirmed batches, oldest first.
  std::vector<uint64_t> Confirmed() {
    std::vector<uint64_t> seqs;
    for (uint64_t seq = 1; seq <= 16; ++seq) {
      if (const InFlight* b = ledger_.Find(seq); b != nullptr && b->confirmed) {
        seqs.push_back(seq);
      }
    }
    return seqs;
  }

  BatchSource source_;
  InFlightLedger ledger_{source_.processor()};
};

TEST_F(InFlightLedgerTest, BatchesAreConfirmedInOrderUpToTheFirstStillWaiting) {
  Add(1);
  Add(1);
  Add(2);
  EXPECT_FALSE(ledger_.ConfirmDelivered());
  EXPECT_TRUE(Confirmed().empty());
  // The second batch is delivered first: it waits for the first.
  EXPECT_TRUE(ledger_.Report(2, true));
  EXPECT_FALSE(ledger_.ConfirmDelivered());
  EXPECT_TRUE(Confirmed().empty());
  EXPECT_TRUE(ledger_.Report(1, true));
  EXPECT_TRUE(ledger_.Report(3, true));
  EXPECT_FALSE(ledger_.ConfirmDelivered());
  EXPECT_EQ(Confirmed(), (std::vector<uint64_t>{1, 2}));
  EXPECT_TRUE(ledger_.Report(3, true));
  EXPECT_FALSE(ledger_.ConfirmDelivered());
  EXPECT_EQ(Confirmed(), (std::vector<uint64_t>{1, 2, 3}));
}

TEST_F(InFlightLedgerTest, AFailedBatchStopsConfirmationAndIsReported) {
  Add(1);
  Add(1);
  Add(1);
  EXPECT_TRUE(ledger_.Report(1, true));
  EXPECT_TRUE(ledger_.Report(2, false));
  EXPECT_TRUE(ledger_.Report(3, true));
  EXPECT_TRUE(ledger_.ConfirmDelivered()) << "the failed batch was not reported";
  EXPECT_EQ(Confirmed(), (std::vector<uint64_t>{1}))
      << "nothing after a failed batch may be confirmed";
}

TEST_F(InFlightLedgerTest, CommittedBatchesFinishInOrderWithTheProcessorInStep) {
  StoreWriter writer(source_.store());
  Add(0, At(0, 10), 3);
  Add(0, At(0, 20), 4);
  Add(1, At(0, 30), 5);
  ASSERT_FALSE(ledger_.ConfirmDelivered());
  ledger_.SubmitConfirmed(writer);
  ASSERT_TRUE(writer.Wait().ok());
  EXPECT_EQ(writer.committed(), 2U) << "an unconfirmed batch was handed to the writer";
  std::vector<uint64_t> finished;
  std::vector<int64_t> records;
  EXPECT_EQ(ledger_.FinishCommitted(writer.committed(),
                                    [&](const InFlight& b) {
                                      finished.push_back(b.batch.seq);
                                      records.push_back(b.records);
                                      EXPECT_EQ(b.group_offsets,
                                                At(0, 10 * static_cast<int64_t>(b.batch.seq)));
                                    }),
            2);
  EXPECT_EQ(finished, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(records, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(ledger_.size(), 1U);
  EXPECT_EQ(source_.processor().in_flight(), 1U);
  // Nothing more is committed: nothing more finishes.
  EXPECT_EQ(ledger_.FinishCommitted(writer.committed(), [](const InFlight&) {}), 0);
}

TEST_F(InFlightLedgerTest, AbandoningDropsEveryBatchAndTheNextOneFollowsOn) {
  Add(1, {}, 7);
  Add(1, {}, 8);
  const InFlightLedger::Dropped dropped = ledger_.AbandonAll();
  EXPECT_EQ(dropped.batches, 2);
  EXPECT_EQ(dropped.records, 15);
  EXPECT_TRUE(ledger_.empty());
  EXPECT_EQ(source_.processor().in_flight(), 0U);
  // Late reports on the dropped batches change nothing.
  EXPECT_FALSE(ledger_.Report(1, false));
  EXPECT_EQ(ledger_.Find(2), nullptr);
  const InFlight& next = Add(0);
  EXPECT_EQ(next.batch.seq, 3U);
  EXPECT_EQ(ledger_.Find(3), &next);
  EXPECT_EQ(source_.processor().in_flight(), 1U);
}

TEST_F(InFlightLedgerTest, TheOpenTransactionsOffsetsAreTheHighestOfItsBatches) {
  Add(0, At(0, 5));
  ledger_.ConfirmAll();  // An earlier transaction's, waiting for the writer.
  Add(0, {{{"events", 0}, 9}, {{"events", 1}, 4}});
  Add(0, {{{"events", 0}, 12}, {{"other", 0}, 1}});
  bool failed = true;
  EXPECT_EQ(ledger_.UnconfirmedOffsets(failed),
            (PartitionOffsets{{{"events", 0}, 12}, {{"events", 1}, 4}, {{"other", 0}, 1}}));
  EXPECT_FALSE(failed);
  Add(1, At(2, 3));
  EXPECT_TRUE(ledger_.Report(4, false));
  (void)ledger_.UnconfirmedOffsets(failed);
  EXPECT_TRUE(failed);
}

TEST_F(InFlightLedgerTest, HeldBytesCountTheWriteBatchesAndTheProcessorsWindows) {
  InFlight& a = Add(0);
  a.bytes = 100;
  InFlight& b = Add(0);
  b.bytes = 23;
  EXPECT_EQ(ledger_.held_bytes(), source_.processor().held_bytes() + 123);
}

#ifndef NDEBUG
TEST_F(InFlightLedgerTest, ABatchAddedOutOfOrderIsAProgrammerError) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  PendingBatch first = source_.Next();
  PendingBatch second = source_.Next();
  EXPECT_DEATH(ledger_.Add(std::move(second), {}, 1), "seq");
  (void)first;
}
#endif

// Delivery against the mock cluster, in exactly-once mode.
class DeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto kafka = EmbeddedKafka::Start(1);
    ASSERT_TRUE(kafka.ok()) << kafka.status().ToString();
    kafka_ = std::move(kafka).value();
    config_.kafka.output_topic = "rotor.tensors";
    config_.kafka.dead_letter_topic = "rotor.dead-letter";
    for (const std::string& topic : {config_.kafka.output_topic, config_.kafka.dead_letter_topic}) {
      ASSERT_TRUE(kafka_->CreateTopic(topic, 1).ok());
    }
    config_.delivery.mode = config::DeliveryMode::kExactlyOnce;
    config_.delivery.transaction_timeout_ms = 10000;
    auto delivery = Delivery::Create(config_, kafka_->bootstrap_servers(), "rotor-delivery-test",
                                     source_.processor(), shutdown_, failure_);
    ASSERT_TRUE(delivery.ok()) << delivery.status().ToString();
    delivery_ = std::move(delivery).value();
    const Status init = delivery_->InitTransactions();
    ASSERT_TRUE(init.ok()) << init.ToString();
  }

  void TearDown() override { delivery_.reset(); }

  // Dispatches a batch with one message and waits for its delivery report.
  void DispatchOneAndWait() {
    const Status dispatched = delivery_->Dispatch(source_.NextWithOneMessage(), At(0, 1), 1);
    ASSERT_TRUE(dispatched.ok()) << dispatched.ToString();
    ASSERT_TRUE(delivery_->transaction_open());
    for (int i = 0; i < 500 && delivery_->ledger().back().outstanding > 0; ++i) {
      delivery_->Poll(10);
    }
    ASSERT_EQ(delivery_->ledger().back().outstanding, 0) << "no delivery report";
    ASSERT_FALSE(delivery_->ledger().back().failed);
  }

  Status Commit() {
    const GroupMetadataPtr group(rd_kafka_consumer_group_metadata_new("rotor-delivery-test"));
    return delivery_->CommitTransaction(group.get());
  }

  BatchSource source_;
  std::unique_ptr<EmbeddedKafka> kafka_;
  config::DaemonConfig config_;
  ShutdownClock shutdown_{15000};
  FailureLatch failure_;
  std::unique_ptr<Delivery> delivery_;
};

TEST_F(DeliveryTest, ACommittedTransactionConfirmsItsBatches) {
  ASSERT_NO_FATAL_FAILURE(DispatchOneAndWait());
  ASSERT_NO_FATAL_FAILURE(DispatchOneAndWait());
  const Status committed = Commit();
  ASSERT_TRUE(committed.ok()) << committed.ToString();
  EXPECT_FALSE(delivery_->transaction_open());
  EXPECT_EQ(delivery_->transactions(), 1);
  EXPECT_TRUE(delivery_->ledger().back().confirmed);
  EXPECT_TRUE(failure_.status().ok());
}

// The commit fails with an abortable error and the abort succeeds: the transaction is over,
// nothing is latched, and after the batches are abandoned the next batch begins a new one.
TEST_F(DeliveryTest, AnAbortedTransactionIsOverAndTheNextOneBegins) {
  ASSERT_NO_FATAL_FAILURE(DispatchOneAndWait());
  kafka_->PushRequestErrors(kEndTxn, {RD_KAFKA_RESP_ERR_INVALID_REQUEST});
  const Status committed = Commit();
  EXPECT_EQ(committed.code(), StatusCode::kAborted) << committed.ToString();
  EXPECT_FALSE(delivery_->transaction_open());
  EXPECT_TRUE(failure_.status().ok()) << failure_.status().ToString();
  EXPECT_FALSE(delivery_->ledger().back().confirmed);
  EXPECT_EQ(delivery_->AbandonInFlight().batches, 1);
  EXPECT_EQ(source_.processor().in_flight(), 0U);

  ASSERT_NO_FATAL_FAILURE(DispatchOneAndWait());
  const Status again = Commit();
  EXPECT_TRUE(again.ok()) << again.ToString();
  EXPECT_TRUE(delivery_->ledger().back().confirmed);
}

// The commit fails with an abortable error and the abort fails too. The transaction must not
// stay marked open (a later commit or abort of it would act on a transaction the producer no
// longer has), and serving must stop: the failure is latched, so nothing of the batches can
// commit, and the broker aborts the transaction on its timeout (or a restart fences it).
TEST_F(DeliveryTest, AFailedAbortLeavesNoTransactionOpenAndStopsServing) {
  ASSERT_NO_FATAL_FAILURE(DispatchOneAndWait());
  kafka_->PushRequestErrors(kEndTxn,
                            {RD_KAFKA_RESP_ERR_INVALID_REQUEST, RD_KAFKA_RESP_ERR_INVALID_REQUEST});
  const Status committed = Commit();
  EXPECT_EQ(committed.code(), StatusCode::kAborted) << committed.ToString();
  EXPECT_FALSE(delivery_->transaction_open()) << "a failed abort left the transaction open";
  ASSERT_FALSE(failure_.status().ok()) << "a failed abort did not stop serving";
  EXPECT_NE(failure_.status().message().find("abort_transaction"), std::string::npos)
      << failure_.status().ToString();
  EXPECT_FALSE(delivery_->ledger().back().confirmed);
  // Nothing more commits: the next commit has no transaction, and confirming reports the
  // latched failure.
  EXPECT_TRUE(Commit().ok());
  EXPECT_EQ(delivery_->ConfirmDelivered().status().code(), failure_.status().code());
  delivery_->DropAfterFailure();
  EXPECT_TRUE(delivery_->ledger().empty());
  EXPECT_EQ(source_.processor().in_flight(), 0U);
}

}  // namespace
}  // namespace rotor::pipeline::internal
