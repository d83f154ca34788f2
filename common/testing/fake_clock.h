// FakeClock: a Clock that moves only when a test says so.
//
// Waiters in AwaitWithDeadline wake when their condition holds or when
// Advance()/SetTime() moves the clock past their deadline. Thread-safe.
#ifndef DISPATCHD_COMMON_TESTING_FAKE_CLOCK_H_
#define DISPATCHD_COMMON_TESTING_FAKE_CLOCK_H_

#include <atomic>

#include "common/clock.h"

namespace dispatchd {

class FakeClock final : public Clock {
 public:
  // Starts at an arbitrary fixed instant (2026-01-01T00:00:00Z).
  FakeClock();
  explicit FakeClock(absl::Time start);

  absl::Time Now() const override;
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                         absl::Time deadline) const override;

  void Advance(absl::Duration d);
  void SetTime(absl::Time t);

  // Number of threads currently blocked in AwaitWithDeadline: lets a test
  // wait until a worker is parked on a timer before advancing.
  int waiters() const { return waiters_.load(); }

 private:
  std::atomic<int64_t> now_ns_;
  mutable std::atomic<int> waiters_{0};
};

}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_TESTING_FAKE_CLOCK_H_
