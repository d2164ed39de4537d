// The store on a disk that fills up: every write RocksDB makes goes through FaultFs, which
// fails appends with NoSpace (tearing the write, as a full file system does) once a byte budget
// is spent, or fails syncs on demand. A commit that fails must return ResourceExhausted naming
// the store's directory, later commits must be refused, nothing may abort, and a restart must
// see exactly the state and offsets of the last successful commit.

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include "common/status.h"
#include "common/topic_partition.h"
#include "storage/internal/fault_fs.h"
#include "storage/internal/info_log.h"
#include "storage/internal/store_test_peer.h"
#include "storage/internal/store_testing.h"
#include "storage/user_state_store.h"

namespace rotor::storage {
namespace {

using encoders::KvWindow;
using internal::FaultFs;
using internal::StoreTestPeer;
using internal::testing::Append;
using internal::testing::ExpectSameWindow;
using internal::testing::TempDir;
using ::testing::HasSubstr;

// Rows of 2 blocks x K/V x 64 floats (1 KiB), so that 64 KiB memtables flush every few commits
// and a sweep over the byte budget also fails SST, MANIFEST and compaction writes.
constexpr int64_t kBlocks = 2;
constexpr int64_t kWindow = 8;
constexpr int64_t kD = 64;
constexpr int kNewUsersPerCommit = 6;
constexpr const char* kModel = "model-a";
constexpr const char* kTopic = "events";

// What the store must hold: the windows and offsets of every successful commit.
struct Model {
  std::map<std::string, KvWindow> windows;
  PartitionOffsets offsets;
};

// Commit i of a flood: kNewUsersPerCommit users never seen before, one returning user whose
// window wraps around, and the next offset of partition i % 4.
struct Step {
  std::vector<std::pair<std::string, KvWindow>> windows;
  std::vector<int64_t> new_rows;
  int32_t partition = 0;
  int64_t next_offset = 0;
};

Step MakeStep(const Model& model, int i) {
  Step step;
  for (int u = 0; u < kNewUsersPerCommit; ++u) {
    KvWindow w(kBlocks, kWindow, kD, 0);
    Append(w, i * kNewUsersPerCommit + u, 1000 + i);
    step.windows.emplace_back(fmt::format("user-{:05d}-{}", i, u), std::move(w));
    step.new_rows.push_back(1);
  }
  const auto found = model.windows.find("regular");
  KvWindow regular =
      found == model.windows.end() ? KvWindow(kBlocks, kWindow, kD, 0) : found->second;
  Append(regular, 7, 1000 + i);
  Append(regular, 7, 1000 + i);
  step.windows.emplace_back("regular", std::move(regular));
  step.new_rows.push_back(2);
  step.partition = i % 4;
  step.next_offset = i + 1;
  return step;
}

Status CommitStep(UserStateStore& store, const Step& step) {
  StateBatch batch = store.NewBatch();
  for (std::size_t j = 0; j < step.windows.size(); ++j) {
    ROTOR_RETURN_IF_ERROR(
        batch.PutWindow(step.windows[j].first, kModel, step.windows[j].second, step.new_rows[j]));
  }
  ROTOR_RETURN_IF_ERROR(batch.SetOffset(kTopic, step.partition, step.next_offset));
  return store.Commit(batch);
}

void Apply(Model& model, const Step& step) {
  for (const auto& [user, window] : step.windows) {
    model.windows.insert_or_assign(user, window);
  }
  model.offsets[{kTopic, step.partition}] = step.next_offset;
}

// Commits step i; on success the model takes it too.
Status CommitAndTrack(UserStateStore& store, Model& model, int i) {
  Step step = MakeStep(model, i);
  Status s = CommitStep(store, step);
  if (s.ok()) {
    Apply(model, step);
  }
  return s;
}

void ExpectStoreHolds(const UserStateStore& store, const Model& model) {
  const auto users = store.ListUsers();
  ASSERT_TRUE(users.ok()) << users.status().ToString();
  std::vector<std::string> want;
  for (const auto& entry : model.windows) {
    want.push_back(entry.first);
  }
  ASSERT_EQ(*users, want);
  for (const auto& [user, window] : model.windows) {
    SCOPED_TRACE(user);
    const auto loaded = store.LoadWindow(user, kBlocks, kWindow, kD);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    ASSERT_TRUE(loaded->has_value());
    ExpectSameWindow(**loaded, window);
  }
  const auto offsets = store.LoadOffsets();
  ASSERT_TRUE(offsets.ok()) << offsets.status().ToString();
  EXPECT_EQ(*offsets, model.offsets);
}

StoreOptions Options(const TempDir& dir, bool sync_writes = false) {
  return {.path = dir.db(),
          .block_cache_bytes = int64_t{8} << 20,
          .write_buffer_bytes = int64_t{128} << 10,
          .sync_writes = sync_writes,
          .create_if_missing = true};
}

std::unique_ptr<UserStateStore> MustOpen(const StoreOptions& options) {
  auto opened = UserStateStore::Open(options);
  EXPECT_TRUE(opened.ok()) << opened.status().ToString();
  return opened.ok() ? std::move(opened).value() : nullptr;
}

TEST(DiskFullTest, AFullDiskFailsTheCommitCleanlyAndARestartSeesTheLastGoodCommit) {
  const TempDir dir;
  const auto fs = std::make_shared<FaultFs>();
  Model model;
  {
    auto opened = StoreTestPeer::OpenWithFileSystem(Options(dir), fs);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    UserStateStore& store = **opened;
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(CommitAndTrack(store, model, i).ok());
    }
    fs->SetSpaceLeft(100);  // The next write-ahead log record tears after 100 bytes.
    const Status failed = CommitAndTrack(store, model, 5);
    ASSERT_EQ(failed.code(), StatusCode::kResourceExhausted) << failed.ToString();
    EXPECT_THAT(failed.message(), HasSubstr("no space left"));
    EXPECT_THAT(failed.message(), HasSubstr(dir.db()));

    // Space is back, yet the store refuses: a later batch builds on the failed one's state.
    fs->SetSpaceLeft(-1);
    const Status refused = CommitAndTrack(store, model, 6);
    EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused.ToString();
    EXPECT_THAT(refused.message(), HasSubstr("an earlier commit failed"));
    const Status flushed = store.Flush();
    EXPECT_EQ(flushed.code(), StatusCode::kResourceExhausted) << flushed.ToString();
    // Reads still answer, from the last good commit.
    ExpectStoreHolds(store, model);
    (void)store.Close();  // Whatever it reports, it must not abort.
  }
  // A restart on a disk that is still full fails cleanly.
  fs->SetSpaceLeft(0);
  {
    const auto reopened = StoreTestPeer::OpenWithFileSystem(Options(dir), fs);
    ASSERT_FALSE(reopened.ok());
    EXPECT_EQ(reopened.status().code(), StatusCode::kResourceExhausted)
        << reopened.status().ToString();
  }
  // With room: exactly the last good commit, nothing of the failed one, and it commits again.
  const auto store = MustOpen(Options(dir));
  ASSERT_NE(store, nullptr);
  ExpectStoreHolds(*store, model);
  ASSERT_TRUE(CommitAndTrack(*store, model, 7).ok());
  ExpectStoreHolds(*store, model);
}

TEST(DiskFullTest, EveryPointOfFailureLeavesExactlyTheLastGoodCommit) {
  constexpr int kSteps = 40;
  // The bytes a clean run appends (WAL, SSTs, MANIFEST, OPTIONS), to sweep the budget over.
  int64_t total = 0;
  {
    const TempDir dir;
    const auto fs = std::make_shared<FaultFs>();
    auto opened = StoreTestPeer::OpenWithFileSystem(Options(dir), fs);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    Model model;
    for (int i = 0; i < kSteps; ++i) {
      ASSERT_TRUE(CommitAndTrack(**opened, model, i).ok());
    }
    ASSERT_TRUE((*opened)->Close().ok());
    total = fs->bytes_appended();
  }
  ASSERT_GT(total, int64_t{200} << 10) << "too few bytes for memtable flushes to happen";
  constexpr int kBudgets = 25;
  int failed_opens = 0;
  int failed_commits = 0;
  for (int k = 0; k < kBudgets; ++k) {
    const int64_t budget = total * k / (kBudgets - 1) + (k % 2 == 0 ? 0 : 37);
    SCOPED_TRACE(fmt::format("budget {} of {} bytes", budget, total));
    const TempDir dir;
    const auto fs = std::make_shared<FaultFs>();
    fs->SetSpaceLeft(budget);
    Model model;
    {
      auto opened = StoreTestPeer::OpenWithFileSystem(Options(dir), fs);
      if (!opened.ok()) {
        EXPECT_EQ(opened.status().code(), StatusCode::kResourceExhausted)
            << opened.status().ToString();
        ++failed_opens;
      } else {
        UserStateStore& store = **opened;
        for (int i = 0; i < kSteps; ++i) {
          const Status s = CommitAndTrack(store, model, i);
          if (!s.ok()) {
            EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
            ++failed_commits;
            fs->SetSpaceLeft(-1);
            EXPECT_FALSE(CommitAndTrack(store, model, i + 1).ok())
                << "a commit after a failed one went through";
            break;
          }
        }
        // A flush that failed makes RocksDB's background thread pause 1 s, which Close waits.
        (void)store.Close();
      }
    }
    const auto store = MustOpen(Options(dir));
    ASSERT_NE(store, nullptr);
    ExpectStoreHolds(*store, model);
  }
  EXPECT_GT(failed_opens, 0);
  EXPECT_GT(failed_commits, kBudgets / 2);
}

TEST(DiskFullTest, AFailedSyncIsAllOrNothing) {
  const TempDir dir;
  const auto fs = std::make_shared<FaultFs>();
  Model before;
  Model after;
  {
    auto opened = StoreTestPeer::OpenWithFileSystem(Options(dir, /*sync_writes=*/true), fs);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    UserStateStore& store = **opened;
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(CommitAndTrack(store, before, i).ok());
    }
    after = before;
    Step step = MakeStep(before, 3);
    fs->SetFailSyncs(true);
    const Status failed = CommitStep(store, step);
    ASSERT_EQ(failed.code(), StatusCode::kResourceExhausted) << failed.ToString();
    Apply(after, step);
    fs->SetFailSyncs(false);
    EXPECT_FALSE(CommitAndTrack(store, before, 4).ok());
    (void)store.Close();
  }
  // The batch reached the file before its sync failed: a restart may find all of it, never a
  // part (the offsets travel in the same batch, so they say which).
  const auto store = MustOpen(Options(dir));
  ASSERT_NE(store, nullptr);
  const auto offsets = store->LoadOffsets();
  ASSERT_TRUE(offsets.ok()) << offsets.status().ToString();
  ExpectStoreHolds(*store, *offsets == before.offsets ? before : after);
}

