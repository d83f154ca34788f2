#include "sinks/retry_strategy.h"

#include <atomic>
#include <limits>

#include "common/testing/fake_clock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace sinks {
namespace {

const Event kEvent{};
const absl::Status kDown = absl::UnavailableError("down");

TEST(BreakerTest, OpensAfterThresholdAndWaitsBackoffSinceLastFailure) {
  FakeClock clock;
  Breaker breaker(2, absl::Seconds(5), &clock);
  EXPECT_EQ(breaker.Proceed(kEvent), absl::ZeroDuration());
  EXPECT_EQ(breaker.Failure(kEvent, kDown), RetryDecision::kRetry);
  EXPECT_EQ(breaker.Proceed(kEvent), absl::ZeroDuration());  // below threshold
  breaker.Failure(kEvent, kDown);
  EXPECT_EQ(breaker.Proceed(kEvent), absl::Seconds(5));
  clock.Advance(absl::Seconds(3));
  EXPECT_EQ(breaker.Proceed(kEvent), absl::Seconds(2));
  clock.Advance(absl::Seconds(2));
  EXPECT_EQ(breaker.Proceed(kEvent), absl::ZeroDuration());
  breaker.Failure(kEvent, kDown);  // a failed probe re-opens for a full backoff
  EXPECT_EQ(breaker.Proceed(kEvent), absl::Seconds(5));
  breaker.Success(kEvent);
  EXPECT_EQ(breaker.Proceed(kEvent), absl::ZeroDuration());
}

TEST(FullJitterBoundTest, DoublesFromFactorAndSaturatesAtMax) {
  const absl::Duration min = absl::Milliseconds(200);
  const absl::Duration max = absl::Seconds(30);
  EXPECT_EQ(FullJitterBound(absl::ZeroDuration(), min, max, 0), absl::ZeroDuration());
  EXPECT_EQ(FullJitterBound(absl::ZeroDuration(), min, max, 1), absl::Milliseconds(200));
  EXPECT_EQ(FullJitterBound(absl::ZeroDuration(), min, max, 2), absl::Milliseconds(400));
  EXPECT_EQ(FullJitterBound(absl::ZeroDuration(), min, max, 8), absl::Milliseconds(25600));
  EXPECT_EQ(FullJitterBound(absl::ZeroDuration(), min, max, 9), max);
  EXPECT_EQ(FullJitterBound(absl::ZeroDuration(), min, max, std::numeric_limits<uint64_t>::max()),
            max);
  EXPECT_EQ(FullJitterBound(absl::Seconds(1), absl::Seconds(1), absl::Seconds(20), 3),
            absl::Seconds(5));
}

TEST(FullJitterTest, DrawsFromZeroUpToBelowTheBound) {
  int64_t asked = 0;
  auto lowest = [&](int64_t bound) {
    asked = bound;
    return int64_t{0};
  };
  auto highest = [&](int64_t bound) {
    asked = bound;
    return bound - 1;
  };
  EXPECT_EQ(FullJitter(absl::Seconds(1), lowest), absl::ZeroDuration());
  EXPECT_EQ(asked, 1000000000);
  EXPECT_EQ(FullJitter(absl::Seconds(1), highest), absl::Seconds(1) - absl::Nanoseconds(1));
  // A source out of range is clamped rather than trusted.
  EXPECT_EQ(FullJitter(absl::Seconds(1), [](int64_t) { return int64_t{-5}; }),
            absl::ZeroDuration());
  asked = 0;
  EXPECT_EQ(FullJitter(absl::ZeroDuration(), highest), absl::ZeroDuration());
  EXPECT_EQ(asked, 0) << "the source must not be asked for an empty range";
}

TEST(ExponentialBackoffTest, DefaultsMatchGoEvents) {
  ExponentialBackoff backoff;
  EXPECT_EQ(backoff.Bound(0), absl::ZeroDuration());
  EXPECT_EQ(backoff.Bound(1), absl::Seconds(2));   // base 1 s + factor 1 s * 2^0
  EXPECT_EQ(backoff.Bound(2), absl::Seconds(3));
  EXPECT_EQ(backoff.Bound(3), absl::Seconds(5));
  EXPECT_EQ(backoff.Bound(4), absl::Seconds(9));
  EXPECT_EQ(backoff.Bound(5), absl::Seconds(17));
  EXPECT_EQ(backoff.Bound(6), absl::Seconds(20));  // max
}

// Regression: go-events' bound overflowed after 56 failures.
TEST(ExponentialBackoffTest, BoundSaturatesAtMaxForAnyFailureCount) {
  ExponentialBackoff backoff;
  for (uint64_t n = 6; n < 200; ++n) EXPECT_EQ(backoff.Bound(n), absl::Seconds(20)) << n;
  EXPECT_EQ(backoff.Bound(std::numeric_limits<uint64_t>::max()), absl::Seconds(20));
  ExponentialBackoff huge({.base = absl::Hours(1), .factor = absl::Hours(1000),
                           .max = absl::Hours(100000)});
  for (uint64_t n = 1; n < 200; ++n) {
    EXPECT_GT(huge.Bound(n), absl::ZeroDuration()) << n;
    EXPECT_LE(huge.Bound(n), absl::Hours(100000)) << n;
  }
}

TEST(ExponentialBackoffTest, FullJitterDrawsBelowTheBound) {
  std::atomic<int64_t> last_bound{0};
  ExponentialBackoff backoff({.random = [&](int64_t bound) {
    last_bound = bound;
    return bound - 1;
  }});
  EXPECT_EQ(backoff.Proceed(kEvent), absl::ZeroDuration());  // no failure: no wait
  EXPECT_EQ(last_bound.load(), 0);  // and the random source was not asked
  for (int i = 0; i < 100; ++i) backoff.Failure(kEvent, kDown);
  EXPECT_EQ(backoff.Proceed(kEvent), absl::Seconds(20) - absl::Nanoseconds(1));
  EXPECT_EQ(last_bound.load(), absl::ToInt64Nanoseconds(absl::Seconds(20)));
  backoff.Success(kEvent);
  EXPECT_EQ(backoff.Proceed(kEvent), absl::ZeroDuration());
}

TEST(ExponentialBackoffTest, DefaultRandomStaysInRange) {
  ExponentialBackoff backoff;
  backoff.Failure(kEvent, kDown);
  for (int i = 0; i < 1000; ++i) {
    const absl::Duration d = backoff.Proceed(kEvent);
    EXPECT_GE(d, absl::ZeroDuration());
    EXPECT_LT(d, absl::Seconds(2));
  }
}

// Regression: with a zero base go-events could call rand.Int63n(0) and panic.
TEST(ExponentialBackoffTest, ZeroBaseDoesNotCrash) {
  ExponentialBackoff backoff({.base = absl::ZeroDuration(),
                              .factor = absl::ZeroDuration(),
                              .max = absl::ZeroDuration(),
                              .random = [](int64_t bound) {
                                EXPECT_GT(bound, 0);
                                return int64_t{0};
                              }});
  for (int i = 0; i < 300; ++i) {
    backoff.Failure(kEvent, kDown);
    EXPECT_GE(backoff.Proceed(kEvent), absl::ZeroDuration());
  }
  // Zero factor and max fall back to the defaults, a zero base stays zero.
  EXPECT_EQ(backoff.Bound(1), absl::Seconds(1));
  EXPECT_EQ(backoff.Bound(300), absl::Seconds(20));
}

// Rejected for good: what IsPermanentRejection says of an HTTP 4xx.
const absl::Status kRejected = absl::NotFoundError("HTTP 404");
bool IsRejected(const absl::Status& status) { return absl::IsNotFound(status); }

TEST(PermanentErrorBudgetTest, GivesUpAfterTheBudgetOfRejectionsAndStartsAfreshPerEvent) {
  auto inner = std::make_shared<ExponentialBackoff>(
      ExponentialBackoff::Options{.base = absl::ZeroDuration(),
                                  .factor = absl::Seconds(1),
                                  .max = absl::Seconds(8),
                                  .random = [](int64_t bound) { return bound - 1; }});
  PermanentErrorBudget budget(inner, 3, IsRejected);
  const Event a{}, b{};
  EXPECT_EQ(budget.Proceed(a), absl::ZeroDuration());
  EXPECT_EQ(budget.Failure(a, kRejected), RetryDecision::kRetry);
  // Retries within the budget back off as the inner strategy says.
  EXPECT_EQ(budget.Proceed(a), absl::Seconds(1) - absl::Nanoseconds(1));
  EXPECT_EQ(budget.Failure(a, kRejected), RetryDecision::kRetry);
  EXPECT_EQ(budget.Proceed(a), absl::Seconds(2) - absl::Nanoseconds(1));
  EXPECT_EQ(budget.attempts(), 3);
  EXPECT_EQ(budget.Failure(a, kRejected), RetryDecision::kGiveUp);
  EXPECT_EQ(budget.attempts(), 3) << "kept for the dead-letter record";
  // The destination answered: the next event goes out at once, with a
  // budget of its own.
  EXPECT_EQ(budget.Proceed(b), absl::ZeroDuration());
  EXPECT_EQ(budget.attempts(), 1);
  EXPECT_EQ(budget.Failure(b, kRejected), RetryDecision::kRetry);
  budget.Proceed(b);
  EXPECT_EQ(budget.Failure(b, kRejected), RetryDecision::kRetry);
  budget.Proceed(b);
  EXPECT_EQ(budget.Failure(b, kRejected), RetryDecision::kGiveUp);
}

TEST(PermanentErrorBudgetTest, TransientFailuresAreRetriedWithoutLimit) {
  auto inner = std::make_shared<ExponentialBackoff>(
      ExponentialBackoff::Options{.base = absl::ZeroDuration(),
                                  .factor = absl::Seconds(1),
                                  .max = absl::Seconds(8),
                                  .random = [](int64_t bound) { return bound - 1; }});
  PermanentErrorBudget budget(inner, 2, IsRejected);
  const Event a{};
  for (int i = 0; i < 100; ++i) {
    budget.Proceed(a);
    EXPECT_EQ(budget.Failure(a, kDown), RetryDecision::kRetry) << i;
  }
  EXPECT_EQ(budget.Proceed(a), absl::Seconds(8) - absl::Nanoseconds(1));
  // Rejections count on their own, also between transient failures.
  EXPECT_EQ(budget.Failure(a, kRejected), RetryDecision::kRetry);
  budget.Proceed(a);
  EXPECT_EQ(budget.Failure(a, kDown), RetryDecision::kRetry);
  budget.Proceed(a);
  EXPECT_EQ(budget.Failure(a, kRejected), RetryDecision::kGiveUp);
  EXPECT_EQ(budget.attempts(), 103);
}

TEST(PermanentErrorBudgetTest, ASuccessStartsTheCountAgain) {
  PermanentErrorBudget budget(std::make_shared<Breaker>(100, absl::Seconds(1)), 2, IsRejected);
  const Event a{}, b{};
  budget.Proceed(a);
  EXPECT_EQ(budget.Failure(a, kRejected), RetryDecision::kRetry);
  budget.Proceed(a);
  budget.Success(a);
  budget.Proceed(b);
  EXPECT_EQ(budget.Failure(b, kRejected), RetryDecision::kRetry);
  // Without a classifier nothing is permanent.
  PermanentErrorBudget none(std::make_shared<Breaker>(100, absl::Seconds(1)), 1, nullptr);
  none.Proceed(a);
  EXPECT_EQ(none.Failure(a, kRejected), RetryDecision::kRetry);
}

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
