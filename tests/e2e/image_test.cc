// dispatchd's container image (deploy/image), built from the tree under test
// into a private dockerd and run the way the old dispatcher's users run it:
//
//   docker run -v $PWD/events:/app/events -v /var/run/docker.sock:/run/docker.sock dispatchd
//
// with the private daemon's own socket mounted, so the containerised agent
// drives the daemon that runs it, as on a user's host.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "tests/testing/e2e_fixture.h"

namespace dispatchd {
namespace testing {
namespace {

using ::testing::HasSubstr;

constexpr char kImage[] = "dispatchd:under-test";

std::string ContextTar() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/",
                      workspace != nullptr ? workspace : "dispatchd", "/deploy/image/context.tar");
}

class ImageTest : public DockerHostTest {
 protected:
  static void SetUpTestSuite() {
    DockerHostTest::SetUpTestSuite();
    ASSERT_NE(daemon_, nullptr);
    // What `make image` does, with this tree's build and the private daemon.
    auto built = RunCommand(
        {"sh", "-c",
         absl::StrCat("docker -H ", daemon_->host(), " build -q -t ", kImage, " - < ",
                      ContextTar())},
        {"DOCKER_BUILDKIT=0"});
    ASSERT_TRUE(built.ok()) << built.status();
  }

  std::string Docker(const std::vector<std::string>& args) {
    auto out = daemon_->Docker(args);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : "";
  }

  // `docker run -d --name NAME extra... dispatchd:under-test`.
  void RunDispatchdContainer(const std::string& name, const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"run", "-d", "--name", name};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(kImage);
    auto out = daemon_->Docker(args);
    ASSERT_TRUE(out.ok()) << out.status();
  }

  // The old dispatcher's two volumes: events and the Docker socket.
  std::vector<std::string> OldLineVolumes() const {
    return {"-v", events_ + ":/app/events", "-v", daemon_->socket_path() + ":/run/docker.sock"};
  }

  // dispatchd logs to stderr, which `docker logs` replays on stderr.
  std::string ContainerLog(const std::string& name) {
    auto both = RunCommand(
        {"sh", "-c", absl::StrCat("docker -H ", daemon_->host(), " logs ", name, " 2>&1")});
    return both.ok() ? *both : both.status().ToString();
  }

  std::string Inspect(const std::string& name, const std::string& format) {
    auto out = daemon_->Docker({"inspect", "-f", format, name});
    return out.ok() ? std::string(absl::StripAsciiWhitespace(*out)) : "";
  }

  void TearDown() override {
    if (HasFailure()) {
      for (const std::string& name : containers_) {
        std::cerr << "---- docker logs " << name << " ----\n" << ContainerLog(name) << "----\n";
      }
    }
    DockerHostTest::TearDown();
  }
};

// The old dispatcher's line with the image name changed runs the README's
// quick start: the handler ran, the file is gone.
TEST_F(ImageTest, OldDispatcherRunLineServesTheQuickStart) {
  const std::string handler = Name("event-handler");
  Run(handler, {{"subscription.demo.some-event.container.command", "touch handled"}});
  const std::string dispatchd = Name("dispatchd");
  RunDispatchdContainer(dispatchd, OldLineVolumes());
  ASSERT_TRUE(WaitFor([&] { return ContainerLog(dispatchd).find("inventory:") != std::string::npos; }))
      << ContainerLog(dispatchd);

  WriteFile(events_ + "/demo/some-event", "hello");
  ASSERT_TRUE(WaitFor([&] { return InContainer(handler, "/handled"); }));
  ASSERT_TRUE(WaitFor([&] { return Gone("demo/some-event"); }));
  EXPECT_THAT(ContainerLog(dispatchd), HasSubstr("events /app/events, Docker unix:///run/docker.sock"));
  // The health check (dispatchctl health, no shell) reports healthy.
  EXPECT_THAT(Docker({"exec", dispatchd, "/usr/local/bin/dispatchctl", "health"}), HasSubstr("ok"));
  // Metrics listen on the container's own network namespace, every interface.
  EXPECT_THAT(ContainerLog(dispatchd), HasSubstr("metrics listening on 0.0.0.0:9477"));
}

