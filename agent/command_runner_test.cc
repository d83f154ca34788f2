// CommandRunner against the fake Docker API and a fake clock: one test per
// outcome and per rule of the exec policy.
#include "agent/command_runner.h"

#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "agent/testing/fake_docker_api.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace agent {
namespace {

using dispatch::v1::Command;
using dispatch::v1::CommandResult;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Op = FakeDockerApi::Op;

constexpr char kId[] = "c0ffee";
constexpr char kName[] = "builder";
constexpr char kEvent[] = "repo.pushed";

ContainerInfo Container(ContainerState state, std::map<std::string, std::string> labels) {
  ContainerInfo info;
  info.id = kId;
  info.name = kName;
  info.state = state;
  info.labels = std::move(labels);
  return info;
}

// Labels that subscribe to kEvent with `make all`.
std::map<std::string, std::string> ExecLabels() {
  return {{"subscription.repo.pushed.container.command", "make all"}};
}
std::map<std::string, std::string> StartAndExecLabels() {
  return {{"subscription.repo.pushed.container.command", "make all"},
          {"subscription.repo.pushed.container.start", "true"}};
}

// What the controller sends for ExecLabels() (or, with `start`, for
// StartAndExecLabels()).
Command MakeAll(bool start = false) {
  Command command;
  command.set_command_id(42);
  command.set_event_id(kEvent);
  command.set_container_id(kId);
  command.add_argv("make");
  command.add_argv("all");
  command.set_start_container(start);
  command.add_env("DISPATCH_EVENT_ID=repo.pushed");
  command.add_env("DISPATCH_EVENT_HOST=host-a");
  return command;
}

class CommandRunnerTest : public ::testing::Test {
 protected:
  CommandRunner& runner(CommandRunnerOptions options = {}) {
    runner_.emplace(&docker_, &clock_, std::move(options),
                    [this](absl::string_view id) -> std::optional<ContainerInfo> {
                      EXPECT_EQ(id, kId);
                      return known_;
                    });
    return *runner_;
  }

  // Runs `command` on a thread of its own; the test moves the clock.
  std::thread RunInBackground(const Command& command, CommandResult* result,
                              absl::Notification* done) {
    CommandRunner* r = &runner();
    return std::thread([r, command, result, done] {
      *result = r->Run(command);
      done->Notify();
    });
  }

  // Waits (in real time, bounded) until `op` has been called `n` times.
  void AwaitCalls(Op op, int n) {
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (docker_.calls(op) < n && absl::Now() < give_up) std::this_thread::yield();
    ASSERT_GE(docker_.calls(op), n);
  }

  // Waits (in real time, bounded) until the runner is parked on the clock.
  void AwaitParked() {
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (clock_.waiters() == 0 && absl::Now() < give_up) std::this_thread::yield();
    ASSERT_GT(clock_.waiters(), 0);
  }

  FakeDockerApi docker_;
  FakeClock clock_;
  // What the agent's inventory says about kId.
  std::optional<ContainerInfo> known_;
  std::optional<CommandRunner> runner_;
};

// --- Delivered ---------------------------------------------------------------

TEST_F(CommandRunnerTest, DeliversAnExecWithTheCommandsEnv) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  const CommandResult result = runner().Run(MakeAll());
  EXPECT_EQ(result.outcome(), CommandResult::DELIVERED) << result.error();
  EXPECT_EQ(result.command_id(), 42u);
  EXPECT_EQ(result.error(), "");
  ASSERT_EQ(docker_.execs().size(), 1u);
  const FakeDockerApi::RecordedExec exec = docker_.execs()[0];
  EXPECT_EQ(result.exec_id(), exec.exec_id);
  EXPECT_EQ(exec.container_id, kId);
  EXPECT_THAT(exec.argv, ElementsAre("make", "all"));
  EXPECT_THAT(exec.env, ElementsAre("DISPATCH_EVENT_ID=repo.pushed", "DISPATCH_EVENT_HOST=host-a"));
  EXPECT_TRUE(exec.started);
  EXPECT_EQ(result.exec_create_sent_unix_nanos(), absl::ToUnixNanos(clock_.Now()));
  EXPECT_EQ(result.exec_start_sent_unix_nanos(), absl::ToUnixNanos(clock_.Now()));
}

