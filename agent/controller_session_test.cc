// ControllerSession against fake controllers over gRPC's in-process
// channels (and loopback TCP for an address nobody listens on). Backoff,
// heartbeats and the connect bound run on a fake clock: the tests move it
// and wait for what must follow, and never assert on real time.
#include "agent/controller_session.h"

#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/agent_metrics.h"
#include "common/metrics.h"
#include "common/testing/exposition.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "common/leader_redirect.h"
#include "gtest/gtest.h"
#include "tests/testing/dispatchd_process.h"  // FreePort: a port nobody listens on
#include "proto/dispatch/v1/session.grpc.pb.h"

namespace dispatchd {
namespace agent {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::ControllerMessage;
using ::dispatchd::testing::Sample;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

// How long a test waits, in real time, for something that must happen.
constexpr absl::Duration kPatience = absl::Seconds(30);

// A controller that records what each session received and sends what the
// test tells it to. Every wait is bounded by kPatience.
class FakeController final : public dispatch::v1::AgentSession::Service {
 public:
  struct Received {
    dispatch::v1::Hello hello;
    std::vector<AgentMessage> messages;  // batches unpacked
    int stream_messages = 0;
    int max_batch = 0;
    size_t max_batch_bytes = 0;  // of the batches with more than one message
    bool nested_batch = false;
    bool ended = false;
  };

  grpc::Status Session(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<ControllerMessage, AgentMessage>* stream) override {
    AgentMessage hello;
    if (!stream->Read(&hello) || !hello.has_hello()) return grpc::Status::CANCELLED;
    size_t index;
    ControllerMessage welcome;
    {
      absl::MutexLock lock(&mu_);
      index = sessions_.size();
      sessions_.push_back(Received{hello.hello()});
      if (standby_) {
        sessions_[index].ended = true;
        AddLeaderMetadata(context, leader_address_);
        return NotLeaderStatus(leader_address_.empty() ? "" : "ctl-leader", leader_address_);
      }
      if (refuse_ > 0) {
        --refuse_;
        sessions_[index].ended = true;
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "refused by the test");
      }
      WaitWhile(&hold_welcome_, context);
      welcome.mutable_welcome()->set_session_id(absl::StrCat("s", index));
      welcome.mutable_welcome()->set_heartbeat_period_ms(heartbeat_period_ms_);
      welcome.mutable_welcome()->set_accepts_batches(accepts_batches_);
    }
    if (!stream->Write(welcome)) return grpc::Status::CANCELLED;

    bool reader_done = false;
    std::thread reader([&] {
      AgentMessage message;
      while (true) {
        {
          absl::MutexLock lock(&mu_);
          WaitWhile(&hold_reads_, context);
        }
        if (!stream->Read(&message)) break;
        absl::MutexLock lock(&mu_);
        Received& r = sessions_[index];
        ++r.stream_messages;
        if (message.has_batch()) {
          r.max_batch = std::max(r.max_batch, message.batch().messages_size());
          size_t bytes = 0;
          for (const AgentMessage& m : message.batch().messages()) {
            r.nested_batch |= m.has_batch();
            r.messages.push_back(m);
            bytes += m.ByteSizeLong();
          }
          if (message.batch().messages_size() > 1) {
            r.max_batch_bytes = std::max(r.max_batch_bytes, bytes);
          }
        } else {
          r.messages.push_back(message);
        }
      }
      absl::MutexLock lock(&mu_);
      reader_done = true;
    });
    // Send what the test queues until the test ends the session or the
    // agent goes away.
    absl::MutexLock lock(&mu_);
    while (true) {
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !outbox_.empty() || end_session_ || reader_done;
      };
      mu_.Await(absl::Condition(&ready));
      if (!outbox_.empty()) {
        ControllerMessage message = std::move(outbox_.front());
        outbox_.erase(outbox_.begin());
        mu_.Unlock();
        stream->Write(message);
        mu_.Lock();
        continue;
      }
      break;
    }
    end_session_ = false;
    context->TryCancel();  // ends the reader's Read, if the agent is still there
    mu_.Unlock();
    reader.join();
    mu_.Lock();
    sessions_[index].ended = true;
    return grpc::Status::OK;
  }

  // Knobs: the next `n` sessions are refused; the Welcome waits; nothing is
  // read; the Welcome's fields.
  void Refuse(int n) {
    absl::MutexLock lock(&mu_);
    refuse_ = n;
  }
  // From the next session on, answers the Hello as a replica that does not
  // lead and names the leader at `leader_address` ("": none known).
  void Follow(std::string leader_address) {
    absl::MutexLock lock(&mu_);
    standby_ = true;
    leader_address_ = std::move(leader_address);
  }
  // Answers the Hello again, from the next session on.
  void Lead() {
    absl::MutexLock lock(&mu_);
    standby_ = false;
  }
  void HoldWelcome(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_welcome_ = hold;
  }
  void HoldReads(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_reads_ = hold;
  }
  void SetWelcome(int64_t heartbeat_period_ms, bool accepts_batches) {
    absl::MutexLock lock(&mu_);
    heartbeat_period_ms_ = heartbeat_period_ms;
    accepts_batches_ = accepts_batches;
  }

