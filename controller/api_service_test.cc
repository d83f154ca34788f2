#include "controller/api_service.h"

#include "controller/api_backend.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "controller/testing/fake_leadership.h"
#include "common/leader_redirect.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::CommandResult;
using dispatch::v1::ControllerMessage;
using dispatch::v1::SubscriptionInfo;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// Records what the Dispatcher sends to the agent.
class RecordingLink : public AgentLink {
 public:
  void Send(ControllerMessage message) override {
    std::lock_guard<std::mutex> lock(mu_);
    sent_.push_back(std::move(message));
  }
  void Close(const std::string&) override {}

  std::vector<dispatch::v1::Command> Commands() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<dispatch::v1::Command> out;
    for (const auto& m : sent_) {
      if (m.has_command()) out.push_back(m.command());
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<ControllerMessage> sent_;
};

dispatch::v1::Container MakeContainer(const std::string& id, const std::string& name,
                                      const std::map<std::string, std::string>& labels,
                                      dispatch::v1::Container::State state) {
  dispatch::v1::Container c;
  c.set_id(id);
  c.set_name(name);
  c.set_state(state);
  for (const auto& [k, v] : labels) (*c.mutable_labels())[k] = v;
  return c;
}

// A real Dispatcher fed through its public methods, and the service on a
// real gRPC server reached over its in-process channel.
class ApiServiceTest : public ::testing::Test {
 protected:
  void StartServer(ApiServiceOptions options = {}) {
    service_ = std::make_unique<ApiService>(&dispatcher_, std::move(options));
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = dispatch::v1::Dispatch::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // One agent "host-a" with a fresh inventory of `containers`.
  void ConnectAgent(const std::vector<dispatch::v1::Container>& containers, uint64_t seq = 1) {
    dispatcher_.AgentConnected("host-a", "host-a.example", &link_);
    AgentMessage m;
    m.mutable_inventory_snapshot()->set_seq(seq);
    for (const auto& c : containers) *m.mutable_inventory_snapshot()->add_containers() = c;
    dispatcher_.OnAgentMessage("host-a", m);
  }

  void Event(const std::string& key, const std::string& event_id) {
    AgentMessage m;
    m.mutable_event()->set_key(key);
    m.mutable_event()->set_event_id(event_id);
    m.mutable_event()->set_observed_unix_nanos(absl::ToUnixNanos(clock_.Now()));
    dispatcher_.OnAgentMessage("host-a", m);
  }

  void Delivered(uint64_t command_id) {
    AgentMessage m;
    m.mutable_command_result()->set_command_id(command_id);
    m.mutable_command_result()->set_outcome(CommandResult::DELIVERED);
    m.mutable_command_result()->set_exec_id("exec-1");
    dispatcher_.OnAgentMessage("host-a", m);
  }

  grpc::Status ListSubscriptions(dispatch::v1::ListSubscriptionsResponse* response,
                                 const std::string& authorization = "") {
    grpc::ClientContext context;
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    return stub_->ListSubscriptions(&context, dispatch::v1::ListSubscriptionsRequest(), response);
  }

  FakeClock clock_;
  RecordingLink link_;
  Dispatcher dispatcher_{DispatcherOptions(), &clock_};
  std::unique_ptr<ApiService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<dispatch::v1::Dispatch::Stub> stub_;
};

TEST_F(ApiServiceTest, ListsValidAndInvalidSubscriptionsWithTheReason) {
  StartServer();
  ConnectAgent({
      MakeContainer("c1", "handler",
                    {{"subscription.demo.some-event.container.command", "touch 'two words'"},
                     {"subscription.demo.some-event.dispatching.debounce", "1500"},
                     {"subscription.demo.some-event.dispatching.scope", "host"},
                     {"subscription.broken.container.command", "echo 'unterminated"},
                     {"unrelated", "label"}},
                    dispatch::v1::Container::RUNNING),
      MakeContainer("c2", "sleeper", {{"subscription.wake.container.start", "true"}},
                    dispatch::v1::Container::EXITED),
  });

  dispatch::v1::ListSubscriptionsResponse response;
  grpc::Status status = ListSubscriptions(&response);
  ASSERT_TRUE(status.ok()) << status.error_message();

  ASSERT_EQ(response.subscriptions_size(), 2);
  const SubscriptionInfo& demo = response.subscriptions(0);
  EXPECT_EQ(demo.event_id(), "demo.some-event");
  EXPECT_EQ(demo.agent_id(), "host-a");
  EXPECT_EQ(demo.container_id(), "c1");
  EXPECT_EQ(demo.container_name(), "handler");
  EXPECT_EQ(demo.container_state(), dispatch::v1::CONTAINER_STATE_RUNNING);
  EXPECT_THAT(demo.argv(), ElementsAre("touch", "two words"));
  EXPECT_FALSE(demo.start_container());
  EXPECT_EQ(demo.debounce_ms(), 1500);
  EXPECT_EQ(demo.scope(), SubscriptionInfo::SCOPE_HOST);
  EXPECT_EQ(demo.labels().size(), 3u);
  EXPECT_EQ(demo.labels().at("subscription.demo.some-event.container.command"),
            "touch 'two words'");

  const SubscriptionInfo& wake = response.subscriptions(1);
  EXPECT_EQ(wake.event_id(), "wake");
  EXPECT_EQ(wake.container_name(), "sleeper");
  EXPECT_EQ(wake.container_state(), dispatch::v1::CONTAINER_STATE_EXITED);
  EXPECT_TRUE(wake.argv().empty());
  EXPECT_TRUE(wake.start_container());
  EXPECT_EQ(wake.debounce_ms(), 0);
  EXPECT_EQ(wake.scope(), SubscriptionInfo::SCOPE_CLUSTER);

  ASSERT_EQ(response.invalid_size(), 1);
  const dispatch::v1::InvalidSubscriptionInfo& bad = response.invalid(0);
  EXPECT_EQ(bad.agent_id(), "host-a");
  EXPECT_EQ(bad.container_id(), "c1");
  EXPECT_EQ(bad.container_name(), "handler");
  EXPECT_EQ(bad.event_id(), "broken");
  EXPECT_EQ(bad.label(), "subscription.broken.container.command");
  EXPECT_THAT(bad.reason(), HasSubstr("quote"));
}

TEST_F(ApiServiceTest, ListsAgentsWithTheirInventoryState) {
  StartServer();
  const absl::Time connected_at = clock_.Now();
  ConnectAgent({}, /*seq=*/7);
  clock_.Advance(absl::Seconds(2));

  grpc::ClientContext context;
  dispatch::v1::ListAgentsResponse response;
  grpc::Status status =
      stub_->ListAgents(&context, dispatch::v1::ListAgentsRequest(), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.agents_size(), 1);
  EXPECT_EQ(response.agents(0).agent_id(), "host-a");
  EXPECT_EQ(response.agents(0).host(), "host-a.example");
  EXPECT_TRUE(response.agents(0).inventory_fresh());
  EXPECT_EQ(response.agents(0).inventory_seq(), 7u);
  EXPECT_EQ(response.agents(0).last_heard_unix_nanos(), absl::ToUnixNanos(connected_at));

  // The events stream is lost: the inventory is stale until the next snapshot.
  AgentMessage stale;
  stale.mutable_inventory_stale()->set_reason("events stream lost");
  dispatcher_.OnAgentMessage("host-a", stale);
  grpc::ClientContext again;
  response.Clear();
  ASSERT_TRUE(stub_->ListAgents(&again, dispatch::v1::ListAgentsRequest(), &response).ok());
  ASSERT_EQ(response.agents_size(), 1);
  EXPECT_FALSE(response.agents(0).inventory_fresh());
}

TEST_F(ApiServiceTest, StatusCountsADeliveredEvent) {
  StartServer();
  ConnectAgent({MakeContainer("c1", "handler",
                              {{"subscription.ping.container.command", "touch /x"},
                               {"subscription.bad.container.start", "maybe"}},
                              dispatch::v1::Container::RUNNING)});
  Event("ping", "ping");
  Event("nobody", "nobody");

  auto get_status = [&] {
    grpc::ClientContext context;
    dispatch::v1::GetStatusResponse response;
    grpc::Status status = stub_->GetStatus(&context, dispatch::v1::GetStatusRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  };

  dispatch::v1::GetStatusResponse before = get_status();
  EXPECT_EQ(before.events_observed(), 2u);
  EXPECT_EQ(before.events_in_flight(), 1u);  // "nobody" settled at once
  EXPECT_EQ(before.events_settled_no_subscribers(), 1u);
  EXPECT_EQ(before.deliveries().delivered(), 0u);
  EXPECT_EQ(before.commands_sent(), 1u);
  EXPECT_EQ(before.agents_connected(), 1u);
  EXPECT_EQ(before.subscriptions_valid(), 1u);
  EXPECT_EQ(before.subscriptions_invalid(), 1u);

  std::vector<dispatch::v1::Command> commands = link_.Commands();
  ASSERT_EQ(commands.size(), 1u);
  Delivered(commands[0].command_id());

  dispatch::v1::GetStatusResponse after = get_status();
  EXPECT_EQ(after.events_settled_delivered(), 1u);
  EXPECT_EQ(after.deliveries().delivered(), 1u);
  EXPECT_EQ(after.deliveries().failed(), 0u);
  EXPECT_EQ(after.events_in_flight(), 0u);
}

TEST_F(ApiServiceTest, WithoutATokenConfiguredNoMetadataIsNeeded) {
  StartServer();
  dispatch::v1::ListSubscriptionsResponse response;
  EXPECT_TRUE(ListSubscriptions(&response).ok());
}

TEST_F(ApiServiceTest, WithATokenEveryCallMustCarryIt) {
  StartServer(ApiServiceOptions{.access = {.shared = "s3cret"}});
  ConnectAgent({MakeContainer("c1", "handler", {{"subscription.a.container.command", "true"}},
                              dispatch::v1::Container::RUNNING)});

  dispatch::v1::ListSubscriptionsResponse response;
  grpc::Status missing = ListSubscriptions(&response);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(missing.error_message(), HasSubstr("Bearer"));
  EXPECT_EQ(response.subscriptions_size(), 0);

  EXPECT_EQ(ListSubscriptions(&response, "Bearer wrong").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListSubscriptions(&response, "Bearer s3cre").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListSubscriptions(&response, "s3cret").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(response.subscriptions_size(), 0);

  grpc::Status ok = ListSubscriptions(&response, "Bearer s3cret");
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(response.subscriptions_size(), 1);

  grpc::ClientContext agents_context;
  dispatch::v1::ListAgentsResponse agents;
  EXPECT_EQ(stub_->ListAgents(&agents_context, dispatch::v1::ListAgentsRequest(), &agents)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext status_context;
  dispatch::v1::GetStatusResponse status;
  EXPECT_EQ(stub_->GetStatus(&status_context, dispatch::v1::GetStatusRequest(), &status)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST(ToGrpcStatusTest, KeepsCodeAndMessage) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  grpc::Status s = ToGrpcStatus(absl::UnauthenticatedError("no token"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(s.error_message(), "no token");
  EXPECT_EQ(ToGrpcStatus(absl::NotFoundError("x")).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ToGrpcStatus(absl::UnavailableError("x")).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

// A backend with canned answers and a real WatchHub, behind the service on
// a real in-process gRPC server: the service's own behaviour (authorization
// per call, async answers, streaming and the end of a stream).
class FakeBackend final : public ApiBackend {
 public:
  void Emit(const dispatch::v1::EmitRequest& request,
            Done<dispatch::v1::EmitResponse> done) override {
    last_emit = request;
    dispatch::v1::EmitResponse response;
    response.set_event_id(request.event_id());
    response.set_agent_id("host-a");
    done(response);
  }
  std::unique_ptr<WatchHub::Watcher> Watch(WatchFilter filter, size_t buffer,
                                           std::function<void()> wake) override {
    return hub.Subscribe(std::move(filter), buffer, std::move(wake));
  }
  dispatch::v1::ListEventsResponse ListEvents() const override { return {}; }
  absl::StatusOr<dispatch::v1::EventInfo> GetEvent(
      const dispatch::v1::GetEventRequest&) const override {
    return absl::NotFoundError("no such event");
  }
  absl::StatusOr<dispatch::v1::ExplainResponse> Explain(
      const dispatch::v1::ExplainRequest& request) const override {
    dispatch::v1::ExplainResponse response;
    response.set_event_id(request.event_id());
    return response;
  }
  void ListDeadLetters(const dispatch::v1::ListDeadLettersRequest&,
                       Done<dispatch::v1::ListDeadLettersResponse> done) override {
    done(dispatch::v1::ListDeadLettersResponse());
  }
  void ReplayDeadLetter(const dispatch::v1::ReplayDeadLetterRequest&,
                        Done<dispatch::v1::ReplayDeadLetterResponse> done) override {
    done(absl::AlreadyExistsError("pending"));
  }
  void PurgeDeadLetter(const dispatch::v1::PurgeDeadLetterRequest&,
                       Done<dispatch::v1::PurgeDeadLetterResponse> done) override {
    done(dispatch::v1::PurgeDeadLetterResponse());
  }

  WatchHub hub;
  dispatch::v1::EmitRequest last_emit;
};

class ApiEventCallsTest : public ApiServiceTest {
 protected:
  void Start(AccessTokens access = {}) {
    StartServer(ApiServiceOptions{.access = std::move(access), .backend = &backend_});
  }
  grpc::Status Emit(const std::string& token, dispatch::v1::EmitResponse* response) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    dispatch::v1::EmitRequest request;
    request.set_event_id("demo.ping");
    return stub_->Emit(&context, request, response);
  }
  FakeBackend backend_;
};

TEST_F(ApiEventCallsTest, EmitNeedsAWriteTokenAndAnswersWithTheBackend) {
  Start({.api = "writer", .api_read = "reader"});
  dispatch::v1::EmitResponse response;
  EXPECT_EQ(Emit("reader", &response).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Emit("", &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status ok = Emit("writer", &response);
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(response.event_id(), "demo.ping");
  EXPECT_EQ(response.agent_id(), "host-a");
  EXPECT_EQ(backend_.last_emit.event_id(), "demo.ping");
  // Replay is a write too; its backend error reaches the client as is.
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer reader");
  dispatch::v1::ReplayDeadLetterResponse replayed;
  EXPECT_EQ(stub_->ReplayDeadLetter(&context, {}, &replayed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  grpc::ClientContext writer;
  writer.AddMetadata("authorization", "Bearer writer");
  EXPECT_EQ(stub_->ReplayDeadLetter(&writer, {}, &replayed).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(ApiEventCallsTest, WatchStreamsMatchingUpdatesInOrder) {
  Start();
  grpc::ClientContext context;
  dispatch::v1::WatchRequest request;
  request.set_event_id_prefix("demo.");
  auto reader = stub_->Watch(&context, request);
  reader->WaitForInitialMetadata();  // the watcher is registered
  for (const char* id : {"demo.a", "other", "demo.b"}) {
    dispatch::v1::WatchUpdate u;
    u.set_kind(dispatch::v1::WatchUpdate::OBSERVED);
    u.set_event_id(id);
    backend_.hub.Publish(u);
  }
  dispatch::v1::WatchUpdate got;
  ASSERT_TRUE(reader->Read(&got));
  EXPECT_EQ(got.event_id(), "demo.a");
  EXPECT_EQ(got.seq(), 1u);
  ASSERT_TRUE(reader->Read(&got));
  EXPECT_EQ(got.event_id(), "demo.b");
  EXPECT_EQ(got.seq(), 3u) << "sequence numbers show what the filter left out";
  context.TryCancel();
  while (reader->Read(&got)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// A watcher that never reads is cut off with RESOURCE_EXHAUSTED and the
// count it missed, while publishing (dispatching) goes on undisturbed.
TEST_F(ApiEventCallsTest, AWatcherThatNeverReadsIsCutOffWithTheCountMissed) {
  Start();
  grpc::ClientContext context;
  dispatch::v1::WatchRequest request;
  request.set_buffer(8);
  auto reader = stub_->Watch(&context, request);
  reader->WaitForInitialMetadata();
  constexpr int kPublished = 10000;
  for (int i = 0; i < kPublished; ++i) {
    dispatch::v1::WatchUpdate u;
    u.set_kind(dispatch::v1::WatchUpdate::OBSERVED);
    u.set_event_id("e");
    backend_.hub.Publish(u);
  }
  EXPECT_EQ(backend_.hub.published(), static_cast<uint64_t>(kPublished));
  // Now read: what was buffered or in flight, then the end.
  dispatch::v1::WatchUpdate got;
  int read = 0;
  while (reader->Read(&got)) ++read;
  grpc::Status end = reader->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << end.error_message();
  EXPECT_THAT(end.error_message(), HasSubstr("missed"));
  EXPECT_LT(read, kPublished);
  EXPECT_GT(read, 0);
}

TEST_F(ApiEventCallsTest, WithoutABackendEventCallsAreUnimplemented) {
  StartServer();
  dispatch::v1::EmitResponse response;
  EXPECT_EQ(Emit("", &response).error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

// Under leader election a standby answers GetStatus (saying who leads) and
// turns every other call away with the leader's address.
TEST(ApiLeadershipTest, AStandbyAnswersStatusAndSendsEverythingElseToTheLeader) {
  FakeClock clock;
  FakeLeadership leadership(&clock);
  ApiService service(nullptr, ApiServiceOptions{.leadership = &leadership});
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = dispatch::v1::Dispatch::NewStub(server->InProcessChannel(grpc::ChannelArguments()));
  {
    grpc::ClientContext context;
    dispatch::v1::GetStatusResponse status;
    ASSERT_TRUE(stub->GetStatus(&context, {}, &status).ok());
    EXPECT_TRUE(status.leader_election());
    EXPECT_EQ(status.replica_id(), "ctl-a");
    EXPECT_FALSE(status.leading());
    EXPECT_EQ(status.leader_id(), "ctl-b");
    EXPECT_EQ(status.leader_address(), "127.0.0.1:7701");
  }
  {
    grpc::ClientContext context;
    dispatch::v1::ListEventsResponse events;
    grpc::Status status = stub->ListEvents(&context, {}, &events);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(RedirectedTo(context, status), "127.0.0.1:7701");
  }
  {
    grpc::ClientContext context;
    auto reader = stub->Watch(&context, {});
    dispatch::v1::WatchUpdate update;
    EXPECT_FALSE(reader->Read(&update));
    grpc::Status status = reader->Finish();
    EXPECT_EQ(RedirectedTo(context, status), "127.0.0.1:7701");
  }
  leadership.leading = true;
  {
    grpc::ClientContext context;
    dispatch::v1::ListEventsResponse events;
    EXPECT_TRUE(stub->ListEvents(&context, {}, &events).ok());
  }
  {
    grpc::ClientContext context;
    dispatch::v1::GetStatusResponse status;
    ASSERT_TRUE(stub->GetStatus(&context, {}, &status).ok());
    EXPECT_TRUE(status.leading());
  }
  server->Shutdown();
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
