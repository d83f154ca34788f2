// Event: what dispatchd forwards, and the unit every sink in this package
// moves. Events are immutable once built and shared between sinks by
// EventPtr, so a Broadcaster hands the same object to every destination.
#ifndef DISPATCHD_SINKS_EVENT_H_
#define DISPATCHD_SINKS_EVENT_H_

#include <memory>
#include <string>

#include "absl/time/time.h"

namespace dispatchd {
namespace sinks {

struct Event {
  std::string id;       // event id, e.g. "some-dir.the-event-file"
  std::string payload;  // file content, possibly cut at the payload limit
  bool payload_truncated = false;
  std::string source_host;  // host whose agent observed the file
  std::string path;         // path relative to the events directory
  absl::Time time;          // when the file appeared
};

using EventPtr = std::shared_ptr<const Event>;

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_EVENT_H_
