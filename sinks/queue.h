// Queue: decouples writers from a slow destination (go-events' Queue).
// Write only enqueues; one worker thread writes the events to the
// destination in order.
//
// Bounded or not: with `capacity` > 0 a full queue applies `policy`
// (block the writer, reject the event with ResourceExhausted, or evict the
// oldest waiting event to the dead-letter hook). An event the destination
// fails is reported to the dead-letter hook, never dropped silently.
//
// Close(deadline) stops accepting events, lets the worker drain until
// `deadline` (on the injected Clock), then closes the destination. If the
// destination blocks past the deadline, Close reports every undelivered
// event (the one in flight included: its outcome is unknown, so it may
// still arrive later) to the dead-letter hook, closes the destination
// (which unblocks well-behaved sinks) and returns DeadlineExceeded without
// waiting for the worker. go-events' Close hung forever there.
//
// Thread-safe. The destination must allow Close concurrently with a Write
// (all sinks of this package do). The destructor closes with
// `close_timeout` if Close was not called.
#ifndef DISPATCHD_SINKS_QUEUE_H_
#define DISPATCHD_SINKS_QUEUE_H_

#include <cstddef>
#include <memory>
#include <thread>

#include "absl/time/time.h"
#include "common/clock.h"
#include "sinks/sink.h"

namespace dispatchd {
namespace sinks {

enum class OverflowPolicy {
  kBlock,       // Write waits for room (or for Close)
  kReject,      // Write returns ResourceExhausted
  kDropOldest,  // the oldest waiting event goes to the dead-letter hook
};

struct QueueOptions {
  size_t capacity = 0;  // 0: unbounded
  OverflowPolicy policy = OverflowPolicy::kBlock;
  DeadLetterFn dead_letter;      // may be empty: then only counted
  const Clock* clock = nullptr;  // not owned; null means Clock::Real()
  absl::Duration close_timeout = absl::Seconds(5);  // used by Close()
};

class Queue final : public Sink {
 public:
  using Options = QueueOptions;

  // Starts the worker. REQUIRES: dst is not null.
  explicit Queue(std::shared_ptr<Sink> dst, Options options = Options());
  ~Queue() override;

  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  absl::Status Write(EventPtr event) override;
  // Close(now + close_timeout).
  absl::Status Close() override;
  // Returns the destination's Close status after a full drain, or
  // DeadlineExceeded when events were left undelivered. A second Close
  // returns OK at once.
  absl::Status Close(absl::Time deadline);

  // Events waiting, not counting the one being written.
  size_t size() const;
  SinkStats stats() const;

 private:
  struct State;
  static void Run(std::shared_ptr<State> state);

  const std::shared_ptr<State> state_;
  std::thread worker_;
};

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_QUEUE_H_
