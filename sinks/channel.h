// Channel: a sink a reader can listen on (go-events' Channel).
//
// With capacity 0 the channel is unbuffered: Write returns once a reader has
// taken that event. With capacity N, Write returns once the event is in the
// buffer and blocks while N events wait. Close makes blocked and later
// Writes return ClosedError() (an unbuffered Write whose event was not taken
// yet gives its event back that way); events already buffered stay readable
// until Receive reports the channel closed.
//
// Writers and readers must be different threads. Thread-safe: any number of
// writers and readers.
#ifndef DISPATCHD_SINKS_CHANNEL_H_
#define DISPATCHD_SINKS_CHANNEL_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "sinks/sink.h"

namespace dispatchd {
namespace sinks {

class Channel final : public Sink {
 public:
  explicit Channel(size_t capacity = 0);

  absl::Status Write(EventPtr event) override;
  absl::Status Close() override;

  // Blocks until an event is available and returns it, or returns
  // ClosedError() once the channel is closed and holds no event.
  absl::StatusOr<EventPtr> Receive();
  // Like Receive but never blocks: Unavailable when no event waits now.
  absl::StatusOr<EventPtr> TryReceive();

  bool closed() const;
  SinkStats stats() const { return counters_.Snapshot(); }

 private:
  struct Slot {
    uint64_t seq;
    EventPtr event;
  };
  EventPtr PopLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable readable_;  // an event arrived or closed
  std::condition_variable changed_;   // an event was taken or closed
  std::deque<Slot> buffer_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  SinkCounters counters_;
};

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_CHANNEL_H_
