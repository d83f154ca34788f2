#include "agent/emit_memory.h"

namespace dispatchd::agent {

EmitMemory::EmitMemory(Clock* clock, EmitMemoryOptions options)
    : clock_(clock), options_(options) {}

void EmitMemory::ExpireLocked(absl::Time now) {
  while (!order_.empty() &&
         (now - order_.front().first >= options_.ttl || order_.size() > options_.max_keys)) {
    auto it = by_key_.find(order_.front().second);
    // A key remembered again later has a newer entry further back.
    if (it != by_key_.end() && it->second.remembered == order_.front().first) by_key_.erase(it);
    order_.pop_front();
  }
}

std::optional<EmitMemory::Written> EmitMemory::Find(absl::string_view key) {
  absl::MutexLock lock(&mu_);
  ExpireLocked(clock_->Now());
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  return it->second.written;
}

void EmitMemory::Remember(absl::string_view key, Written written) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  by_key_[key] = Entry{std::move(written), now};
  order_.emplace_back(now, std::string(key));
  ExpireLocked(now);
}

size_t EmitMemory::size() const {
  absl::MutexLock lock(&mu_);
  return by_key_.size();
}

}  // namespace dispatchd::agent
