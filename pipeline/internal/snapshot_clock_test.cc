#include "pipeline/internal/snapshot_clock.h"

#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace rotor::pipeline::internal {
namespace {

TEST(SnapshotClockTest, AtMostOneSnapshotPerIntervalAfterFirstSight) {
  SnapshotClock clock(100, 16);
  EXPECT_FALSE(clock.Due("u", 0));    // First sight.
  EXPECT_FALSE(clock.Due("u", 99));   // Not an interval yet.
  EXPECT_TRUE(clock.Due("u", 100));   // Due.
  EXPECT_FALSE(clock.Due("u", 150));  // Counted from the snapshot.
  EXPECT_TRUE(clock.Due("u", 200));
}

// Far more users than it keeps: the map never grows past the cap, and dropping clocks never
// makes a snapshot due sooner than an interval after the user was last seen or snapshotted.
TEST(SnapshotClockTest, KeepsAtMostMaxUsersAndDroppingOnlyDelaysSnapshots) {
  constexpr std::size_t kMax = 64;
  SnapshotClock clock(1000, kMax);
  int64_t now = 0;
  for (int round = 0; round < 50; ++round) {
    for (int u = 0; u < 500; ++u) {
      const std::string user = fmt::format("user-{}", u);
      (void)clock.Due(user, now);
      EXPECT_LE(clock.size(), kMax);
      ++now;
    }
  }
  // A user seen once, then again within the interval, is never due, whatever was dropped.
  SnapshotClock small(1000, 4);
  EXPECT_FALSE(small.Due("a", 0));
  for (int u = 0; u < 20; ++u) {
    EXPECT_FALSE(small.Due(fmt::format("x{}", u), 10 + u));
  }
  EXPECT_FALSE(small.Due("a", 500));
}

}  // namespace
}  // namespace rotor::pipeline::internal