  // Sends `message` on the current session.
  void Send(ControllerMessage message) {
    absl::MutexLock lock(&mu_);
    outbox_.push_back(std::move(message));
  }
  // Ends the current session (the agent sees it cancelled).
  void EndSession() {
    absl::MutexLock lock(&mu_);
    end_session_ = true;
  }

  // Waits until `done` holds for what was received; returns it.
  std::vector<Received> AwaitReceived(std::function<bool(const std::vector<Received>&)> done) {
    absl::MutexLock lock(&mu_);
    auto met = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done(sessions_); };
    mu_.AwaitWithTimeout(absl::Condition(&met), kPatience);
    return sessions_;
  }
  // Waits until session `index` (0-based) received `n` messages.
  Received AwaitMessages(size_t index, size_t n) {
    std::vector<Received> all = AwaitReceived([&](const std::vector<Received>& s) {
      return s.size() > index && s[index].messages.size() >= n;
    });
    return all.size() > index ? all[index] : Received{};
  }
  std::vector<Received> AwaitSessions(size_t n) {
    return AwaitReceived([&](const std::vector<Received>& s) { return s.size() >= n; });
  }
  std::vector<Received> received() const {
    absl::MutexLock lock(&mu_);
    return sessions_;
  }

 private:
  // Waits while `*flag`, or until the session is cancelled.
  void WaitWhile(const bool* flag, grpc::ServerContext* context)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (*flag && !context->IsCancelled()) {
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](const bool* f) { return !*f; }, flag),
                           absl::Milliseconds(10));
    }
  }

  mutable absl::Mutex mu_;
  std::vector<Received> sessions_ ABSL_GUARDED_BY(mu_);
  std::vector<ControllerMessage> outbox_ ABSL_GUARDED_BY(mu_);
  int refuse_ ABSL_GUARDED_BY(mu_) = 0;
  bool standby_ ABSL_GUARDED_BY(mu_) = false;
  std::string leader_address_ ABSL_GUARDED_BY(mu_);
  bool hold_welcome_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_reads_ ABSL_GUARDED_BY(mu_) = false;
  bool end_session_ ABSL_GUARDED_BY(mu_) = false;
  int64_t heartbeat_period_ms_ ABSL_GUARDED_BY(mu_) = 60000;
  bool accepts_batches_ ABSL_GUARDED_BY(mu_) = true;
};

AgentMessage Event(const std::string& key) {
  AgentMessage m;
  m.mutable_event()->set_key(key);
  m.mutable_event()->set_generation(1);
  return m;
}

AgentMessage Inventory(uint64_t seq) {
  AgentMessage m;
  m.mutable_inventory_snapshot()->set_seq(seq);
  return m;
}

// What a message is, in a word, for comparing sequences.
std::string Describe(const AgentMessage& m) {
  switch (m.msg_case()) {
    case AgentMessage::kInventorySnapshot:
      return absl::StrCat("inventory ", m.inventory_snapshot().seq());
    case AgentMessage::kInventoryDelta:
      return absl::StrCat("delta ", m.inventory_delta().seq());
    case AgentMessage::kEvent:
      return absl::StrCat("event ", m.event().key());
    case AgentMessage::kHeartbeat:
      return "heartbeat";
    default:
      return "other";
  }
}

std::vector<std::string> Describe(const std::vector<AgentMessage>& messages) {
  std::vector<std::string> out;
  for (const AgentMessage& m : messages) out.push_back(Describe(m));
  return out;
}

class ControllerSessionTest : public ::testing::Test {
 protected:
  ControllerSessionTest() {
    grpc::ServerBuilder builder;
    builder.RegisterService(&controller_);
    server_ = builder.BuildAndStart();
  }

  ~ControllerSessionTest() override {
    if (session_ != nullptr) session_->Stop();
    controller_.HoldWelcome(false);
    controller_.HoldReads(false);
    server_->Shutdown();
    for (auto& [address, replica] : replicas_) replica->server->Shutdown();
  }

  // Makes (does not start) the session. The inventory callback answers with
  // the next snapshot seq each time; resend answers with resend_.
  ControllerSession& MakeSession(ControllerSessionOptions options = {}) {
    if (options.agent_id.empty()) options.agent_id = "agent-1";
    session_ = std::make_unique<ControllerSession>(
        options, &clock_, server_->InProcessChannel(grpc::ChannelArguments()), MakeCallbacks());
    return *session_;
  }

