// Clock: the one source of time for every timing rule (debounce, retries,
// heartbeats, backoff), so tests advance a FakeClock instead of sleeping.
//
// Thread-safety: implementations are safe for concurrent use.
#ifndef DISPATCHD_COMMON_CLOCK_H_
#define DISPATCHD_COMMON_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace dispatchd {

class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() const = 0;

  // Waits until `cond` holds or this clock reaches `deadline`, whichever is
  // first, and returns the value of `cond`.
  // REQUIRES: `mu` is held; it is held again on return.
  virtual bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                                 absl::Time deadline) const = 0;

  // Blocks until this clock reaches `deadline`.
  void SleepUntil(absl::Time deadline) const;
  void SleepFor(absl::Duration d) const { SleepUntil(Now() + d); }

  // The process-wide wall clock. Never null, never deleted.
  static Clock* Real();
};

}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_CLOCK_H_
