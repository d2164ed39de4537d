#include "storage/window_cache.h"

#include <cstdint>
#include <string>
#include <utility>

#include <fmt/core.h>
#include <gtest/gtest.h>

namespace rotor::storage {
namespace {

using encoders::KvWindow;

// 1 block, window 4, d_model 8: 2 * 4 * 8 floats + 4 positions = 288 data bytes.
UserState SmallWindow(int64_t marker) {
  KvWindow w(1, 4, 8, 0);
  w.last_ts_ms = marker;
  return UserState{.window = std::move(w), .recent_event_ids = {}};
}

UserState Big() {
  return UserState{.window = KvWindow(4, 64, 64, 0), .recent_event_ids = {}};
}

int64_t EntryBytes(const std::string& user) {
  return WindowCache::EntryBytes(user, SmallWindow(0));
}

TEST(WindowCacheTest, EntryBytesCountWindowDataKeyAndOverhead) {
  EXPECT_EQ(WindowCache::EntryBytes("ab", SmallWindow(0)),
            2 * 4 * 8 * 4 + 4 * 8 + 2 + WindowCache::kEntryOverheadBytes);
}

TEST(WindowCacheTest, RecentEventIdsAreCharged) {
  UserState state = SmallWindow(0);
  state.recent_event_ids = {"e1", "event-2"};
  EXPECT_EQ(WindowCache::EntryBytes("ab", state),
            WindowCache::EntryBytes("ab", SmallWindow(0)) +
                static_cast<int64_t>(2 * sizeof(std::string) + 2 + 7));
}

TEST(WindowCacheTest, EvictsLeastRecentlyUsedFirst) {
  const int64_t entry = EntryBytes("u0");
  WindowCache cache(3 * entry);
  ASSERT_NE(cache.Insert("u0", SmallWindow(0)), nullptr);
  ASSERT_NE(cache.Insert("u1", SmallWindow(1)), nullptr);
  ASSERT_NE(cache.Insert("u2", SmallWindow(2)), nullptr);
  ASSERT_NE(cache.Find("u0"), nullptr);  // u1 is now the least recently used.
  ASSERT_NE(cache.Insert("u3", SmallWindow(3)), nullptr);
  EXPECT_EQ(cache.Find("u1"), nullptr);
  ASSERT_NE(cache.Insert("u4", SmallWindow(4)), nullptr);  // Evicts u2.
  EXPECT_EQ(cache.Find("u2"), nullptr);
  for (int64_t i : {0, 3, 4}) {
    const UserState* w = cache.Find(fmt::format("u{}", i));
    ASSERT_NE(w, nullptr) << i;
    EXPECT_EQ(w->window.last_ts_ms, i);
  }
  EXPECT_EQ(cache.size(), 3U);
  EXPECT_EQ(cache.stats().evictions, 2);
  EXPECT_EQ(cache.stats().hits, 4);
  EXPECT_EQ(cache.stats().misses, 2);
}

TEST(WindowCacheTest, LoweringTheBudgetEvictsLeastRecentlyUsed) {
  const int64_t entry = EntryBytes("u0");
  WindowCache cache(3 * entry);
  for (int i = 0; i < 3; ++i) {
    ASSERT_NE(cache.Insert(fmt::format("u{}", i), SmallWindow(i)), nullptr);
  }
  ASSERT_NE(cache.Find("u0"), nullptr);  // u1, then u2, are the least recently used.
  cache.SetBudget(entry + entry / 2);
  EXPECT_EQ(cache.size(), 1U);
  EXPECT_NE(cache.Find("u0"), nullptr);
  EXPECT_LE(cache.bytes(), cache.budget_bytes());
  EXPECT_EQ(cache.stats().evictions, 2);
  cache.SetBudget(-5);
  EXPECT_EQ(cache.size(), 0U);
  EXPECT_EQ(cache.budget_bytes(), 0);
  EXPECT_EQ(cache.Insert("u1", SmallWindow(1)), nullptr);  // Nothing fits a budget of 0.
}

TEST(WindowCacheTest, BytesNeverExceedTheBudget) {
  const int64_t entry = EntryBytes("u00");
  const int64_t budget = 5 * entry + entry / 2;
  WindowCache cache(budget);
  for (int i = 0; i < 40; ++i) {
    const std::string user = fmt::format("u{}", 10 + i);
    ASSERT_NE(cache.Insert(user, SmallWindow(i)), nullptr);
    EXPECT_LE(cache.bytes(), budget);
    EXPECT_EQ(cache.bytes(), static_cast<int64_t>(cache.size()) * entry);
  }
  EXPECT_EQ(cache.size(), 5U);
  EXPECT_EQ(cache.stats().evictions, 35);
}

TEST(WindowCacheTest, AWindowLargerThanTheBudgetIsNotCached) {
  WindowCache cache(EntryBytes("small") * 2);
  ASSERT_NE(cache.Insert("small", SmallWindow(1)), nullptr);
  EXPECT_EQ(cache.Insert("big", Big()), nullptr);
  EXPECT_EQ(cache.stats().rejected, 1);
  EXPECT_EQ(cache.stats().evictions, 0);
  EXPECT_NE(cache.Find("small"), nullptr);  // The rejected insert evicted nothing.
  // Replacing a cached user with a too-large window drops the stale entry.
  EXPECT_EQ(cache.Insert("small", Big()), nullptr);
  EXPECT_EQ(cache.Find("small"), nullptr);
  EXPECT_EQ(cache.bytes(), 0);

  WindowCache nothing(-5);
  EXPECT_EQ(nothing.budget_bytes(), 0);
  EXPECT_EQ(nothing.Insert("u", SmallWindow(0)), nullptr);
}

TEST(WindowCacheTest, InsertReplacesAndEraseAndClearForget) {
  WindowCache cache(EntryBytes("u1") * 4);
  ASSERT_NE(cache.Insert("u1", SmallWindow(1)), nullptr);
  UserState* replaced = cache.Insert("u1", SmallWindow(7));
  ASSERT_NE(replaced, nullptr);
  EXPECT_EQ(cache.size(), 1U);
  EXPECT_EQ(cache.bytes(), EntryBytes("u1"));
  replaced->window.next_pos = 42;  // In-place updates are what the pipeline does.
  const UserState* found = cache.Find("u1");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->window.last_ts_ms, 7);
  EXPECT_EQ(found->window.next_pos, 42);

  ASSERT_NE(cache.Insert("u2", SmallWindow(2)), nullptr);
  cache.Erase("u1");
  cache.Erase("never-there");
  EXPECT_EQ(cache.Find("u1"), nullptr);
  EXPECT_EQ(cache.size(), 1U);
  EXPECT_EQ(cache.stats().evictions, 0);
  cache.Clear();
  EXPECT_EQ(cache.size(), 0U);
  EXPECT_EQ(cache.bytes(), 0);
  EXPECT_EQ(cache.Find("u2"), nullptr);
}

}  // namespace
}  // namespace rotor::storage