TEST_F(CommandRunnerTest, TrustsACurrentInventory) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  known_ = Container(ContainerState::kRunning, ExecLabels());
  EXPECT_EQ(runner().Run(MakeAll()).outcome(), CommandResult::DELIVERED);
  EXPECT_EQ(docker_.calls(Op::kInspectContainer), 0);
}

TEST_F(CommandRunnerTest, InspectsAContainerTheInventoryDoesNotKnow) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  EXPECT_EQ(runner().Run(MakeAll()).outcome(), CommandResult::DELIVERED);
  EXPECT_EQ(docker_.calls(Op::kInspectContainer), 1);
}

TEST_F(CommandRunnerTest, InspectsWhenTheInventorysLabelsDoNotAllowIt) {
  // The labels changed and the inventory has not caught up yet.
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  known_ = Container(ContainerState::kRunning, {});
  EXPECT_EQ(runner().Run(MakeAll()).outcome(), CommandResult::DELIVERED);
  EXPECT_EQ(docker_.calls(Op::kInspectContainer), 1);
}

// --- Rejected: the container's own labels decide -----------------------------

TEST_F(CommandRunnerTest, RejectsAForgedCommand) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  Command forged = MakeAll();
  forged.set_argv(1, "install");  // `make install`, which no label declares
  const CommandResult result = runner().Run(forged);
  EXPECT_EQ(result.outcome(), CommandResult::REJECTED);
  EXPECT_THAT(result.error(), HasSubstr("container.command"));
  EXPECT_EQ(docker_.calls(Op::kCreateExec), 0);
  EXPECT_EQ(docker_.calls(Op::kStartContainer), 0);
}

TEST_F(CommandRunnerTest, RejectsWhatOnlyAStaleInventoryAllows) {
  // The inventory still has the old labels, but the container is stopped,
  // so Docker is asked, and its labels no longer declare the command.
  docker_.AddContainer(Container(ContainerState::kExited, {}));
  known_ = Container(ContainerState::kExited, StartAndExecLabels());
  const CommandResult result = runner().Run(MakeAll(/*start=*/true));
  EXPECT_EQ(result.outcome(), CommandResult::REJECTED);
  EXPECT_THAT(result.error(), HasSubstr("no valid subscription to repo.pushed"));
  EXPECT_EQ(docker_.calls(Op::kStartContainer), 0);
}

TEST_F(CommandRunnerTest, RejectsAStartTheLabelsDoNotDeclare) {
  docker_.AddContainer(Container(ContainerState::kExited, ExecLabels()));
  const CommandResult result = runner().Run(MakeAll(/*start=*/true));
  EXPECT_EQ(result.outcome(), CommandResult::REJECTED);
  EXPECT_THAT(result.error(), HasSubstr("container.start"));
  EXPECT_EQ(docker_.calls(Op::kStartContainer), 0);
}

TEST_F(CommandRunnerTest, RejectsAnEventTheContainerDoesNotSubscribeTo) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  Command other = MakeAll();
  other.set_event_id("repo.deleted");
  const CommandResult result = runner().Run(other);
  EXPECT_EQ(result.outcome(), CommandResult::REJECTED);
  EXPECT_EQ(result.error(), "container builder has no valid subscription to repo.deleted");
  EXPECT_EQ(docker_.calls(Op::kCreateExec), 0);
}

TEST_F(CommandRunnerTest, RejectsAnInvalidSubscription) {
  docker_.AddContainer(Container(ContainerState::kRunning,
                                 {{"subscription.repo.pushed.container.command", "make 'all"}}));
  EXPECT_EQ(runner().Run(MakeAll()).outcome(), CommandResult::REJECTED);
  EXPECT_EQ(docker_.calls(Op::kCreateExec), 0);
}

