// ClockNotification: a one-shot flag a thread can wait for with a deadline
// measured on an injected Clock (so a FakeClock drives the deadline in
// tests). Used for RetryingSink's backoff and Queue::Close's deadline.
//
// Why not a plain absl::Mutex with guarded state: Debian's abseil is not
// built with ThreadSanitizer, so TSAN cannot see absl::Mutex hand-offs. The
// flag is an atomic (visible to TSAN); the absl::Mutex only carries the
// Clock::AwaitWithDeadline wait and guards no data. Sinks keep their own
// state under std::mutex.
//
// Thread-safe. Not copyable.
#ifndef DISPATCHD_SINKS_CLOCK_NOTIFICATION_H_
#define DISPATCHD_SINKS_CLOCK_NOTIFICATION_H_

#include <atomic>
#include <cstdint>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace dispatchd {
namespace sinks {

class ClockNotification {
 public:
  ClockNotification() = default;
  ClockNotification(const ClockNotification&) = delete;
  ClockNotification& operator=(const ClockNotification&) = delete;

  // Sets the flag and wakes every waiter. Returns true for the first call
  // only, so callers can use it as a once-guard.
  bool Notify();

  bool HasBeenNotified() const { return notified_.load(std::memory_order_acquire); }

  // Blocks until notified or until `clock` reaches `deadline`; returns
  // HasBeenNotified().
  bool WaitUntil(const Clock& clock, absl::Time deadline);

 private:
  absl::Mutex wait_mu_;  // carries waits only; guards nothing
  std::atomic<bool> notified_{false};
  // Bumped by each waiter after building its absl::Condition and read by
  // every thread that may evaluate it: absl evaluates a waiter's condition
  // in the unlocking thread, a hand-off TSAN cannot see inside Debian's
  // abseil. This makes it visible; it changes nothing at run time.
  std::atomic<uint64_t> waits_{0};
};

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_CLOCK_NOTIFICATION_H_
