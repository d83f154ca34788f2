#include "sinks/filter.h"

#include <utility>

#include "common/logging.h"

namespace dispatchd {
namespace sinks {

Filter::Filter(std::shared_ptr<Sink> dst, Matcher matcher)
    : dst_(std::move(dst)), matcher_(std::move(matcher)) {
  CHECK(dst_ != nullptr) << "Filter needs a destination";
  CHECK(matcher_ != nullptr) << "Filter needs a matcher";
}

absl::Status Filter::Write(EventPtr event) {
  if (event == nullptr) return absl::InvalidArgumentError("null event");
  if (closed_.load(std::memory_order_acquire)) return ClosedError();
  counters_.AddWritten();
  if (!matcher_(*event)) return absl::OkStatus();
  absl::Status status = dst_->Write(std::move(event));
  if (status.ok()) {
    counters_.AddDelivered();
  } else {
    counters_.AddDropped();
  }
  return status;
}

absl::Status Filter::Close() {
  if (closed_.exchange(true, std::memory_order_acq_rel)) return absl::OkStatus();
  return dst_->Close();
}

}  // namespace sinks
}  // namespace dispatchd
