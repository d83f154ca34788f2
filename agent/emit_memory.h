// EmitMemory: what this agent wrote for each Emit idempotency key, so that
// a client retrying an Emit (for example across a controller restart) gets
// the first answer instead of a second event.
//
// A key is remembered for `ttl` (10 minutes by default) after its write, and
// at most `max_keys` keys are kept (the oldest are forgotten first). The
// memory is the agent's: it survives controller restarts, not agent
// restarts.
//
// Thread-safe. `clock` must outlive the EmitMemory.
#ifndef DISPATCHD_AGENT_EMIT_MEMORY_H_
#define DISPATCHD_AGENT_EMIT_MEMORY_H_

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace dispatchd::agent {

struct EmitMemoryOptions {
  absl::Duration ttl = absl::Minutes(10);
  size_t max_keys = 100000;
};

class EmitMemory {
 public:
  // What the first Emit with a key wrote.
  struct Written {
    std::string path;
    std::string event_id;
    absl::Time written;
  };

  EmitMemory(Clock* clock, EmitMemoryOptions options = {});

  // The write remembered for `key`, if it is younger than the ttl.
  std::optional<Written> Find(absl::string_view key);
  // Remembers `written` (as given) for `key` from now on, replacing what
  // was remembered for it.
  void Remember(absl::string_view key, Written written);

  size_t size() const;

 private:
  void ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* const clock_;
  const EmitMemoryOptions options_;
  mutable absl::Mutex mu_;
  struct Entry {
    Written written;
    absl::Time remembered;  // starts the ttl
  };
  absl::flat_hash_map<std::string, Entry> by_key_ ABSL_GUARDED_BY(mu_);
  // Keys in the order they were remembered, for expiry and the bound.
  std::deque<std::pair<absl::Time, std::string>> order_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dispatchd::agent

#endif  // DISPATCHD_AGENT_EMIT_MEMORY_H_