  // A controller replica reachable at `address`, through its in-process
  // channel. Before MakeSessionWith.
  FakeController& AddReplica(const std::string& address) {
    auto replica = std::make_unique<Replica>();
    grpc::ServerBuilder builder;
    builder.RegisterService(&replica->controller);
    replica->server = builder.BuildAndStart();
    FakeController& controller = replica->controller;
    replicas_[address] = std::move(replica);
    return controller;
  }

  // Makes (does not start) a session with the controllers at `controllers`:
  // the replicas added, any other address over loopback TCP. Counts the
  // channels made per address.
  ControllerSession& MakeSessionWith(std::vector<std::string> controllers,
                                     ControllerSessionOptions options = {}) {
    if (options.agent_id.empty()) options.agent_id = "agent-1";
    options.controllers = std::move(controllers);
    options.channels = [this](const std::string& address)
        -> std::shared_ptr<grpc::ChannelInterface> {
      {
        absl::MutexLock lock(&mu_);
        ++channels_made_[address];
      }
      auto it = replicas_.find(address);
      if (it != replicas_.end()) {
        return it->second->server->InProcessChannel(grpc::ChannelArguments());
      }
      // The channel tries again within 100 ms of a refused connection.
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
      std::shared_ptr<grpc::Channel> channel =
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
      absl::MutexLock lock(&mu_);
      tcp_channels_[address] = channel;
      return channel;
    };
    session_ = std::make_unique<ControllerSession>(options, &clock_, MakeCallbacks());
    return *session_;
  }

  // The channel made for `address` over TCP, if any.
  std::shared_ptr<grpc::Channel> TcpChannel(const std::string& address) {
    absl::MutexLock lock(&mu_);
    auto it = tcp_channels_.find(address);
    return it == tcp_channels_.end() ? nullptr : it->second;
  }

  std::map<std::string, int> channels_made() {
    absl::MutexLock lock(&mu_);
    return channels_made_;
  }

  ControllerSession::Callbacks MakeCallbacks() {
    ControllerSession::Callbacks callbacks;
    callbacks.inventory = [this] { return Inventory(++inventory_seq_); };
    callbacks.resend = [this] {
      absl::MutexLock lock(&mu_);
      return resend_;
    };
    callbacks.on_command = [this](dispatch::v1::Command command) {
      absl::MutexLock lock(&mu_);
      handed_over_.push_back(absl::StrCat("command ", command.command_id()));
    };
    callbacks.on_settled = [this](const dispatch::v1::Settled& settled) {
      absl::MutexLock lock(&mu_);
      handed_over_.push_back(absl::StrCat("settled ", settled.key()));
    };
    return callbacks;
  }

  void SetResend(std::vector<AgentMessage> messages) {
    absl::MutexLock lock(&mu_);
    resend_ = std::move(messages);
  }

  // Waits until the session is up (or down).
  bool AwaitUp(bool up) {
    const absl::Time give_up = absl::Now() + kPatience;
    while (session_->up() != up && absl::Now() < give_up) std::this_thread::yield();
    return session_->up() == up;
  }

  // Waits until `done` holds (bounded in real time).
  bool Eventually(const std::function<bool()>& done) {
    const absl::Time give_up = absl::Now() + kPatience;
    while (!done() && absl::Now() < give_up) std::this_thread::yield();
    return done();
  }

  // Waits until `n` threads wait on the fake clock: the heartbeat thread
  // always does, the session thread while it backs off.
  bool AwaitClockWaiters(int n) {
    const absl::Time give_up = absl::Now() + kPatience;
    while (clock_.waiters() < n && absl::Now() < give_up) std::this_thread::yield();
    return clock_.waiters() >= n;
  }

  // Moves the fake clock in steps until `done` holds (bounded in real
  // time): for what happens after some heartbeat periods.
  bool AdvanceUntil(absl::Duration step, std::function<bool()> done) {
    const absl::Time give_up = absl::Now() + kPatience;
    while (!done() && absl::Now() < give_up) {
      clock_.Advance(step);
      absl::SleepFor(absl::Milliseconds(1));
    }
    return done();
  }

  std::vector<std::string> AwaitHandedOver(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return handed_over_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), kPatience);
    return handed_over_;
  }

  struct Replica {
    FakeController controller;
    std::unique_ptr<grpc::Server> server;
  };

  int SessionAttempts(const std::string& result) {
    return static_cast<int>(Sample(
        SerializeText(registry_),
        absl::StrCat("dispatchd_agent_session_attempts_total{agent=\"agent-1\",result=\"", result,
                     "\"}")));
  }

  FakeController controller_;
  std::unique_ptr<grpc::Server> server_;
  std::map<std::string, std::unique_ptr<Replica>> replicas_;
  FakeClock clock_;
  Registry registry_;
  AgentMetrics metrics_{registry_, "agent-1"};
  std::atomic<uint64_t> inventory_seq_{0};
  absl::Mutex mu_;
  std::vector<AgentMessage> resend_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> handed_over_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> channels_made_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<grpc::Channel>> tcp_channels_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<ControllerSession> session_;
};