TEST_F(CommandRunnerTest, ChecksLabelsInItsOwnNamespace) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  EXPECT_EQ(runner({.label_namespace = "ci"}).Run(MakeAll()).outcome(), CommandResult::REJECTED);
  docker_.SetLabels(kId, {{"ci.repo.pushed.container.command", "make all"}});
  EXPECT_EQ(runner({.label_namespace = "ci"}).Run(MakeAll()).outcome(), CommandResult::DELIVERED);
}

// --- Not running, and container.start -----------------------------------------

TEST_F(CommandRunnerTest, NotRunningWithoutAStartLabel) {
  docker_.AddContainer(Container(ContainerState::kExited, ExecLabels()));
  const CommandResult result = runner().Run(MakeAll());
  EXPECT_EQ(result.outcome(), CommandResult::NOT_RUNNING);
  EXPECT_EQ(result.error(), "container builder is not running and has no container.start label");
  EXPECT_EQ(docker_.calls(Op::kStartContainer), 0);
  EXPECT_EQ(docker_.calls(Op::kCreateExec), 0);
}

TEST_F(CommandRunnerTest, InspectsBeforeCallingAContainerNotRunning) {
  // A daemon restart: the inventory saw it stop, Docker says it runs again.
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  known_ = Container(ContainerState::kExited, ExecLabels());
  EXPECT_EQ(runner().Run(MakeAll()).outcome(), CommandResult::DELIVERED);
  EXPECT_EQ(docker_.calls(Op::kInspectContainer), 1);
}

TEST_F(CommandRunnerTest, StoppedSinceTheInventoryIsInspectedThenNotRunning) {
  docker_.AddContainer(Container(ContainerState::kExited, ExecLabels()));
  known_ = Container(ContainerState::kRunning, ExecLabels());
  const CommandResult result = runner().Run(MakeAll());
  EXPECT_EQ(result.outcome(), CommandResult::NOT_RUNNING);
  EXPECT_EQ(result.error(), "container builder is not running");
  EXPECT_EQ(docker_.calls(Op::kCreateExec), 1);
  EXPECT_EQ(docker_.calls(Op::kInspectContainer), 1);
}

TEST_F(CommandRunnerTest, StartsAStoppedContainerThenExecs) {
  docker_.AddContainer(Container(ContainerState::kExited, StartAndExecLabels()));
  const CommandResult result = runner().Run(MakeAll(/*start=*/true));
  EXPECT_EQ(result.outcome(), CommandResult::DELIVERED) << result.error();
  EXPECT_EQ(docker_.calls(Op::kStartContainer), 1);
  EXPECT_EQ(docker_.container(kId)->state, ContainerState::kRunning);
  ASSERT_EQ(docker_.execs().size(), 1u);
  EXPECT_TRUE(docker_.execs()[0].started);
  EXPECT_EQ(result.exec_id(), docker_.execs()[0].exec_id);
}

TEST_F(CommandRunnerTest, DoesNotStartARunningContainer) {
  docker_.AddContainer(Container(ContainerState::kRunning, StartAndExecLabels()));
  EXPECT_EQ(runner().Run(MakeAll(/*start=*/true)).outcome(), CommandResult::DELIVERED);
  EXPECT_EQ(docker_.calls(Op::kStartContainer), 0);
}

TEST_F(CommandRunnerTest, StartOnlyIsDeliveredWithoutAnExec) {
  docker_.AddContainer(
      Container(ContainerState::kExited, {{"subscription.repo.pushed.container.start", "1"}}));
  Command start_only;
  start_only.set_command_id(7);
  start_only.set_event_id(kEvent);
  start_only.set_container_id(kId);
  start_only.set_start_container(true);
  const CommandResult result = runner().Run(start_only);
  EXPECT_EQ(result.outcome(), CommandResult::DELIVERED) << result.error();
  EXPECT_EQ(result.command_id(), 7u);
  EXPECT_EQ(docker_.container(kId)->state, ContainerState::kRunning);
  EXPECT_EQ(docker_.calls(Op::kCreateExec), 0);
  EXPECT_EQ(result.exec_id(), "");
  EXPECT_EQ(result.exec_create_sent_unix_nanos(), 0);
  EXPECT_EQ(result.exec_start_sent_unix_nanos(), 0);
}

