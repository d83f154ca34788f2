#include "common/testing/fake_clock.h"

#include <thread>

#include "gtest/gtest.h"

namespace dispatchd {
namespace {

TEST(FakeClockTest, MovesOnlyWhenAdvanced) {
  FakeClock clock;
  const absl::Time t0 = clock.Now();
  EXPECT_EQ(clock.Now(), t0);
  clock.Advance(absl::Seconds(3));
  EXPECT_EQ(clock.Now(), t0 + absl::Seconds(3));
}

TEST(FakeClockTest, SleeperWakesWhenClockPassesDeadline) {
  FakeClock clock;
  const absl::Time deadline = clock.Now() + absl::Seconds(10);
  std::atomic<bool> woke{false};
  std::thread sleeper([&] {
    clock.SleepUntil(deadline);
    woke = true;
  });
  while (clock.waiters() == 0) std::this_thread::yield();
  clock.Advance(absl::Seconds(9));
  EXPECT_FALSE(woke.load());
  clock.Advance(absl::Seconds(1));
  sleeper.join();
  EXPECT_TRUE(woke.load());
  EXPECT_GE(clock.Now(), deadline);
}

TEST(FakeClockTest, AwaitReturnsTrueWhenConditionHolds) {
  FakeClock clock;
  absl::Mutex mu;
  bool flag = false;
  std::thread setter([&] {
    absl::MutexLock lock(&mu);
    flag = true;
  });
  absl::MutexLock lock(&mu);
  EXPECT_TRUE(clock.AwaitWithDeadline(&mu, absl::Condition(&flag), clock.Now() + absl::Hours(1)));
  setter.join();
}

}  // namespace
}  // namespace dispatchd