TEST_F(ControllerSessionTest, HelloThenInventoryThenUnsettledEventsThenWrites) {
  SetResend({Event("a"), Event("b")});
  ControllerSession& session =
      MakeSession({.agent_id = "agent-7", .host = "host-7", .token = "secret"});
  session.Start();
  FakeController::Received first = controller_.AwaitMessages(0, 3);
  EXPECT_EQ(first.hello.agent_id(), "agent-7");
  EXPECT_EQ(first.hello.host(), "host-7");
  EXPECT_EQ(first.hello.token(), "secret");
  EXPECT_EQ(first.hello.version(), "dispatchd");
  EXPECT_TRUE(first.hello.accepts_batches());
  EXPECT_THAT(Describe(first.messages), ElementsAre("inventory 1", "event a", "event b"));
  EXPECT_TRUE(session.up());
  EXPECT_TRUE(session.ready());

  EXPECT_TRUE(session.Write(Event("c")));
  EXPECT_THAT(Describe(controller_.AwaitMessages(0, 4).messages),
              ElementsAre("inventory 1", "event a", "event b", "event c"));
}

TEST_F(ControllerSessionTest, WriteIsDroppedWhileNoSessionIsUp) {
  ControllerSession& session = MakeSession();
  EXPECT_FALSE(session.Write(Event("before-start")));
  controller_.HoldWelcome(true);
  session.Start();
  controller_.AwaitSessions(1);  // Hello arrived, Welcome held
  EXPECT_FALSE(session.up());
  EXPECT_FALSE(session.ready());
  EXPECT_FALSE(session.Write(Event("before-welcome")));
  controller_.HoldWelcome(false);
  ASSERT_TRUE(AwaitUp(true));
  EXPECT_TRUE(session.Write(Event("after-welcome")));
  EXPECT_THAT(Describe(controller_.AwaitMessages(0, 2).messages),
              ElementsAre("inventory 1", "event after-welcome"));
}

TEST_F(ControllerSessionTest, TheInventoryIsFirstWhateverIsWrittenMeanwhile) {
  ControllerSession& session = MakeSession();
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      AgentMessage delta;
      delta.mutable_inventory_delta()->set_seq(1000 + i);
      session.Write(std::move(delta));
      std::this_thread::yield();
    }
  });
  session.Start();
  FakeController::Received first = controller_.AwaitMessages(0, 10);
  stop = true;
  writer.join();
  ASSERT_GE(first.messages.size(), 10u);
  EXPECT_EQ(Describe(first.messages[0]), "inventory 1");
  // And the deltas in the order they were written.
  uint64_t last = 0;
  for (size_t i = 1; i < first.messages.size(); ++i) {
    ASSERT_TRUE(first.messages[i].has_inventory_delta()) << Describe(first.messages[i]);
    EXPECT_GT(first.messages[i].inventory_delta().seq(), last);
    last = first.messages[i].inventory_delta().seq();
  }
}

// Nothing is read until everything is written: a write on the in-process
// channel waits for the controller's read, so the first message waits in
// flight and the rest queue up behind it.
TEST_F(ControllerSessionTest, QueuedMessagesGoInOrderInBatchesWithinBounds) {
  constexpr int kEvents = 200;
  controller_.HoldReads(true);
  ControllerSession& session = MakeSession({.max_batch_messages = 8});
  session.Start();
  ASSERT_TRUE(AwaitUp(true));
  std::vector<std::string> expected = {"inventory 1"};
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_TRUE(session.Write(Event(absl::StrCat("e", i))));
    expected.push_back(absl::StrCat("event e", i));
  }
  controller_.HoldReads(false);
  FakeController::Received first = controller_.AwaitMessages(0, kEvents + 1);
  EXPECT_THAT(Describe(first.messages), ElementsAreArray(expected));
  EXPECT_FALSE(first.nested_batch);
  EXPECT_EQ(first.max_batch, 8);
  EXPECT_LE(first.stream_messages, 1 + kEvents / 8 + 1);
}

TEST_F(ControllerSessionTest, BatchesStopAtTheByteBound) {
  controller_.HoldReads(true);
  ControllerSession& session = MakeSession({.max_batch_bytes = 2500});
  session.Start();
  ASSERT_TRUE(AwaitUp(true));
  for (int i = 0; i < 20; ++i) {
    AgentMessage m = Event(absl::StrCat("e", i));
    m.mutable_event()->set_payload(std::string(1000, 'x'));
    ASSERT_TRUE(session.Write(std::move(m)));
  }
  controller_.HoldReads(false);
  FakeController::Received first = controller_.AwaitMessages(0, 21);
  EXPECT_EQ(first.messages.size(), 21u);
  EXPECT_GE(first.max_batch, 2);
  EXPECT_LE(first.max_batch_bytes, 2500u);
}

