#include "storage/user_state_store.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "storage/internal/key_layout.h"
#include "storage/internal/store_test_peer.h"
#include "storage/internal/store_testing.h"

namespace rotor::storage {
namespace {

using encoders::KvWindow;
using internal::ColumnFamily;
using internal::StoreTestPeer;
using internal::testing::Append;
using internal::testing::ExpectSameWindow;
using internal::testing::TempDir;

constexpr int64_t kBlocks = 3;
constexpr int64_t kD = 4;

class UserStateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  StoreOptions Options() const {
    return {.path = dir_.db(),
            .block_cache_bytes = int64_t{8} << 20,
            .write_buffer_bytes = int64_t{2} << 20,
            .sync_writes = false,
            .create_if_missing = true};
  }

  void Reopen() {
    store_.reset();
    auto opened = UserStateStore::Open(Options());
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
  }

  // Appends `events` events to `w` and commits them, one commit per `per_commit` events.
  void AppendAndCommit(std::string_view user, KvWindow& w, int tag, int64_t events,
                       int64_t per_commit) {
    StateBatch batch = store_->NewBatch();
    int64_t pending = 0;
    for (int64_t e = 0; e < events; ++e) {
      Append(w, tag, 1000 + w.next_pos);
      if (++pending == per_commit || e + 1 == events) {
        ASSERT_TRUE(batch.PutWindow(user, "model-a", w, pending).ok());
        ASSERT_TRUE(store_->Commit(batch).ok());
        pending = 0;
      }
    }
  }

  KvWindow MustLoad(std::string_view user, int64_t window) {
    auto loaded = store_->LoadWindow(user, kBlocks, window, kD);
    EXPECT_TRUE(loaded.ok()) << loaded.status().ToString();
    if (!loaded.ok() || !loaded->has_value()) {
      ADD_FAILURE() << "no window for " << user;
      return {};
    }
    return std::move(**loaded);
  }

  TempDir dir_;
  std::unique_ptr<UserStateStore> store_;
};

TEST_F(UserStateStoreTest, WindowsRoundTripWithWrapAroundPartialWindowsAndLargePositions) {
  struct Case {
    std::string user;
    int64_t window;
    int64_t start;
    int64_t events;
    int64_t per_commit;
  };
  const std::vector<Case> cases = {
      {"wrapped", 5, 0, 23, 3},                          // Ring wrapped several times.
      {"partial", 8, 0, 5, 2},                           // Never full.
      {"exactly-full", 6, 10, 6, 6},                     // Full, no wrap.
      {"near-2^31", 7, (int64_t{1} << 31) - 4, 13, 4},   // Crosses 2^31.
      {"beyond-2^32", 4, (int64_t{1} << 32) + 3, 9, 9},  // One batch > window.
      {std::string("nul\0inside", 10), 3, 1, 4, 1},      // Binary user id.
  };
  std::vector<KvWindow> windows;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    windows.emplace_back(kBlocks, c.window, kD, c.start);
    AppendAndCommit(c.user, windows.back(), static_cast<int>(i), c.events, c.per_commit);
  }
  for (int round = 0; round < 2; ++round) {
    for (std::size_t i = 0; i < cases.size(); ++i) {
      SCOPED_TRACE(cases[i].user);
      ExpectSameWindow(MustLoad(cases[i].user, cases[i].window), windows[i]);
      const auto model = store_->LoadModelId(cases[i].user);
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      EXPECT_EQ(model->value_or(""), "model-a");
    }
    Reopen();  // Second round: from the WAL after a close.
  }
  const auto missing = store_->LoadWindow("nobody", kBlocks, 5, kD);
  ASSERT_TRUE(missing.ok()) << missing.status().ToString();
  EXPECT_FALSE(missing->has_value());
}

// state.kv_dtype bf16 / f16: rows are stored in 16 bits, rounded to nearest even (rows the
// decoder wrote are rounded already, so they are stored exactly); they load back widened, bit
// for bit, also after a reopen; read as float32 they are Corruption naming the likely cause.
TEST_F(UserStateStoreTest, SixteenBitRowsRoundTripRoundedAndReadAsFloat32AreCorruption) {
  for (const encoders::KvDtype dtype : {encoders::KvDtype::kBF16, encoders::KvDtype::kF16}) {
    StoreOptions options = Options();
    options.path = (dir_.path() / (dtype == encoders::KvDtype::kBF16 ? "bf16" : "f16")).string();
    options.kv_dtype = dtype;
    KvWindow w(kBlocks, 5, kD, 0);
    {
      auto store = UserStateStore::Open(options);
      ASSERT_TRUE(store.ok()) << store.status().ToString();
      StateBatch batch = (*store)->NewBatch();
      for (int e = 0; e < 7; ++e) {  // Wraps the 5-row ring.
        Append(w, 3, 1000 + e);
        ASSERT_TRUE(batch.PutWindow("u", "model-a", w, 1).ok());
        ASSERT_TRUE((*store)->Commit(batch).ok());
      }
    }
    KvWindow want = w;
    for (std::size_t b = 0; b < want.k.size(); ++b) {
      encoders::RoundToKvDtype(dtype, want.k[b]);
      encoders::RoundToKvDtype(dtype, want.v[b]);
    }
    ASSERT_NE(want.k[0], w.k[0]) << "the test rows should need rounding";
    {
      auto store = UserStateStore::Open(options);
      ASSERT_TRUE(store.ok()) << store.status().ToString();
      auto loaded = (*store)->LoadWindow("u", kBlocks, 5, kD);
      ASSERT_TRUE(loaded.ok() && loaded->has_value()) << loaded.status().ToString();
      ExpectSameWindow(**loaded, want);
    }
    options.kv_dtype = encoders::KvDtype::kF32;
    auto store = UserStateStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    const auto wrong = (*store)->LoadWindow("u", kBlocks, 5, kD);
    EXPECT_EQ(wrong.status().code(), StatusCode::kCorruption) << wrong.status().ToString();
    EXPECT_NE(wrong.status().message().find("another state.kv_dtype"), std::string::npos)
        << wrong.status().ToString();
  }
}