// docker stop (SIGTERM to PID 1) with files still pending: dispatchd exits 0
// by itself within the grace period, the files stay, and the next container
// dispatches them.
TEST_F(ImageTest, DockerStopKeepsPendingFilesForTheNextContainer) {
  const std::string handler = Name("paused-handler");
  Run(handler, {{"subscription.later.container.command", "sh -c 'echo $DISPATCH_EVENT_ID >> /ran'"}});
  // A paused container answers 409: deliveries are retried, files pending.
  Docker({"pause", handler});
  const std::string first = Name("first");
  RunDispatchdContainer(first, OldLineVolumes());
  ASSERT_TRUE(WaitFor([&] { return ContainerLog(first).find("inventory:") != std::string::npos; }));
  WriteFile(events_ + "/later", "1");
  ASSERT_TRUE(WaitFor([&] { return ContainerLog(first).find("retry") != std::string::npos; }))
      << ContainerLog(first);

  Docker({"stop", "-t", "10", first});
  // 0, not 137: it ended on its own before Docker's SIGKILL.
  EXPECT_EQ(Inspect(first, "{{.State.ExitCode}}"), "0");
  EXPECT_THAT(ContainerLog(first), HasSubstr("received SIGTERM"));
  EXPECT_THAT(ContainerLog(first), HasSubstr("unsettled event files stay"));
  EXPECT_TRUE(FileExists(events_ + "/later"));
  EXPECT_FALSE(InContainer(handler, "/ran"));

  Docker({"unpause", handler});
  const std::string second = Name("second");
  RunDispatchdContainer(second, OldLineVolumes());
  ASSERT_TRUE(WaitFor([&] { return InContainer(handler, "/ran"); })) << ContainerLog(second);
  EXPECT_TRUE(WaitFor([&] { return Gone("later"); }));
  EXPECT_EQ(CatInContainer(handler, "/ran"), "later");
}

// No socket mounted: the container stays up, says which socket it looked
// for and how to mount it, and is unhealthy; once a socket appears (here a
// link to the daemon's, in a mounted /run) it is picked up without restart.
TEST_F(ImageTest, WithoutTheSocketItStaysUpSaysWhyAndPicksItUpLater) {
  const std::string run_dir = dir_ + "/run";
  ASSERT_EQ(mkdir(run_dir.c_str(), 0755), 0);
  const std::string dispatchd = Name("no-socket");
  RunDispatchdContainer(dispatchd, {"-v", events_ + ":/app/events", "-v", run_dir + ":/run",
                                    "--health-interval", "1s", "--health-start-period", "1s",
                                    "--health-retries", "2"});
  ASSERT_TRUE(WaitFor([&] { return Inspect(dispatchd, "{{.State.Health.Status}}") == "unhealthy"; },
                      absl::Seconds(60)))
      << Inspect(dispatchd, "{{json .State.Health}}");
  EXPECT_EQ(Inspect(dispatchd, "{{.State.Running}}"), "true");
  const std::string log = ContainerLog(dispatchd);
  EXPECT_THAT(log, HasSubstr("no Docker socket at /run/docker.sock"));
  EXPECT_THAT(log, HasSubstr("-v /var/run/docker.sock:/run/docker.sock"));
  // The health check's own output says why.
  EXPECT_THAT(Inspect(dispatchd, "{{json .State.Health}}"), HasSubstr("no Docker socket at"));

  // The handler exists before the socket appears, so the first inventory
  // dispatchd lists has it (healthy means that inventory is in).
  const std::string handler = Name("late-handler");
  Run(handler, {{"subscription.late.container.command", "touch /late"}});
  // A hard link is the daemon's socket under another name.
  ASSERT_EQ(link(daemon_->socket_path().c_str(), (run_dir + "/docker.sock").c_str()), 0);
  ASSERT_TRUE(WaitFor([&] { return Inspect(dispatchd, "{{.State.Health.Status}}") == "healthy"; },
                      absl::Seconds(60)))
      << Inspect(dispatchd, "{{json .State.Health}}");
  WriteFile(events_ + "/late", "");
  EXPECT_TRUE(WaitFor([&] { return InContainer(handler, "/late"); }));
  EXPECT_TRUE(WaitFor([&] { return Gone("late"); }));
}

// A file where the socket should be, and a read-only events volume: clear
// messages instead of silence.
TEST_F(ImageTest, BadSetUpsSayWhatIsWrong) {
  const std::string not_a_socket = dir_ + "/docker.sock";
  WriteFile(not_a_socket, "");
  const std::string wrong = Name("not-a-socket");
  RunDispatchdContainer(wrong, {"-v", events_ + ":/app/events", "-v",
                                not_a_socket + ":/run/docker.sock"});
  EXPECT_TRUE(WaitFor([&] {
    return ContainerLog(wrong).find("/run/docker.sock is not a socket") != std::string::npos;
  })) << ContainerLog(wrong);

  const std::string read_only = Name("read-only");
  RunDispatchdContainer(read_only, {"-v", events_ + ":/app/events:ro", "-v",
                                    daemon_->socket_path() + ":/run/docker.sock"});
  ASSERT_TRUE(WaitFor([&] { return Inspect(read_only, "{{.State.Running}}") == "false"; }));
  EXPECT_EQ(Inspect(read_only, "{{.State.ExitCode}}"), "1");
  EXPECT_THAT(ContainerLog(read_only), HasSubstr("events directory /app/events is not writable"));
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
