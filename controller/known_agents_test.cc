#include "controller/known_agents.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/testing/fake_clock.h"
#include "common/testing/status_matchers.h"
#include "controller/dispatcher.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using ::dispatchd::testing::IsOk;
using ::dispatchd::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

class KnownAgentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = absl::StrCat(std::getenv("TEST_TMPDIR"), "/known-agents-XXXXXX");
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = KnownAgentsPath(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void WriteRaw(const std::string& content) {
    std::ofstream out(path_, std::ios::trunc);
    out << content;
  }
  std::string ReadRaw() {
    std::ifstream in(path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::vector<std::string> Files() {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      names.push_back(e.path().filename().string());
    }
    return names;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(KnownAgentsTest, PathIsInTheStateDirectory) {
  EXPECT_EQ(KnownAgentsPath("/var/lib/dispatchd-controller"),
            "/var/lib/dispatchd-controller/known-agents.json");
  EXPECT_EQ(KnownAgentsPath("state/"), "state/known-agents.json");
}

TEST_F(KnownAgentsTest, WhatIsWrittenIsReadBack) {
  const AgentHosts agents = {{"host-a", "a.example"},
                             {"with space", "h"},
                             {"quote\"and\\backslash", "q"},
                             {"line\nbreak", "l"},
                             {"h\xC3\xA9llo", "\xC3\xA9"}};
  ASSERT_THAT(WriteKnownAgents(path_, agents), IsOk());
  absl::StatusOr<AgentHosts> read = ReadKnownAgents(path_);
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(*read, agents);
  EXPECT_THAT(Files(), UnorderedElementsAre("known-agents.json")) << "no temporary file left";
  EXPECT_THAT(ReadRaw(), HasSubstr("\"version\": 1"));
}

TEST_F(KnownAgentsTest, AnEmptyListIsAList) {
  ASSERT_THAT(WriteKnownAgents(path_, {}), IsOk());
  absl::StatusOr<AgentHosts> read = ReadKnownAgents(path_);
  ASSERT_THAT(read, IsOk());
  EXPECT_THAT(*read, IsEmpty());
}

TEST_F(KnownAgentsTest, WriteReplacesTheWholeList) {
  ASSERT_THAT(WriteKnownAgents(path_, {{"host-a", "a"}, {"host-b", "b"}}), IsOk());
  // A temporary file left by a crash in the middle of a write is replaced.
  std::ofstream(path_ + ".tmp") << "half a list";
  ASSERT_THAT(WriteKnownAgents(path_, {{"host-c", "c"}}), IsOk());
  absl::StatusOr<AgentHosts> read = ReadKnownAgents(path_);
  ASSERT_THAT(read, IsOk());
  EXPECT_THAT(*read, UnorderedElementsAre(Pair("host-c", "c")));
  EXPECT_THAT(Files(), UnorderedElementsAre("known-agents.json"));
}

TEST_F(KnownAgentsTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadKnownAgents(path_), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(KnownAgentsTest, WriteIntoAMissingDirectoryFails) {
  EXPECT_THAT(WriteKnownAgents(dir_ + "/missing/known-agents.json", {{"a", "a"}}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

TEST_F(KnownAgentsTest, CorruptFilesAreDataLoss) {
  for (const std::string content :
       {"", "{", "garbage", "{\"version\": 1, \"agents\": {\"host-a\": \"a\"", "[1, 2]",
        "{\"version\": 2, \"agents\": {}}", "{\"version\": 1}", "{\"agents\": {}}",
        "{\"version\": 1, \"agents\": []}", "{\"version\": 1, \"agents\": {\"host-a\": 1}}",
        "{\"version\": 1, \"agents\": {\"\": \"a\"}}"}) {
    WriteRaw(content);
    EXPECT_THAT(ReadKnownAgents(path_), StatusIs(absl::StatusCode::kDataLoss, HasSubstr(path_)))
        << "content: " << content;
  }
}

TEST_F(KnownAgentsTest, AFirstStartKeepsTheStartupGrace) {
  const std::string state = dir_ + "/var/lib/state";
  DispatcherOptions options;
  options.startup_grace = absl::Seconds(15);
  absl::StatusOr<AgentHosts> known = LoadKnownAgents(state, &options);
  ASSERT_THAT(known, IsOk());
  EXPECT_THAT(*known, IsEmpty());
  EXPECT_EQ(options.startup_grace, absl::Seconds(15));
  EXPECT_THAT(options.expected_agents, IsEmpty());
  struct stat st;
  ASSERT_EQ(stat(state.c_str(), &st), 0) << "the directory is created, and its parents";
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_F(KnownAgentsTest, AListReplacesTheStartupGrace) {
  ASSERT_THAT(WriteKnownAgents(path_, {{"host-a", "a"}}), IsOk());
  DispatcherOptions options;
  options.startup_grace = absl::Seconds(15);
  absl::StatusOr<AgentHosts> known = LoadKnownAgents(dir_, &options);
  ASSERT_THAT(known, IsOk());
  EXPECT_THAT(*known, UnorderedElementsAre(Pair("host-a", "a")));
  EXPECT_EQ(options.startup_grace, absl::ZeroDuration());
  EXPECT_EQ(options.expected_agents, *known);
}

TEST_F(KnownAgentsTest, ACorruptListKeepsTheStartupGrace) {
  WriteRaw("{\"version\": 1, \"agents\": {\"host-a\"");
  DispatcherOptions options;
  options.startup_grace = absl::Seconds(15);
  absl::StatusOr<AgentHosts> known = LoadKnownAgents(dir_, &options);
  ASSERT_THAT(known, IsOk()) << "not an error: the controller still starts";
  EXPECT_THAT(*known, IsEmpty());
  EXPECT_EQ(options.startup_grace, absl::Seconds(15));
  EXPECT_THAT(options.expected_agents, IsEmpty());
}

TEST_F(KnownAgentsTest, AStateDirectoryThatIsAFileIsAnError) {
  const std::string file = dir_ + "/a-file";
  std::ofstream(file) << "x";
  DispatcherOptions options;
  EXPECT_THAT(LoadKnownAgents(file, &options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a directory")));
}

// The list the writer is asked for, changed by the test.
class Source {
 public:
  AgentHosts Get() {
    absl::MutexLock lock(&mu_);
    ++calls_;
    return agents_;
  }
  void Set(AgentHosts agents) {
    absl::MutexLock lock(&mu_);
    agents_ = std::move(agents);
  }
  absl::Mutex mu_;
  AgentHosts agents_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(KnownAgentsTest, WriterWritesOnlyAChangedList) {
  FakeClock clock;
  Source source;
  KnownAgentsWriter writer(
      KnownAgentsWriterOptions{.path = path_, .written = {{"host-a", "a"}}},
      [&source] { return source.Get(); }, &clock);
  source.Set({{"host-a", "a"}});
  ASSERT_THAT(writer.WriteIfChanged(), IsOk());
  EXPECT_EQ(writer.writes(), 0u) << "the file holds that list already";
  EXPECT_THAT(ReadKnownAgents(path_), StatusIs(absl::StatusCode::kNotFound));
  source.Set({{"host-a", "a"}, {"host-b", "b"}});
  ASSERT_THAT(writer.WriteIfChanged(), IsOk());
  EXPECT_EQ(writer.writes(), 1u);
  ASSERT_THAT(writer.WriteIfChanged(), IsOk());
  EXPECT_EQ(writer.writes(), 1u);
  absl::StatusOr<AgentHosts> read = ReadKnownAgents(path_);
  ASSERT_THAT(read, IsOk());
  EXPECT_THAT(*read, UnorderedElementsAre(Pair("host-a", "a"), Pair("host-b", "b")));
}

TEST_F(KnownAgentsTest, WriterThatCannotWriteSaysSoAndTriesAgain) {
  FakeClock clock;
  Source source;
  source.Set({{"host-a", "a"}});
  const std::string missing = dir_ + "/missing";
  KnownAgentsWriter writer(
      KnownAgentsWriterOptions{.path = KnownAgentsPath(missing)},
      [&source] { return source.Get(); }, &clock);
  EXPECT_THAT(writer.WriteIfChanged(), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_EQ(mkdir(missing.c_str(), 0755), 0);
  EXPECT_THAT(writer.WriteIfChanged(), IsOk()) << "the list is still to be written";
  EXPECT_EQ(writer.writes(), 1u);
}

TEST_F(KnownAgentsTest, WriterThreadWritesAfterANudgeAndStopWritesTheLastList) {
  FakeClock clock;
  Source source;
  absl::Notification asked;
  KnownAgentsWriter writer(
      KnownAgentsWriterOptions{.path = path_},
      [&] {
        AgentHosts agents = source.Get();
        if (!asked.HasBeenNotified()) asked.Notify();
        return agents;
      },
      &clock);
  source.Set({{"host-a", "a"}});
  writer.Start();
  {
    // A nudge never asks for the list itself: it is made under the
    // Dispatcher's lock, which the list needs.
    absl::MutexLock held(&source.mu_);
    writer.Nudge();
  }
  asked.WaitForNotification();  // the writer's thread asked
  source.Set({{"host-a", "a"}, {"host-b", "b"}});
  writer.Stop();
  absl::StatusOr<AgentHosts> read = ReadKnownAgents(path_);
  ASSERT_THAT(read, IsOk());
  EXPECT_THAT(*read, UnorderedElementsAre(Pair("host-a", "a"), Pair("host-b", "b")));
  writer.Stop();  // idempotent
}

// What a lone controller does with its state directory, end to end on a
// fake clock: the first run waits the start-up grace and records its
// agents; after a restart only those are waited for.
class RestartTest : public KnownAgentsTest {
 protected:
  class Link : public AgentLink {
   public:
    void Send(dispatch::v1::ControllerMessage message) override {
      if (message.has_command()) ++commands;
    }
    void Close(const std::string&) override {}
    int commands = 0;
  };

  static DispatcherOptions Options() {
    DispatcherOptions options;
    options.startup_grace = absl::Seconds(15);
    return options;
  }
  static dispatch::v1::AgentMessage Snapshot(bool subscribed) {
    dispatch::v1::AgentMessage m;
    m.mutable_inventory_snapshot()->set_seq(1);
    if (subscribed) {
      dispatch::v1::Container* c = m.mutable_inventory_snapshot()->add_containers();
      c->set_id("c1");
      c->set_name("handler");
      c->set_state(dispatch::v1::Container::RUNNING);
      (*c->mutable_labels())["subscription.demo.container.command"] = "touch /x";
    }
    return m;
  }
  static dispatch::v1::AgentMessage Event() {
    dispatch::v1::AgentMessage m;
    m.mutable_event()->set_key("demo");
    m.mutable_event()->set_event_id("demo");
    return m;
  }

  FakeClock clock_;
};

TEST_F(RestartTest, ARestartedControllerWaitsOnlyForTheAgentsItKnew) {
  const std::string state = dir_ + "/state";
  {
    DispatcherOptions options = Options();
    absl::StatusOr<AgentHosts> known = LoadKnownAgents(state, &options);
    ASSERT_THAT(known, IsOk());
    EXPECT_EQ(options.startup_grace, absl::Seconds(15)) << "a first start";
    std::unique_ptr<Dispatcher> dispatcher;
    KnownAgentsWriter writer(
        KnownAgentsWriterOptions{.path = KnownAgentsPath(state), .written = *known},
        [&dispatcher] { return dispatcher->KnownAgents(); }, &clock_);
    int nudges = 0;
    options.on_agents_changed = [&writer, &nudges] {
      ++nudges;
      writer.Nudge();
    };
    dispatcher = std::make_unique<Dispatcher>(options, &clock_);
    Link a, b;
    dispatcher->AgentConnected("host-a", "a.example", &a);
    dispatcher->AgentConnected("host-b", "b.example", &b);
    EXPECT_EQ(nudges, 2);
    // Its thread would do this after the nudges.
    ASSERT_THAT(writer.WriteIfChanged(), IsOk());
    dispatcher->AgentDisconnected("host-a", &a);
    dispatcher->AgentDisconnected("host-b", &b);
    writer.Stop();  // as at shutdown: away agents are still known
  }
  {
    DispatcherOptions options = Options();
    absl::StatusOr<AgentHosts> known = LoadKnownAgents(state, &options);
    ASSERT_THAT(known, IsOk());
    EXPECT_THAT(*known,
                UnorderedElementsAre(Pair("host-a", "a.example"), Pair("host-b", "b.example")));
    EXPECT_EQ(options.startup_grace, absl::ZeroDuration());
    Dispatcher dispatcher(options, &clock_);
    Link a, b;
    dispatcher.AgentConnected("host-a", "a.example", &a);
    dispatcher.OnAgentMessage("host-a", Snapshot(false));
    dispatcher.OnAgentMessage("host-a", Event());
    EXPECT_EQ(dispatcher.stats().events_held, 1u) << "host-b may hold subscribers";
    dispatcher.AgentConnected("host-b", "b.example", &b);
    dispatcher.OnAgentMessage("host-b", Snapshot(true));
    EXPECT_EQ(dispatcher.stats().events_held, 0u);
    EXPECT_EQ(b.commands, 1) << "routed as soon as host-b is fresh, no time passed";
  }
}

TEST_F(RestartTest, WithACorruptListARestartedControllerWaitsTheStartupGrace) {
  WriteRaw("not a list");
  DispatcherOptions options = Options();
  ASSERT_THAT(LoadKnownAgents(dir_, &options), IsOk());
  Dispatcher dispatcher(options, &clock_);
  Link a;
  dispatcher.AgentConnected("host-a", "a.example", &a);
  dispatcher.OnAgentMessage("host-a", Snapshot(true));
  dispatcher.OnAgentMessage("host-a", Event());
  EXPECT_EQ(a.commands, 0) << "held for the start-up grace";
  clock_.Advance(absl::Seconds(15));
  dispatcher.Poll();
  EXPECT_EQ(a.commands, 1);
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
