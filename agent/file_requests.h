// FileRequests: the controller's API requests that an agent answers from its
// events directory: write an emitted event file (WriteEvent), and list,
// replay or purge dead letters (DeadLetterRequest). Each request gets one
// answer message with the same request id; a refused request writes or
// moves nothing and says which rule it broke.
//
// Thread-safe (the spool is stateless, EmitMemory locks). `spool` and
// `memory` must outlive it.
#ifndef DISPATCHD_AGENT_FILE_REQUESTS_H_
#define DISPATCHD_AGENT_FILE_REQUESTS_H_

#include <cstdint>
#include <string>

#include "absl/synchronization/mutex.h"
#include "agent/emit_memory.h"
#include "agent/spool.h"
#include "common/clock.h"
#include "proto/dispatch/v1/session.pb.h"

namespace dispatchd::agent {

struct FileRequestsOptions {
  // The agent's event namespace (ids it observes start with "<ns>.").
  std::string event_namespace;
  // Payloads larger than this are refused (the agent would truncate them).
  int64_t max_payload_bytes = 1 << 20;
};

class FileRequests {
 public:
  FileRequests(Spool* spool, EmitMemory* memory, Clock* clock, FileRequestsOptions options);

  // A write_event_result for `request`.
  dispatch::v1::AgentMessage Handle(const dispatch::v1::WriteEvent& request);
  // A dead_letter_result for `request`.
  dispatch::v1::AgentMessage Handle(const dispatch::v1::DeadLetterRequest& request) const;

 private:
  Spool* const spool_;
  EmitMemory* const memory_;
  Clock* const clock_;
  const FileRequestsOptions options_;
  // Writes with an idempotency key, one at a time, so that two retries
  // racing each other still write once.
  absl::Mutex keyed_writes_;
};

}  // namespace dispatchd::agent

#endif  // DISPATCHD_AGENT_FILE_REQUESTS_H_