TEST_F(CommandRunnerTest, StartGivesUpAfterTheStartTimeout) {
  docker_.AddContainer(Container(ContainerState::kExited, StartAndExecLabels()));
  docker_.SetStateAfterStart(kId, ContainerState::kExited);  // exits at once
  CommandResult result;
  absl::Notification done;
  std::thread run = RunInBackground(MakeAll(/*start=*/true), &result, &done);
  AwaitParked();
  EXPECT_FALSE(done.HasBeenNotified());
  clock_.Advance(absl::Seconds(30));  // the default start_timeout
  run.join();
  EXPECT_EQ(result.outcome(), CommandResult::FAILED);
  EXPECT_EQ(result.error(), "container builder did not reach running within 30s");
  EXPECT_EQ(docker_.calls(Op::kStartContainer), 1);
  EXPECT_EQ(docker_.calls(Op::kCreateExec), 0);
}

TEST_F(CommandRunnerTest, StartEndsWhenTheContainerIsRemovedMeanwhile) {
  docker_.AddContainer(Container(ContainerState::kExited, StartAndExecLabels()));
  docker_.SetStateAfterStart(kId, ContainerState::kExited);
  CommandResult result;
  absl::Notification done;
  std::thread run = RunInBackground(MakeAll(/*start=*/true), &result, &done);
  AwaitParked();
  docker_.RemoveContainer(kId);
  clock_.Advance(absl::Seconds(1));
  run.join();
  EXPECT_EQ(result.outcome(), CommandResult::CONTAINER_GONE);
  EXPECT_THAT(result.error(), HasSubstr("No such container"));
}

TEST_F(CommandRunnerTest, StartKeepsWaitingThroughInspectErrors) {
  docker_.AddContainer(Container(ContainerState::kExited, StartAndExecLabels()));
  docker_.SetStateAfterStart(kId, ContainerState::kRestarting);
  CommandResult result;
  absl::Notification done;
  std::thread run = RunInBackground(MakeAll(/*start=*/true), &result, &done);
  AwaitParked();
  // The next inspect fails; the one after sees the container running.
  docker_.FailNext(Op::kInspectContainer, absl::InternalError("HTTP 500"));
  docker_.SetState(kId, ContainerState::kRunning);
  clock_.Advance(absl::Milliseconds(100));
  AwaitCalls(Op::kInspectContainer, 3);
  AwaitParked();
  EXPECT_FALSE(done.HasBeenNotified());
  clock_.Advance(absl::Milliseconds(100));
  run.join();
  EXPECT_EQ(result.outcome(), CommandResult::DELIVERED) << result.error();
  EXPECT_EQ(docker_.calls(Op::kInspectContainer), 4);  // before, after start, failed, running
}

TEST_F(CommandRunnerTest, StartErrorsAreMappedLikeEveryDockerError) {
  docker_.AddContainer(Container(ContainerState::kExited, StartAndExecLabels()));
  docker_.FailNext(Op::kStartContainer, absl::InternalError("start container: HTTP 500"));
  EXPECT_EQ(runner().Run(MakeAll(/*start=*/true)).outcome(), CommandResult::FAILED);
  docker_.FailNext(Op::kStartContainer, absl::NotFoundError("start container: HTTP 404"));
  EXPECT_EQ(runner().Run(MakeAll(/*start=*/true)).outcome(), CommandResult::CONTAINER_GONE);
  EXPECT_EQ(docker_.calls(Op::kCreateExec), 0);
}

// --- Paused: retryable ----------------------------------------------------------

TEST_F(CommandRunnerTest, PausedIsRetryable) {
  docker_.AddContainer(Container(ContainerState::kPaused, StartAndExecLabels()));
  const CommandResult result = runner().Run(MakeAll(/*start=*/true));
  EXPECT_EQ(result.outcome(), CommandResult::FAILED);
  EXPECT_EQ(result.error(), "container builder is paused");
  EXPECT_EQ(docker_.calls(Op::kStartContainer), 0);
  EXPECT_EQ(docker_.calls(Op::kCreateExec), 0);
}

