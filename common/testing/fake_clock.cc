#include "common/testing/fake_clock.h"

namespace dispatchd {

FakeClock::FakeClock() : FakeClock(absl::FromUnixSeconds(1767225600)) {}

FakeClock::FakeClock(absl::Time start) : now_ns_(absl::ToUnixNanos(start)) {}

absl::Time FakeClock::Now() const { return absl::FromUnixNanos(now_ns_.load()); }

void FakeClock::Advance(absl::Duration d) { now_ns_.fetch_add(absl::ToInt64Nanoseconds(d)); }

void FakeClock::SetTime(absl::Time t) { now_ns_.store(absl::ToUnixNanos(t)); }

bool FakeClock::AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                                  absl::Time deadline) const {
  // The fake time lives outside `mu`, so a waiter cannot be signalled through
  // it; it re-checks every real millisecond. Only tests use this clock.
  waiters_.fetch_add(1);
  bool result = false;
  while (true) {
    if (cond.Eval()) {
      result = true;
      break;
    }
    if (Now() >= deadline) break;
    mu->AwaitWithTimeout(cond, absl::Milliseconds(1));
  }
  waiters_.fetch_sub(1);
  return result;
}

}  // namespace dispatchd
