#include "tests/testing/docker_daemon.h"

#include <signal.h>
#include <sys/stat.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace testing {
namespace {

using ::testing::HasSubstr;

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

TEST(PrivateDockerdTest, RunsContainersSurvivesRestartAndCleansUp) {
  auto daemon = PrivateDockerd::Start();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  PrivateDockerd& d = **daemon;
  const std::string dir = d.dir();
  EXPECT_THAT(dir, HasSubstr("/tmp/dispatchd-dockerd-"));
  EXPECT_EQ(d.host(), "unix://" + dir + "/docker.sock");
  ASSERT_TRUE(Exists(d.socket_path()));

  auto server = d.Docker({"version", "--format", "{{.Server.APIVersion}}"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(*server, "1.41");

  ASSERT_TRUE(d.EnsureBusyboxImage().ok());
  ASSERT_TRUE(d.EnsureBusyboxImage().ok());  // a second call is a no-op
  auto out = d.Docker({"run", "--rm", "--network", "none", PrivateDockerd::kBusyboxImage,
                       "sh", "-c", "echo hello from $(uname -s)"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "hello from Linux");

  auto id = d.Docker({"run", "-d", "--network", "none", "--restart", "always", "--name",
                      "keeper", PrivateDockerd::kBusyboxImage, "sleep", "1000"});
  ASSERT_TRUE(id.ok()) << id.status();

  // A failing command reports its stderr.
  auto missing = d.Docker({"inspect", "no-such-container"});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("no-such-container"));

  const pid_t first_pid = d.pid();
  ASSERT_TRUE(d.Restart().ok());
  EXPECT_NE(d.pid(), first_pid);
  // The first dockerd is gone.
  EXPECT_NE(kill(first_pid, 0), 0);
  // Data root survived: the image and the container are still there, and
  // the restart policy brought the container back up.
  auto image = d.Docker({"image", "inspect", "--format", "{{.Id}}", PrivateDockerd::kBusyboxImage});
  EXPECT_TRUE(image.ok()) << image.status();
  auto inspected = d.Docker({"inspect", "--format", "{{.Id}}", "keeper"});
  ASSERT_TRUE(inspected.ok()) << inspected.status();
  EXPECT_EQ(*inspected, *id);

  const pid_t second_pid = d.pid();
  ASSERT_TRUE(d.Stop().ok());
  EXPECT_EQ(d.pid(), -1);
  EXPECT_NE(kill(second_pid, 0), 0);
  EXPECT_FALSE(d.Docker({"version"}).ok());
  EXPECT_TRUE(d.Stop().ok());  // idempotent

  daemon->reset();
  EXPECT_FALSE(Exists(dir)) << dir << " was left behind";
}

TEST(PrivateDockerdTest, TwoDaemonsRunSideBySide) {
  auto a = PrivateDockerd::Start();
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = PrivateDockerd::Start();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE((*a)->host(), (*b)->host());
  ASSERT_TRUE((*a)->EnsureBusyboxImage().ok());
  ASSERT_TRUE((*a)->Docker({"create", "--network", "none", "--name", "only-on-a",
                            PrivateDockerd::kBusyboxImage, "true"}).ok());
  EXPECT_TRUE((*a)->Docker({"inspect", "only-on-a"}).ok());
  EXPECT_FALSE((*b)->Docker({"inspect", "only-on-a"}).ok());
}

TEST(RunCommandTest, ReturnsStdoutOrStderr) {
  auto out = RunCommand({"sh", "-c", "echo out; echo err >&2"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "out");
  auto failed = RunCommand({"sh", "-c", "echo broken >&2; exit 4"});
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("exit 4"));
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("broken"));
  EXPECT_EQ(RunCommand({"no-such-program-anywhere"}).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
