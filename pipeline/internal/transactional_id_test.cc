#include "pipeline/internal/transactional_id.h"

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "pipeline/internal/testing.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline::internal {
namespace {

std::unique_ptr<storage::UserStateStore> Open(const std::string& path) {
  auto store = storage::UserStateStore::Open({.path = path, .create_if_missing = true});
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(store).value() : nullptr;
}

TEST(TransactionalIdTest, AConfiguredIdWinsAndWritesNothing) {
  testing::TempDir dir("rotor_txn_id_test");
  auto store = Open(dir.path() + "/state");
  ASSERT_NE(store, nullptr);
  const auto id = TransactionalId("fixed", "group", *store);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(*id, "fixed");
  const auto kept = store->LoadInfo(kInfoInstanceId);
  ASSERT_TRUE(kept.ok());
  EXPECT_FALSE(kept->has_value());
}

TEST(TransactionalIdTest, TheDefaultIsKeptPerStateDirectoryAcrossReopens) {
  testing::TempDir dir("rotor_txn_id_test");
  std::string first;
  {
    auto store = Open(dir.path() + "/a");
    ASSERT_NE(store, nullptr);
    const auto id = TransactionalId("", "group", *store);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    first = *id;
  }
  ASSERT_EQ(first.rfind("group-", 0), 0U) << first;
  EXPECT_EQ(first.size(), std::string("group-").size() + 16) << first;
  {
    auto store = Open(dir.path() + "/a");
    ASSERT_NE(store, nullptr);
    const auto again = TransactionalId("", "group", *store);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, first) << "a restart must keep its id";
  }
  auto other = Open(dir.path() + "/b");
  ASSERT_NE(other, nullptr);
  const auto second = TransactionalId("", "group", *other);
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*second, first) << "two state directories must not share an id";
}

}  // namespace
}  // namespace rotor::pipeline::internal
