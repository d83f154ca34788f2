#include "controller/debouncer.h"

#include <algorithm>

namespace dispatchd {
namespace controller {

absl::Time Debouncer::WouldDeliverAt(const std::string& key, absl::Duration period,
                                     absl::Time now) const {
  auto it = keys_.find(key);
  if (it == keys_.end() || period <= absl::ZeroDuration()) return now;
  const KeyState& state = it->second;
  if (!state.pending.has_value() && now >= state.last_delivery + period) return now;
  return std::max(now, std::min(state.last_delivery + period, now + period));
}

std::optional<std::pair<Debouncer::Item, absl::Time>> Debouncer::PendingOf(
    const std::string& key) const {
  auto it = keys_.find(key);
  if (it == keys_.end() || !it->second.pending.has_value()) return std::nullopt;
  return std::make_pair(*it->second.pending, it->second.deliver_at);
}

Debouncer::Decision Debouncer::Offer(const std::string& key, absl::Duration period, Item item,
                                     absl::Time now, absl::Time written) {
  if (written == absl::InfiniteFuture()) written = now;
  ExpireIdle(now);
  if (period <= absl::ZeroDuration() && !keys_.contains(key)) {
    // No debounce and nothing remembered: delivered now. The key is not
    // tracked, since a zero period would have it expire at the next call
    // anyway (ExpireIdle drops keys idle until <= now).
    return {Decision::Action::kDeliverNow, now, std::nullopt};
  }
  auto [it, inserted] = keys_.try_emplace(key);
  KeyState& state = it->second;
  if (period > absl::ZeroDuration() && state.pending.has_value() &&
      written < state.pending_written) {
    // Written before the item waiting: that one is the latest.
    return {Decision::Action::kCoalesced, state.deliver_at, item};
  }
  const bool was_idle = !inserted && !state.pending.has_value();
  if (was_idle) idle_until_.erase({state.last_delivery + state.period, key});
  state.period = period;

  if (inserted || period <= absl::ZeroDuration() ||
      (was_idle && now >= state.last_delivery + period)) {
    // First event, no debounce, or the period since the last delivery is
    // over. A pending item (possible only when the period shrank to zero)
    // is replaced by this one.
    std::optional<Item> coalesced;
    if (state.pending.has_value()) {
      deadlines_.erase({state.deliver_at, key});
      coalesced = state.pending;
      state.pending.reset();
    }
    MarkDelivered(key, &state, now);
    return {Decision::Action::kDeliverNow, now, coalesced};
  }

  std::optional<Item> coalesced;
  if (state.pending.has_value()) {
    deadlines_.erase({state.deliver_at, key});
    coalesced = state.pending;
    state.pending.reset();
  }
  // Due one period after the last delivery, and never more than one period
  // after this event (even if the clock stepped backwards).
  const absl::Time deliver_at = std::min(state.last_delivery + period, now + period);
  if (deliver_at <= now) {
    // The earlier pending item was due but not yet taken: this item takes
    // its slot, so the schedule stays where it was.
    MarkDelivered(key, &state, deliver_at);
    return {Decision::Action::kDeliverNow, now, coalesced};
  }
  state.pending = item;
  state.deliver_at = deliver_at;
  state.pending_written = written;
  deadlines_.emplace(deliver_at, key);
  return {Decision::Action::kPending, deliver_at, coalesced};
}

std::vector<Debouncer::Due> Debouncer::TakeDue(absl::Time now) {
  std::vector<Due> due;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    auto node = deadlines_.extract(deadlines_.begin());
    const std::string& key = node.value().second;
    KeyState& state = keys_.at(key);
    due.push_back({key, *state.pending});
    state.pending.reset();
    MarkDelivered(key, &state, node.value().first);
  }
  ExpireIdle(now);
  return due;
}

std::optional<absl::Time> Debouncer::NextDeadline() const {
  if (deadlines_.empty()) return std::nullopt;
  return deadlines_.begin()->first;
}

std::optional<Debouncer::Item> Debouncer::Forget(const std::string& key) {
  auto it = keys_.find(key);
  if (it == keys_.end()) return std::nullopt;
  KeyState& state = it->second;
  std::optional<Item> pending = state.pending;
  if (pending.has_value()) {
    deadlines_.erase({state.deliver_at, key});
  } else {
    idle_until_.erase({state.last_delivery + state.period, key});
  }
  keys_.erase(it);
  return pending;
}

void Debouncer::MarkDelivered(const std::string& key, KeyState* state, absl::Time at) {
  state->last_delivery = at;
  idle_until_.emplace(at + state->period, key);
}

void Debouncer::ExpireIdle(absl::Time now) {
  while (!idle_until_.empty() && idle_until_.begin()->first <= now) {
    auto node = idle_until_.extract(idle_until_.begin());
    keys_.erase(node.value().second);
  }
}

}  // namespace controller
}  // namespace dispatchd
