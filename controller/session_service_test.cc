// The session protocol through the real SessionService and Dispatcher over
// gRPC's in-process channel: batches in both directions.
#include "controller/session_service.h"

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/leader_redirect.h"
#include "common/testing/fake_clock.h"
#include "controller/dispatcher.h"
#include "controller/testing/fake_leadership.h"
#include "gtest/gtest.h"
#include "proto/dispatch/v1/session.grpc.pb.h"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::ControllerMessage;

dispatch::v1::Container Subscriber(int index, const std::string& event_id) {
  dispatch::v1::Container c;
  c.set_id(absl::StrCat("container-", index));
  c.set_name(absl::StrCat("c", index));
  c.set_state(dispatch::v1::Container::RUNNING);
  (*c.mutable_labels())[absl::StrCat("subscription.", event_id, ".container.command")] = "true";
  return c;
}

AgentMessage Event(const std::string& key, const std::string& event_id) {
  AgentMessage m;
  m.mutable_event()->set_key(key);
  m.mutable_event()->set_event_id(event_id);
  m.mutable_event()->set_generation(1);
  return m;
}

class SessionServiceTest : public ::testing::Test {
 protected:
  void Start(SessionServiceOptions options) {
    dispatcher_ = std::make_unique<Dispatcher>(DispatcherOptions{}, &clock_);
    service_ = std::make_unique<SessionService>(dispatcher_.get(), std::move(options));
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = dispatch::v1::AgentSession::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
    stream_ = stub_->Session(&context_);
    AgentMessage hello;
    hello.mutable_hello()->set_agent_id("agent-1");
    hello.mutable_hello()->set_accepts_batches(true);
    ASSERT_TRUE(stream_->Write(hello));
    ControllerMessage welcome;
    ASSERT_TRUE(stream_->Read(&welcome));
    ASSERT_TRUE(welcome.has_welcome());
    EXPECT_TRUE(welcome.welcome().accepts_batches());
  }

  // Reads stream messages until `count` controller messages (batches
  // unpacked) arrived; returns them in order. Counts the stream messages.
  std::vector<ControllerMessage> ReadMessages(size_t count) {
    std::vector<ControllerMessage> out;
    ControllerMessage m;
    while (out.size() < count && stream_->Read(&m)) {
      ++stream_messages_;
      if (m.has_batch()) {
        ++batches_;
        max_batch_ = std::max(max_batch_, static_cast<size_t>(m.batch().messages_size()));
        for (const ControllerMessage& inner : m.batch().messages()) {
          EXPECT_FALSE(inner.has_batch());
          if (!inner.has_heartbeat()) out.push_back(inner);
        }
      } else if (!m.has_heartbeat()) {
        out.push_back(m);
      }
    }
    return out;
  }

  void TearDown() override {
    if (stream_ != nullptr) {
      stream_->WritesDone();
      context_.TryCancel();
      stream_->Finish().IgnoreError();
    }
    if (server_ != nullptr) server_->Shutdown();
  }

  FakeClock clock_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<SessionService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<dispatch::v1::AgentSession::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<AgentMessage, ControllerMessage>> stream_;
  size_t stream_messages_ = 0;
  size_t batches_ = 0;
  size_t max_batch_ = 0;
};

TEST_F(SessionServiceTest, AgentBatchIsHandledInOrder) {
  Start(SessionServiceOptions{});
  // Snapshot, then a delta that moves the container's subscription from
  // e1 to e2, then an event e2: only handled in this order does the event
  // find its subscriber (before the delta it would have none).
  AgentMessage batch;
  auto* messages = batch.mutable_batch()->mutable_messages();
  AgentMessage snapshot;
  snapshot.mutable_inventory_snapshot()->set_seq(1);
  *snapshot.mutable_inventory_snapshot()->add_containers() = Subscriber(0, "e1");
  *messages->Add() = snapshot;
  AgentMessage delta;
  delta.mutable_inventory_delta()->set_seq(2);
  *delta.mutable_inventory_delta()->add_upserted() = Subscriber(0, "e2");
  *messages->Add() = delta;
  *messages->Add() = Event("events/a", "e2");
  ASSERT_TRUE(stream_->Write(batch));

  std::vector<ControllerMessage> got = ReadMessages(1);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].has_command());
  EXPECT_EQ(got[0].command().event_id(), "e2");
  EXPECT_EQ(got[0].command().container_id(), "container-0");
  EXPECT_EQ(dispatcher_->stats().events_observed, 1u);
  EXPECT_EQ(dispatcher_->stats().events_settled_no_subscribers, 0u);
}

