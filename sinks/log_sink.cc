#include "sinks/log_sink.h"

#include "common/logging.h"
#include "sinks/event_json.h"

namespace dispatchd {
namespace sinks {

absl::Status LogSink::Write(EventPtr event) {
  if (event == nullptr) return absl::InvalidArgumentError("null event");
  if (closed_.load(std::memory_order_acquire)) return ClosedError();
  LOG(INFO) << "forward log:" << name_ << " " << EventToJson(*event);
  return absl::OkStatus();
}

absl::Status LogSink::Close() {
  closed_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

}  // namespace sinks
}  // namespace dispatchd
