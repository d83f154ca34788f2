#include "controller/watch_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace dispatchd {
namespace controller {

bool WatchFilter::Matches(const dispatch::v1::WatchUpdate& update) const {
  if (!event_id.empty() && update.event_id() != event_id) return false;
  if (!event_id_prefix.empty() && !absl::StartsWith(update.event_id(), event_id_prefix)) {
    return false;
  }
  return kinds.empty() || kinds.count(update.kind()) != 0;
}

struct WatchHub::Watcher::State {
  WatchFilter filter;
  size_t capacity = 0;
  std::function<void()> wake;
  // Guarded by the hub's mutex.
  std::deque<dispatch::v1::WatchUpdate> buffer;
  bool overflowed = false;
  uint64_t missed = 0;
  bool closed = false;
};

WatchHub::Watcher::Watcher(WatchHub* hub, std::shared_ptr<State> state)
    : hub_(hub), state_(std::move(state)) {}

WatchHub::Watcher::~Watcher() { hub_->Unsubscribe(state_); }

absl::Status WatchHub::Watcher::Take(std::vector<dispatch::v1::WatchUpdate>* out) {
  absl::MutexLock lock(&hub_->mu_);
  for (auto& update : state_->buffer) out->push_back(std::move(update));
  state_->buffer.clear();
  if (state_->overflowed) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "this watcher fell behind by more than its buffer (", state_->capacity,
        " updates) and missed ", state_->missed,
        " updates; watch again, with a larger buffer or a narrower filter"));
  }
  if (state_->closed) return absl::CancelledError("the controller is shutting down");
  return absl::OkStatus();
}

WatchHub::~WatchHub() { Close(); }

std::unique_ptr<WatchHub::Watcher> WatchHub::Subscribe(WatchFilter filter, size_t buffer,
                                                       std::function<void()> wake) {
  auto state = std::make_shared<Watcher::State>();
  state->filter = std::move(filter);
  state->capacity = buffer == 0 ? kDefaultBuffer : std::min(buffer, kMaxBuffer);
  state->wake = std::move(wake);
  {
    absl::MutexLock lock(&mu_);
    state->closed = closed_;
    if (!closed_) watchers_.push_back(state);
    count_.store(watchers_.size(), std::memory_order_relaxed);
  }
  return std::unique_ptr<Watcher>(new Watcher(this, state));
}

void WatchHub::Unsubscribe(const std::shared_ptr<Watcher::State>& state) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(std::remove(watchers_.begin(), watchers_.end(), state), watchers_.end());
  count_.store(watchers_.size(), std::memory_order_relaxed);
}

void WatchHub::Publish(dispatch::v1::WatchUpdate update) {
  // Woken outside the lock; the states stay alive until then.
  std::vector<std::shared_ptr<Watcher::State>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    update.set_seq(++seq_);
    for (const auto& w : watchers_) {
      if (!w->filter.Matches(update)) continue;
      if (w->overflowed) {
        ++w->missed;
        continue;
      }
      if (w->buffer.size() >= w->capacity) {
        w->overflowed = true;
        w->missed = 1;
      } else {
        w->buffer.push_back(update);
      }
      if (w->wake) to_wake.push_back(w);
    }
  }
  for (const auto& w : to_wake) w->wake();
}

void WatchHub::Close() {
  std::vector<std::shared_ptr<Watcher::State>> watchers;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    watchers.swap(watchers_);
    count_.store(0, std::memory_order_relaxed);
    for (const auto& w : watchers) w->closed = true;
  }
  for (const auto& w : watchers) {
    if (w->wake) w->wake();
  }
}

size_t WatchHub::watchers() const {
  absl::MutexLock lock(&mu_);
  return watchers_.size();
}

uint64_t WatchHub::published() const {
  absl::MutexLock lock(&mu_);
  return seq_;
}

}  // namespace controller
}  // namespace dispatchd
