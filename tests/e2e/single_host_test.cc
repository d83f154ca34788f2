// End to end on one host: the real dispatchd binary (all-in-one) against a
// private real dockerd, real files and inotify. Each test gets its own events
// directory, its own dispatchd and its own containers; the daemon is shared.
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "tests/testing/e2e_fixture.h"
#include "common/testing/status_matchers.h"

namespace dispatchd {
namespace testing {
namespace {

using ::testing::HasSubstr;

// One private dockerd for the suite; a fresh events tree, dispatchd and
// containers for each test (tests/testing/e2e_fixture.h).
class SingleHostTest : public DockerHostTest {};

// The README's quick start, as a user would do it.
TEST_F(SingleHostTest, QuickStart) {
  const std::string handler = Name("handler");
  Run(handler, {{"subscription.demo.some-event.container.command", "touch handled"}});
  StartDispatchd();
  WriteFile(events_ + "/demo/some-event", "hello");
  ASSERT_TRUE(WaitFor([&] { return InContainer(handler, "/handled"); })) << Log();
  ASSERT_TRUE(WaitFor([&] { return Gone("demo/some-event"); })) << "file not deleted";
  EXPECT_THAT(Log(), HasSubstr("delivered demo.some-event to " + handler));
}

TEST_F(SingleHostTest, HandlerSeesEventEnvironment) {
  const std::string handler = Name("env");
  Run(handler, {{"subscription.ns.a.b.txt.container.command",
                 "sh -c 'echo \"$DISPATCH_EVENT_ID|$DISPATCH_EVENT_PAYLOAD\" > /env'"}});
  StartDispatchd({"--event-namespace", "ns"});
  WriteFileAtomically(events_ + "/a/b.txt", "payload 1", dir_);
  ASSERT_TRUE(WaitFor([&] { return InContainer(handler, "/env"); })) << Log();
  EXPECT_EQ(CatInContainer(handler, "/env"), "ns.a.b.txt|payload 1");
  EXPECT_TRUE(WaitFor([&] { return Gone("a/b.txt"); }));
}

TEST_F(SingleHostTest, ContainerStartStartsAStoppedContainer) {
  const std::string handler = Name("sleeper");
  Run(handler,
      {{"subscription.wake.container.start", "true"},
       {"subscription.wake.container.command", "touch /started"}},
      /*running=*/false);
  StartDispatchd();
  WriteFile(events_ + "/wake", "");
  ASSERT_TRUE(WaitFor([&] { return InContainer(handler, "/started"); })) << Log();
  EXPECT_TRUE(WaitFor([&] { return Gone("wake"); }));
}

TEST_F(SingleHostTest, StoppedContainerWithoutStartIsSkippedAndFileDeleted) {
  const std::string handler = Name("stopped");
  Run(handler, {{"subscription.skip.container.command", "touch /x"}}, /*running=*/false);
  StartDispatchd();
  WriteFile(events_ + "/skip", "");
  ASSERT_TRUE(WaitFor([&] { return Gone("skip"); })) << Log();
  EXPECT_THAT(Log(), HasSubstr("skipped_not_running"));
  auto state = daemon_->Docker({"inspect", "-f", "{{.State.Running}}", handler});
  ASSERT_OK(state);
  EXPECT_EQ(*state, "false");
}

TEST_F(SingleHostTest, TwoSubscribersToOneEvent) {
  const std::string one = Name("one");
  const std::string two = Name("two");
  Run(one, {{"subscription.both.container.command", "touch /got"}});
  Run(two, {{"subscription.both.container.command", "touch /got"}});
  StartDispatchd();
  WriteFile(events_ + "/both", "");
  ASSERT_TRUE(WaitFor([&] { return InContainer(one, "/got") && InContainer(two, "/got"); }))
      << Log();
  EXPECT_TRUE(WaitFor([&] { return Gone("both"); }));
}

TEST_F(SingleHostTest, InvalidLabelNextToValidOne) {
  const std::string bad = Name("bad");
  const std::string good = Name("good");
  Run(bad, {{"subscription.mixed.container.command", "echo 'unterminated"},
            {"subscription.other.container.command", "touch /other"}});
  Run(good, {{"subscription.mixed.container.command", "touch /mixed"}});
  StartDispatchd();
  WriteFile(events_ + "/mixed", "");
  WriteFile(events_ + "/other", "");
  ASSERT_TRUE(WaitFor([&] { return InContainer(good, "/mixed"); })) << Log();
  // The bad container's other, valid subscription still works.
  ASSERT_TRUE(WaitFor([&] { return InContainer(bad, "/other"); })) << Log();
  EXPECT_TRUE(WaitFor([&] { return Gone("mixed") && Gone("other"); }));
  EXPECT_THAT(Log(), HasSubstr("subscription.mixed.container.command"));
  EXPECT_THAT(Log(), HasSubstr("quote"));
}

TEST_F(SingleHostTest, EventNobodySubscribesToIsDeleted) {
  const std::string handler = Name("bystander");
  Run(handler, {{"subscription.something.else.container.command", "touch /x"}});
  StartDispatchd();
  WriteFile(events_ + "/nobody/cares", "x");
  ASSERT_TRUE(WaitFor([&] { return Gone("nobody/cares"); })) << Log();
  EXPECT_FALSE(InContainer(handler, "/x"));
}

TEST_F(SingleHostTest, IgnoredKindsStayInPlace) {
  const std::string handler = Name("h");
  Run(handler, {{"subscription.real.container.command", "touch /real"}});
  StartDispatchd();
  ASSERT_EQ(mkfifo((events_ + "/fifo").c_str(), 0644), 0);
  WriteFile(dir_ + "/target", "t");
  ASSERT_EQ(symlink((dir_ + "/target").c_str(), (events_ + "/link").c_str()), 0);
  WriteFile(events_ + "/.hidden", "h");
  WriteFile(events_ + "/.cache/inside", "i");
  WriteFile(events_ + "/real", "");
  ASSERT_TRUE(WaitFor([&] { return InContainer(handler, "/real") && Gone("real"); })) << Log();
  EXPECT_TRUE(FileExists(events_ + "/fifo"));
  EXPECT_TRUE(FileExists(events_ + "/link"));
  EXPECT_TRUE(FileExists(dir_ + "/target"));
  EXPECT_TRUE(FileExists(events_ + "/.hidden"));
  EXPECT_TRUE(FileExists(events_ + "/.cache/inside"));
}

TEST_F(SingleHostTest, DirectoryMovedInWithFilesIsPickedUp) {
  const std::string handler = Name("h");
  Run(handler, {{"subscription.batch.x.container.command", "touch /x"},
                {"subscription.batch.y.container.command", "touch /y"}});
  StartDispatchd();
  WriteFile(dir_ + "/staging/batch/x", "");
  WriteFile(dir_ + "/staging/batch/y", "");
  ASSERT_EQ(rename((dir_ + "/staging/batch").c_str(), (events_ + "/batch").c_str()), 0);
  ASSERT_TRUE(WaitFor([&] { return InContainer(handler, "/x") && InContainer(handler, "/y"); }))
      << Log();
  EXPECT_TRUE(WaitFor([&] { return Gone("batch/x") && Gone("batch/y"); }));
}

// README.md, "Debounce", D=1000: events every 200 ms for 800 ms give the
// first at once and the latest at the end of the period, nothing in between.
TEST_F(SingleHostTest, DebounceTimelineInsideTheContainer) {
  const std::string handler = Name("debounced");
  Run(handler, {{"subscription.tick.container.command",
                 "sh -c 'echo \"$DISPATCH_EVENT_PAYLOAD\" >> /log'"},
                {"subscription.tick.dispatching.debounce", "1000"}});
  StartDispatchd();
  for (int i = 0; i < 5; ++i) {
    WriteFileAtomically(events_ + "/tick", absl::StrCat(i), dir_);
    if (i < 4) absl::SleepFor(absl::Milliseconds(200));  // produces the timeline
  }
  ASSERT_TRUE(WaitFor([&] { return Gone("tick") && CatInContainer(handler, "/log").size() > 0; }))
      << Log();
  ASSERT_TRUE(WaitFor([&] {
    std::string log = CatInContainer(handler, "/log");
    return !log.empty() && log.back() == '4';
  })) << CatInContainer(handler, "/log") << "\n" << Log();
  std::vector<std::string> lines =
      absl::StrSplit(CatInContainer(handler, "/log"), '\n', absl::SkipEmpty());
  // 0 at once, 4 at 1000 ms; a very slow machine may fit one more period.
  EXPECT_EQ(lines.front(), "0");
  EXPECT_EQ(lines.back(), "4");
  EXPECT_GE(lines.size(), 2u);
  EXPECT_LE(lines.size(), 3u) << "debounce did not coalesce: " << absl::StrJoin(lines, ",");
  EXPECT_THAT(Log(), HasSubstr("coalesced"));
}

TEST_F(SingleHostTest, FilesLeftWhileStoppedAreDispatchedOnStart) {
  const std::string handler = Name("h");
  Run(handler, {{"subscription.left.one.container.command", "touch /one"},
                {"subscription.left.two.container.command", "touch /two"}});
  StartDispatchd();
  auto status = dispatchd_->Terminate();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << Log();
  EXPECT_THAT(Log(), HasSubstr("SIGTERM"));
  WriteFile(events_ + "/left/one", "");
  WriteFile(events_ + "/left/two", "");
  StartDispatchd();
  ASSERT_TRUE(WaitFor([&] { return InContainer(handler, "/one") && InContainer(handler, "/two"); }))
      << Log();
  EXPECT_TRUE(WaitFor([&] { return Gone("left/one") && Gone("left/two"); }));
}

TEST_F(SingleHostTest, PausedContainerIsRetriedThenDeadLettered) {
  const std::string handler = Name("paused");
  Run(handler, {{"subscription.stuck.container.command", "touch /x"}});
  ASSERT_TRUE(daemon_->Docker({"pause", handler}).ok());
  StartDispatchd({"--max-attempts", "3", "--retry-min-backoff", "20ms", "--retry-max-backoff",
                  "50ms"});
  WriteFile(events_ + "/stuck", "payload");
  ASSERT_TRUE(WaitFor([&] { return Gone("stuck"); })) << Log();
  const std::string dead = events_ + "/.dead-letter/stuck";
  ASSERT_TRUE(WaitFor([&] { return FileExists(dead) && FileExists(dead + ".error.json"); }))
      << Log();
  EXPECT_EQ(ReadFile(dead), "payload");
  EXPECT_THAT(ReadFile(dead + ".error.json"), HasSubstr("paused"));
  daemon_->Docker({"unpause", handler}).IgnoreError();
}

TEST_F(SingleHostTest, LabelsOfContainersStartedLaterAreFollowed) {
  StartDispatchd();
  const std::string handler = Name("late");
  Run(handler, {{"subscription.late.container.command", "touch /late"}});
  // Level-triggered: the new container reaches the index through the events
  // stream, with no restart and no per-event lookup.
  ASSERT_TRUE(WaitFor([&] { return Log().find("upserted " + handler) != std::string::npos; }))
      << Log();
  WriteFile(events_ + "/late", "");
  ASSERT_TRUE(WaitFor([&] { return InContainer(handler, "/late"); })) << Log();
  EXPECT_TRUE(WaitFor([&] { return Gone("late"); }));
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