TEST_F(SessionServiceTest, ControllerBatchesQueuedMessagesInOrderWithinBounds) {
  Start(SessionServiceOptions{.max_batch_messages = 16});
  // One event with 200 subscribers: 200 Commands sent back to back while
  // the first write is in flight.
  constexpr int kSubscribers = 200;
  AgentMessage snapshot;
  snapshot.mutable_inventory_snapshot()->set_seq(1);
  for (int i = 0; i < kSubscribers; ++i) {
    *snapshot.mutable_inventory_snapshot()->add_containers() = Subscriber(i, "e1");
  }
  ASSERT_TRUE(stream_->Write(snapshot));
  ASSERT_TRUE(stream_->Write(Event("events/a", "e1")));

  std::vector<ControllerMessage> got = ReadMessages(kSubscribers);
  ASSERT_EQ(got.size(), static_cast<size_t>(kSubscribers));
  uint64_t last_id = 0;
  for (const ControllerMessage& m : got) {
    ASSERT_TRUE(m.has_command());
    EXPECT_GT(m.command().command_id(), last_id);  // in the order sent
    last_id = m.command().command_id();
  }
  EXPECT_GT(batches_, 0u);
  EXPECT_LT(stream_messages_, static_cast<size_t>(kSubscribers));
  EXPECT_LE(max_batch_, 16u);

  // The results come back as one batch; a Delivered notice for each but
  // the last goes to the origin agent, and the Settled follows them.
  AgentMessage results;
  for (const ControllerMessage& m : got) {
    AgentMessage r;
    r.mutable_command_result()->set_command_id(m.command().command_id());
    r.mutable_command_result()->set_outcome(dispatch::v1::CommandResult::DELIVERED);
    *results.mutable_batch()->add_messages() = std::move(r);
  }
  ASSERT_TRUE(stream_->Write(results));
  std::vector<ControllerMessage> answers = ReadMessages(kSubscribers);
  ASSERT_EQ(answers.size(), static_cast<size_t>(kSubscribers));
  for (int i = 0; i < kSubscribers - 1; ++i) {
    ASSERT_TRUE(answers[i].has_delivered()) << i;
    EXPECT_EQ(answers[i].delivered().key(), "events/a");
    EXPECT_EQ(answers[i].delivered().to().container_id(), got[i].command().container_id());
  }
  ASSERT_TRUE(answers.back().has_settled());
  EXPECT_EQ(answers.back().settled().key(), "events/a");
  EXPECT_EQ(dispatcher_->stats().events_settled_delivered, 1u);
}

TEST_F(SessionServiceTest, AnswersToOneAgentBatchLeaveAsOneWrite) {
  Start(SessionServiceOptions{});
  // 50 events of 50 event ids, each with a subscriber of its own (events
  // of one id to one container would wait for each other in their lane).
  constexpr int kEvents = 50;
  AgentMessage snapshot;
  snapshot.mutable_inventory_snapshot()->set_seq(1);
  for (int i = 0; i < kEvents; ++i) {
    *snapshot.mutable_inventory_snapshot()->add_containers() = Subscriber(i, absl::StrCat("e", i));
  }
  ASSERT_TRUE(stream_->Write(snapshot));
  // In one batch: their 50 Commands go out together once the batch is
  // handled, not the first alone and the other 49 behind it.
  AgentMessage batch;
  for (int i = 0; i < kEvents; ++i) {
    *batch.mutable_batch()->add_messages() =
        Event(absl::StrCat("events/", i), absl::StrCat("e", i));
  }
  ASSERT_TRUE(stream_->Write(batch));
  std::vector<ControllerMessage> got = ReadMessages(kEvents);
  ASSERT_EQ(got.size(), static_cast<size_t>(kEvents));
  for (const ControllerMessage& m : got) EXPECT_TRUE(m.has_command());
  EXPECT_EQ(stream_messages_, 1u);
  EXPECT_EQ(max_batch_, static_cast<size_t>(kEvents));
}

TEST_F(SessionServiceTest, AgentWithoutBatchesGetsSingleMessages) {
  dispatcher_ = std::make_unique<Dispatcher>(DispatcherOptions{}, &clock_);
  service_ = std::make_unique<SessionService>(dispatcher_.get(), SessionServiceOptions{});
  grpc::ServerBuilder builder;
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  stub_ = dispatch::v1::AgentSession::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  stream_ = stub_->Session(&context_);
  AgentMessage hello;
  hello.mutable_hello()->set_agent_id("old-agent");  // no accepts_batches
  ASSERT_TRUE(stream_->Write(hello));
  ControllerMessage welcome;
  ASSERT_TRUE(stream_->Read(&welcome));
  AgentMessage snapshot;
  snapshot.mutable_inventory_snapshot()->set_seq(1);
  for (int i = 0; i < 50; ++i) {
    *snapshot.mutable_inventory_snapshot()->add_containers() = Subscriber(i, "e1");
  }
  ASSERT_TRUE(stream_->Write(snapshot));
  ASSERT_TRUE(stream_->Write(Event("events/a", "e1")));
  std::vector<ControllerMessage> got = ReadMessages(50);
  EXPECT_EQ(got.size(), 50u);
  EXPECT_EQ(batches_, 0u);
}

// A replica that does not lead answers the Hello with the leader's address
// (status and trailing metadata); once it leads, the session goes to the
// current term's Dispatcher.
TEST(SessionLeadershipTest, AStandbySendsTheAgentToTheLeaderAndALeaderTakesIt) {
  FakeClock clock;
  FakeLeadership leadership(&clock);
  SessionService service(nullptr, SessionServiceOptions{.leadership = &leadership});
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = dispatch::v1::AgentSession::NewStub(server->InProcessChannel(grpc::ChannelArguments()));
  AgentMessage hello;
  hello.mutable_hello()->set_agent_id("agent-1");
  {
    grpc::ClientContext context;
    auto stream = stub->Session(&context);
    ASSERT_TRUE(stream->Write(hello));
    ControllerMessage m;
    EXPECT_FALSE(stream->Read(&m));
    grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(status.error_message(), "not the leader; the leader is ctl-b at 127.0.0.1:7701");
    EXPECT_EQ(RedirectedTo(context, status), "127.0.0.1:7701");
  }
  leadership.leading = true;
  {
    grpc::ClientContext context;
    auto stream = stub->Session(&context);
    ASSERT_TRUE(stream->Write(hello));
    ControllerMessage m;
    ASSERT_TRUE(stream->Read(&m));
    EXPECT_TRUE(m.has_welcome());
    EXPECT_EQ(leadership.dispatcher()->stats().agents_connected, 1u);
    context.TryCancel();
    stream->Finish();
  }
  server->Shutdown();
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