// Windows hold only the slots in use (KvWindow::EnsureSlots grows them by doubling): a short
// history is stored and loaded as a short window, and PutWindow refuses blocks that do not
// hold the slots in use or disagree with each other.
TEST_F(UserStateStoreTest, ShortWindowsRoundTripAndInconsistentSlotsAreRefused) {
  KvWindow w(kBlocks, 16, kD, 0, 0);
  EXPECT_EQ(w.slots(), 0);
  for (int e = 0; e < 5; ++e) {
    w.EnsureSlots(w.NextSlot() + 1);
    Append(w, 4, 1000 + e);
  }
  EXPECT_EQ(w.slots(), 8);  // 4, then doubled.
  EXPECT_EQ(w.used_slots(), 5);
  {
    StateBatch batch = store_->NewBatch();
    ASSERT_TRUE(batch.PutWindow("short", "m", w, 5).ok());
    ASSERT_TRUE(store_->Commit(batch).ok());
  }
  const KvWindow loaded = MustLoad("short", 16);
  ExpectSameWindow(loaded, w);
  EXPECT_EQ(loaded.slots(), 5) << "a loaded window makes only the slots in use";
  for (int e = 5; e < 40; ++e) {  // Past the capacity: the ring wraps over all 16 slots.
    w.EnsureSlots(w.NextSlot() + 1);
    Append(w, 4, 1000 + e);
  }
  EXPECT_EQ(w.slots(), 16);
  KvWindow short_k = w;
  short_k.k[1].resize(static_cast<std::size_t>(8 * kD));
  KvWindow too_few(kBlocks, 16, kD, 0, 4);
  too_few.next_pos = 6;
  too_few.rows = 6;
  for (const KvWindow* bad : {&short_k, &too_few}) {
    StateBatch batch = store_->NewBatch();
    const Status s = batch.PutWindow("bad", "m", *bad, 1);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  }
}

TEST_F(UserStateStoreTest, UsersWhoseIdsSharePrefixesStayIsolated) {
  const std::vector<std::string> users = {"u1", "u10", std::string("u1\0x", 4), "u"};
  std::vector<KvWindow> windows;
  for (std::size_t i = 0; i < users.size(); ++i) {
    windows.emplace_back(kBlocks, 4, kD, 0);
    // Different lengths, so a leaked row would break the row count or the contents.
    AppendAndCommit(users[i], windows.back(), static_cast<int>(i) + 1,
                    static_cast<int64_t>(2 + 3 * i), 1);
  }
  for (std::size_t i = 0; i < users.size(); ++i) {
    SCOPED_TRACE(internal::PrintableBytes(users[i]));
    ExpectSameWindow(MustLoad(users[i], 4), windows[i]);
    const auto rows = StoreTestPeer::CountRows(*store_, users[i]);
    ASSERT_TRUE(rows.ok()) << rows.status().ToString();
    EXPECT_EQ(*rows, windows[i].rows);
  }
}

// Rows leaving the window go by point deletes when a few leave a commit and by one range
// delete when many do (more than 8): window 6 takes only the first, window 20 both.
TEST_F(UserStateStoreTest, TrimmingKeepsExactlyTheLastWindowRowsAfterManyCommits) {
  for (const int64_t window : {int64_t{6}, int64_t{20}}) {
    const std::string user = fmt::format("trim{}", window);
    SCOPED_TRACE(user);
    KvWindow w(kBlocks, window, kD, 100);
    for (int64_t per_commit : {1, 2, 5, 7, 13, 1, 25, 1, 9, 1}) {
      AppendAndCommit(user, w, 9, 3 * per_commit + 1, per_commit);
      const auto rows = StoreTestPeer::CountRows(*store_, user);
      ASSERT_TRUE(rows.ok()) << rows.status().ToString();
      EXPECT_EQ(*rows, std::min(w.next_pos - w.first_pos, window)) << "per_commit " << per_commit;
      ExpectSameWindow(MustLoad(user, window), w);
    }
    ASSERT_EQ(w.rows, window);
  }
  ASSERT_TRUE(store_->Flush().ok());
  Reopen();
  for (const int64_t window : {int64_t{6}, int64_t{20}}) {
    const auto rows = StoreTestPeer::CountRows(*store_, fmt::format("trim{}", window));
    ASSERT_TRUE(rows.ok()) << rows.status().ToString();
    EXPECT_EQ(*rows, window);
  }
}

TEST_F(UserStateStoreTest, OffsetsCommitAtomicallyWithTheStateTheyProduced) {
  KvWindow w(kBlocks, 4, kD, 0);
  Append(w, 1, 10);
  {
    StateBatch batch = store_->NewBatch();
    ASSERT_TRUE(batch.PutWindow("alice", "m", w, 1).ok());
    ASSERT_TRUE(batch.SetOffset("events", 0, 41).ok());
    ASSERT_TRUE(batch.SetOffset("events", 3, 7).ok());
    EXPECT_GT(batch.Count(), 0);
    EXPECT_GT(batch.ApproximateBytes(), 0);
    ASSERT_TRUE(store_->Commit(batch).ok());
    EXPECT_EQ(batch.Count(), 0);
  }
  {
    // Never committed: neither the rows nor the offset may appear.
    KvWindow later = w;
    Append(later, 1, 11);
    StateBatch batch = store_->NewBatch();
    ASSERT_TRUE(batch.PutWindow("alice", "m", later, 1).ok());
    ASSERT_TRUE(batch.PutWindow("bob", "m", later, 2).ok());
    ASSERT_TRUE(batch.SetOffset("events", 0, 42).ok());
  }
  {
    StateBatch batch = store_->NewBatch();
    ASSERT_TRUE(batch.SetOffset("events", 0, 99).ok());
    batch.Clear();
    ASSERT_TRUE(store_->Commit(batch).ok());  // Empty.
  }
  Reopen();
  const auto offsets = store_->LoadOffsets();
  ASSERT_TRUE(offsets.ok()) << offsets.status().ToString();
  const PartitionOffsets want = {{{"events", 0}, 41}, {{"events", 3}, 7}};
  EXPECT_EQ(*offsets, want);
  ExpectSameWindow(MustLoad("alice", 4), w);
  const auto bob = store_->LoadWindow("bob", kBlocks, 4, kD);
  ASSERT_TRUE(bob.ok()) << bob.status().ToString();
  EXPECT_FALSE(bob->has_value());
}

