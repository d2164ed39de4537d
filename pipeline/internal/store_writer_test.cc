#include "pipeline/internal/store_writer.h"

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "pipeline/internal/testing.h"

namespace rotor::pipeline::internal {
namespace {

std::unique_ptr<storage::UserStateStore> OpenStore(const std::string& path) {
  auto store = storage::UserStateStore::Open({.path = path, .create_if_missing = true});
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(store).value() : nullptr;
}

// Batches commit in submission order: each sets the same partition's offset, so the store ends
// at the last one's and committed() reaches the last sequence number.
TEST(StoreWriterTest, CommitsInOrderAndReportsProgress) {
  testing::TempDir dir("rotor_store_writer_test");
  auto store = OpenStore(dir.path() + "/a");
  ASSERT_NE(store, nullptr);
  std::vector<storage::StateBatch> batches;
  for (int64_t i = 1; i <= 50; ++i) {
    batches.push_back(store->NewBatch());
    ASSERT_TRUE(batches.back().SetOffset("events", 0, i * 10).ok());
  }
  {
    StoreWriter writer(*store);
    EXPECT_EQ(writer.committed(), 0U);
    for (std::size_t i = 0; i < batches.size(); ++i) {
      writer.Submit(i + 1, &batches[i]);
    }
    ASSERT_TRUE(writer.Wait().ok());
    EXPECT_EQ(writer.committed(), 50U);
  }
  auto offsets = store->LoadOffsets();
  ASSERT_TRUE(offsets.ok());
  EXPECT_EQ(offsets->at({"events", 0}), 500);
}

// A failed commit stops the writer: Wait returns the error and later batches stay uncommitted
// (committing them would skip the failed one).
TEST(StoreWriterTest, AFailedCommitStopsLaterOnes) {
  testing::TempDir dir("rotor_store_writer_test");
  auto store = OpenStore(dir.path() + "/a");
  auto other = OpenStore(dir.path() + "/b");
  ASSERT_NE(store, nullptr);
  ASSERT_NE(other, nullptr);
  storage::StateBatch first = store->NewBatch();
  storage::StateBatch foreign = other->NewBatch();  // Commit refuses it: another store's.
  storage::StateBatch last = store->NewBatch();
  ASSERT_TRUE(first.SetOffset("events", 0, 1).ok());
  ASSERT_TRUE(foreign.SetOffset("events", 0, 2).ok());
  ASSERT_TRUE(last.SetOffset("events", 0, 3).ok());
  StoreWriter writer(*store);
  writer.Submit(1, &first);
  writer.Submit(2, &foreign);
  writer.Submit(3, &last);
  const Status s = writer.Wait();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_EQ(writer.committed(), 1U);
  EXPECT_FALSE(writer.status().ok());
  auto offsets = store->LoadOffsets();
  ASSERT_TRUE(offsets.ok());
  EXPECT_EQ(offsets->at({"events", 0}), 1);
}

}  // namespace
}  // namespace rotor::pipeline::internal
