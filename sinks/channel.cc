#include "sinks/channel.h"

#include <algorithm>
#include <utility>

namespace dispatchd {
namespace sinks {

Channel::Channel(size_t capacity) : capacity_(capacity) {}

absl::Status Channel::Write(EventPtr event) {
  if (event == nullptr) return absl::InvalidArgumentError("null event");
  std::unique_lock<std::mutex> lock(mu_);
  if (closed_) return ClosedError();
  counters_.AddWritten();
  // Unbuffered: one event at a time sits in the hand-off slot.
  const size_t limit = std::max<size_t>(capacity_, 1);
  changed_.wait(lock, [&] { return closed_ || buffer_.size() < limit; });
  if (closed_) {
    counters_.AddDropped();
    return ClosedError();
  }
  const uint64_t seq = next_seq_++;
  buffer_.push_back(Slot{seq, std::move(event)});
  readable_.notify_one();
  if (capacity_ > 0) return absl::OkStatus();

  auto waiting = [&] {
    return std::find_if(buffer_.begin(), buffer_.end(),
                        [&](const Slot& s) { return s.seq == seq; });
  };
  changed_.wait(lock, [&] { return closed_ || waiting() == buffer_.end(); });
  auto it = waiting();
  if (it == buffer_.end()) return absl::OkStatus();  // a reader took it
  buffer_.erase(it);
  counters_.AddDropped();
  return ClosedError();
}

absl::Status Channel::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  readable_.notify_all();
  changed_.notify_all();
  return absl::OkStatus();
}

EventPtr Channel::PopLocked() {
  EventPtr event = std::move(buffer_.front().event);
  buffer_.pop_front();
  counters_.AddDelivered();
  changed_.notify_all();
  return event;
}

absl::StatusOr<EventPtr> Channel::Receive() {
  std::unique_lock<std::mutex> lock(mu_);
  readable_.wait(lock, [&] { return closed_ || !buffer_.empty(); });
  if (buffer_.empty()) return ClosedError();
  return PopLocked();
}

absl::StatusOr<EventPtr> Channel::TryReceive() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!buffer_.empty()) return PopLocked();
  if (closed_) return ClosedError();
  return absl::UnavailableError("no event waiting");
}

bool Channel::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

}  // namespace sinks
}  // namespace dispatchd
