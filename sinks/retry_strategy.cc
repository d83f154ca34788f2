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

PermanentErrorBudget::PermanentErrorBudget(std::shared_ptr<RetryStrategy> inner, int max_attempts,
                                           std::function<bool(const absl::Status&)> is_permanent)
    : inner_(std::move(inner)),
      max_attempts_(std::max(1, max_attempts)),
      is_permanent_(std::move(is_permanent)) {}

absl::Duration PermanentErrorBudget::Proceed(const Event& event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (current_ != &event) {
      current_ = &event;
      attempts_ = 0;
      rejections_ = 0;
    }
    ++attempts_;
  }
  return inner_->Proceed(event);
}

RetryDecision PermanentErrorBudget::Failure(const Event& event, const absl::Status& error) {
  const bool permanent = is_permanent_ && is_permanent_(error);
  bool give_up = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (permanent && current_ == &event) give_up = ++rejections_ >= max_attempts_;
    if (give_up) current_ = nullptr;  // the next event starts a new count
  }
  if (!give_up) return inner_->Failure(event, error);
  inner_->Success(event);  // the destination answers: no backoff for the next event
  return RetryDecision::kGiveUp;
}

void PermanentErrorBudget::Success(const Event& event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = nullptr;
  }
  inner_->Success(event);
}

int PermanentErrorBudget::attempts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return attempts_;
}

}  // namespace sinks
}  // namespace dispatchd
