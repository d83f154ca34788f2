// The agent's side of the session against a fake controller over gRPC's
// in-process channel: the outgoing queue keeps its order and batches.
#include "agent/agent.h"

#include <sys/xattr.h>

#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "agent/testing/fake_docker_api.h"
#include "common/testing/fake_clock.h"
#include "gtest/gtest.h"
#include "proto/dispatch/v1/session.grpc.pb.h"

namespace dispatchd {
namespace agent {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::ControllerMessage;

// Answers Hello with a Welcome once released, then records everything.
class FakeController final : public dispatch::v1::AgentSession::Service {
 public:
  grpc::Status Session(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<ControllerMessage, AgentMessage>* stream) override {
    AgentMessage message;
    if (!stream->Read(&message) || !message.has_hello()) return grpc::Status::CANCELLED;
    EXPECT_TRUE(message.hello().accepts_batches());
    welcome_.WaitForNotification();
    ControllerMessage welcome;
    welcome.mutable_welcome()->set_session_id("s");
    welcome.mutable_welcome()->set_heartbeat_period_ms(60000);
    welcome.mutable_welcome()->set_accepts_batches(true);
    if (!stream->Write(welcome)) return grpc::Status::CANCELLED;
    {
      absl::MutexLock lock(&write_mu_);
      stream_ = stream;
    }
    while (stream->Read(&message)) {
      absl::MutexLock lock(&mu_);
      ++stream_messages_;
      if (message.has_batch()) {
        max_batch_ = std::max(max_batch_, message.batch().messages_size());
        for (const AgentMessage& m : message.batch().messages()) received_.push_back(m);
      } else {
        received_.push_back(message);
      }
    }
    absl::MutexLock lock(&write_mu_);
    stream_ = nullptr;
    return grpc::Status::OK;
  }

  void SendWelcome() { welcome_.Notify(); }

  // Sends `message` on the open session; false if there is none.
  bool Send(const ControllerMessage& message) {
    absl::MutexLock lock(&write_mu_);
    return stream_ != nullptr && stream_->Write(message);
  }
  // Send(), waiting (bounded) for the session: the fake takes its stream
  // for sending just after its Welcome, which the agent may see first.
  bool SendWhenOpen(const ControllerMessage& message) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!Send(message)) {
      if (absl::Now() >= deadline) return false;
      std::this_thread::yield();
    }
    return true;
  }

  // Waits until `count` agent messages (batches unpacked) arrived.
  std::vector<AgentMessage> Await(size_t count) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return received_.size() >= count; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30));
    return received_;
  }
  int stream_messages() const {
    absl::MutexLock lock(&mu_);
    return stream_messages_;
  }
  int max_batch() const {
    absl::MutexLock lock(&mu_);
    return max_batch_;
  }

 private:
  absl::Notification welcome_;
  absl::Mutex write_mu_;
  grpc::ServerReaderWriter<ControllerMessage, AgentMessage>* stream_ ABSL_GUARDED_BY(write_mu_) =
      nullptr;
  mutable absl::Mutex mu_;
  std::vector<AgentMessage> received_ ABSL_GUARDED_BY(mu_);
  int stream_messages_ ABSL_GUARDED_BY(mu_) = 0;
  int max_batch_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(AgentTest, OutgoingQueueKeepsOrderAndBatches) {
  const std::string events = absl::StrCat(std::getenv("TEST_TMPDIR"), "/events");
  std::filesystem::create_directories(events);
  constexpr int kFiles = 300;
  std::vector<std::string> keys;
  for (int i = 0; i < kFiles; ++i) {
    keys.push_back(absl::StrFormat("e%04d", i));
    std::ofstream(absl::StrCat(events, "/", keys.back())) << std::string(1000, 'x');
  }

  FakeController controller;
  grpc::ServerBuilder builder;
  builder.RegisterService(&controller);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  FakeDockerApi docker;
  FakeClock clock;
  AgentOptions options;
  options.agent_id = "agent-1";
  options.events_dir = events;
  options.max_batch_messages = 32;
  auto agent = std::make_unique<Agent>(options, &docker, &clock,
                                       server->InProcessChannel(grpc::ChannelArguments()));
  ASSERT_TRUE(agent->Start().ok());
  // Every file observed while no session is up: the events wait in the
  // agent and are all queued at once when the session opens.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (agent->unsettled() < kFiles && absl::Now() < deadline) std::this_thread::yield();
  ASSERT_EQ(agent->unsettled(), static_cast<size_t>(kFiles));
  controller.SendWelcome();

  // The inventory first, then every event in the order the agent queued
  // them (key order); inventory updates may interleave.
  std::vector<AgentMessage> got = controller.Await(kFiles + 1);
  ASSERT_GE(got.size(), static_cast<size_t>(kFiles + 1));
  EXPECT_TRUE(got[0].has_inventory_snapshot() || got[0].has_inventory_stale());
  std::vector<std::string> event_keys;
  for (const AgentMessage& m : got) {
    EXPECT_FALSE(m.has_batch());
    if (m.has_event()) event_keys.push_back(m.event().key());
  }
  EXPECT_EQ(event_keys, keys);
  EXPECT_LT(controller.stream_messages(), kFiles + 1);
  EXPECT_LE(controller.max_batch(), 32);
  EXPECT_GT(controller.max_batch(), 1);

  agent->Stop();
  server->Shutdown();
}