// Flushes write table files and then a MANIFEST record; either failing must stop the store as
// a failed log write does.
class FailedFlushTest : public ::testing::TestWithParam<const char*> {};

TEST_P(FailedFlushTest, LeavesExactlyTheLastGoodCommit) {
  const TempDir dir;
  const auto fs = std::make_shared<FaultFs>();
  fs->SetOnlyFilesNamed(GetParam());
  Model model;
  {
    auto opened = StoreTestPeer::OpenWithFileSystem(Options(dir), fs);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    UserStateStore& store = **opened;
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(CommitAndTrack(store, model, i).ok());
    }
    fs->SetSpaceLeft(0);
    Status failed;
    for (int i = 3; i < 100 && failed.ok(); ++i) {
      failed = CommitAndTrack(store, model, i);
    }
    ASSERT_EQ(failed.code(), StatusCode::kResourceExhausted) << failed.ToString();
    EXPECT_THAT(failed.message(), HasSubstr(GetParam()));
    EXPECT_GT(fs->faults(), 0);
    fs->SetSpaceLeft(-1);
    EXPECT_FALSE(CommitAndTrack(store, model, 100).ok());
    (void)store.Close();
  }
  const auto store = MustOpen(Options(dir));
  ASSERT_NE(store, nullptr);
  ExpectStoreHolds(*store, model);
}

