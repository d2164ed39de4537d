#include "pipeline/internal/worker_pool.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace rotor::pipeline::internal {
namespace {

TEST(WorkerPoolTest, RunsEveryShardOnceAndWaitsForAll) {
  for (const int threads : {1, 2, 3}) {
    WorkerPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (const int shards : {0, 1, 2, 5, 16}) {
      std::vector<std::atomic<int>> calls(static_cast<std::size_t>(shards));
      pool.Run(shards, [&](int s) {
        std::this_thread::sleep_for(std::chrono::microseconds(200 * (s % 3)));
        calls[static_cast<std::size_t>(s)].fetch_add(1);
      });
      for (int s = 0; s < shards; ++s) {
        EXPECT_EQ(calls[static_cast<std::size_t>(s)].load(), 1)
            << "threads " << threads << " shards " << shards << " shard " << s;
      }
    }
  }
}

TEST(WorkerPoolTest, AShardRunsOnTheSameThreadEveryTimeAndShardZeroOnTheCaller) {
  WorkerPool pool(2);
  std::vector<std::thread::id> first(4);
  pool.Run(4, [&](int s) { first[static_cast<std::size_t>(s)] = std::this_thread::get_id(); });
  EXPECT_EQ(first[0], std::this_thread::get_id());
  EXPECT_EQ(first[2], std::this_thread::get_id());
  EXPECT_NE(first[1], std::this_thread::get_id());
  EXPECT_EQ(first[1], first[3]);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::thread::id> again(4);
    pool.Run(4, [&](int s) { again[static_cast<std::size_t>(s)] = std::this_thread::get_id(); });
    EXPECT_EQ(again, first);
  }
}

TEST(WorkerPoolTest, ShardsRunConcurrently) {
  // Each of two shards waits for the other to start: with two threads both finish; run one
  // after the other they would wait forever (the test would time out).
  WorkerPool pool(2);
  std::atomic<int> started{0};
  pool.Run(2, [&](int /*shard*/) {
    started.fetch_add(1);
    while (started.load() < 2) {
      std::this_thread::yield();
    }
  });
  EXPECT_EQ(started.load(), 2);
}

}  // namespace
}  // namespace rotor::pipeline::internal
