#include "storage/window_cache.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

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
  const UserState* replaced = cache.Insert("u1", SmallWindow(7));
  ASSERT_NE(replaced, nullptr);
  EXPECT_EQ(cache.size(), 1U);
  EXPECT_EQ(cache.bytes(), EntryBytes("u1"));
  const UserState* found = cache.Find("u1");
  ASSERT_EQ(found, replaced);
  EXPECT_EQ(found->window.last_ts_ms, 7);

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

TEST(WindowCacheTest, TakeHandsTheStateOutAndCountsHitsAndMisses) {
  WindowCache cache(EntryBytes("u1") * 4);
  ASSERT_NE(cache.Insert("u1", SmallWindow(5)), nullptr);
  EXPECT_FALSE(cache.Take("u2").has_value());
  std::optional<UserState> taken = cache.Take("u1");
  ASSERT_TRUE(taken.has_value());
  EXPECT_EQ(taken->window.last_ts_ms, 5);
  EXPECT_EQ(cache.size(), 0U);
  EXPECT_EQ(cache.bytes(), 0);
  EXPECT_FALSE(cache.Take("u1").has_value());
  EXPECT_EQ(cache.stats().hits, 1);
  EXPECT_EQ(cache.stats().misses, 2);
  EXPECT_EQ(cache.stats().shared_copies, 0);
}

const TopicPartition kP0{"events", 0};
const TopicPartition kP1{"events", 1};

TEST(WindowCacheViewTest, OnlyPublishedEntriesAreFoundWithTheirCommitsOffset) {
  CommittedView view("model-a");
  WindowCache cache(EntryBytes("u1") * 4, &view);
  ASSERT_NE(cache.Insert("u1", SmallWindow(1)), nullptr);
  EXPECT_EQ(view.Find("u1", kP0).state, nullptr);  // Cached, not yet published.

  const std::vector<std::string> users{"u1", "not-cached"};
  const std::vector<std::pair<TopicPartition, int64_t>> offsets{{kP0, 10}};
  cache.Publish(users, offsets);
  CommittedView::Read read = view.Find("u1", kP0);
  ASSERT_NE(read.state, nullptr);
  EXPECT_EQ(read.state.get(), cache.Find("u1"));  // Shared, not copied.
  EXPECT_EQ(read.next_offset, 10);
  EXPECT_EQ(view.Find("not-cached", kP0).state, nullptr);
  EXPECT_EQ(view.size(), 1U);
  // A partition whose offset was never published says nothing (not an offset of unknown age).
  EXPECT_EQ(view.Find("u1", kP1).state, nullptr);

  // A later commit moves the partition's offset; the untouched user's state covers it too.
  const std::vector<std::pair<TopicPartition, int64_t>> later{{kP0, 12}};
  cache.Publish({}, later);
  EXPECT_EQ(view.Find("u1", kP0).next_offset, 12);
  EXPECT_EQ(view.model_id(), "model-a");
}

TEST(WindowCacheViewTest, EveryWayOutOfTheCacheWithdrawsFromTheView) {
  CommittedView view("m");
  WindowCache cache(EntryBytes("u0") * 2, &view);
  const std::vector<std::pair<TopicPartition, int64_t>> offsets{{kP0, 1}};
  const auto publish = [&](const std::string& user, int64_t marker) {
    ASSERT_NE(cache.Insert(user, SmallWindow(marker)), nullptr);
    const std::vector<std::string> users{user};
    cache.Publish(users, offsets);
    ASSERT_NE(view.Find(user, kP0).state, nullptr) << user;
  };
  publish("u0", 0);
  publish("u1", 1);
  publish("u2", 2);  // Evicts u0.
  EXPECT_EQ(view.Find("u0", kP0).state, nullptr);
  ASSERT_TRUE(cache.Take("u1").has_value());  // Taken for a batch.
  EXPECT_EQ(view.Find("u1", kP0).state, nullptr);
  publish("u1", 11);
  cache.Insert("u1", SmallWindow(12));  // Replaced: the old entry leaves the view.
  EXPECT_EQ(view.Find("u1", kP0).state, nullptr);
  cache.Erase("u2");
  EXPECT_EQ(view.Find("u2", kP0).state, nullptr);
  publish("u3", 3);
  cache.SetBudget(0);
  EXPECT_EQ(view.size(), 0U);
  cache.SetBudget(EntryBytes("u0") * 2);
  publish("u4", 4);
  {
    WindowCache other(EntryBytes("u0"), nullptr);  // No view: Publish is a no-op.
    ASSERT_NE(other.Insert("x", SmallWindow(0)), nullptr);
    const std::vector<std::string> users{"x"};
    other.Publish(users, offsets);
  }
  EXPECT_EQ(view.Find("x", kP0).state, nullptr);
  cache.Clear();
  EXPECT_EQ(view.size(), 0U);
  EXPECT_EQ(view.Find("u4", kP0).state, nullptr);
}

