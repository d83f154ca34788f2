// Broadcaster: writes every event to each of its member sinks, in order
// (go-events' Broadcaster).
//
// Write serializes with other Writes, Add and Remove, so every member sees
// events in the order Write was called and a sink removed by Remove gets no
// event after Remove returns. Write blocks until each member's Write has
// returned; put a Queue in front of a slow member so it does not hold up
// the others.
//
// A member that returns ClosedError() is removed; the rest of that event
// still reaches every other member exactly once (go-events skipped the
// neighbour of a removed sink). Any other member error goes to the
// dead-letter hook and Write still returns OK, as in go-events.
//
// Close closes every member without waiting for a Write in progress (closing
// the members is what makes such a Write return). Thread-safe.
#ifndef DISPATCHD_SINKS_BROADCASTER_H_
#define DISPATCHD_SINKS_BROADCASTER_H_

#include <memory>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "sinks/sink.h"

namespace dispatchd {
namespace sinks {

struct BroadcasterOptions {
  DeadLetterFn dead_letter;  // member write failures; may be empty
};

class Broadcaster final : public Sink {
 public:
  using Options = BroadcasterOptions;

  Broadcaster() : Broadcaster(Options()) {}
  explicit Broadcaster(Options options);
  explicit Broadcaster(std::vector<std::shared_ptr<Sink>> sinks, Options options = Options());

  // Adds `sink` (a sink already present is not added twice). Returns
  // ClosedError() once the broadcaster is closed, InvalidArgument for null.
  absl::Status Add(std::shared_ptr<Sink> sink);
  // Removes `sink` without closing it. NotFound if it is not a member.
  absl::Status Remove(const std::shared_ptr<Sink>& sink);

  absl::Status Write(EventPtr event) override;
  // Closes every member; returns the first error a member's Close returned.
  absl::Status Close() override;

  size_t size() const;
  // delivered/dropped count member writes: one event to 3 members is 3.
  SinkStats stats() const { return counters_.Snapshot(); }

 private:
  const Options options_;
  std::mutex write_mu_;  // serializes Write, Add and Remove
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Sink>> sinks_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  SinkCounters counters_;
};

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_BROADCASTER_H_
