// LogSink: writes each event as one INFO log line,
//   forward log:<name> {"id":...}
// with the event in its JSON form (EventToJson). Never fails except after
// Close. Thread-safe.
#ifndef DISPATCHD_SINKS_LOG_SINK_H_
#define DISPATCHD_SINKS_LOG_SINK_H_

#include <atomic>
#include <string>

#include "sinks/sink.h"

namespace dispatchd {
namespace sinks {

class LogSink final : public Sink {
 public:
  // `name` may be empty ("log:").
  explicit LogSink(std::string name) : name_(std::move(name)) {}

  absl::Status Write(EventPtr event) override;
  absl::Status Close() override;

 private:
  const std::string name_;
  std::atomic<bool> closed_{false};
};

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_LOG_SINK_H_
