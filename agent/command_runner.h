// CommandRunner: runs one controller Command (exec and/or container.start)
// against the Docker API and says how it went, as the CommandResult the
// agent sends back (DESIGN.md §1 "Exec", §2 "Security").
//
// The policy, in order:
//   - The agent's own view of the container (its inventory) is used when it
//     is current; when the container is unknown there, is not running, or
//     its labels there do not allow the command, the container is inspected
//     first, so nothing is decided on a stale view.
//   - The command must be what the target container's own labels declare
//     for its event id (contract/labels.h): the same argv and the same
//     container.start. Anything else is REJECTED, and nothing runs.
//   - A paused container is FAILED (retryable). One that is not running is
//     NOT_RUNNING unless the command has container.start; then it is
//     started and inspected until it runs, at most `start_timeout` on the
//     injected Clock (FAILED after that).
//   - A start-only command (empty argv) is DELIVERED once the container
//     runs. Otherwise the exec is created with the command's env, then
//     started detached: DELIVERED means Docker started it. An exec refused
//     because the container stopped meanwhile is inspected before it is
//     called NOT_RUNNING.
//   - Docker's errors become outcomes in one place, OutcomeOfDockerError().
//
// Thread-safety: Run() and ExecExited() may be called from many threads at
// once. `docker` and `clock` are not owned and must outlive the runner.
#ifndef DISPATCHD_AGENT_COMMAND_RUNNER_H_
#define DISPATCHD_AGENT_COMMAND_RUNNER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/docker_api.h"
#include "common/clock.h"
#include "proto/dispatch/v1/session.pb.h"

namespace dispatchd {
namespace agent {

struct CommandRunnerOptions {
  // The label namespace commands are checked against
  // (DISPATCHER_LABEL_NAMESPACE).
  std::string label_namespace = "subscription";
  // How long `container.start` waits for a started container to run.
  absl::Duration start_timeout = absl::Seconds(30);
};

// The one mapping of a failed Docker call (DockerApi's error codes) to an
// outcome: NotFound (404, the container is gone) is CONTAINER_GONE, to be
// settled as skipped; everything else (daemon down, 5xx, timeouts, 409
// paused or not running, other 4xx) is FAILED, to be retried.
// REQUIRES: !status.ok().
dispatch::v1::CommandResult::Outcome OutcomeOfDockerError(const absl::Status& status);

class CommandRunner {
 public:
  // What the agent already knows of a container, by full id (its
  // inventory), or std::nullopt. Called from the threads that call Run().
  using KnownContainer = std::function<std::optional<ContainerInfo>(absl::string_view id)>;

  CommandRunner(DockerApi* docker, const Clock* clock, CommandRunnerOptions options,
                KnownContainer known);
  CommandRunner(const CommandRunner&) = delete;
  CommandRunner& operator=(const CommandRunner&) = delete;

  // Runs `command` and returns its result: never fails otherwise. Blocks on
  // Docker, and for a container.start up to start_timeout. The result
  // carries the command id, the outcome and, unless DELIVERED, the error;
  // once the exec's create (start) request has gone to Docker, also
  // exec_create_sent_unix_nanos (exec_start_sent_unix_nanos), whatever the
  // outcome; and exec_id when DELIVERED by an exec.
  dispatch::v1::CommandResult Run(const dispatch::v1::Command& command);

  // Docker reported that exec `exec_id` exited (`exec_die` at `time`).
  // Returns the ExecExit to send for an exec that Run() started (its
  // duration counted from when its start request went out), once, if its
  // result has been sent (ResultSent); an exit that overtook its result is
  // held and ResultSent returns it instead. For any other exec,
  // std::nullopt.
  std::optional<dispatch::v1::ExecExit> ExecExited(absl::string_view exec_id, int exit_code,
                                                   absl::Time time);

  // The DELIVERED result naming `exec_id` has been sent: the controller
  // learns which event an exit belongs to from that result, so an exit is
  // sent only after it. Returns the exit that came first, if one did.
  std::optional<dispatch::v1::ExecExit> ResultSent(absl::string_view exec_id);

 private:
  struct StartedExec {
    uint64_t command_id = 0;
    absl::Time start_sent;
    bool result_sent = false;
    std::optional<dispatch::v1::ExecExit> held;  // an exit before ResultSent
  };

  DockerApi* const docker_;
  const Clock* const clock_;
  const CommandRunnerOptions options_;
  const KnownContainer known_;

  absl::Mutex mu_;
  // Execs whose start went to Docker and whose exit is not reported yet
  // (or is held until their result is sent).
  std::map<std::string, StartedExec, std::less<>> execs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace agent
}  // namespace dispatchd

#endif  // DISPATCHD_AGENT_COMMAND_RUNNER_H_
