#include "sinks/retrying_sink.h"

#include <utility>

#include "common/logging.h"

namespace dispatchd {
namespace sinks {

RetryingSink::RetryingSink(std::shared_ptr<Sink> dst, std::shared_ptr<RetryStrategy> strategy,
                           Options options)
    : dst_(std::move(dst)),
      strategy_(std::move(strategy)),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {
  CHECK(dst_ != nullptr) << "RetryingSink needs a destination";
  CHECK(strategy_ != nullptr) << "RetryingSink needs a strategy";
}

absl::Status RetryingSink::Write(EventPtr event) {
  if (event == nullptr) return absl::InvalidArgumentError("null event");
  if (closed_.HasBeenNotified()) return ClosedError();
  std::lock_guard<std::mutex> write_lock(write_mu_);
  if (closed_.HasBeenNotified()) return ClosedError();
  counters_.AddWritten();
  for (bool first = true;; first = false) {
    if (!first) counters_.AddRetried();
    const absl::Duration wait = strategy_->Proceed(*event);
    if (wait > absl::ZeroDuration()) {
      closed_.WaitUntil(*clock_, clock_->Now() + wait);
    }
    if (closed_.HasBeenNotified()) {
      counters_.AddDropped();
      return ClosedError();
    }
    absl::Status status = dst_->Write(event);
    if (status.ok()) {
      strategy_->Success(*event);
      counters_.AddDelivered();
      return status;
    }
    if (IsClosed(status) || strategy_->Failure(*event, status) == RetryDecision::kGiveUp) {
      counters_.AddDropped();
      return status;
    }
  }
}

absl::Status RetryingSink::Close() {
  if (!closed_.Notify()) return absl::OkStatus();
  return dst_->Close();
}

}  // namespace sinks
}  // namespace dispatchd
