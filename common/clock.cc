#include "common/clock.h"

namespace dispatchd {
namespace {

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                         absl::Time deadline) const override {
    return mu->AwaitWithDeadline(cond, deadline);
  }
};

}  // namespace

void Clock::SleepUntil(absl::Time deadline) const {
  absl::Mutex mu;
  absl::MutexLock lock(&mu);
  static const bool kNever = false;
  AwaitWithDeadline(&mu, absl::Condition(&kNever), deadline);
}

Clock* Clock::Real() {
  static RealClock* clock = new RealClock();
  return clock;
}

}  // namespace dispatchd
