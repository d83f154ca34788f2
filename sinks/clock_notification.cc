#include "sinks/clock_notification.h"

namespace dispatchd {
namespace sinks {

bool ClockNotification::Notify() {
  const bool first = !notified_.exchange(true, std::memory_order_acq_rel);
  // A waiter re-evaluates its condition when the mutex is released; taking
  // it once after the store makes sure none sleeps through the change.
  absl::MutexLock lock(&wait_mu_);
  waits_.load(std::memory_order_acquire);
  return first;
}

bool ClockNotification::WaitUntil(const Clock& clock, absl::Time deadline) {
  if (HasBeenNotified()) return true;
  absl::MutexLock lock(&wait_mu_);
  const absl::Condition notified(
      +[](std::atomic<bool>* flag) { return flag->load(std::memory_order_acquire); }, &notified_);
  waits_.fetch_add(1, std::memory_order_acq_rel);
  return clock.AwaitWithDeadline(&wait_mu_, notified, deadline);
}

}  // namespace sinks
}  // namespace dispatchd
