// Filter: passes to its destination only the events a matcher accepts
// (go-events' Filter). Events the matcher rejects are consumed: Write
// returns OK and they count as written but neither delivered nor dropped.
//
// Close closes the destination. Thread-safe when the destination and the
// matcher are (go-events' Filter raced on its closed flag).
#ifndef DISPATCHD_SINKS_FILTER_H_
#define DISPATCHD_SINKS_FILTER_H_

#include <atomic>
#include <functional>
#include <memory>

#include "sinks/sink.h"

namespace dispatchd {
namespace sinks {

class Filter final : public Sink {
 public:
  using Matcher = std::function<bool(const Event& event)>;

  // REQUIRES: dst and matcher are not null.
  Filter(std::shared_ptr<Sink> dst, Matcher matcher);

  absl::Status Write(EventPtr event) override;
  absl::Status Close() override;

  SinkStats stats() const { return counters_.Snapshot(); }

 private:
  const std::shared_ptr<Sink> dst_;
  const Matcher matcher_;
  std::atomic<bool> closed_{false};
  SinkCounters counters_;
};

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_FILTER_H_