// An agent and its fake controller on one events directory, for tests
// that restart the agent.
class AgentRun {
 public:
  AgentRun(const std::string& events, AgentOptions options = {},
           const std::function<void(FakeDockerApi&)>& setup = nullptr) {
    if (setup) setup(docker_);
    grpc::ServerBuilder builder;
    builder.RegisterService(&controller_);
    server_ = builder.BuildAndStart();
    options.agent_id = "agent-1";
    options.events_dir = events;
    agent_ = std::make_unique<Agent>(options, &docker_, &clock_,
                                     server_->InProcessChannel(grpc::ChannelArguments()));
    ok_ = agent_->Start().ok();
    controller_.SendWelcome();
  }
  ~AgentRun() {
    agent_->Stop();
    server_->Shutdown();
  }
  bool ok() const { return ok_; }
  FakeController& controller() { return controller_; }
  FakeDockerApi& docker() { return docker_; }
  Agent& agent() { return *agent_; }

  // The events received so far, waiting (bounded) for at least `count`.
  std::vector<dispatch::v1::ObservedEvent> Events(size_t count) {
    std::vector<dispatch::v1::ObservedEvent> events;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    for (size_t seen = 1; absl::Now() < deadline; ++seen) {
      events.clear();
      // The same event may come twice (a file seen while the session opens
      // is sent and re-sent): the protocol allows it, the controller
      // de-duplicates, and so does this.
      std::set<std::pair<std::string, uint64_t>> seen_events;
      for (const AgentMessage& m : controller_.Await(seen)) {
        if (m.has_event() &&
            seen_events.insert({m.event().key(), m.event().generation()}).second) {
          events.push_back(m.event());
        }
      }
      if (events.size() >= count) break;
    }
    return events;
  }

 private:
  FakeController controller_;
  std::unique_ptr<grpc::Server> server_;
  FakeDockerApi docker_;
  FakeClock clock_;
  std::unique_ptr<Agent> agent_;
  bool ok_ = false;
};

std::string TestEventsDir(const std::string& name) {
  const std::string events = absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
  std::filesystem::create_directories(events);
  return events;
}

std::string MarkOf(const std::string& path) {
  char value[4096];
  ssize_t n = getxattr(path.c_str(), "user.dispatchd.event", value, sizeof(value));
  return n > 0 ? std::string(value, n) : std::string();
}

