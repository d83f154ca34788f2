// InstrumentedDockerApi: a DockerApi decorator that counts every request by
// operation and outcome and records its latency, then returns exactly what
// the wrapped DockerApi returned.
//
//   dispatchd_docker_requests_total{agent, operation, outcome}
//   dispatchd_docker_request_duration_seconds{agent, operation}  (histogram)
//
// operation: version, list_containers, inspect_container, create_exec,
// start_exec, inspect_exec, start_container, open_event_stream.
// outcome (from the status code, see docker_api.h): ok, not_found, conflict,
// client_error, unavailable, timeout, error. Every combination is created at
// 0 by the factory. `agent` is the agent's id (one per host: bounded).
// Reading an open event stream is not a request and is not counted.
//
// Thread-safety: as the wrapped DockerApi (safe for concurrent calls).
// Ownership: `inner`, `clock` and `registry` are not owned and must outlive
// the returned object.
#ifndef DISPATCHD_AGENT_INSTRUMENTED_DOCKER_API_H_
#define DISPATCHD_AGENT_INSTRUMENTED_DOCKER_API_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "agent/docker_api.h"
#include "common/clock.h"
#include "common/metrics.h"

namespace dispatchd {
namespace agent {

std::unique_ptr<DockerApi> NewInstrumentedDockerApi(DockerApi* inner, Registry& registry,
                                                    absl::string_view agent_id,
                                                    const Clock* clock = Clock::Real());

// The outcome label of a Docker API status: "ok", "not_found", ...
absl::string_view DockerOutcomeName(const absl::Status& status);

}  // namespace agent
}  // namespace dispatchd

#endif  // DISPATCHD_AGENT_INSTRUMENTED_DOCKER_API_H_
