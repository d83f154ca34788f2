#include "sinks/testing/test_sinks.h"

#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"

namespace dispatchd {
namespace sinks {
namespace testing {

EventPtr MakeEvent(absl::string_view id) {
  auto event = std::make_shared<Event>();
  event->id = std::string(id);
  event->payload = absl::StrCat("payload-", id);
  event->source_host = "host-a";
  event->path = std::string(id);
  event->time = absl::FromUnixSeconds(1767225600);
  return event;
}

void SpinUntil(const std::function<bool()>& done) {
  while (!done()) std::this_thread::yield();
}

absl::Status RecordingSink::Write(EventPtr event) {
  if (event == nullptr) return absl::InvalidArgumentError("null event");
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return ClosedError();
  events_.push_back(std::move(event));
  return absl::OkStatus();
}

absl::Status RecordingSink::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  ++close_calls_;
  return absl::OkStatus();
}

std::vector<EventPtr> RecordingSink::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

std::vector<std::string> RecordingSink::ids() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> ids;
  for (const auto& e : events_) ids.push_back(e->id);
  return ids;
}

size_t RecordingSink::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_.size();
}

int RecordingSink::close_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return close_calls_;
}

absl::Status BlockingSink::Write(EventPtr event) {
  if (event == nullptr) return absl::InvalidArgumentError("null event");
  std::unique_lock<std::mutex> lock(mu_);
  ++blocked_;
  cv_.wait(lock, [&] { return released_ || closed_; });
  --blocked_;
  if (closed_) return ClosedError();
  ids_.push_back(event->id);
  return absl::OkStatus();
}

absl::Status BlockingSink::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  ++close_calls_;
  cv_.notify_all();
  return absl::OkStatus();
}

void BlockingSink::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  released_ = true;
  cv_.notify_all();
}

int BlockingSink::blocked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return blocked_;
}

std::vector<std::string> BlockingSink::ids() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ids_;
}

int BlockingSink::close_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return close_calls_;
}

absl::Status FailingSink::Write(EventPtr event) {
  if (event == nullptr) return absl::InvalidArgumentError("null event");
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return ClosedError();
  ++attempts_;
  if (failures_left_ > 0) {
    --failures_left_;
    return absl::UnavailableError("destination down");
  }
  ids_.push_back(event->id);
  return absl::OkStatus();
}

absl::Status FailingSink::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  ++close_calls_;
  return absl::OkStatus();
}

int FailingSink::attempts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return attempts_;
}

std::vector<std::string> FailingSink::ids() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ids_;
}

int FailingSink::close_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return close_calls_;
}

}  // namespace testing
}  // namespace sinks
}  // namespace dispatchd
