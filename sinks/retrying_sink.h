// RetryingSink: writes each event to the sink it wraps until that succeeds,
// waiting between attempts as its RetryStrategy says (go-events'
// RetryingSink).
//
// Write returns OK once the wrapped sink accepted the event. It returns the
// wrapped sink's error when that error is ClosedError() (terminal, as in
// go-events) or when the strategy gives up on the event (go-events returned
// nil there and lost the event silently), and ClosedError() when this sink
// is closed while the event waits. Waits run on the injected Clock.
//
// Writes are serialized: while one event is being retried, other Writes
// wait for it, which keeps events in order. Close does not wait for them:
// it wakes a waiting Write (which returns ClosedError()) and closes the
// wrapped sink (go-events documented that but did not do it).
// Thread-safe.
#ifndef DISPATCHD_SINKS_RETRYING_SINK_H_
#define DISPATCHD_SINKS_RETRYING_SINK_H_

#include <memory>
#include <mutex>

#include "common/clock.h"
#include "sinks/clock_notification.h"
#include "sinks/retry_strategy.h"
#include "sinks/sink.h"

namespace dispatchd {
namespace sinks {

struct RetryingSinkOptions {
  const Clock* clock = nullptr;  // not owned; null means Clock::Real()
};

class RetryingSink final : public Sink {
 public:
  using Options = RetryingSinkOptions;

  // REQUIRES: dst and strategy are not null.
  RetryingSink(std::shared_ptr<Sink> dst, std::shared_ptr<RetryStrategy> strategy,
               Options options = Options());

  absl::Status Write(EventPtr event) override;
  absl::Status Close() override;

  // retried counts attempts after the first one of each event.
  SinkStats stats() const { return counters_.Snapshot(); }

 private:
  const std::shared_ptr<Sink> dst_;
  const std::shared_ptr<RetryStrategy> strategy_;
  const Clock* const clock_;
  std::mutex write_mu_;  // serializes Writes; guards no data
  ClockNotification closed_;
  SinkCounters counters_;
};

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_RETRYING_SINK_H_