TEST_F(ControllerSessionTest, AMessageOverTheByteBoundGoesAlone) {
  controller_.HoldReads(true);
  ControllerSession& session = MakeSession({.max_batch_bytes = 100});
  session.Start();
  ASSERT_TRUE(AwaitUp(true));
  for (int i = 0; i < 5; ++i) {
    AgentMessage m = Event(absl::StrCat("e", i));
    m.mutable_event()->set_payload(std::string(1000, 'x'));
    ASSERT_TRUE(session.Write(std::move(m)));
  }
  controller_.HoldReads(false);
  FakeController::Received first = controller_.AwaitMessages(0, 6);
  EXPECT_THAT(Describe(first.messages), ElementsAre("inventory 1", "event e0", "event e1",
                                                    "event e2", "event e3", "event e4"));
  EXPECT_LE(first.max_batch, 1);
}

TEST_F(ControllerSessionTest, NoBatchesForAControllerThatDoesNotReadThem) {
  controller_.SetWelcome(60000, /*accepts_batches=*/false);
  controller_.HoldReads(true);
  ControllerSession& session = MakeSession();
  session.Start();
  ASSERT_TRUE(AwaitUp(true));
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(session.Write(Event(absl::StrCat("e", i))));
  controller_.HoldReads(false);
  FakeController::Received first = controller_.AwaitMessages(0, 51);
  EXPECT_EQ(first.messages.size(), 51u);
  EXPECT_EQ(first.max_batch, 0);
  EXPECT_EQ(first.stream_messages, 51);
}

TEST_F(ControllerSessionTest, HandsCommandsAndSettledNoticesOverInOrder) {
  MakeSession().Start();
  ASSERT_TRUE(AwaitUp(true));
  ControllerMessage command;
  command.mutable_command()->set_command_id(1);
  controller_.Send(command);
  ControllerMessage batch;
  batch.mutable_batch()->add_messages()->mutable_settled()->set_key("a");
  batch.mutable_batch()->add_messages()->mutable_command()->set_command_id(2);
  // A nested batch is not part of the protocol: ignored.
  batch.mutable_batch()
      ->add_messages()
      ->mutable_batch()
      ->add_messages()
      ->mutable_command()
      ->set_command_id(99);
  batch.mutable_batch()->add_messages()->mutable_heartbeat();
  controller_.Send(batch);
  ControllerMessage settled;
  settled.mutable_settled()->set_key("b");
  controller_.Send(settled);
  EXPECT_THAT(AwaitHandedOver(4), ElementsAre("command 1", "settled a", "command 2", "settled b"));
}

TEST_F(ControllerSessionTest, ReconnectsWithTheInventoryFirstAndTheEventsAgain) {
  SetResend({Event("a")});
  ControllerSession& session = MakeSession({.metrics = &metrics_});
  session.Start();
  controller_.AwaitMessages(0, 2);
  EXPECT_EQ(Sample(SerializeText(registry_), "dispatchd_agent_session_up{agent=\"agent-1\"}"), 1);

  controller_.EndSession();
  ASSERT_TRUE(AwaitUp(false));
  EXPECT_FALSE(session.Write(Event("while-down")));
  // Backing off on the clock: at most the minimum backoff after a session
  // that had a Welcome.
  ASSERT_TRUE(AwaitClockWaiters(2));
  clock_.Advance(absl::Milliseconds(100));
  FakeController::Received second = controller_.AwaitMessages(1, 2);
  EXPECT_THAT(Describe(second.messages), ElementsAre("inventory 2", "event a"));

  ASSERT_TRUE(AwaitUp(true));
  const std::string text = SerializeText(registry_);
  EXPECT_EQ(Sample(text, "dispatchd_agent_session_up{agent=\"agent-1\"}"), 1);
  EXPECT_EQ(
      Sample(text, "dispatchd_agent_session_attempts_total{agent=\"agent-1\",result=\"opened\"}"),
      2);
  EXPECT_EQ(
      Sample(text, "dispatchd_agent_session_attempts_total{agent=\"agent-1\",result=\"failed\"}"),
      0);
}

TEST_F(ControllerSessionTest, RetriesARefusedSessionWithGrowingBackoff) {
  controller_.Refuse(3);
  ControllerSession& session = MakeSession({.reconnect_min_backoff = absl::Milliseconds(100),
                                            .reconnect_max_backoff = absl::Milliseconds(300),
                                            .metrics = &metrics_});
  session.Start();
  // Each wait is at most the current backoff: 100, 200, then 300 (capped).
  size_t sessions = 0;
  for (absl::Duration backoff :
       {absl::Milliseconds(100), absl::Milliseconds(200), absl::Milliseconds(300)}) {
    ASSERT_EQ(controller_.AwaitSessions(++sessions).size(), sessions);
    ASSERT_TRUE(AwaitClockWaiters(2));
    EXPECT_FALSE(session.up());
    clock_.Advance(backoff);
  }
  ASSERT_TRUE(AwaitUp(true));
  EXPECT_EQ(controller_.received().size(), 4u);
  const std::string text = SerializeText(registry_);
  EXPECT_EQ(
      Sample(text, "dispatchd_agent_session_attempts_total{agent=\"agent-1\",result=\"failed\"}"),
      3);
  EXPECT_EQ(
      Sample(text, "dispatchd_agent_session_attempts_total{agent=\"agent-1\",result=\"opened\"}"),
      1);
}

