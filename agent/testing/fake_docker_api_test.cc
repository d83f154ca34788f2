#include "agent/testing/fake_docker_api.h"

#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/testing/status_matchers.h"

namespace dispatchd {
namespace agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Op = FakeDockerApi::Op;

ContainerInfo Container(std::string id, std::string name, ContainerState state) {
  ContainerInfo info;
  info.id = std::move(id);
  info.name = std::move(name);
  info.state = state;
  return info;
}

TEST(FakeDockerApiTest, ResolvesIdsPrefixesAndNames) {
  FakeDockerApi docker;
  docker.AddContainer(Container("abc123", "web", ContainerState::kRunning));
  EXPECT_EQ(docker.InspectContainer("abc123")->name, "web");
  EXPECT_EQ(docker.InspectContainer("abc")->id, "abc123");
  EXPECT_EQ(docker.InspectContainer("web")->id, "abc123");
  EXPECT_EQ(docker.InspectContainer("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(docker.RemoveContainer("abc123"));
  EXPECT_FALSE(docker.RemoveContainer("abc123"));
  EXPECT_EQ(docker.InspectContainer("abc123").status().code(), absl::StatusCode::kNotFound);
}

TEST(FakeDockerApiTest, ExecsAreRecordedAndRefusedWhereDockerRefuses) {
  FakeDockerApi docker;
  docker.AddContainer(Container("c1", "web", ContainerState::kRunning));
  docker.AddContainer(Container("c2", "paused", ContainerState::kPaused));
  docker.AddContainer(Container("c3", "stopped", ContainerState::kExited));
  auto exec = docker.CreateExec("web", {"sh", "-c", "true"}, {"DISPATCH_EVENT_ID=a.b"});
  ASSERT_TRUE(exec.ok()) << exec.status();
  ASSERT_TRUE(docker.StartExec(*exec).ok());
  ASSERT_EQ(docker.execs().size(), 1u);
  EXPECT_EQ(docker.execs()[0].container_id, "c1");
  EXPECT_THAT(docker.execs()[0].argv, ElementsAre("sh", "-c", "true"));
  EXPECT_THAT(docker.execs()[0].env, ElementsAre("DISPATCH_EVENT_ID=a.b"));
  EXPECT_TRUE(docker.execs()[0].started);
  EXPECT_EQ(docker.InspectExec(*exec)->exit_code, 0);
  docker.SetExecResult(*exec, ExecInfo{.running = false, .exit_code = 7});
  EXPECT_EQ(docker.InspectExec(*exec)->exit_code, 7);

  auto paused = docker.CreateExec("c2", {"true"}, {});
  EXPECT_EQ(paused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(paused.status().message()), HasSubstr("is paused"));
  auto stopped = docker.CreateExec("c3", {"true"}, {});
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(stopped.status().message()), HasSubstr("is not running"));
  ASSERT_TRUE(docker.StartContainer("c3").ok());
  EXPECT_EQ(docker.container("c3")->state, ContainerState::kRunning);
  EXPECT_TRUE(docker.CreateExec("c3", {"true"}, {}).ok());
}

TEST(FakeDockerApiTest, StartCanLeaveAContainerNotRunning) {
  FakeDockerApi docker;
  docker.AddContainer(Container("c1", "crashes", ContainerState::kExited));
  EXPECT_FALSE(docker.SetStateAfterStart("nope", ContainerState::kExited));
  ASSERT_TRUE(docker.SetStateAfterStart("c1", ContainerState::kExited));
  EXPECT_OK(docker.StartContainer("crashes"));
  EXPECT_EQ(docker.container("c1")->state, ContainerState::kExited);
  EXPECT_EQ(docker.calls(Op::kStartContainer), 1);
}

TEST(FakeDockerApiTest, ScriptedFailuresRunOut) {
  FakeDockerApi docker;
  docker.FailNext(Op::kListContainers, absl::UnavailableError("down"), 2);
  EXPECT_EQ(docker.ListContainers().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(docker.ListContainers().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(docker.ListContainers().ok());
  EXPECT_TRUE(docker.Version().ok());
  EXPECT_EQ(docker.calls(Op::kListContainers), 3);
}

TEST(FakeDockerApiTest, StreamsGetPushedEventsThenBreak) {
  FakeDockerApi docker;
  auto stream = docker.OpenEventStream();
  ASSERT_OK(stream);
  EXPECT_EQ(docker.open_streams(), 1);
  auto none = (*stream)->Next(absl::Milliseconds(1));
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());

  DockerEvent event;
  event.type = "container";
  event.action = "start";
  event.id = "c1";
  std::thread pusher([&] { docker.PushEvent(event); });
  auto got = (*stream)->Next(absl::Seconds(10));
  pusher.join();
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->id, "c1");

  docker.PushEvent(event);
  docker.BreakStreams(absl::UnavailableError("gone"));
  EXPECT_TRUE((*stream)->Next(absl::ZeroDuration()).ok());  // queued event first
  EXPECT_EQ((*stream)->Next(absl::ZeroDuration()).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(docker.open_streams(), 0);

  auto second = docker.OpenEventStream();
  ASSERT_OK(second);
  EXPECT_TRUE(docker.AwaitOpenStreams(1, absl::Seconds(1)));
  second->reset();
  EXPECT_EQ(docker.open_streams(), 0);
  EXPECT_EQ(docker.streams_opened(), 2);
}

}  // namespace
}  // namespace agent
}  // namespace dispatchd
