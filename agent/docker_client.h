// DockerClient: DockerApi over the Docker Engine's unix socket (HTTP/1.1 with
// Boost.Beast). Each call opens its own connection, so calls from many
// threads run in parallel without sharing a socket, and no call is answered
// by an engine that is shutting down: dockerd closes its listening socket
// first, then stops the containers, while it still serves the connections
// already open, where they read as stopped (a kept connection made a
// dockerd restart skip deliveries as "not running"). The API version is
// negotiated once (GET /version, lazily on the first call): the client speaks
// min(server ApiVersion, 1.41).
//
// Ids and names must be non-empty and free of '/' (InvalidArgument otherwise);
// other characters are percent-encoded.
//
// Thread-safety: the returned DockerApi is safe for concurrent use. Every
// socket operation is bounded by DockerClientOptions::timeout.
#ifndef DISPATCHD_AGENT_DOCKER_CLIENT_H_
#define DISPATCHD_AGENT_DOCKER_CLIENT_H_

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/docker_api.h"

namespace dispatchd {
namespace agent {

struct DockerClientOptions {
  // Only unix:// hosts are supported.
  std::string host = "unix:///run/docker.sock";
  // Bound on each connect, write and read (not on waiting for events).
  // Must be positive; at most 24 h is honoured.
  absl::Duration timeout = absl::Seconds(10);
};

// $DOCKER_HOST if set and non-empty, else the first of /run/docker.sock and
// /var/run/docker.sock that exists (the same file on most hosts), else
// unix:///run/docker.sock (whose absence the calls then explain).
std::string DefaultDockerHost();

// Returns InvalidArgument naming the host when it is not unix://PATH. Does
// not connect: an unreachable daemon shows up as Unavailable on the calls,
// with a message that says what to fix (no socket at PATH, not a socket,
// nobody listening, permission denied, a peer that is not a Docker engine).
absl::StatusOr<std::unique_ptr<DockerApi>> NewDockerClient(DockerClientOptions options);

namespace internal {

// Splits a byte stream into lines at '\n' (a trailing '\r' is dropped). A line
// may span several Append() calls and one call may hold several lines.
class LineSplitter {
 public:
  void Append(absl::string_view data);
  // The next complete line, or std::nullopt when none is complete yet.
  std::optional<std::string> Pop();
  // Bytes of an incomplete line held back.
  size_t partial_size() const { return partial_.size(); }

 private:
  std::string partial_;
  std::deque<std::string> lines_;
};

// The decoders of the engine's answers, as the client applies them to a
// response body (exposed for tests). `op` names the call in errors.
// GET /containers/json?all=1: a JSON array of containers.
absl::StatusOr<std::vector<ContainerInfo>> ParseContainerList(absl::string_view body);
// GET /containers/{id}/json.
absl::StatusOr<ContainerInfo> ParseContainerInspect(absl::string_view op, absl::string_view body);
// GET /exec/{id}/json.
absl::StatusOr<ExecInfo> ParseExecInspect(absl::string_view op, absl::string_view body);

// Parses one JSON line of GET /events.
absl::StatusOr<DockerEvent> ParseDockerEvent(absl::string_view line);

// An event stream reading the HTTP response of GET /events from `fd`, a
// connected stream socket whose request has already been sent. Takes
// ownership of `fd`. Waits up to `timeout` for the response header. Lets
// tests drive the chunked-body handling through a socketpair.
absl::StatusOr<std::unique_ptr<DockerEventStream>> NewEventStreamFromFd(int fd,
                                                                        absl::Duration timeout);

}  // namespace internal
}  // namespace agent
}  // namespace dispatchd

#endif  // DISPATCHD_AGENT_DOCKER_CLIENT_H_
