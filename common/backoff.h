// The project's one exponential backoff: the ceiling after a number of
// consecutive failures, and the two ways a wait is drawn below it. Used by
// the sinks' ExponentialBackoff and the controller's delivery retries (full
// jitter: spread retries of many deliveries apart) and by the agent's
// controller session and Docker inventory (equal jitter: reconnect soon, but
// never in lockstep with other agents).
//
// Pure functions; thread-safe when `random` is.
#ifndef DISPATCHD_COMMON_BACKOFF_H_
#define DISPATCHD_COMMON_BACKOFF_H_

#include <cstdint>
#include <functional>

#include "absl/time/time.h"

namespace dispatchd {

// Returns a uniformly distributed integer in [0, bound). Called only with
// bound > 0.
using RandomSource = std::function<int64_t(int64_t bound)>;

// The ceiling after `failures` consecutive failures:
// min(max, base + factor * 2^(failures-1)), zero for no failure. Saturates at
// `max` for any count (no overflow, no loop).
absl::Duration FullJitterBound(absl::Duration base, absl::Duration factor, absl::Duration max,
                               uint64_t failures);

// Full jitter: a wait drawn uniformly from [0, bound) with `random`; zero,
// without asking `random`, when `bound` is under a nanosecond.
absl::Duration FullJitter(absl::Duration bound, const RandomSource& random);

// Equal jitter: a wait drawn uniformly from [bound/2, bound] with `random`.
absl::Duration EqualJitter(absl::Duration bound, const RandomSource& random);

}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_BACKOFF_H_