// After a controller named its heartbeat period, the agent tries again at
// least once per period however long the controller stays away.
TEST_F(ControllerSessionTest, RetriesAtLeastOncePerHeartbeatPeriodOnceKnown) {
  controller_.SetWelcome(/*heartbeat_period_ms=*/300, /*accepts_batches=*/true);
  ControllerSession& session = MakeSession({.reconnect_min_backoff = absl::Milliseconds(100),
                                            .reconnect_max_backoff = absl::Seconds(10),
                                            .metrics = &metrics_});
  session.Start();
  controller_.AwaitMessages(0, 1);
  controller_.Refuse(4);
  controller_.EndSession();
  ASSERT_TRUE(AwaitUp(false));
  // Waits of at most 100, 200, then 300 ms (the period), not 400 and 800.
  size_t sessions = 1;
  for (absl::Duration backoff : {absl::Milliseconds(100), absl::Milliseconds(200),
                                 absl::Milliseconds(300), absl::Milliseconds(300),
                                 absl::Milliseconds(300)}) {
    ASSERT_TRUE(AwaitClockWaiters(2));
    clock_.Advance(backoff);
    ASSERT_EQ(controller_.AwaitSessions(++sessions).size(), sessions);
  }
  ASSERT_TRUE(AwaitUp(true));
}

TEST_F(ControllerSessionTest, HeartbeatsCarryTheClocksTime) {
  controller_.SetWelcome(/*heartbeat_period_ms=*/1000, /*accepts_batches=*/true);
  MakeSession().Start();
  controller_.AwaitMessages(0, 1);
  auto has_heartbeat = [this] {
    for (const auto& r : controller_.received()) {
      for (const AgentMessage& m : r.messages) {
        if (m.has_heartbeat()) return true;
      }
    }
    return false;
  };
  const absl::Time before = clock_.Now();
  ASSERT_TRUE(AdvanceUntil(absl::Milliseconds(100), has_heartbeat));
  for (const auto& r : controller_.received()) {
    for (const AgentMessage& m : r.messages) {
      if (!m.has_heartbeat()) continue;
      const absl::Time sent = absl::FromUnixNanos(m.heartbeat().sent_unix_nanos());
      EXPECT_GE(sent, before + absl::Seconds(1));  // not before one period
      EXPECT_LE(sent, clock_.Now());
    }
  }
}

TEST_F(ControllerSessionTest, ASilentControllerIsLeftAndReconnected) {
  // The controller reads but never says anything after its Welcome.
  controller_.SetWelcome(/*heartbeat_period_ms=*/1000, /*accepts_batches=*/true);
  MakeSession().Start();
  controller_.AwaitMessages(0, 1);
  const absl::Time welcomed = clock_.Now();
  ASSERT_TRUE(
      AdvanceUntil(absl::Milliseconds(100), [this] { return controller_.received().size() >= 2; }));
  EXPECT_GT(clock_.Now() - welcomed, absl::Seconds(3));  // only after 3 periods
  EXPECT_TRUE(controller_.AwaitReceived([](const auto& s) { return s[0].ended; })[0].ended);
}

// A replica that does not lead names the leader: the session goes there at
// once, though the leader is not listed. The clock never moves in this
// test, so a backoff would keep the session from ever opening.
TEST_F(ControllerSessionTest, ARedirectGoesToTheLeaderAtOnce) {
  FakeController& standby = AddReplica("ctl-a:7700");
  FakeController& leader = AddReplica("ctl-b:7700");
  standby.Follow("ctl-b:7700");
  SetResend({Event("a")});
  ControllerSession& session = MakeSessionWith({"ctl-a:7700"}, {.metrics = &metrics_});
  session.Start();
  FakeController::Received first = leader.AwaitMessages(0, 2);
  EXPECT_EQ(first.hello.agent_id(), "agent-1");
  EXPECT_THAT(Describe(first.messages), ElementsAre("inventory 1", "event a"));
  ASSERT_TRUE(AwaitUp(true));
  EXPECT_EQ(session.controller_address(), "ctl-b:7700");
  ASSERT_EQ(standby.received().size(), 1u);
  EXPECT_EQ(standby.received()[0].hello.agent_id(), "agent-1");
  EXPECT_EQ(SessionAttempts("failed"), 1);
  EXPECT_EQ(SessionAttempts("opened"), 1);
}

