#include "sinks/retry_strategy.h"

#include <algorithm>
#include <memory>
#include <random>
#include <utility>

namespace dispatchd {
namespace sinks {

Breaker::Breaker(int threshold, absl::Duration backoff, const Clock* clock)
    : threshold_(threshold),
      backoff_(backoff),
      clock_(clock != nullptr ? clock : Clock::Real()) {}

absl::Duration Breaker::Proceed(const Event&) {
  std::lock_guard<std::mutex> lock(mu_);
  if (recent_ < threshold_) return absl::ZeroDuration();
  return std::max(absl::ZeroDuration(), last_ + backoff_ - clock_->Now());
}

RetryDecision Breaker::Failure(const Event&, const absl::Status&) {
  std::lock_guard<std::mutex> lock(mu_);
  if (recent_ < threshold_) ++recent_;  // saturates: only ">= threshold" matters
  last_ = clock_->Now();
  return RetryDecision::kRetry;
}

void Breaker::Success(const Event&) {
  std::lock_guard<std::mutex> lock(mu_);
  recent_ = 0;
  last_ = absl::InfinitePast();
}

RandomSource DefaultRandomSource() {
  struct State {
    std::mutex mu;
    std::mt19937_64 engine{std::random_device{}()};
  };
  auto state = std::make_shared<State>();
  return [state](int64_t bound) {
    std::uniform_int_distribution<int64_t> dist(0, bound - 1);
    std::lock_guard<std::mutex> lock(state->mu);
    return dist(state->engine);
  };
}

ExponentialBackoff::ExponentialBackoff(Options options)
    : base_(std::max(options.base, absl::ZeroDuration())),
      factor_(options.factor > absl::ZeroDuration() ? options.factor : absl::Seconds(1)),
      max_(options.max > absl::ZeroDuration() ? options.max : absl::Seconds(20)),
      random_(options.random ? std::move(options.random) : DefaultRandomSource()) {}

absl::Duration ExponentialBackoff::Bound(uint64_t failures) const {
  return FullJitterBound(base_, factor_, max_, failures);
}

absl::Duration ExponentialBackoff::Proceed(const Event&) {
  return FullJitter(Bound(failures_.load(std::memory_order_relaxed)), random_);
}

RetryDecision ExponentialBackoff::Failure(const Event&, const absl::Status&) {
  failures_.fetch_add(1, std::memory_order_relaxed);
  return RetryDecision::kRetry;
}

void ExponentialBackoff::Success(const Event&) { failures_.store(0, std::memory_order_relaxed); }

}  // namespace sinks
}  // namespace dispatchd
