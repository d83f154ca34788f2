// The agent's side of the session against a fake controller over gRPC's
// in-process channel: the outgoing queue keeps its order and batches.
#include "agent/agent.h"

#include <cstdio>
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
    return grpc::Status::OK;
  }

  void SendWelcome() { welcome_.Notify(); }

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

}  // namespace
}  // namespace agent
}  // namespace dispatchd