// The leader steps down and names another replica: after the session ends
// (and the minimum backoff), the agent asks the old leader first, is sent
// on, and the new leader gets the inventory and the unsettled events.
TEST_F(ControllerSessionTest, FollowsTheLeadershipToAnotherReplica) {
  FakeController& a = AddReplica("ctl-a:7700");
  FakeController& b = AddReplica("ctl-b:7700");
  b.Follow("ctl-a:7700");
  SetResend({Event("a")});
  ControllerSession& session = MakeSessionWith({"ctl-a:7700", "ctl-b:7700"});
  session.Start();
  a.AwaitMessages(0, 2);
  ASSERT_TRUE(AwaitUp(true));
  EXPECT_EQ(session.controller_address(), "ctl-a:7700");

  a.Follow("ctl-b:7700");
  b.Lead();
  a.EndSession();
  ASSERT_TRUE(AwaitUp(false));
  EXPECT_EQ(session.controller_address(), "");
  ASSERT_TRUE(AwaitClockWaiters(2));
  clock_.Advance(absl::Milliseconds(100));
  FakeController::Received second = b.AwaitMessages(0, 2);
  EXPECT_THAT(Describe(second.messages), ElementsAre("inventory 2", "event a"));
  ASSERT_TRUE(AwaitUp(true));
  EXPECT_EQ(session.controller_address(), "ctl-b:7700");
  EXPECT_EQ(a.received().size(), 2u);  // the session, then the Hello it sent on
  EXPECT_EQ(channels_made(), (std::map<std::string, int>{{"ctl-a:7700", 1}, {"ctl-b:7700", 1}}));
}

// The first address does not answer: once its channel has not connected
// within the connect timeout (on the clock), the second is tried.
TEST_F(ControllerSessionTest, AnAddressThatDoesNotConnectIsLeftForTheNext) {
  const int port = ::dispatchd::testing::FreePort();
  ASSERT_GT(port, 0);
  const std::string down = absl::StrCat("127.0.0.1:", port);
  FakeController& leader = AddReplica("ctl-b:7700");
  ControllerSession& session = MakeSessionWith({down, "ctl-b:7700"}, {.metrics = &metrics_});
  const absl::Time start = clock_.Now();
  session.Start();
  ASSERT_TRUE(AdvanceUntil(absl::Milliseconds(100), [&] { return session.up(); }));
  EXPECT_GE(clock_.Now() - start, absl::Seconds(1));  // not before the connect timeout
  EXPECT_EQ(session.controller_address(), "ctl-b:7700");
  EXPECT_EQ(leader.received().size(), 1u);
  EXPECT_EQ(SessionAttempts("failed"), 1);
  EXPECT_EQ(SessionAttempts("opened"), 1);
}

// A replica that knows no leader: the next address, at once.
TEST_F(ControllerSessionTest, AReplicaWithoutALeaderSendsToTheNextAddress) {
  FakeController& standby = AddReplica("ctl-a:7700");
  FakeController& leader = AddReplica("ctl-b:7700");
  standby.Follow("");
  ControllerSession& session = MakeSessionWith({"ctl-a:7700", "ctl-b:7700"});
  session.Start();
  leader.AwaitMessages(0, 1);
  ASSERT_TRUE(AwaitUp(true));
  EXPECT_EQ(session.controller_address(), "ctl-b:7700");
  EXPECT_EQ(standby.received().size(), 1u);
}

// Every address failing in a row costs one backoff, not one per address.
TEST_F(ControllerSessionTest, BacksOffOnceEveryAddressHasFailed) {
  FakeController& a = AddReplica("ctl-a:7700");
  FakeController& b = AddReplica("ctl-b:7700");
  a.Refuse(1);
  b.Refuse(1);
  ControllerSession& session = MakeSessionWith({"ctl-a:7700", "ctl-b:7700"});
  session.Start();
  b.AwaitSessions(1);
  ASSERT_TRUE(AwaitClockWaiters(2));  // backing off
  EXPECT_EQ(a.received().size(), 1u);
  EXPECT_EQ(b.received().size(), 1u);
  EXPECT_FALSE(session.up());
  clock_.Advance(absl::Milliseconds(100));
  ASSERT_TRUE(AwaitUp(true));
  EXPECT_EQ(session.controller_address(), "ctl-a:7700");
  EXPECT_EQ(a.received().size(), 2u);
  EXPECT_EQ(b.received().size(), 1u);
}