// The agent of a later run (after a kill, say) re-sends the same event,
// with the subscribers it was told had run it, so the controller neither
// takes it for a new event nor runs it there again.
TEST(AgentTest, AnEventKeepsItsGenerationAndDeliveriesAcrossARestart) {
  const std::string events = TestEventsDir("restart");
  std::ofstream(events + "/deploy") << "v1";
  uint64_t generation = 0;
  {
    AgentRun first(events);
    ASSERT_TRUE(first.ok());
    std::vector<dispatch::v1::ObservedEvent> got = first.Events(1);
    ASSERT_EQ(got.size(), 1u);
    generation = got[0].generation();
    EXPECT_TRUE(got[0].delivered().empty());
    ControllerMessage delivered;
    delivered.mutable_delivered()->set_key("deploy");
    delivered.mutable_delivered()->set_generation(generation);
    delivered.mutable_delivered()->mutable_to()->set_agent_id("agent-2");
    delivered.mutable_delivered()->mutable_to()->set_container_id("c9");
    ASSERT_TRUE(first.controller().SendWhenOpen(delivered));
    // Kept with the file once the agent has handled it.
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    dispatch::v1::EventMark mark;
    while (absl::Now() < deadline &&
           !(mark.ParseFromString(MarkOf(events + "/deploy")) && mark.delivered_size() == 1)) {
      std::this_thread::yield();
    }
    ASSERT_EQ(mark.delivered_size(), 1);
    EXPECT_EQ(mark.generation(), generation);
    EXPECT_EQ(first.agent().unsettled(), 1u);  // the mark did not make it a new event
  }
  AgentRun second(events);
  ASSERT_TRUE(second.ok());
  std::vector<dispatch::v1::ObservedEvent> got = second.Events(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].key(), "deploy");
  EXPECT_EQ(got[0].generation(), generation);
  ASSERT_EQ(got[0].delivered_size(), 1);
  EXPECT_EQ(got[0].delivered(0).agent_id(), "agent-2");
  EXPECT_EQ(got[0].delivered(0).container_id(), "c9");
  EXPECT_EQ(got[0].payload(), "v1");
}

TEST(AgentTest, AFileWrittenAgainAfterARestartIsANewEventDespiteItsMark) {
  const std::string events = TestEventsDir("rewritten");
  std::ofstream(events + "/deploy") << "v1";
  uint64_t generation = 0;
  {
    AgentRun first(events);
    ASSERT_TRUE(first.ok());
    std::vector<dispatch::v1::ObservedEvent> got = first.Events(1);
    ASSERT_EQ(got.size(), 1u);
    generation = got[0].generation();
  }
  ASSERT_FALSE(MarkOf(events + "/deploy").empty());
  std::ofstream(events + "/deploy", std::ios::trunc) << "version 2";  // same inode
  AgentRun second(events);
  ASSERT_TRUE(second.ok());
  std::vector<dispatch::v1::ObservedEvent> got = second.Events(1);
  ASSERT_GE(got.size(), 1u);
  EXPECT_NE(got[0].generation(), generation);
  EXPECT_TRUE(got[0].delivered().empty());
  EXPECT_EQ(got[0].payload(), "version 2");
}

// Above the bound, files wait on disk (the durable copy) and are read once
// settled events made room: all arrive, never more than the bound at once.
TEST(AgentTest, AboveTheUnsettledBoundFilesWaitOnDiskAndAllArriveLater) {
  const std::string events = TestEventsDir("bounded");
  constexpr int kFiles = 40;
  for (int i = 0; i < kFiles; ++i) {
    std::ofstream(absl::StrFormat("%s/e%02d", events, i)) << "x";
  }
  AgentOptions options;
  options.max_unsettled_events = 10;
  AgentRun run(events, options);
  ASSERT_TRUE(run.ok());
  std::set<std::string> settled;
  size_t seen = 0;
  while (settled.size() < static_cast<size_t>(kFiles)) {
    std::vector<dispatch::v1::ObservedEvent> got = run.Events(seen + 1);
    ASSERT_GT(got.size(), seen) << settled.size() << " of " << kFiles << " arrived";
    EXPECT_LE(run.agent().unsettled(), 10u);
    for (; seen < got.size(); ++seen) {
      if (!settled.insert(got[seen].key()).second) continue;  // re-sent
      ControllerMessage message;
      message.mutable_settled()->set_key(got[seen].key());
      message.mutable_settled()->set_generation(got[seen].generation());
      message.mutable_settled()->set_disposition(dispatch::v1::Settled::DELETE);
      ASSERT_TRUE(run.controller().Send(message));
    }
  }
  EXPECT_EQ(settled.size(), static_cast<size_t>(kFiles));
}