TEST_F(CommandRunnerTest, PausedSinceTheInventoryIs409AndRetryable) {
  docker_.AddContainer(Container(ContainerState::kPaused, ExecLabels()));
  known_ = Container(ContainerState::kRunning, ExecLabels());
  const CommandResult result = runner().Run(MakeAll());
  EXPECT_EQ(result.outcome(), CommandResult::FAILED);
  EXPECT_THAT(result.error(), HasSubstr("HTTP 409"));
  EXPECT_THAT(result.error(), HasSubstr("is paused"));
  EXPECT_EQ(docker_.calls(Op::kInspectContainer), 1);
}

// --- Gone: 404 --------------------------------------------------------------------

TEST_F(CommandRunnerTest, GoneWhenDockerHasNoSuchContainer) {
  const CommandResult result = runner().Run(MakeAll());
  EXPECT_EQ(result.outcome(), CommandResult::CONTAINER_GONE);
  EXPECT_THAT(result.error(), HasSubstr("No such container"));
}

TEST_F(CommandRunnerTest, GoneWhenRemovedSinceTheInventory) {
  known_ = Container(ContainerState::kRunning, ExecLabels());
  const CommandResult result = runner().Run(MakeAll());
  EXPECT_EQ(result.outcome(), CommandResult::CONTAINER_GONE);
  EXPECT_EQ(docker_.calls(Op::kCreateExec), 1);
  EXPECT_NE(result.exec_create_sent_unix_nanos(), 0);
}

TEST_F(CommandRunnerTest, GoneWhenTheExecCannotStart) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  docker_.FailNext(Op::kStartExec, absl::NotFoundError("start exec: HTTP 404"));
  const CommandResult result = runner().Run(MakeAll());
  EXPECT_EQ(result.outcome(), CommandResult::CONTAINER_GONE);
  EXPECT_EQ(result.exec_id(), "");
}

// --- Failed: retryable Docker errors ------------------------------------------

TEST_F(CommandRunnerTest, DaemonDownIsRetryable) {
  docker_.FailNext(Op::kInspectContainer,
                   absl::UnavailableError("inspect container: connection refused"));
  const CommandResult result = runner().Run(MakeAll());
  EXPECT_EQ(result.outcome(), CommandResult::FAILED);
  EXPECT_THAT(result.error(), HasSubstr("connection refused"));
}

TEST_F(CommandRunnerTest, ADaemonThatCannotBeReachedIsSaidSo) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  docker_.FailNext(Op::kCreateExec,
                   absl::UnavailableError("create exec: no Docker socket at /run/docker.sock"));
  const CommandResult result = runner().Run(MakeAll());
  EXPECT_EQ(result.outcome(), CommandResult::FAILED);
  EXPECT_TRUE(result.docker_unreachable());
}

TEST_F(CommandRunnerTest, ServerErrorOnCreateIsRetryable) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  docker_.FailNext(Op::kCreateExec, absl::InternalError("create exec: HTTP 500"));
  const CommandResult result = runner().Run(MakeAll());
  EXPECT_EQ(result.outcome(), CommandResult::FAILED);
  EXPECT_FALSE(result.docker_unreachable());  // the daemon answered: budget spent
  EXPECT_THAT(result.error(), HasSubstr("HTTP 500"));
  EXPECT_EQ(result.exec_create_sent_unix_nanos(), absl::ToUnixNanos(clock_.Now()));
  EXPECT_EQ(result.exec_start_sent_unix_nanos(), 0);
}

TEST_F(CommandRunnerTest, TimeoutOnStartIsRetryable) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  docker_.FailNext(Op::kStartExec, absl::DeadlineExceededError("start exec: timed out"));
  const CommandResult result = runner().Run(MakeAll());
  EXPECT_EQ(result.outcome(), CommandResult::FAILED);
  EXPECT_THAT(result.error(), HasSubstr("timed out"));
  EXPECT_EQ(result.exec_id(), "");
  EXPECT_EQ(result.exec_create_sent_unix_nanos(), absl::ToUnixNanos(clock_.Now()));
  EXPECT_EQ(result.exec_start_sent_unix_nanos(), absl::ToUnixNanos(clock_.Now()));
}

