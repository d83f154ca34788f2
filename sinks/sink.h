// Sink: the one interface of this package (the C++ counterpart of
// go-events' Sink). A sink accepts events with Write and is shut down with
// Close; sinks compose (a Queue in front of a RetryingSink in front of an
// HTTP sink, several of those behind a Broadcaster).
//
// Contract every implementation in this package keeps:
//   - Write(nullptr) returns InvalidArgument; it never crashes.
//   - Write after Close returns ClosedError(); IsClosed() recognises it.
//   - Close is idempotent: a second Close returns OK and does nothing.
//   - Write and Close are safe to call from several threads at once, unless a
//     class's header says otherwise.
// Sinks are shared between their users with std::shared_ptr<Sink>.
#ifndef DISPATCHD_SINKS_SINK_H_
#define DISPATCHD_SINKS_SINK_H_

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "sinks/event.h"

namespace dispatchd {
namespace sinks {

class Sink {
 public:
  virtual ~Sink() = default;

  // Hands `event` to the sink. What "OK" promises depends on the sink: a
  // Queue has accepted it for later delivery, a RetryingSink has delivered
  // it. Errors: InvalidArgument for a null event, ClosedError() once closed,
  // anything else from the destination.
  virtual absl::Status Write(EventPtr event) = 0;

  // Releases the sink and, for sinks that wrap others, closes what they
  // wrap. Idempotent.
  virtual absl::Status Close() = 0;
};

// The distinct status of a closed sink: FailedPrecondition carrying a payload
// that IsClosed() checks, so it is not confused with other preconditions.
absl::Status ClosedError();
bool IsClosed(const absl::Status& status);

// Called with every event a sink gives up on where no caller is left to get
// the error (a Queue's worker, a Broadcaster's member sinks), with the
// reason. Replaces go-events' log-and-drop. May be called from any thread,
// also concurrently; it must be quick, must not block and must not Close
// the sink that calls it.
using DeadLetterFn = std::function<void(const EventPtr& event, const absl::Status& reason)>;

// A plain snapshot of a sink's counters, for a metrics layer.
//   written:   Write calls with a valid event on an open sink
//   delivered: events handed on successfully (to the wrapped sink, to each
//              member of a Broadcaster, to a Channel's reader)
//   dropped:   events given up on (failed, evicted, rejected, undelivered at
//              Close); each is either dead-lettered or returned as an error
//   retried:   extra attempts after a failure (RetryingSink)
struct SinkStats {
  uint64_t written = 0;
  uint64_t delivered = 0;
  uint64_t dropped = 0;
  uint64_t retried = 0;
};

// The live counters behind SinkStats. Thread-safe (relaxed atomics: each
// counter is exact, a snapshot is not one instant across all four).
class SinkCounters {
 public:
  void AddWritten(uint64_t n = 1) { written_.fetch_add(n, std::memory_order_relaxed); }
  void AddDelivered(uint64_t n = 1) { delivered_.fetch_add(n, std::memory_order_relaxed); }
  void AddDropped(uint64_t n = 1) { dropped_.fetch_add(n, std::memory_order_relaxed); }
  void AddRetried(uint64_t n = 1) { retried_.fetch_add(n, std::memory_order_relaxed); }
  SinkStats Snapshot() const;

 private:
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> retried_{0};
};

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_SINK_H_