INSTANTIATE_TEST_SUITE_P(DiskFullTest, FailedFlushTest, ::testing::Values(".sst", "MANIFEST"));

// RocksDB's info LOG must not be written by RocksDB's own logger: in Debian's RocksDB 7.8 it
// aborts the process on the first line after a write that failed (`rotor serve` died of
// SIGABRT that way on a full disk). The store's LOG lines go through rotor's InfoLog.
TEST(DiskFullTest, TheStoreLogsThroughRotorsInfoLog) {
  const TempDir dir;
  const auto store = MustOpen(Options(dir));
  ASSERT_NE(store, nullptr);
  Model model;
  ASSERT_TRUE(CommitAndTrack(*store, model, 0).ok());
  ASSERT_TRUE(store->Flush().ok());
  const internal::InfoLogCounts counts = StoreTestPeer::InfoLogLines(*store);
  EXPECT_GT(counts.written, 10);
  EXPECT_EQ(counts.dropped, 0);
}

// The root of the SIGABRT `rotor serve` died of on a full disk: RocksDB's own LOG writer
// asserts on the line after a failed one. Ours drops what it cannot write.
TEST(DiskFullTest, TheInfoLogDropsWhatAFullDiskRefuses) {
  if (::access("/dev/full", W_OK) != 0) {
    GTEST_SKIP() << "no writable /dev/full here";
  }
  const auto log = internal::NewInfoLogAt("/dev/full");
  for (int i = 0; i < 50; ++i) {
    rocksdb::Log(rocksdb::InfoLogLevel::ERROR_LEVEL, log, "line %d of a full disk", i);
    rocksdb::Log(rocksdb::InfoLogLevel::INFO_LEVEL, log, "%s", "info");
  }
  const internal::InfoLogCounts counts = internal::CountsOf(*log);
  EXPECT_EQ(counts.written, 0);
  EXPECT_EQ(counts.dropped, 100);
}

