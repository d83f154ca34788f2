#include "common/backoff.h"

#include <algorithm>

namespace dispatchd {

absl::Duration FullJitterBound(absl::Duration base, absl::Duration factor, absl::Duration max,
                               uint64_t failures) {
  if (failures == 0) return absl::ZeroDuration();
  // factor * 2^(failures-1), saturating: absl::Duration arithmetic saturates
  // to infinity instead of wrapping, and the shift stays below 63 bits.
  const uint64_t exponent = std::min<uint64_t>(failures - 1, 62);
  const absl::Duration growth = factor * (int64_t{1} << exponent);
  return std::min(max, base + growth);
}

absl::Duration FullJitter(absl::Duration bound, const RandomSource& random) {
  const int64_t bound_ns = absl::ToInt64Nanoseconds(bound);
  if (bound_ns <= 0) return absl::ZeroDuration();
  return absl::Nanoseconds(std::clamp<int64_t>(random(bound_ns), 0, bound_ns - 1));
}

absl::Duration EqualJitter(absl::Duration bound, const RandomSource& random) {
  const int64_t bound_ns = absl::ToInt64Nanoseconds(bound);
  if (bound_ns <= 0) return absl::ZeroDuration();
  const int64_t low = bound_ns / 2;
  const int64_t spread = bound_ns - low + 1;  // [low, bound_ns]
  return absl::Nanoseconds(low + std::clamp<int64_t>(random(spread), 0, spread - 1));
}

}  // namespace dispatchd
