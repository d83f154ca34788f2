// DockerApi: the slice of the Docker Engine API the agent uses, as an
// interface so unit tests can swap in a fake (agent/testing/fake_docker_api.h).
// The real implementation is NewDockerClient() in agent/docker_client.h.
//
// Thread-safety: implementations are safe for concurrent calls from many
// threads. A DockerEventStream is used by one thread at a time.
//
// Errors map uniformly, and every message names the operation and carries
// Docker's own message:
//   404 -> NotFound; 409 -> FailedPrecondition (e.g. "is paused",
//   "is not running"); other 4xx -> InvalidArgument; 5xx -> Unavailable;
//   connection refused, socket missing, EOF -> Unavailable;
//   timeout -> DeadlineExceeded.
#ifndef DISPATCHD_AGENT_DOCKER_API_H_
#define DISPATCHD_AGENT_DOCKER_API_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace dispatchd {
namespace agent {

enum class ContainerState {
  kUnknown,
  kCreated,
  kRunning,
  kPaused,
  kRestarting,
  kRemoving,
  kExited,
  kDead,
};

// Docker's state word ("running", "exited", ...) to the enum; kUnknown for
// anything else. ContainerStateName is the reverse (for logs and tests).
ContainerState ParseContainerState(absl::string_view state);
absl::string_view ContainerStateName(ContainerState state);

struct ContainerInfo {
  std::string id;
  std::string name;  // without the leading '/'
  std::map<std::string, std::string> labels;
  ContainerState state = ContainerState::kUnknown;

  friend bool operator==(const ContainerInfo& a, const ContainerInfo& b) {
    return a.id == b.id && a.name == b.name && a.labels == b.labels && a.state == b.state;
  }
  friend bool operator!=(const ContainerInfo& a, const ContainerInfo& b) { return !(a == b); }
};

struct ExecInfo {
  bool running = false;
  int exit_code = 0;
};

// One line of GET /events.
struct DockerEvent {
  std::string type;    // "container"
  std::string action;  // "start", "die", "exec_die", "exec_create: sh -c ..."
  std::string id;      // Actor.ID (the container id for container events)
  absl::Time time;
  std::map<std::string, std::string> attributes;  // Actor.Attributes (execID, exitCode, name...)
};

// One open GET /events connection. Closing it is destroying it.
class DockerEventStream {
 public:
  virtual ~DockerEventStream() = default;

  // Waits up to `timeout` for the next event. Returns the event; std::nullopt
  // on timeout (the stream is still usable, no buffered data is lost); an
  // error status when the stream broke (daemon gone). After an error every
  // later call returns an error too.
  virtual absl::StatusOr<std::optional<DockerEvent>> Next(absl::Duration timeout) = 0;
};

class DockerApi {
 public:
  virtual ~DockerApi() = default;

  // The negotiated API version, e.g. "1.41".
  virtual absl::StatusOr<std::string> Version() = 0;

  // Every container (all=true), with its labels.
  virtual absl::StatusOr<std::vector<ContainerInfo>> ListContainers() = 0;

  // `id` may be a full id, a unique prefix or a name.
  virtual absl::StatusOr<ContainerInfo> InspectContainer(absl::string_view id) = 0;

  // Creates an exec of `argv` with extra `env` ("KEY=value") in the container,
  // with the container's default user and no tty. Returns the exec id.
  virtual absl::StatusOr<std::string> CreateExec(absl::string_view container_id,
                                                 const std::vector<std::string>& argv,
                                                 const std::vector<std::string>& env) = 0;

  // Starts a created exec detached (Detach=true, Tty=false): returns once
  // Docker has started it, without waiting for it to finish.
  virtual absl::Status StartExec(absl::string_view exec_id) = 0;

  virtual absl::StatusOr<ExecInfo> InspectExec(absl::string_view exec_id) = 0;

  // Starts a container; one that already runs (304) is OK.
  virtual absl::Status StartContainer(absl::string_view id) = 0;

  // Opens GET /events for container events from now on.
  virtual absl::StatusOr<std::unique_ptr<DockerEventStream>> OpenEventStream() = 0;
};

}  // namespace agent
}  // namespace dispatchd

#endif  // DISPATCHD_AGENT_DOCKER_API_H_