TEST(DiskFullTest, TheInfoLogRotatesLikeRocksDbs) {
  const TempDir dir;
  const std::string db = dir.db();
  for (int run = 0; run < 4; ++run) {
    const auto log = internal::NewInfoLog(db, /*keep_old=*/2, /*create_dir=*/true);
    rocksdb::Log(rocksdb::InfoLogLevel::WARN_LEVEL, log, "run %d", run);
    rocksdb::Log(rocksdb::InfoLogLevel::DEBUG_LEVEL, log, "not at INFO");
    EXPECT_EQ(internal::CountsOf(*log).written, 1);
    EXPECT_EQ(internal::CountsOf(*log).dropped, 0);
    ::usleep(2000);  // Distinct LOG.old.<micros> names.
  }
  int old = 0;
  for (const auto& entry : std::filesystem::directory_iterator(db)) {
    old += entry.path().filename().string().rfind("LOG.old.", 0) == 0 ? 1 : 0;
  }
  EXPECT_EQ(old, 2);
  std::ifstream in(std::filesystem::path(db) / "LOG");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("[WARN] run 3\n"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("not at INFO")));
  // Without create_dir a missing directory is left alone; the lines are dropped.
  const auto nowhere =
      internal::NewInfoLog((dir.path() / "missing").string(), 2, /*create_dir=*/false);
  rocksdb::Log(rocksdb::InfoLogLevel::INFO_LEVEL, nowhere, "dropped");
  EXPECT_EQ(internal::CountsOf(*nowhere).dropped, 1);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "missing"));
}

}  // namespace
}  // namespace rotor::storage
