// The Docker daemon goes away and comes back while dispatchd runs: dispatchd
// must notice, hold what arrives meanwhile, re-list, and carry on without a
// restart of its own.
#include <sys/stat.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "common/testing/status_matchers.h"

namespace dispatchd {
namespace testing {
namespace {

TEST(DockerRestartTest, RecoversWithoutRestartingAndDeliversWhatArrivedMeanwhile) {
  auto daemon = PrivateDockerd::Start();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  ASSERT_TRUE((*daemon)->EnsureBusyboxImage().ok());
  const std::string dir = MakeTempDir("dispatchd-restart");
  const std::string events = dir + "/events";
  ASSERT_EQ(mkdir(events.c_str(), 0755), 0);
  // --restart always: the handler is running again after the daemon restarts.
  ASSERT_TRUE((*daemon)
                  ->Docker({"run", "-d", "--network", "none", "--restart", "always", "--name",
                            "handler", "--label",
                            "subscription.ping.container.command=sh -c 'echo $DISPATCH_EVENT_PAYLOAD >> /log'",
                            PrivateDockerd::kBusyboxImage, "sleep", "86400"})
                  .ok());
  auto process = DispatchdProcess::Start(
      {"all-in-one", "--events-dir", events, "--docker-host", (*daemon)->host(), "--log-level",
       "debug", "--max-attempts", "50", "--retry-max-backoff", "1s", "--listen", "127.0.0.1:0"},
      dir + "/dispatchd.log");
  ASSERT_TRUE(process.ok()) << process.status();
  DispatchdProcess& dispatchd = **process;
  auto log_of = [&](const std::string& path) {
    auto out = (*daemon)->Docker({"exec", "handler", "cat", path});
    return out.ok() ? *out : std::string();
  };

  WriteFile(events + "/ping", "before");
  ASSERT_TRUE(WaitFor([&] { return log_of("/log") == "before"; })) << dispatchd.Log();

  // The daemon goes away; an event arrives while it is gone.
  ASSERT_TRUE((*daemon)->Stop().ok());
  ASSERT_TRUE(WaitFor([&] { return dispatchd.Log().find("Docker events stream lost") !=
                                   std::string::npos; }))
      << dispatchd.Log();
  WriteFile(events + "/ping", "during");
  // Not lost while Docker is away: the file waits.
  EXPECT_TRUE(FileExists(events + "/ping"));
  ASSERT_TRUE((*daemon)->Restart().ok());

  ASSERT_TRUE(WaitFor([&] { return log_of("/log") == "before\nduring"; }, absl::Seconds(60)))
      << log_of("/log") << "\n" << dispatchd.Log();
  ASSERT_TRUE(WaitFor([&] { return !FileExists(events + "/ping"); }));
  // And it keeps working afterwards.
  WriteFile(events + "/ping", "after");
  ASSERT_TRUE(WaitFor([&] { return log_of("/log") == "before\nduring\nafter"; }))
      << dispatchd.Log();
  EXPECT_TRUE(dispatchd.Running());
  auto status = dispatchd.Terminate();
  ASSERT_OK(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  (*daemon)->Docker({"rm", "-f", "handler"}).IgnoreError();
  RemoveTree(dir);
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
