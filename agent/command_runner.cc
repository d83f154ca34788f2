#include "agent/command_runner.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "contract/labels.h"

namespace dispatchd {
namespace agent {
namespace {

using dispatch::v1::Command;
using dispatch::v1::CommandResult;

// How often a started container is inspected until it runs.
constexpr absl::Duration kStartPoll = absl::Milliseconds(20);

// The agent's own check: a container may only be asked to run what its own
// labels declare for this event id.
absl::Status CheckAgainstLabels(const ContainerInfo& info, const Command& command,
                                absl::string_view label_namespace) {
  contract::ParsedLabels parsed = contract::ParseSubscriptionLabels(info.labels, label_namespace);
  for (const contract::Subscription& sub : parsed.subscriptions) {
    if (sub.event_id != command.event_id()) continue;
    const bool start = sub.start == contract::StartPolicy::kStartIfStopped;
    if (start != command.start_container()) {
      return absl::PermissionDeniedError("container.start differs from the container's label");
    }
    if (!std::equal(sub.argv.begin(), sub.argv.end(), command.argv().begin(),
                    command.argv().end())) {
      return absl::PermissionDeniedError(
          "the command differs from the container's container.command label");
    }
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat("container ", info.name, " has no valid subscription to ", command.event_id()));
}

CommandResult Finish(CommandResult result, CommandResult::Outcome outcome, std::string error) {
  result.set_outcome(outcome);
  result.set_error(std::move(error));
  return result;
}

// A failed Docker call ends the command with OutcomeOfDockerError.
CommandResult FinishWithDockerError(CommandResult result, const absl::Status& status) {
  // The Docker client says Unavailable when it cannot reach the daemon.
  result.set_docker_unreachable(absl::IsUnavailable(status));
  return Finish(std::move(result), OutcomeOfDockerError(status), status.ToString());
}

}  // namespace

CommandResult::Outcome OutcomeOfDockerError(const absl::Status& status) {
  CHECK(!status.ok()) << "OutcomeOfDockerError of an OK status";
  return absl::IsNotFound(status) ? CommandResult::CONTAINER_GONE : CommandResult::FAILED;
}

CommandRunner::CommandRunner(DockerApi* docker, const Clock* clock, CommandRunnerOptions options,
                             KnownContainer known)
    : docker_(docker), clock_(clock), options_(std::move(options)), known_(std::move(known)) {
  CHECK(docker_ != nullptr);
  CHECK(clock_ != nullptr);
}

CommandResult CommandRunner::Run(const Command& command) {
  CommandResult result;
  result.set_command_id(command.command_id());
  const std::string& id = command.container_id();

  // The inventory is usually current; when it disagrees, ask Docker.
  std::optional<ContainerInfo> info = known_ ? known_(id) : std::nullopt;
  bool inspected = false;
  auto inspect = [&]() -> absl::Status {
    absl::StatusOr<ContainerInfo> fresh = docker_->InspectContainer(id);
    if (!fresh.ok()) return fresh.status();
    info = *std::move(fresh);
    inspected = true;
    return absl::OkStatus();
  };
  if (!info.has_value() || !CheckAgainstLabels(*info, command, options_.label_namespace).ok() ||
      info->state != ContainerState::kRunning) {
    if (absl::Status status = inspect(); !status.ok()) {
      return FinishWithDockerError(std::move(result), status);
    }
  }
  if (absl::Status allowed = CheckAgainstLabels(*info, command, options_.label_namespace);
      !allowed.ok()) {
    LOG(WARNING) << "refused command for " << info->name << ": " << allowed.message();
    return Finish(std::move(result), CommandResult::REJECTED, std::string(allowed.message()));
  }
  if (info->state == ContainerState::kPaused) {
    return Finish(std::move(result), CommandResult::FAILED,
                  absl::StrCat("container ", info->name, " is paused"));
  }
  if (info->state != ContainerState::kRunning) {
    if (!command.start_container()) {
      return Finish(std::move(result), CommandResult::NOT_RUNNING,
                    absl::StrCat("container ", info->name,
                                 " is not running and has no container.start label"));
    }
    LOG(INFO) << "starting container " << info->name << " for " << command.event_id();
    if (absl::Status started = docker_->StartContainer(id); !started.ok()) {
      return FinishWithDockerError(std::move(result), started);
    }
    const absl::Time deadline = clock_->Now() + options_.start_timeout;
    while (true) {
      absl::Status status = inspect();
      // A gone container ends the wait; other errors may pass: keep looking.
      if (!status.ok() && OutcomeOfDockerError(status) == CommandResult::CONTAINER_GONE) {
        return FinishWithDockerError(std::move(result), status);
      }
      if (status.ok() && info->state == ContainerState::kRunning) break;
      if (clock_->Now() >= deadline) {
        return Finish(std::move(result), CommandResult::FAILED,
                      absl::StrCat("container ", info->name, " did not reach running within ",
                                   absl::FormatDuration(options_.start_timeout)));
      }
      clock_->SleepFor(kStartPoll);
    }
  }
  if (command.argv().empty()) {  // start-only subscription
    result.set_outcome(CommandResult::DELIVERED);
    return result;
  }

  std::vector<std::string> argv(command.argv().begin(), command.argv().end());
  std::vector<std::string> env(command.env().begin(), command.env().end());
  result.set_exec_create_sent_unix_nanos(absl::ToUnixNanos(clock_->Now()));
  absl::StatusOr<std::string> exec_id = docker_->CreateExec(id, argv, env);
  if (!exec_id.ok()) {
    if (absl::IsFailedPrecondition(exec_id.status()) && !inspected) {
      // Stopped between the inventory and the exec? Look before deciding.
      if (inspect().ok() && info->state != ContainerState::kRunning &&
          info->state != ContainerState::kPaused && !command.start_container()) {
        return Finish(std::move(result), CommandResult::NOT_RUNNING,
                      absl::StrCat("container ", info->name, " is not running"));
      }
    }
    return FinishWithDockerError(std::move(result), exec_id.status());
  }

  // Known before the start goes out: its exec_die may overtake the answer.
  const absl::Time start_sent = clock_->Now();
  {
    absl::MutexLock lock(&mu_);
    execs_[*exec_id] = StartedExec{command.command_id(), start_sent};
  }
  result.set_exec_start_sent_unix_nanos(absl::ToUnixNanos(start_sent));
  if (absl::Status started = docker_->StartExec(*exec_id); !started.ok()) {
    {
      absl::MutexLock lock(&mu_);
      execs_.erase(*exec_id);
    }
    return FinishWithDockerError(std::move(result), started);
  }
  result.set_outcome(CommandResult::DELIVERED);
  result.set_exec_id(*exec_id);
  return result;
}

std::optional<dispatch::v1::ExecExit> CommandRunner::ExecExited(absl::string_view exec_id,
                                                                int exit_code, absl::Time time) {
  absl::MutexLock lock(&mu_);
  auto it = execs_.find(exec_id);
  if (it == execs_.end() || it->second.held.has_value()) {
    return std::nullopt;  // not ours, or its exit is held already
  }
  dispatch::v1::ExecExit exit;
  exit.set_command_id(it->second.command_id);
  exit.set_exit_code(exit_code);
  exit.set_duration_ms(absl::ToInt64Milliseconds(time - it->second.start_sent));
  if (!it->second.result_sent) {
    it->second.held = std::move(exit);
    return std::nullopt;
  }
  execs_.erase(it);
  return exit;
}

std::optional<dispatch::v1::ExecExit> CommandRunner::ResultSent(absl::string_view exec_id) {
  absl::MutexLock lock(&mu_);
  auto it = execs_.find(exec_id);
  if (it == execs_.end()) return std::nullopt;
  if (!it->second.held.has_value()) {
    it->second.result_sent = true;
    return std::nullopt;
  }
  std::optional<dispatch::v1::ExecExit> exit = std::move(it->second.held);
  execs_.erase(it);
  return exit;
}

}  // namespace agent
}  // namespace dispatchd