// A partition's event-time watermark travels with its offset: both in one batch, both there
// after a reopen, neither when the batch was never committed.
TEST_F(UserStateStoreTest, WatermarksCommitAtomicallyWithTheOffsetAndReload) {
  {
    StateBatch batch = store_->NewBatch();
    ASSERT_TRUE(batch.SetOffset("events", 0, 41).ok());
    ASSERT_TRUE(batch.SetWatermark("events", 0, 1767600000000).ok());
    ASSERT_TRUE(batch.SetOffset("events", 3, 7).ok());
    ASSERT_TRUE(batch.SetWatermark("events", 3, 5).ok());
    ASSERT_TRUE(batch.SetWatermark("file:x", 3, 0).ok());
    ASSERT_TRUE(batch.PutInfo("model_id", "m").ok());  // Info keys share the column family.
    ASSERT_TRUE(store_->Commit(batch).ok());
  }
  {
    // Never committed: neither the offset nor the watermark may move.
    StateBatch batch = store_->NewBatch();
    ASSERT_TRUE(batch.SetOffset("events", 0, 50).ok());
    ASSERT_TRUE(batch.SetWatermark("events", 0, 1767700000000).ok());
  }
  const std::map<TopicPartition, int64_t> want = {
      {{"events", 0}, 1767600000000}, {{"events", 3}, 5}, {{"file:x", 3}, 0}};
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    const auto watermarks = store_->LoadWatermarks();
    ASSERT_TRUE(watermarks.ok()) << watermarks.status().ToString();
    EXPECT_EQ(*watermarks, want);
    const auto offsets = store_->LoadOffsets();
    ASSERT_TRUE(offsets.ok()) << offsets.status().ToString();
    EXPECT_EQ(offsets->at({"events", 0}), 41);
    Reopen();
  }
  // A later batch moves both together.
  StateBatch batch = store_->NewBatch();
  ASSERT_TRUE(batch.SetOffset("events", 0, 60).ok());
  ASSERT_TRUE(batch.SetWatermark("events", 0, 1767800000000).ok());
  ASSERT_TRUE(store_->Commit(batch).ok());
  Reopen();
  EXPECT_EQ(store_->LoadWatermarks()->at({"events", 0}), 1767800000000);
  EXPECT_EQ(store_->LoadOffsets()->at({"events", 0}), 60);
  // Forgetting a partition deletes its offset and watermark, and no other partition's.
  {
    StateBatch forget = store_->NewBatch();
    ASSERT_TRUE(forget.ForgetPartition("events", 0).ok());
    EXPECT_EQ(forget.ForgetPartition("", 0).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(forget.ForgetPartition("events", -1).code(), StatusCode::kInvalidArgument);
    ASSERT_TRUE(store_->Commit(forget).ok());
    Reopen();
    EXPECT_FALSE(store_->LoadWatermarks()->contains({"events", 0}));
    EXPECT_FALSE(store_->LoadOffsets()->contains({"events", 0}));
    EXPECT_EQ(store_->LoadWatermarks()->at({"events", 3}), 5);
    EXPECT_EQ(store_->LoadOffsets()->at({"events", 3}), 7);
  }

  EXPECT_EQ(batch.SetWatermark("", 0, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(batch.SetWatermark("t", -1, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(batch.SetWatermark("t", 0, -1).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(
      StoreTestPeer::RawPutDefault(*store_, internal::WatermarkKey("events", 1), "xyz").ok());
  const auto corrupt = store_->LoadWatermarks();
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.status().code(), StatusCode::kCorruption);
  EXPECT_NE(corrupt.status().message().find("watermark key"), std::string_view::npos);
}

// DeleteUser removes a user's rows and metadata and nobody else's; a PutWindow after it in the
// same batch starts the user's history again from what it writes (a TTL restart).
TEST_F(UserStateStoreTest, DeletingAUserRemovesItsRowsAndMetadataOnly) {
  const std::vector<std::string> users = {"u1", "u10", std::string("u1\0x", 4)};
  std::vector<KvWindow> windows;
  for (std::size_t i = 0; i < users.size(); ++i) {
    windows.emplace_back(kBlocks, 4, kD, 0);
    AppendAndCommit(users[i], windows.back(), static_cast<int>(i) + 1, 7, 2);
  }
  StateBatch batch = store_->NewBatch();
  ASSERT_TRUE(batch.DeleteUser("u1").ok());
  ASSERT_TRUE(store_->Commit(batch).ok());
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    const auto gone = store_->LoadUserState("u1", kBlocks, 4, kD);
    ASSERT_TRUE(gone.ok()) << gone.status().ToString();
    EXPECT_FALSE(gone->has_value());
    EXPECT_EQ(*StoreTestPeer::CountRows(*store_, "u1"), 0);
    for (std::size_t i = 1; i < users.size(); ++i) {
      ExpectSameWindow(MustLoad(users[i], 4), windows[i]);
      EXPECT_EQ(*StoreTestPeer::CountRows(*store_, users[i]), 4);
    }
    EXPECT_EQ(*store_->ListUsers(), (std::vector<std::string>{users[2], "u10"}));  // Key order.
    ASSERT_TRUE(store_->Flush().ok());
    Reopen();
  }

  // Delete, then a fresh two-event history, in one batch: only the new rows remain (the old
  // positions 3..6 would otherwise sit after the new ones and break the window).
  KvWindow fresh(kBlocks, 4, kD, 0);
  Append(fresh, 9, 2000);
  Append(fresh, 9, 2001);
  batch = store_->NewBatch();
  ASSERT_TRUE(batch.DeleteUser("u10").ok());
  ASSERT_TRUE(batch.PutWindow("u10", "model-a", fresh, 2).ok());
  ASSERT_TRUE(store_->Commit(batch).ok());
  Reopen();
  ExpectSameWindow(MustLoad("u10", 4), fresh);
  EXPECT_EQ(*StoreTestPeer::CountRows(*store_, "u10"), 2);
  EXPECT_EQ(batch.DeleteUser("").code(), StatusCode::kInvalidArgument);
}

// The changelog records of every commit, applied in order to another store (a restore), and
// only the newest record of each key in the order Kafka keeps them (a compacted changelog),
// rebuild the same users, windows, recent ids and stored rows: every row that left a window,
// and every row of a deleted user, was tombstoned, so nothing stray comes back.
TEST_F(UserStateStoreTest, TheChangelogOfEveryCommitRestoresTheSameStateWholeOrCompacted) {
  constexpr int64_t kWindow = 5;
  const std::vector<std::string> users = {"u-a", "u-b", "u-c", std::string("u\0d", 3)};
  std::map<std::string, KvWindow> windows;
  std::map<std::string, std::vector<std::string>> ids;
  for (const std::string& u : users) {
    windows.emplace(u, KvWindow(kBlocks, kWindow, kD, 0));
  }
  std::vector<ChangelogRecord> log;
  for (int round = 0; round < 12; ++round) {
    StateBatch batch = store_->NewBatch();
    for (std::size_t i = 0; i < users.size(); ++i) {
      const std::string& u = users[i];
      if (u == "u-c" && round > 9) {
        continue;  // Deleted for good at round 9.
      }
      KvWindow& w = windows.at(u);
      if ((u == "u-b" && round == 6) || (u == "u-c" && round == 9)) {
        ASSERT_TRUE(batch.DeleteUser(u, &log, w.next_pos - w.rows, w.next_pos).ok());
        w = KvWindow(kBlocks, kWindow, kD, 0);
        ids[u].clear();
        if (u == "u-c") {
          windows.erase(u);
          continue;
        }
      }
      const int64_t events = 1 + (round + static_cast<int64_t>(i)) % 4;
      for (int64_t e = 0; e < events; ++e) {
        Append(w, static_cast<int>(i) + round, 5000 + w.next_pos);
        ids[u].push_back(fmt::format("{}-{}-{}", u, round, e));
      }
      ASSERT_TRUE(batch.PutWindow(u, "model-a", w, events, ids[u], &log).ok());
    }
    ASSERT_TRUE(store_->Commit(batch).ok());
  }
  // Kafka's compaction keeps the last record of each key, in log order.
  std::map<std::string, std::size_t> last;
  for (std::size_t i = 0; i < log.size(); ++i) {
    last[log[i].key] = i;
  }
  std::vector<ChangelogRecord> compacted;
  for (std::size_t i = 0; i < log.size(); ++i) {
    if (last[log[i].key] == i && log[i].value) {  // Tombstones go too, in time.
      compacted.push_back(log[i]);
    }
  }
  EXPECT_LT(compacted.size(), log.size());
  const auto want_users = store_->ListUsers();
  ASSERT_TRUE(want_users.ok());
  EXPECT_EQ(want_users->size(), 3U);
  for (const std::vector<ChangelogRecord>* records : {&log, &compacted}) {
    SCOPED_TRACE(records == &log ? "whole" : "compacted");
    TempDir other_dir;
    StoreOptions options = Options();
    options.path = other_dir.db();
    auto other = UserStateStore::Open(options);
    ASSERT_TRUE(other.ok()) << other.status().ToString();
    StateBatch batch = (*other)->NewBatch();
    for (const ChangelogRecord& r : *records) {
      ASSERT_TRUE(batch.ApplyChangelog(r).ok()) << batch.ApplyChangelog(r).ToString();
    }
    ASSERT_TRUE((*other)->Commit(batch).ok());
    EXPECT_EQ(*(*other)->ListUsers(), *want_users);
    for (const std::string& u : *want_users) {
      const auto got = (*other)->LoadUserState(u, kBlocks, kWindow, kD);
      ASSERT_TRUE(got.ok() && got->has_value()) << u;
      ExpectSameWindow((*got)->window, windows.at(u));
      EXPECT_EQ((*got)->recent_event_ids, ids[u]);
      EXPECT_EQ(*StoreTestPeer::CountRows(**other, u), *StoreTestPeer::CountRows(*store_, u));
    }
    EXPECT_EQ(*StoreTestPeer::CountRows(**other, "u-c"), 0);
  }
}

// An unlogged commit is visible at once and, once flushed, survives a reopen like any other.
TEST_F(UserStateStoreTest, UnloggedCommitsAreVisibleAndDurableOnceFlushed) {
  KvWindow w(kBlocks, 4, kD, 0);
  Append(w, 3, 1000);
  Append(w, 3, 1001);
  StateBatch batch = store_->NewBatch();
  ASSERT_TRUE(batch.PutWindow("bulk", "model-a", w, 2).ok());
  ASSERT_TRUE(store_->CommitUnlogged(batch).ok());
  EXPECT_EQ(batch.Count(), 0);
  ExpectSameWindow(MustLoad("bulk", 4), w);
  ASSERT_TRUE(store_->Flush().ok());
  Reopen();
  ExpectSameWindow(MustLoad("bulk", 4), w);
}

// Without the write-ahead log (StoreOptions::wal false), a crash of the process loses what
// followed the last flush and never part of a commit: the store reopens with exactly the
// state and the offsets of the last commit before that flush, every column family flushed
// together. The commits after it are the input the daemon re-applies. A clean Close keeps all.
TEST_F(UserStateStoreTest, WithoutTheLogACrashRollsBackToWholeCommitsAtTheLastFlush) {
  TempDir crash_dir;
  // The crashing child is a fresh process that runs this test from its start: it takes the
  // parent's directory from the environment (not overwritten there).
  ::setenv("ROTOR_TEST_WAL_CRASH_DIR", crash_dir.db().c_str(), /*overwrite=*/0);
  StoreOptions options = Options();
  options.path = std::getenv("ROTOR_TEST_WAL_CRASH_DIR");
  options.wal = false;
  // Commit c appends one event to alice (every commit) and to bob (even commits) and sets the
  // offset to c + 1; `windows` rebuilds both after `commits` commits.
  const auto windows = [](int commits) {
    std::pair<KvWindow, KvWindow> out{KvWindow(kBlocks, 4, kD, 0), KvWindow(kBlocks, 4, kD, 0)};
    for (int c = 0; c < commits; ++c) {
      Append(out.first, 1, 1000 + c);
      if (c % 2 == 0) {
        Append(out.second, 2, 2000 + c);
      }
    }
    return out;
  };
  constexpr int kFlushedAfter = 6;
  // Run in a child process that ends without closing the store.
  const auto crash = [&] {
    auto store = UserStateStore::Open(options);
    if (!store.ok()) {
      std::_Exit(2);
    }
    for (int c = 0; c < 11; ++c) {
      auto [alice, bob] = windows(c + 1);
      StateBatch batch = (*store)->NewBatch();
      const bool ok = batch.PutWindow("alice", "m", alice, 1).ok() &&
                      (c % 2 != 0 || batch.PutWindow("bob", "m", bob, 1).ok()) &&
                      batch.SetOffset("events", 0, c + 1).ok() && (*store)->Commit(batch).ok();
      if (!ok || (c + 1 == kFlushedAfter && !(*store)->Flush().ok())) {
        std::_Exit(3);
      }
    }
    std::_Exit(0);  // No Close: nothing flushed since commit 6.
  };
  // A fresh process (threadsafe style): a forked child has none of the parent's RocksDB
  // background threads, and its Flush would wait for them forever.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(crash(), ::testing::ExitedWithCode(0), "");
  {
    auto store = UserStateStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    const auto offsets = (*store)->LoadOffsets();
    ASSERT_TRUE(offsets.ok()) << offsets.status().ToString();
    EXPECT_EQ(*offsets, (PartitionOffsets{{{"events", 0}, kFlushedAfter}}));
    const auto [alice, bob] = windows(kFlushedAfter);
    for (const auto& [user, want] : {std::pair{"alice", &alice}, std::pair{"bob", &bob}}) {
      auto loaded = (*store)->LoadWindow(user, kBlocks, 4, kD);
      ASSERT_TRUE(loaded.ok() && loaded->has_value()) << user;
      ExpectSameWindow(**loaded, *want);
    }
    // The re-applied commits, then a clean close: nothing is lost.
    for (int c = kFlushedAfter; c < 11; ++c) {
      auto [a, b] = windows(c + 1);
      StateBatch batch = (*store)->NewBatch();
      ASSERT_TRUE(batch.PutWindow("alice", "m", a, 1).ok());
      ASSERT_TRUE(batch.SetOffset("events", 0, c + 1).ok());
      ASSERT_TRUE((*store)->Commit(batch).ok());
    }
    ASSERT_TRUE((*store)->Close().ok());
  }
  auto store = UserStateStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->LoadOffsets()->at({"events", 0}), 11);
  auto alice = (*store)->LoadWindow("alice", kBlocks, 4, kD);
  ASSERT_TRUE(alice.ok() && alice->has_value());
  ExpectSameWindow(**alice, windows(11).first);
}

TEST_F(UserStateStoreTest, ChangelogMarkersRoundTripAndBadRecordsAreRefused) {
  const ChangelogRecord marker = EncodeChangelogMarker("rotor.events", 7, 1234, 1767225600000);
  const auto decoded = DecodeChangelogMarker(marker.key, marker.value);
  ASSERT_TRUE(decoded.ok() && decoded->has_value()) << decoded.status().ToString();
  EXPECT_EQ((*decoded)->partition, (TopicPartition{"rotor.events", 7}));
  EXPECT_EQ((*decoded)->next_offset, 1234);
  EXPECT_EQ((*decoded)->watermark, 1767225600000);
  EXPECT_EQ((*DecodeChangelogMarker(EncodeChangelogMarker("t", 0, 0, -1).key,
                                    EncodeChangelogMarker("t", 0, 0, -1).value))
                ->watermark,
            -1);
  // Not a marker: a row or a user.
  std::vector<ChangelogRecord> log;
  KvWindow w(kBlocks, 4, kD, 0);
  Append(w, 1, 1000);
  StateBatch batch = store_->NewBatch();
  ASSERT_TRUE(batch.PutWindow("u", "model-a", w, 1, {}, &log).ok());
  ASSERT_EQ(log.size(), 2U);  // The row, then the metadata.
  for (const ChangelogRecord& r : log) {
    const auto none = DecodeChangelogMarker(r.key, r.value);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
  }
  EXPECT_EQ(DecodeChangelogMarker(marker.key, std::nullopt).status().code(),
            StatusCode::kCorruption);
  EXPECT_EQ(DecodeChangelogMarker(marker.key, std::string(15, 'x')).status().code(),
            StatusCode::kCorruption);
  EXPECT_EQ(DecodeChangelogMarker("o", std::string(16, '\0')).status().code(),
            StatusCode::kCorruption);
  EXPECT_EQ(batch.ApplyChangelog(marker).code(), StatusCode::kInvalidArgument);
  const ChangelogRecord base = EncodeChangelogBase("rotor.events", 7, 99);
  EXPECT_EQ(batch.ApplyChangelog(base).code(), StatusCode::kInvalidArgument);
  const auto based = DecodeChangelogBase(base.key, base.value);
  ASSERT_TRUE(based.ok() && based->has_value());
  EXPECT_EQ((*based)->first, (TopicPartition{"rotor.events", 7}));
  EXPECT_EQ((*based)->second, 99);
  EXPECT_FALSE(DecodeChangelogBase(marker.key, marker.value)->has_value());
  EXPECT_FALSE(DecodeChangelogMarker(base.key, base.value)->has_value());
  EXPECT_EQ(DecodeChangelogBase(base.key, std::nullopt).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(batch.ApplyChangelog({.key = "", .value = "x"}).code(), StatusCode::kCorruption);
  EXPECT_EQ(batch.ApplyChangelog({.key = "zzz", .value = "x"}).code(), StatusCode::kCorruption);
  EXPECT_EQ(batch.ApplyChangelog({.key = "r", .value = "x"}).code(), StatusCode::kCorruption);
  EXPECT_EQ(batch.ApplyChangelog({.key = log[1].key, .value = "not metadata"}).code(),
            StatusCode::kCorruption);
  EXPECT_EQ(batch.ApplyChangelog({.key = "u", .value = std::nullopt}).code(),
            StatusCode::kInvalidArgument);  // An empty user id.
}

TEST_F(UserStateStoreTest, ScanningUsersStepsThroughAllInKeyOrderWithTheirLastEventTimes) {
  const std::vector<std::string> users = {"a", "b", "c", "d", "e"};
  for (std::size_t i = 0; i < users.size(); ++i) {
    KvWindow w(kBlocks, 4, kD, 0);
    AppendAndCommit(users[i], w, 1, static_cast<int64_t>(i) + 1, 1);  // last ts 1000 + i.
  }
  ASSERT_TRUE(StoreTestPeer::RawPut(*store_, ColumnFamily::kUsers, "c", "garbage").ok());
  std::vector<std::string> seen;
  std::string after;
  std::vector<std::size_t> steps;
  for (int guard = 0; guard < 10; ++guard) {
    const auto step = store_->ScanUsers(after, 2);
    ASSERT_TRUE(step.ok()) << step.status().ToString();
    steps.push_back(step->size());
    for (const StoredUser& u : *step) {
      seen.push_back(u.user);
      if (u.user == "c") {
        EXPECT_FALSE(u.last_ts_ms.has_value()) << "undecodable metadata";
      } else {
        EXPECT_EQ(u.last_ts_ms, 1000 + (u.user[0] - 'a')) << u.user;
      }
    }
    if (step->size() < 2) {
      break;
    }
    after = step->back().user;
  }
  EXPECT_EQ(seen, users);
  EXPECT_EQ(steps, (std::vector<std::size_t>{2, 2, 1}));
  // After a user that is gone: from the next one.
  const auto from_gone = store_->ScanUsers("bb", 10);
  ASSERT_TRUE(from_gone.ok());
  ASSERT_EQ(from_gone->size(), 3U);
  EXPECT_EQ(from_gone->front().user, "c");
  EXPECT_EQ(store_->ScanUsers("", 0).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(UserStateStoreTest, ReopenAfterCloseAndFlushKeepsEverything) {
  KvWindow w(kBlocks, 5, kD, 0);
  AppendAndCommit("carol", w, 2, 12, 4);
  StateBatch batch = store_->NewBatch();
  ASSERT_TRUE(batch.SetOffset("events", 1, 12).ok());
  ASSERT_TRUE(store_->Commit(batch).ok());
  ASSERT_TRUE(store_->Flush().ok());
  ASSERT_TRUE(store_->Close().ok());
  EXPECT_EQ(store_->LoadOffsets().status().code(), StatusCode::kFailedPrecondition);
  Reopen();
  ExpectSameWindow(MustLoad("carol", 5), w);
  const auto offsets = store_->LoadOffsets();
  ASSERT_TRUE(offsets.ok()) << offsets.status().ToString();
  EXPECT_EQ(offsets->at({"events", 1}), 12);
}

TEST_F(UserStateStoreTest, PropertiesFollowWhatTheStoreHoldsAndAreUnknownOnceClosed) {
  const StoreProperties empty = store_->Properties();
  EXPECT_GE(empty.memtable_bytes, 0);
  EXPECT_GE(empty.block_cache_bytes, 0);
  EXPECT_GE(empty.live_data_bytes, 0);
  EXPECT_GE(empty.pending_compaction_bytes, 0);
  EXPECT_EQ(empty.delayed_write_rate, 0);
  EXPECT_EQ(empty.write_stopped, 0);
  KvWindow w(kBlocks, 5, kD, 0);
  AppendAndCommit("dave", w, 3, 40, 4);
  const StoreProperties written = store_->Properties();
  EXPECT_GT(written.memtable_bytes, empty.memtable_bytes);
  ASSERT_TRUE(store_->Flush().ok());
  EXPECT_GT(store_->Properties().live_data_bytes, 0);
  ASSERT_TRUE(store_->Close().ok());
  const StoreProperties closed = store_->Properties();
  EXPECT_EQ(closed.memtable_bytes, -1);
  EXPECT_EQ(closed.write_stopped, -1);
}

TEST_F(UserStateStoreTest, RecentEventIdsCommitWithTheWindowAndReloadInOrder) {
  KvWindow w(kBlocks, 4, kD, 0);
  Append(w, 1, 10);
  StateBatch batch = store_->NewBatch();
  const std::vector<std::string> ids = {"e3", "e1", std::string("e\0\xff", 3)};
  ASSERT_TRUE(batch.PutWindow("erin", "m", w, 1, ids).ok());
  ASSERT_TRUE(store_->Commit(batch).ok());
  Reopen();
  auto loaded = store_->LoadUserState("erin", kBlocks, 4, kD);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->recent_event_ids, ids);
  ExpectSameWindow((*loaded)->window, w);
  // A later commit replaces the list (the pipeline keeps it bounded).
  batch = store_->NewBatch();  // The old batch belonged to the store before Reopen.
  Append(w, 1, 11);
  ASSERT_TRUE(batch.PutWindow("erin", "m", w, 1, std::vector<std::string>{"e4"}).ok());
  ASSERT_TRUE(store_->Commit(batch).ok());
  loaded = store_->LoadUserState("erin", kBlocks, 4, kD);
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->recent_event_ids, std::vector<std::string>{"e4"});
  const auto users = store_->ListUsers();
  ASSERT_TRUE(users.ok());
  EXPECT_EQ(*users, std::vector<std::string>{"erin"});
  const auto none = store_->LoadUserState("nobody", kBlocks, 4, kD);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(
      batch
          .PutWindow("erin", "m", w, 0,
                     std::vector<std::string>{std::string(internal::kMaxEventIdBytes + 1, 'x')})
          .code(),
      StatusCode::kInvalidArgument);
}

TEST_F(UserStateStoreTest, InfoEntriesCommitAndReload) {
  auto none = store_->LoadInfo("model_id");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  StateBatch batch = store_->NewBatch();
  ASSERT_TRUE(batch.PutInfo("model_id", "abc").ok());
  EXPECT_EQ(batch.PutInfo("", "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(batch.PutInfo("x", "").code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_->Commit(batch).ok());
  Reopen();
  auto got = store_->LoadInfo("model_id");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ(**got, "abc");
}

TEST_F(UserStateStoreTest, CommittedUserHasStateModelIdAndItsPartitionsOffset) {
  KvWindow w(kBlocks, 4, kD, 7);
  Append(w, 1, 10);
  Append(w, 1, 11);
  StateBatch batch = store_->NewBatch();
  ASSERT_TRUE(batch.PutWindow("dora", "model-a", w, 2, std::vector<std::string>{"e1", "e2"}).ok());
  ASSERT_TRUE(batch.SetOffset("events", 2, 58).ok());
  ASSERT_TRUE(batch.SetOffset("events", 3, 9).ok());
  ASSERT_TRUE(store_->Commit(batch).ok());

  auto got = store_->LoadCommittedUser("dora", kBlocks, 4, kD, "events", 2);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(got->state.has_value());
  ExpectSameWindow(got->state->window, w);
  EXPECT_EQ(got->state->recent_event_ids, (std::vector<std::string>{"e1", "e2"}));
  EXPECT_EQ(got->model_id, "model-a");
  EXPECT_EQ(got->next_offset, 58);

  // Another partition's offset; a partition without one.
  got = store_->LoadCommittedUser("dora", kBlocks, 4, kD, "events", 3);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->next_offset, 9);
  got = store_->LoadCommittedUser("dora", kBlocks, 4, kD, "other", 2);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->state.has_value());
  EXPECT_FALSE(got->next_offset.has_value());

  // A user without state still gets the partition's offset: what it covers is "nothing yet".
  got = store_->LoadCommittedUser("nobody", kBlocks, 4, kD, "events", 2);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->state.has_value());
  EXPECT_EQ(got->model_id, "");
  EXPECT_EQ(got->next_offset, 58);
}

TEST_F(UserStateStoreTest, CommittedUserRefusesWhatLoadUserStateRefuses) {
  KvWindow w(kBlocks, 4, kD, 0);
  AppendAndCommit("eve", w, 1, 2, 2);
  EXPECT_EQ(store_->LoadCommittedUser("eve", kBlocks, 5, kD, "t", 0).status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->LoadCommittedUser("", kBlocks, 4, kD, "t", 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->LoadCommittedUser("eve", kBlocks, 4, kD, "", 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->LoadCommittedUser("eve", kBlocks, 4, kD, "t", -1).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->LoadCommittedUser("eve", 0, 4, kD, "t", 0).status().code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(
      StoreTestPeer::RawPut(*store_, ColumnFamily::kOffsets, internal::OffsetKey("t", 0), "short")
          .ok());
  const auto bad = store_->LoadCommittedUser("eve", kBlocks, 4, kD, "t", 0);
  EXPECT_EQ(bad.status().code(), StatusCode::kCorruption);
  ASSERT_TRUE(store_->Close().ok());
  EXPECT_EQ(store_->LoadCommittedUser("eve", kBlocks, 4, kD, "t", 1).status().code(),
            StatusCode::kFailedPrecondition);
}

// The reason LoadCommittedUser exists: state and offset from one snapshot never mix two
// commits, however commits interleave with reads. Each commit appends one event and sets the
// offset to the new next_pos, so a read must always see next_pos == next_offset.
TEST_F(UserStateStoreTest, CommittedUserNeverMixesTwoCommits) {
  KvWindow w(kBlocks, 3, kD, 0);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    StateBatch batch = store_->NewBatch();
    for (int i = 0; i < 300; ++i) {
      Append(w, 1, 1000 + i);
      EXPECT_TRUE(batch.PutWindow("fay", "m", w, 1).ok());
      EXPECT_TRUE(batch.SetOffset("events", 0, w.next_pos).ok());
      EXPECT_TRUE(store_->Commit(batch).ok());
    }
    done = true;
  });
  int64_t reads = 0;
  int64_t last = 0;
  while (!done || reads == 0) {
    const auto got = store_->LoadCommittedUser("fay", kBlocks, 3, kD, "events", 0);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    if (got->state.has_value()) {
      ASSERT_EQ(got->next_offset, got->state->window.next_pos);
      EXPECT_GE(got->state->window.next_pos, last);  // Never goes back.
      last = got->state->window.next_pos;
    } else {
      EXPECT_FALSE(got->next_offset.has_value());
    }
    ++reads;
  }
  writer.join();
  EXPECT_GT(reads, 0);
}

TEST_F(UserStateStoreTest, CorruptMetadataIsCorruptionNamingTheKey) {
  KvWindow w(kBlocks, 4, kD, 0);
  AppendAndCommit("dave", w, 3, 2, 1);
  ASSERT_TRUE(StoreTestPeer::RawPut(*store_, ColumnFamily::kUsers, "dave", "garbage").ok());
  const auto loaded = store_->LoadWindow("dave", kBlocks, 4, kD);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kCorruption);
  EXPECT_NE(loaded.status().message().find("users key 'dave'"), std::string_view::npos)
      << loaded.status().ToString();
  EXPECT_EQ(store_->LoadModelId("dave").status().code(), StatusCode::kCorruption);
}

TEST_F(UserStateStoreTest, CorruptOrMissingRowsAreCorruptionNamingTheKey) {
  KvWindow w(kBlocks, 4, kD, 0);
  AppendAndCommit("erin", w, 4, 6, 2);  // Rows at positions 2..5.
  {
    ASSERT_TRUE(
        StoreTestPeer::RawPut(*store_, ColumnFamily::kRows, internal::RowKey("erin", 3), "short")
            .ok());
    const auto loaded = store_->LoadWindow("erin", kBlocks, 4, kD);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.status().code(), StatusCode::kCorruption);
    EXPECT_NE(loaded.status().message().find("position 3"), std::string_view::npos)
        << loaded.status().ToString();
  }
  {
    ASSERT_TRUE(
        StoreTestPeer::RawDelete(*store_, ColumnFamily::kRows, internal::RowKey("erin", 3)).ok());
    const auto loaded = store_->LoadWindow("erin", kBlocks, 4, kD);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.status().code(), StatusCode::kCorruption);
    EXPECT_NE(loaded.status().message().find("position 3"), std::string_view::npos)
        << loaded.status().ToString();
  }
  {
    ASSERT_TRUE(
        StoreTestPeer::RawDelete(*store_, ColumnFamily::kRows, internal::RowKey("erin", 5)).ok());
    ASSERT_TRUE(StoreTestPeer::RawPut(*store_, ColumnFamily::kRows, internal::RowKey("erin", 3),
                                      std::string(internal::RowValueBytes(kBlocks, kD), '\0'))
                    .ok());
    const auto loaded = store_->LoadWindow("erin", kBlocks, 4, kD);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.status().code(), StatusCode::kCorruption);
    EXPECT_NE(loaded.status().message().find("missing"), std::string_view::npos)
        << loaded.status().ToString();
  }
  {
    // A corrupt offset value.
    ASSERT_TRUE(StoreTestPeer::RawPut(*store_, ColumnFamily::kOffsets,
                                      internal::OffsetKey("events", 2), "xyz")
                    .ok());
    const auto offsets = store_->LoadOffsets();
    ASSERT_FALSE(offsets.ok());
    EXPECT_EQ(offsets.status().code(), StatusCode::kCorruption);
    EXPECT_NE(offsets.status().message().find("offsets key"), std::string_view::npos);
  }
}

