#include "sinks/sink.h"

#include "absl/strings/cord.h"

namespace dispatchd {
namespace sinks {
namespace {

constexpr char kClosedPayloadUrl[] = "type.dispatchd.dev/dispatchd.events.SinkClosed";

}  // namespace

absl::Status ClosedError() {
  absl::Status status = absl::FailedPreconditionError("sink closed");
  status.SetPayload(kClosedPayloadUrl, absl::Cord());
  return status;
}

bool IsClosed(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition &&
         status.GetPayload(kClosedPayloadUrl).has_value();
}

SinkStats SinkCounters::Snapshot() const {
  SinkStats stats;
  stats.written = written_.load(std::memory_order_relaxed);
  stats.delivered = delivered_.load(std::memory_order_relaxed);
  stats.dropped = dropped_.load(std::memory_order_relaxed);
  stats.retried = retried_.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace sinks
}  // namespace dispatchd
