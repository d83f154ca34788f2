// Retry strategies for RetryingSink (go-events' RetryStrategy, Breaker and
// ExponentialBackoff).
//
// A strategy sees every attempt of every event through a RetryingSink: it
// says how long to wait before an attempt (Proceed), learns the outcome
// (Success / Failure) and decides whether a failed event is retried or given
// up. Breaker and ExponentialBackoff always retry, as in go-events; both
// are thread-safe and may be shared by several RetryingSinks.
// PermanentErrorBudget wraps one of them and gives up on an event that its
// destination keeps rejecting for good.
#ifndef DISPATCHD_SINKS_RETRY_STRATEGY_H_
#define DISPATCHD_SINKS_RETRY_STRATEGY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "sinks/event.h"

namespace dispatchd {
namespace sinks {

enum class RetryDecision { kRetry, kGiveUp };

class RetryStrategy {
 public:
  virtual ~RetryStrategy() = default;
  // How long to wait before the next attempt to write `event`; zero or less
  // means now.
  virtual absl::Duration Proceed(const Event& event) = 0;
  // Records a failed attempt and decides whether to retry `event`.
  virtual RetryDecision Failure(const Event& event, const absl::Status& error) = 0;
  // Records a successful attempt.
  virtual void Success(const Event& event) = 0;
};

// Circuit breaker: after `threshold` consecutive failures, every attempt
// waits until `backoff` has passed since the latest failure. A success
// closes the breaker again.
class Breaker final : public RetryStrategy {
 public:
  // `clock` is not owned and must outlive the breaker; null means the real
  // clock.
  Breaker(int threshold, absl::Duration backoff, const Clock* clock = nullptr);

  absl::Duration Proceed(const Event& event) override;
  RetryDecision Failure(const Event& event, const absl::Status& error) override;
  void Success(const Event& event) override;

 private:
  const int threshold_;
  const absl::Duration backoff_;
  const Clock* const clock_;
  std::mutex mu_;
  int recent_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// The backoff computations are the project's one (common/backoff.h); a
// RandomSource used here must be thread-safe.
using ::dispatchd::FullJitter;
using ::dispatchd::FullJitterBound;
using ::dispatchd::RandomSource;
// A thread-safe RandomSource seeded from std::random_device.
RandomSource DefaultRandomSource();

// Exponential backoff with full jitter: after n consecutive failures the
// wait is uniform in [0, min(max, base + factor * 2^(n-1))). The bound
// saturates at `max` for any n (go-events overflowed after 56 failures) and
// a zero bound waits zero without asking the random source (go-events
// panicked in rand.Int63n(0)).
struct ExponentialBackoffOptions {
  absl::Duration base = absl::Seconds(1);    // negative counts as zero
  absl::Duration factor = absl::Seconds(1);  // <= 0 means the default, 1 s
  absl::Duration max = absl::Seconds(20);    // <= 0 means the default, 20 s
  RandomSource random;                       // empty: DefaultRandomSource()
};

class ExponentialBackoff final : public RetryStrategy {
 public:
  using Options = ExponentialBackoffOptions;

  ExponentialBackoff() : ExponentialBackoff(Options()) {}
  explicit ExponentialBackoff(Options options);

  absl::Duration Proceed(const Event& event) override;
  RetryDecision Failure(const Event& event, const absl::Status& error) override;
  void Success(const Event& event) override;

  // The upper bound of the wait after `failures` consecutive failures
  // (zero for none). Exposed for tests and documentation.
  absl::Duration Bound(uint64_t failures) const;

 private:
  absl::Duration base_;
  absl::Duration factor_;
  absl::Duration max_;
  RandomSource random_;
  std::atomic<uint64_t> failures_{0};
};

// Gives up on an event once `max_attempts` of its attempts failed with an
// error `is_permanent` accepts (an answer that retrying will not change,
// such as an HTTP 404: IsPermanentRejection in http_sink.h). Every other
// failure is retried as `inner` says, without limit, and `inner` says how
// long to wait before every attempt. The count is per event: it restarts
// with the next event. On giving up it reports a success to `inner`: the
// destination answered, so the next event goes out without a backoff.
//
// The RetryingSink's Write then returns the last error, and a Queue in
// front of it hands the event to its dead-letter hook and goes on with the
// next one: a rejected event no longer blocks the events behind it.
//
// Follows one event at a time: use one per RetryingSink (whose Writes are
// serialized). Thread-safe.
class PermanentErrorBudget final : public RetryStrategy {
 public:
  // REQUIRES: inner is not null; max_attempts > 0.
  PermanentErrorBudget(std::shared_ptr<RetryStrategy> inner, int max_attempts,
                       std::function<bool(const absl::Status&)> is_permanent);

  absl::Duration Proceed(const Event& event) override;
  RetryDecision Failure(const Event& event, const absl::Status& error) override;
  void Success(const Event& event) override;

  // Attempts of the current event so far, failed or not (for the
  // dead-letter record of an event given up on: the attempts it took).
  int attempts() const;

 private:
  const std::shared_ptr<RetryStrategy> inner_;
  const int max_attempts_;
  const std::function<bool(const absl::Status&)> is_permanent_;
  mutable std::mutex mu_;
  const Event* current_ ABSL_GUARDED_BY(mu_) = nullptr;  // identity only, never read
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;
  int rejections_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_RETRY_STRATEGY_H_