// A leader killed a moment ago is still named by the standbys until its
// lease runs out: once it failed in a pass, their redirects to it are not
// followed, and since standbys answered (an election is on) the backoff is
// at most kElectionBackoff, so the new leader is found that soon.
TEST_F(ControllerSessionTest, ADeadLeaderStillNamedIsSkippedAndTheNextOneFoundSoon) {
  const int port = ::dispatchd::testing::FreePort();
  ASSERT_GT(port, 0);
  const std::string dead = absl::StrCat("127.0.0.1:", port);
  FakeController& b = AddReplica("ctl-b:7700");
  FakeController& c = AddReplica("ctl-c:7700");
  b.Follow(dead);
  c.Follow(dead);
  ControllerSession& session = MakeSessionWith({dead, "ctl-b:7700", "ctl-c:7700"});
  session.Start();
  // The dead leader (given up at the connect timeout), then each standby
  // once: their redirects to it are not followed.
  ASSERT_TRUE(AdvanceUntil(absl::Milliseconds(100), [&] { return c.received().size() >= 1; }));
  ASSERT_TRUE(AwaitClockWaiters(2));  // backing off
  EXPECT_EQ(b.received().size(), 1u);
  EXPECT_EQ(c.received().size(), 1u);
  c.Lead();  // elected
  const absl::Time elected = clock_.Now();
  ASSERT_TRUE(AdvanceUntil(absl::Milliseconds(100), [&] { return session.up(); }));
  EXPECT_EQ(session.controller_address(), "ctl-c:7700");
  // The backoff, and at most one more wait for the dead one's connection.
  EXPECT_LE(clock_.Now() - elected,
            ControllerSession::kElectionBackoff + absl::Seconds(1) + absl::Milliseconds(100));
}

// Two replicas that name each other: kMaxRedirectsInRow redirects are
// followed, then the session backs off, and tries again only once the clock
// has moved past the backoff.
TEST_F(ControllerSessionTest, RedirectsInALoopAreBoundedAndBackedOff) {
  FakeController& a = AddReplica("ctl-a:7700");
  FakeController& b = AddReplica("ctl-b:7700");
  a.Follow("ctl-b:7700");
  b.Follow("ctl-a:7700");
  ControllerSession& session = MakeSessionWith({"ctl-a:7700", "ctl-b:7700"});
  session.Start();
  auto hellos = [&] { return a.received().size() + b.received().size(); };
  const size_t round = 1 + ControllerSession::kMaxRedirectsInRow;
  for (size_t rounds = 1; rounds <= 3; ++rounds) {
    ASSERT_TRUE(Eventually([&] { return hellos() >= rounds * round; }));
    ASSERT_TRUE(AwaitClockWaiters(2));  // backing off: no attempt until the clock moves
    EXPECT_EQ(hellos(), rounds * round);
    EXPECT_EQ(a.received().size(), b.received().size());
    EXPECT_FALSE(session.up());
    clock_.Advance(absl::Seconds(10));  // past the largest backoff
  }
  EXPECT_EQ(channels_made(), (std::map<std::string, int>{{"ctl-a:7700", 1}, {"ctl-b:7700", 1}}));
}

// With one controller, an attempt waits for it as long as it takes: it is
// not given up for want of a connection, however far the clock moves, and
// the session opens as soon as the controller listens.
TEST_F(ControllerSessionTest, OneControllerIsWaitedForWithoutAConnectTimeout) {
  const int port = ::dispatchd::testing::FreePort();
  ASSERT_GT(port, 0);
  const std::string address = absl::StrCat("127.0.0.1:", port);
  ControllerSession& session = MakeSessionWith({address}, {.metrics = &metrics_});
  session.Start();
  // The attempt waits on a channel whose connection was refused...
  ASSERT_TRUE(Eventually([&] {
    std::shared_ptr<grpc::Channel> channel = TcpChannel(address);
    return channel != nullptr &&
           channel->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_TRANSIENT_FAILURE;
  }));
  clock_.Advance(absl::Seconds(10));  // ...while the clock goes far past any connect timeout
  FakeController late;
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(&late);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_EQ(bound, port);
  EXPECT_EQ(late.AwaitSessions(1).size(), 1u);
  ASSERT_TRUE(AwaitUp(true));
  EXPECT_EQ(session.controller_address(), address);
  EXPECT_EQ(SessionAttempts("failed"), 0);  // the first attempt waited
  session.Stop();
  server->Shutdown();
}

TEST_F(ControllerSessionTest, StopReturnsWhileAWriteIsBlocked) {
  std::vector<AgentMessage> events;
  for (int i = 0; i < 64; ++i) {
    AgentMessage m = Event(absl::StrCat("e", i));
    m.mutable_event()->set_payload(std::string(64 << 10, 'x'));
    events.push_back(std::move(m));
  }
  SetResend(events);
  controller_.HoldReads(true);  // and never released before Stop()
  ControllerSession& session = MakeSession();
  session.Start();
  ASSERT_TRUE(AwaitUp(true));
  session.Stop();
  EXPECT_FALSE(session.up());
  EXPECT_FALSE(session.ready());
  EXPECT_FALSE(session.Write(Event("after-stop")));
  session.Stop();  // idempotent
}

TEST_F(ControllerSessionTest, StopWithoutStart) {
  ControllerSession& session = MakeSession();
  session.Stop();
  EXPECT_FALSE(session.up());
  EXPECT_TRUE(controller_.received().empty());
}

}  // namespace
}  // namespace agent
}  // namespace dispatchd