TEST(OutcomeOfDockerErrorTest, OnlyNotFoundIsFinal) {
  EXPECT_EQ(OutcomeOfDockerError(absl::NotFoundError("HTTP 404")), CommandResult::CONTAINER_GONE);
  EXPECT_EQ(OutcomeOfDockerError(absl::InternalError("HTTP 500")), CommandResult::FAILED);
  EXPECT_EQ(OutcomeOfDockerError(absl::UnavailableError("no socket")), CommandResult::FAILED);
  EXPECT_EQ(OutcomeOfDockerError(absl::DeadlineExceededError("timeout")), CommandResult::FAILED);
  EXPECT_EQ(OutcomeOfDockerError(absl::FailedPreconditionError("HTTP 409: is paused")),
            CommandResult::FAILED);
  EXPECT_EQ(OutcomeOfDockerError(absl::InvalidArgumentError("HTTP 400")), CommandResult::FAILED);
}

// --- Exec exits ------------------------------------------------------------------

TEST_F(CommandRunnerTest, ReportsTheExitOfItsOwnExecsOnce) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  const CommandResult result = runner().Run(MakeAll());
  ASSERT_EQ(result.outcome(), CommandResult::DELIVERED);
  EXPECT_FALSE(runner_->ResultSent(result.exec_id()).has_value());
  clock_.Advance(absl::Milliseconds(1500));
  std::optional<dispatch::v1::ExecExit> exit =
      runner_->ExecExited(result.exec_id(), 3, clock_.Now());
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->command_id(), 42u);
  EXPECT_EQ(exit->exit_code(), 3);
  EXPECT_EQ(exit->duration_ms(), 1500);
  EXPECT_FALSE(runner_->ExecExited(result.exec_id(), 3, clock_.Now()).has_value());
  EXPECT_FALSE(runner_->ExecExited("someone-elses-exec", 0, clock_.Now()).has_value());
}

// A short command's exec_die can come before the agent has sent the result
// that tells the controller which event the exec belongs to: the exit is
// held and handed over once the result is sent, so it always follows it.
TEST_F(CommandRunnerTest, AnExitBeforeItsResultIsSentIsHeldUntilThen) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  const CommandResult result = runner().Run(MakeAll());
  ASSERT_EQ(result.outcome(), CommandResult::DELIVERED);
  clock_.Advance(absl::Milliseconds(7));
  EXPECT_FALSE(runner_->ExecExited(result.exec_id(), 0, clock_.Now()).has_value());
  EXPECT_FALSE(runner_->ExecExited(result.exec_id(), 0, clock_.Now()).has_value());
  clock_.Advance(absl::Seconds(5));  // sending the result took a while
  std::optional<dispatch::v1::ExecExit> exit = runner_->ResultSent(result.exec_id());
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->command_id(), 42u);
  EXPECT_EQ(exit->exit_code(), 0);
  EXPECT_EQ(exit->duration_ms(), 7);  // measured to the exit, not to the result
  EXPECT_FALSE(runner_->ResultSent(result.exec_id()).has_value());
  EXPECT_FALSE(runner_->ExecExited(result.exec_id(), 0, clock_.Now()).has_value());
}

TEST_F(CommandRunnerTest, ForgetsAnExecThatDidNotStart) {
  docker_.AddContainer(Container(ContainerState::kRunning, ExecLabels()));
  docker_.FailNext(Op::kStartExec, absl::InternalError("start exec: HTTP 500"));
  ASSERT_EQ(runner().Run(MakeAll()).outcome(), CommandResult::FAILED);
  ASSERT_EQ(docker_.execs().size(), 1u);
  EXPECT_FALSE(runner_->ExecExited(docker_.execs()[0].exec_id, 0, clock_.Now()).has_value());
}

}  // namespace
}  // namespace agent
}  // namespace dispatchd
