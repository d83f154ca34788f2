#include "sinks/broadcaster.h"

#include <algorithm>
#include <utility>

namespace dispatchd {
namespace sinks {

Broadcaster::Broadcaster(Options options) : options_(std::move(options)) {}

Broadcaster::Broadcaster(std::vector<std::shared_ptr<Sink>> sinks, Options options)
    : options_(std::move(options)) {
  for (auto& sink : sinks) {
    if (sink != nullptr && std::find(sinks_.begin(), sinks_.end(), sink) == sinks_.end()) {
      sinks_.push_back(std::move(sink));
    }
  }
}

absl::Status Broadcaster::Add(std::shared_ptr<Sink> sink) {
  if (sink == nullptr) return absl::InvalidArgumentError("null sink");
  std::lock_guard<std::mutex> write_lock(write_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return ClosedError();
  if (std::find(sinks_.begin(), sinks_.end(), sink) == sinks_.end()) {
    sinks_.push_back(std::move(sink));
  }
  return absl::OkStatus();
}

absl::Status Broadcaster::Remove(const std::shared_ptr<Sink>& sink) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find(sinks_.begin(), sinks_.end(), sink);
  if (it == sinks_.end()) return absl::NotFoundError("sink is not a member of this broadcaster");
  sinks_.erase(it);
  return absl::OkStatus();
}

absl::Status Broadcaster::Write(EventPtr event) {
  if (event == nullptr) return absl::InvalidArgumentError("null event");
  std::lock_guard<std::mutex> write_lock(write_mu_);
  std::vector<std::shared_ptr<Sink>> members;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return ClosedError();
    members = sinks_;
  }
  counters_.AddWritten();
  // Iterate over a snapshot and remove closed members afterwards: removing
  // while iterating is how go-events skipped a neighbour.
  std::vector<std::shared_ptr<Sink>> closed_members;
  for (const auto& sink : members) {
    absl::Status status = sink->Write(event);
    if (status.ok()) {
      counters_.AddDelivered();
    } else if (IsClosed(status)) {
      closed_members.push_back(sink);
    } else {
      counters_.AddDropped();
      if (options_.dead_letter) options_.dead_letter(event, status);
    }
  }
  if (!closed_members.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    sinks_.erase(std::remove_if(sinks_.begin(), sinks_.end(),
                                [&](const std::shared_ptr<Sink>& s) {
                                  return std::find(closed_members.begin(), closed_members.end(),
                                                   s) != closed_members.end();
                                }),
                 sinks_.end());
  }
  return absl::OkStatus();
}

absl::Status Broadcaster::Close() {
  std::vector<std::shared_ptr<Sink>> members;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return absl::OkStatus();
    closed_ = true;
    members.swap(sinks_);
  }
  absl::Status result;
  for (const auto& sink : members) result.Update(sink->Close());
  return result;
}

size_t Broadcaster::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sinks_.size();
}

}  // namespace sinks
}  // namespace dispatchd
