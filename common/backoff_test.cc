#include "common/backoff.h"

#include <limits>

#include "gtest/gtest.h"

namespace dispatchd {
namespace {

TEST(BackoffTest, TheCeilingDoublesAndSaturates) {
  const absl::Duration min = absl::Milliseconds(100);
  const absl::Duration max = absl::Seconds(10);
  EXPECT_EQ(FullJitterBound(absl::ZeroDuration(), min, max, 0), absl::ZeroDuration());
  EXPECT_EQ(FullJitterBound(absl::ZeroDuration(), min, max, 1), min);
  EXPECT_EQ(FullJitterBound(absl::ZeroDuration(), min, max, 4), absl::Milliseconds(800));
  EXPECT_EQ(FullJitterBound(absl::ZeroDuration(), min, max,
                            std::numeric_limits<uint64_t>::max()),
            max);
}

TEST(BackoffTest, FullJitterIsBelowTheBoundEqualJitterInItsUpperHalf) {
  const RandomSource lowest = [](int64_t) { return int64_t{0}; };
  const RandomSource highest = [](int64_t n) { return n - 1; };
  EXPECT_EQ(FullJitter(absl::Seconds(1), lowest), absl::ZeroDuration());
  EXPECT_EQ(FullJitter(absl::Seconds(1), highest), absl::Seconds(1) - absl::Nanoseconds(1));
  EXPECT_EQ(EqualJitter(absl::Seconds(1), lowest), absl::Milliseconds(500));
  EXPECT_EQ(EqualJitter(absl::Seconds(1), highest), absl::Seconds(1));
  EXPECT_EQ(EqualJitter(absl::ZeroDuration(), highest), absl::ZeroDuration());
  // A source that misbehaves stays within the range.
  EXPECT_EQ(EqualJitter(absl::Seconds(1), [](int64_t) { return int64_t{-9}; }),
            absl::Milliseconds(500));
}

}  // namespace
}  // namespace dispatchd