TEST(WindowCacheViewTest, ErasingPartitionsDropsOnlyTheirUsersAndOffsets) {
  CommittedView view("m");
  WindowCache cache(EntryBytes("u0") * 8, &view);
  const std::vector<std::pair<TopicPartition, int64_t>> offsets{{kP0, 5}, {kP1, 7}};
  ASSERT_NE(cache.Insert("a0", SmallWindow(0), kP0), nullptr);
  ASSERT_NE(cache.Insert("b0", SmallWindow(1), kP0), nullptr);
  ASSERT_NE(cache.Insert("a1", SmallWindow(2), kP1), nullptr);
  const std::vector<std::string> users{"a0", "b0", "a1"};
  cache.Publish(users, offsets);
  const std::vector<TopicPartition> revoked{kP0};
  cache.ErasePartitions(revoked);
  EXPECT_EQ(cache.size(), 1U);
  EXPECT_EQ(cache.bytes(), EntryBytes("a1"));
  EXPECT_EQ(cache.Find("a0"), nullptr);
  EXPECT_EQ(cache.Find("b0"), nullptr);
  EXPECT_NE(cache.Find("a1"), nullptr);
  EXPECT_EQ(cache.stats().evictions, 0);
  EXPECT_EQ(view.size(), 1U);
  EXPECT_EQ(view.Find("a1", kP1).next_offset, 7);
  // The revoked partition's offset is forgotten: a user published there later needs a commit
  // of that partition to be found again.
  ASSERT_NE(cache.Insert("c0", SmallWindow(3), kP0), nullptr);
  const std::vector<std::string> c0{"c0"};
  cache.Publish(c0, {});
  EXPECT_EQ(view.Find("c0", kP0).state, nullptr);
  const std::vector<std::pair<TopicPartition, int64_t>> p0_again{{kP0, 9}};
  cache.Publish(c0, p0_again);
  EXPECT_EQ(view.Find("c0", kP0).next_offset, 9);
}

TEST(WindowCacheViewTest, TakeCopiesWhatAReaderStillHoldsAndNeverChangesIt) {
  CommittedView view("m");
  WindowCache cache(EntryBytes("u0") * 2, &view);
  ASSERT_NE(cache.Insert("u0", SmallWindow(3)), nullptr);
  const std::vector<std::string> users{"u0"};
  const std::vector<std::pair<TopicPartition, int64_t>> offsets{{kP0, 1}};
  cache.Publish(users, offsets);
  const CommittedView::Read held = view.Find("u0", kP0);  // A reader mid-request.
  ASSERT_NE(held.state, nullptr);
  std::optional<UserState> taken = cache.Take("u0");
  ASSERT_TRUE(taken.has_value());
  EXPECT_EQ(cache.stats().shared_copies, 1);
  taken->window.last_ts_ms = 99;                // The pipeline changes its copy...
  EXPECT_EQ(held.state->window.last_ts_ms, 3);  // ...the reader's stays as committed.
  EXPECT_EQ(held.state->window.k[0].size(), taken->window.k[0].size());
}

TEST(WindowCacheViewTest, ReadersOnOtherThreadsSeeOnlyWholeCommits) {
  // A publisher commits states whose every field carries the commit number and the offset
  // commit + 100; readers check that what they find is one commit's state with an offset of
  // that commit or a later one (never an older offset, never a state being changed).
  CommittedView view("m");
  WindowCache cache(EntryBytes("u0") * 8, &view);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> found{0};
  std::atomic<int64_t> bad{0};
  std::vector<std::thread> readers;
  readers.reserve(2);
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        for (int u = 0; u < 4; ++u) {
          const CommittedView::Read read = view.Find(fmt::format("u{}", u), kP0);
          if (read.state == nullptr) {
            continue;
          }
          const int64_t commit = read.state->window.last_ts_ms;
          for (const float x : read.state->window.k[0]) {
            bad += x != static_cast<float>(commit) ? 1 : 0;
          }
          bad += read.next_offset < commit + 100 ? 1 : 0;
          ++found;
        }
      }
    });
  }
  for (int64_t commit = 1; commit <= 3000; ++commit) {
    const std::string user = fmt::format("u{}", commit % 4);
    std::optional<UserState> state = cache.Take(user);
    if (!state) {
      state = SmallWindow(0);
    }
    std::fill(state->window.k[0].begin(), state->window.k[0].end(), static_cast<float>(commit));
    state->window.last_ts_ms = commit;
    ASSERT_NE(cache.Insert(user, std::move(*state)), nullptr);
    const std::vector<std::string> users{user};
    const std::vector<std::pair<TopicPartition, int64_t>> offsets{{kP0, commit + 100}};
    cache.Publish(users, offsets);
  }
  stop = true;
  for (std::thread& t : readers) {
    t.join();
  }
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(found.load(), 0);
}

}  // namespace
}  // namespace rotor::storage
