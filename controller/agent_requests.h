// AgentRequests: API calls waiting for an agent's answer (Emit's WriteEvent,
// the dead-letter requests). Each gets an id to send with the request, a
// deadline, and the agent it went to; it ends exactly once: with the
// agent's answer, UNAVAILABLE when that agent's session ends, UNAVAILABLE
// when the deadline passes (see Expire), or with FailAll's status.
//
// Not thread-safe: the Dispatcher calls it under its lock. Callbacks are
// never run here: what completes is returned as Completions, which the
// caller runs once it has released its lock (a callback may finish a gRPC
// call, which must not happen under the Dispatcher's lock).
#ifndef DISPATCHD_CONTROLLER_AGENT_REQUESTS_H_
#define DISPATCHD_CONTROLLER_AGENT_REQUESTS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/dispatch/v1/session.pb.h"

namespace dispatchd {
namespace controller {

class AgentRequests {
 public:
  using Done = std::function<void(absl::StatusOr<dispatch::v1::AgentMessage>)>;

  // A callback and what to call it with.
  struct Completion {
    Done done;
    absl::StatusOr<dispatch::v1::AgentMessage> result;
    void Run() { done(std::move(result)); }
  };

  // Registers a request to `agent_id`; returns the id to send with it.
  uint64_t Add(std::string agent_id, absl::Time deadline, Done done);

  // The agent's answer to `request_id`. Nothing when no such request is
  // waiting (already expired, or the id came from another agent).
  std::optional<Completion> Answer(uint64_t request_id, absl::string_view agent_id,
                                   dispatch::v1::AgentMessage answer);
  // Every request waiting on `agent_id`, failed: its session ended.
  std::vector<Completion> AgentGone(absl::string_view agent_id);
  // Every request whose deadline is at or before `now`, failed.
  std::vector<Completion> Expire(absl::Time now);
  // Every request, failed with `status` (shutting down).
  std::vector<Completion> FailAll(const absl::Status& status);

  std::optional<absl::Time> NextDeadline() const;
  size_t size() const { return waiting_.size(); }

 private:
  struct Waiting {
    std::string agent_id;
    absl::Time deadline;
    Done done;
  };
  uint64_t next_id_ = 1;
  std::map<uint64_t, Waiting> waiting_;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_AGENT_REQUESTS_H_
