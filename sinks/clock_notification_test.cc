#include "sinks/clock_notification.h"

#include <atomic>
#include <thread>

#include "common/testing/fake_clock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace sinks {
namespace {

TEST(ClockNotificationTest, WaitEndsAtDeadlineOnTheFakeClock) {
  FakeClock clock;
  ClockNotification notification;
  std::atomic<int> result{-1};
  std::thread waiter([&] {
    result = notification.WaitUntil(clock, clock.Now() + absl::Seconds(5)) ? 1 : 0;
  });
  while (clock.waiters() == 0) std::this_thread::yield();
  clock.Advance(absl::Seconds(4));
  EXPECT_EQ(result.load(), -1);  // deadline not reached: cannot have returned
  clock.Advance(absl::Seconds(1));
  waiter.join();
  EXPECT_EQ(result.load(), 0);
}

TEST(ClockNotificationTest, NotifyWakesWaiterBeforeDeadline) {
  FakeClock clock;
  ClockNotification notification;
  std::thread waiter([&] {
    EXPECT_TRUE(notification.WaitUntil(clock, clock.Now() + absl::Hours(1)));
  });
  while (clock.waiters() == 0) std::this_thread::yield();
  EXPECT_TRUE(notification.Notify());
  waiter.join();
  EXPECT_FALSE(notification.Notify());  // only the first call reports true
}

TEST(ClockNotificationTest, NotifyWakesWaiterOnTheRealClock) {
  ClockNotification notification;
  std::thread waiter([&] {
    EXPECT_TRUE(notification.WaitUntil(*Clock::Real(), absl::InfiniteFuture()));
  });
  notification.Notify();
  waiter.join();
  EXPECT_TRUE(notification.HasBeenNotified());
}

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
