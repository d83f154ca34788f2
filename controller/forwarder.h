// Forwarder: sends every observed event to each configured destination
// (DISPATCHER_FORWARD_DESTINATION), each through a pipeline of its own:
//
//   sink() = Broadcaster ─┬─ Queue (bounded, drop-oldest) ─ RetryingSink ─ destination
//                         └─ Queue ...
//
// Writing to sink() never blocks on a destination: it only enqueues. Each
// queue's worker retries the event at its head (exponential backoff with
// full jitter) until the destination takes it, so a destination that is
// down and comes back receives what it missed, in order, up to the queue
// bound. An event the destination rejects for good (an HTTP 4xx other than
// 408, 425 and 429) is tried `max_rejected_attempts` times, then appended
// to the destination's dead-letter file with the answer
// (forward_dead_letter.h), counted, and the queue goes on with the next
// event. When the queue is full the oldest waiting event is dropped,
// counted and logged with its id; nothing is lost silently. One dead or slow
// destination never delays another.
//
// Thread-safe. Create() wires it; Close(deadline) drains the queues until the
// deadline and counts (and logs) what is left as dropped.
#ifndef DISPATCHD_CONTROLLER_FORWARDER_H_
#define DISPATCHD_CONTROLLER_FORWARDER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/forward_destination.h"
#include "sinks/retry_strategy.h"
#include "sinks/sink.h"

namespace dispatchd {
namespace controller {

struct ForwarderOptions {
  size_t queue_size = 10000;  // events waiting per destination; > 0
  // Retry waits: full jitter below min * 2^(failures-1), at most max.
  absl::Duration retry_min_backoff = absl::Milliseconds(200);
  absl::Duration retry_max_backoff = absl::Seconds(30);
  // Attempts of an event that the destination rejects for good before it
  // is dead-lettered; > 0. Transient failures (5xx, 408, 425, 429, no
  // answer) are retried without limit.
  int max_rejected_attempts = 5;
  // Where dead-lettered events go: <dead_letter_dir>/forward-<name>.jsonl
  // per destination (ForwardDeadLetterFileNames), created when first
  // needed. Empty: only to the log, one ERROR line with the record each.
  std::string dead_letter_dir;
  DestinationSinkOptions destination;  // HTTP timeout, CA file
  const Clock* clock = nullptr;        // not owned; null means Clock::Real()
  sinks::RandomSource random;         // backoff jitter; empty: the default
  // Builds each destination's sink; empty means NewDestinationSink. Tests
  // substitute their own.
  std::function<absl::StatusOr<std::shared_ptr<sinks::Sink>>(const ForwardDestination&)>
      make_sink;
};

// One destination's counters, for logs and metrics.
struct ForwardDestinationStats {
  std::string destination;  // the URI as configured
  uint64_t sent = 0;        // events the destination accepted
  uint64_t failed = 0;      // failed attempts (each retried)
  uint64_t dropped = 0;     // events given up: evicted from a full queue or left at Close
  size_t queue_depth = 0;   // events waiting, not counting the one being sent
  // Events rejected for good and recorded in the dead-letter file (or, when
  // that cannot be written, in the log: then they count as dropped).
  uint64_t dead_lettered = 0;
  std::string dead_letter_file;  // the file's path (or name, without a directory)
};

class Forwarder {
 public:
  // Parses every destination and builds its pipeline. InvalidArgument naming
  // the destination for an unknown scheme, a malformed URI or a destination
  // listed twice; nothing is started then.
  static absl::StatusOr<std::unique_ptr<Forwarder>> Create(
      const std::vector<std::string>& destinations, ForwarderOptions options);
  // Close(now + 5 s) unless closed already.
  ~Forwarder();

  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // Where events go (DispatcherOptions::forward). Shared; stays valid after
  // Close (writes then return ClosedError()).
  std::shared_ptr<sinks::Sink> sink() const { return broadcaster_; }

  // In the order the destinations were given.
  std::vector<ForwardDestinationStats> stats() const;

  // Stops taking events and lets every pipeline deliver until `deadline` (on
  // the injected clock); the pipelines drain in parallel. Returns
  // DeadlineExceeded if events were left undelivered (they are counted as
  // dropped and logged). Idempotent.
  absl::Status Close(absl::Time deadline);

  struct Pipeline;  // in forwarder.cc

 private:
  Forwarder(std::vector<std::unique_ptr<Pipeline>> pipelines,
            std::shared_ptr<sinks::Sink> broadcaster, const Clock* clock);

  const std::vector<std::unique_ptr<Pipeline>> pipelines_;
  const std::shared_ptr<sinks::Sink> broadcaster_;
  const Clock* const clock_;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_FORWARDER_H_