// A restarted controller routes an event again to a container whose agent
// already ran it: the agent answers DELIVERED and does not run it twice.
TEST(AgentTest, TheSameDeliveryGivenTwiceRunsOnce) {
  const std::string events = TestEventsDir("twice");
  AgentRun run(events, {}, [](FakeDockerApi& docker) {
    ContainerInfo info;
    info.id = "c0ffee";
    info.name = "builder";
    info.state = ContainerState::kRunning;
    info.labels = {{"subscription.repo.pushed.container.command", "make all"}};
    docker.AddContainer(info);
  });
  ASSERT_TRUE(run.ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline && !run.agent().ready()) std::this_thread::yield();
  ASSERT_TRUE(run.agent().ready());
  auto command = [](uint64_t id, uint64_t generation) {
    ControllerMessage message;
    dispatch::v1::Command* c = message.mutable_command();
    c->set_command_id(id);
    c->set_event_id("repo.pushed");
    c->set_container_id("c0ffee");
    c->add_argv("make");
    c->add_argv("all");
    c->set_origin_agent("agent-0");
    c->set_key("repo/pushed");
    c->set_generation(generation);
    return message;
  };
  ASSERT_TRUE(run.controller().SendWhenOpen(command(1, 5)));
  ASSERT_TRUE(run.controller().Send(command(2, 5)));  // the same delivery again
  ASSERT_TRUE(run.controller().Send(command(3, 6)));  // a later event: runs
  std::map<uint64_t, dispatch::v1::CommandResult> results;
  for (size_t seen = 1; results.size() < 3 && absl::Now() < deadline; ++seen) {
    for (const AgentMessage& m : run.controller().Await(seen)) {
      if (m.has_command_result()) results[m.command_result().command_id()] = m.command_result();
    }
  }
  ASSERT_EQ(results.size(), 3u);
  for (const auto& [id, result] : results) {
    EXPECT_EQ(result.outcome(), dispatch::v1::CommandResult::DELIVERED) << id << result.error();
  }
  EXPECT_EQ(run.docker().execs().size(), 2u);
}

// A writer that pauses with its file open, caught by the scan of a new
// directory and by the start-up scan: one event, with the whole payload.
size_t CountEvents(const std::vector<dispatch::v1::ObservedEvent>& events, const std::string& key) {
  size_t n = 0;
  for (const auto& e : events) n += e.key() == key ? 1 : 0;
  return n;
}

// `writer` holds `key` open with "slow-" written; the first event seen was
// `first`, not it. Finishes the write and expects one event of `key` with
// the whole payload, and no second one after a later sentinel.
void FinishAndExpectOneCompleteEvent(AgentRun& run, const std::string& events, std::FILE* writer,
                                     const std::string& key, const std::string& first) {
  std::vector<dispatch::v1::ObservedEvent> got = run.Events(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].key(), first);
  std::fputs("1", writer);
  std::fclose(writer);
  got = run.Events(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].key(), key);
  EXPECT_EQ(got[1].payload(), "slow-1");
  std::ofstream(events + "/sentinel-after") << "s";
  got = run.Events(3);
  EXPECT_EQ(CountEvents(got, key), 1u);
}

TEST(AgentTest, AFileHeldOpenAcrossTheScanOfANewDirectoryIsOneCompleteEvent) {
  const std::string base = TestEventsDir("held-new-dir");
  const std::string events = base + "/events";
  std::filesystem::create_directories(events);
  AgentRun run(events);
  ASSERT_TRUE(run.ok());
  std::filesystem::create_directories(base + "/nd/s1");
  std::FILE* writer = std::fopen((base + "/nd/s1/x").c_str(), "w");
  ASSERT_NE(writer, nullptr);
  std::fputs("slow-", writer);
  std::fflush(writer);
  std::filesystem::rename(base + "/nd", events + "/nd");  // scanned with x open
  std::ofstream(events + "/sentinel-1") << "s";
  FinishAndExpectOneCompleteEvent(run, events, writer, "nd/s1/x", "sentinel-1");
}

TEST(AgentTest, AFileHeldOpenAcrossTheStartUpScanIsOneCompleteEvent) {
  const std::string events = TestEventsDir("held-start");
  std::filesystem::create_directories(events + "/d");
  std::FILE* writer = std::fopen((events + "/d/x").c_str(), "w");
  ASSERT_NE(writer, nullptr);
  std::fputs("slow-", writer);
  std::fflush(writer);
  std::ofstream(events + "/d/ready") << "r";
  AgentRun run(events);
  ASSERT_TRUE(run.ok());
  FinishAndExpectOneCompleteEvent(run, events, writer, "d/x", "d/ready");
}

}  // namespace
}  // namespace agent
}  // namespace dispatchd
