#include "controller/delivery_queue.h"

#include <algorithm>

#include <utility>

namespace dispatchd {
namespace controller {

DeliveryQueue::DeliveryQueue(DeliveryQueueOptions options) : options_(std::move(options)) {}

bool DeliveryQueue::Add(const std::string& key, uint64_t event_seq,
                        absl::FunctionRef<Recipient()> recipient, absl::Time now) {
  Lane& lane = lanes_[key];
  if (lane.front.has_value()) {
    if (lane.behind == nullptr) lane.behind = std::make_unique<std::deque<Behind>>();
    lane.behind->push_back(Behind{event_seq, now});
    return false;  // the front is in flight, waits for a retry, or is ready already
  }
  lane.front.emplace(Delivery{event_seq, recipient()});
  lane.front->ready_at = now;
  return !lane.retry_at.has_value();
}

Delivery* DeliveryQueue::Ready(const std::string& key) {
  auto it = lanes_.find(key);
  if (it == lanes_.end()) return nullptr;
  Lane& lane = it->second;
  if (!lane.front.has_value()) {
    lanes_.erase(it);
    return nullptr;
  }
  if (lane.in_flight() || lane.retry_at.has_value()) return nullptr;
  return &*lane.front;
}

uint64_t DeliveryQueue::MarkSent(const std::string& key, Delivery& front,
                                 const std::string& agent_id, absl::Time now) {
  const uint64_t command_id = next_command_id_++;
  front.command_id = command_id;
  front.sent_at = now;
  in_flight_[command_id] = InFlight{key, agent_id};
  return command_id;
}

std::optional<DeliveryQueue::Answered> DeliveryQueue::TakeAnswered(uint64_t command_id,
                                                                   absl::string_view agent_id) {
  auto f = in_flight_.find(command_id);
  if (f == in_flight_.end() || f->second.agent_id != agent_id) return std::nullopt;
  std::string key = std::move(f->second.lane);
  in_flight_.erase(f);
  auto it = lanes_.find(key);
  if (it == lanes_.end() || !it->second.in_flight() || it->second.front->command_id != command_id) {
    return std::nullopt;
  }
  return Answered{std::move(key), &*it->second.front};
}

std::optional<Delivery> DeliveryQueue::Finish(const std::string& key, bool* next) {
  std::optional<Delivery> delivery;  // one return: no second move of the delivery
  if (next != nullptr) *next = false;
  auto it = lanes_.find(key);
  if (it != lanes_.end() && it->second.front.has_value()) {
    Lane& lane = it->second;
    delivery.emplace(std::move(*lane.front));
    delivery->command_id = 0;
    if (lane.behind_count() == 0) {
      // Its retry timer, if any, finds no lane and is dropped.
      lanes_.erase(it);
    } else {
      lane.retry_at.reset();
      if (next != nullptr) *next = true;
      // The next one becomes the front, to the same recipient, afresh.
      lane.front.emplace(Delivery{lane.behind->front().event_seq, delivery->recipient});
      lane.front->ready_at = lane.behind->front().ready_at;
      lane.behind->pop_front();
    }
  }
  return delivery;
}

DeliveryQueue::RetryPlan DeliveryQueue::Retry(const std::string& key, std::string error,
                                              absl::Time now, bool spend) {
  auto it = lanes_.find(key);
  if (it == lanes_.end() || !it->second.front.has_value()) return {};
  Lane& lane = it->second;
  Delivery& front = *lane.front;
  front.command_id = 0;
  front.last_error = std::move(error);
  absl::Time at;
  if (spend) {
    ++front.attempts;
    if (front.attempts >= options_.max_attempts) {
      return {RetryPlan::Verdict::kBudgetExhausted, &front, absl::InfinitePast()};
    }
    at = now + Backoff(front.attempts);
  } else {
    ++front.unreachable;
    at = now + std::min(Backoff(front.unreachable), kUnreachableMaxBackoff);
  }
  lane.retry_at = at;
  front.ready_at = at;
  retry_timers_.insert({at, key});
  return {RetryPlan::Verdict::kScheduled, &front, at};
}

absl::Duration DeliveryQueue::Backoff(int attempts) {
  // Full jitter below a ceiling that doubles from the minimum and saturates
  // at the maximum: the same computation as the sinks' ExponentialBackoff.
  const absl::Duration bound =
      sinks::FullJitterBound(absl::ZeroDuration(), options_.min_backoff, options_.max_backoff,
                             static_cast<uint64_t>(attempts));
  if (options_.random) return sinks::FullJitter(bound, options_.random);
  return sinks::FullJitter(bound,
                           [this](int64_t n) { return absl::Uniform<int64_t>(bitgen_, 0, n); });
}

std::optional<std::string> DeliveryQueue::PopDueRetry(absl::Time now) {
  while (!retry_timers_.empty() && retry_timers_.begin()->first <= now) {
    auto node = retry_timers_.extract(retry_timers_.begin());
    auto lane = lanes_.find(node.value().second);
    if (lane == lanes_.end()) continue;
    // A later retry of the same lane replaced this timer.
    if (lane->second.retry_at.has_value() && *lane->second.retry_at > now) continue;
    lane->second.retry_at.reset();
    return std::move(node.value().second);
  }
  return std::nullopt;
}

std::optional<absl::Time> DeliveryQueue::NextDeadline() const {
  if (retry_timers_.empty()) return std::nullopt;
  return retry_timers_.begin()->first;
}

std::vector<std::string> DeliveryQueue::LanesTo(absl::string_view agent_id) const {
  std::vector<std::string> keys;
  for (const auto& [key, lane] : lanes_) {
    if (lane.front.has_value() && lane.front->recipient.agent_id == agent_id) {
      keys.push_back(key);
    }
  }
  return keys;
}

bool DeliveryQueue::ClearRetry(const std::string& key) {
  auto lane = lanes_.find(key);
  if (lane == lanes_.end()) return false;
  lane->second.retry_at.reset();
  return true;
}

void DeliveryQueue::AbandonAgent(absl::string_view agent_id) {
  std::vector<std::string> lanes;
  std::vector<uint64_t> commands;
  for (const auto& [command_id, f] : in_flight_) {
    if (f.agent_id == agent_id) {
      lanes.push_back(f.lane);
      commands.push_back(command_id);
    }
  }
  for (uint64_t command_id : commands) in_flight_.erase(command_id);
  for (const std::string& key : lanes) {
    auto lane = lanes_.find(key);
    if (lane != lanes_.end() && lane->second.front.has_value()) {
      lane->second.front->command_id = 0;
    }
  }
}

size_t DeliveryQueue::depth() const {
  size_t depth = 0;
  for (const auto& [key, lane] : lanes_) {
    if (!lane.front.has_value()) continue;
    depth += lane.behind_count() + (lane.in_flight() ? 0 : 1);
  }
  return depth;
}

std::vector<DeliveryQueue::Position> DeliveryQueue::PositionsOf(uint64_t event_seq) const {
  std::vector<Position> out;
  for (const auto& [key, lane] : lanes_) {
    if (!lane.front.has_value()) continue;
    if (lane.front->event_seq == event_seq) {
      Position p{*lane.front, Position::State::kQueued, absl::InfinitePast()};
      if (lane.in_flight()) p.state = Position::State::kInFlight;
      if (lane.retry_at.has_value()) {
        p.state = Position::State::kRetryWait;
        p.retry_at = *lane.retry_at;
      }
      out.push_back(std::move(p));
    }
    if (lane.behind == nullptr) continue;
    for (const Behind& b : *lane.behind) {
      if (b.event_seq != event_seq) continue;
      Delivery d;
      d.event_seq = b.event_seq;
      d.recipient = lane.front->recipient;
      d.ready_at = b.ready_at;
      out.push_back(Position{std::move(d), Position::State::kQueued, absl::InfinitePast()});
    }
  }
  return out;
}

}  // namespace controller
}  // namespace dispatchd
