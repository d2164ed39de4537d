#include "common/failpoint.h"

#include <csignal>
#include <cstdlib>

#include <gtest/gtest.h>

namespace rotor::failpoint {
namespace {

TEST(FailpointDeathTest, KillsOnTheNthPassOfTheNamedPointOnly) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  ASSERT_EQ(setenv("ROTOR_FAILPOINT", "test.point:3", 1), 0);
  EXPECT_EXIT(
      {
        Hit("test.other");
        Hit("test.point");
        Hit("test.point");
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        for (int i = 0; i < 5; ++i) {
          Hit("test.point");
        }
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGKILL), "failpoint test.point: killed");
  ASSERT_EQ(unsetenv("ROTOR_FAILPOINT"), 0);
  Hit("test.point");  // Nothing asked for: passes.
}

}  // namespace
}  // namespace rotor::failpoint