TEST_F(UserStateStoreTest, LoadingWithAnotherShapeIsFailedPrecondition) {
  KvWindow w(kBlocks, 4, kD, 0);
  AppendAndCommit("frank", w, 5, 1, 1);
  for (const auto& [n_blocks, window, d] :
       {std::tuple{kBlocks + 1, int64_t{4}, kD}, std::tuple{kBlocks, int64_t{5}, kD},
        std::tuple{kBlocks, int64_t{4}, kD * 2}}) {
    const auto loaded = store_->LoadWindow("frank", n_blocks, window, d);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.status().code(), StatusCode::kFailedPrecondition)
        << loaded.status().ToString();
  }
  EXPECT_EQ(store_->LoadWindow("frank", 0, 4, kD).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->LoadWindow("", kBlocks, 4, kD).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(UserStateStoreTest, BatchesRefuseBadArguments) {
  StateBatch batch = store_->NewBatch();
  KvWindow w(kBlocks, 4, kD, 0);
  Append(w, 1, 1);
  EXPECT_EQ(batch.PutWindow("", "m", w, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(batch.PutWindow(std::string(internal::kMaxUserIdBytes + 1, 'u'), "m", w, 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(batch.PutWindow("u", "m", w, 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(batch.PutWindow("u", "m", w, -1).code(), StatusCode::kInvalidArgument);
  KvWindow bad_rows = w;
  bad_rows.rows = 5;
  EXPECT_EQ(batch.PutWindow("u", "m", bad_rows, 1).code(), StatusCode::kInvalidArgument);
  KvWindow bad_shape = w;
  bad_shape.v.pop_back();
  EXPECT_EQ(batch.PutWindow("u", "m", bad_shape, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(batch.SetOffset("", 0, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(batch.SetOffset("t", -1, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(batch.SetOffset("t", 0, -1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(batch.Count(), 0);

  TempDir other_dir;
  StoreOptions other = Options();
  other.path = other_dir.db();
  auto other_store = UserStateStore::Open(other);
  ASSERT_TRUE(other_store.ok()) << other_store.status().ToString();
  StateBatch foreign = (*other_store)->NewBatch();
  EXPECT_EQ(store_->Commit(foreign).code(), StatusCode::kInvalidArgument);
}

TEST_F(UserStateStoreTest, OpenRefusesBadOptionsNamingTheField) {
  auto expect_refused = [](const StoreOptions& options, std::string_view field) {
    const auto opened = UserStateStore::Open(options);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(opened.status().message().find(field), std::string_view::npos)
        << opened.status().ToString();
  };
  StoreOptions options = Options();
  options.path.clear();
  expect_refused(options, "StoreOptions.path");
  options = Options();
  options.block_cache_bytes = 0;
  expect_refused(options, "StoreOptions.block_cache_bytes");
  options = Options();
  options.write_buffer_bytes = -1;
  expect_refused(options, "StoreOptions.write_buffer_bytes");
  options = Options();
  options.write_buffer_bytes = options.block_cache_bytes + 1;
  expect_refused(options, "StoreOptions.write_buffer_bytes");

  // The path is locked by the open store; a missing database with create_if_missing off.
  EXPECT_FALSE(UserStateStore::Open(Options()).ok());
  TempDir empty;
  options = Options();
  options.path = empty.db();
  options.create_if_missing = false;
  const auto missing = UserStateStore::Open(options);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status().ToString();
  EXPECT_NE(missing.status().message().find(empty.db()), std::string_view::npos)
      << missing.status().ToString();
}

}  // namespace
}  // namespace rotor::storage
