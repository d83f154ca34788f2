#include "controller/dispatcher.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::CommandResult;
using dispatch::v1::ControllerMessage;
using dispatch::v1::Settled;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FakeLink : public AgentLink {
 public:
  void Send(ControllerMessage message) override { sent.push_back(std::move(message)); }
  void Close(const std::string& reason) override { closed.push_back(reason); }

  // Takes the commands sent since the last call.
  std::vector<dispatch::v1::Command> TakeCommands() {
    std::vector<dispatch::v1::Command> out;
    std::vector<ControllerMessage> rest;
    for (auto& m : sent) {
      if (m.has_command()) {
        out.push_back(m.command());
      } else {
        rest.push_back(std::move(m));
      }
    }
    sent = std::move(rest);
    return out;
  }
  std::vector<Settled> TakeSettled() {
    std::vector<Settled> out;
    std::vector<ControllerMessage> rest;
    for (auto& m : sent) {
      if (m.has_settled()) {
        out.push_back(m.settled());
      } else {
        rest.push_back(std::move(m));
      }
    }
    sent = std::move(rest);
    return out;
  }

  std::vector<ControllerMessage> sent;
  std::vector<std::string> closed;
};

dispatch::v1::Container MakeContainer(const std::string& id, const std::string& name,
                                      std::map<std::string, std::string> labels,
                                      dispatch::v1::Container::State state =
                                          dispatch::v1::Container::RUNNING) {
  dispatch::v1::Container c;
  c.set_id(id);
  c.set_name(name);
  c.set_state(state);
  for (auto& [k, v] : labels) (*c.mutable_labels())[k] = v;
  return c;
}

// An event message as an agent sends it.
AgentMessage EventMessage(const std::string& key, const std::string& event_id) {
  AgentMessage m;
  m.mutable_event()->set_key(key);
  m.mutable_event()->set_event_id(event_id);
  return m;
}

// host-a connects to `dispatcher` on `link` with an empty inventory.
void ConnectWithoutContainers(Dispatcher& dispatcher, FakeLink& link) {
  dispatcher.AgentConnected("host-a", "host-a", &link);
  AgentMessage snapshot;
  snapshot.mutable_inventory_snapshot()->set_seq(1);
  dispatcher.OnAgentMessage("host-a", snapshot);
}

class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest() : dispatcher_(Options(), &clock_) {}

  static DispatcherOptions Options() {
    DispatcherOptions options;
    options.heartbeat_period = absl::Seconds(5);
    options.retry_min_backoff = absl::Milliseconds(100);
    options.retry_max_backoff = absl::Seconds(1);
    options.max_attempts = 3;
    return options;
  }

  void Connect(const std::string& agent = "host-a") {
    dispatcher_.AgentConnected(agent, agent, &link_);
    ASSERT_FALSE(link_.sent.empty());
    EXPECT_TRUE(link_.sent.front().has_welcome());
    link_.sent.clear();
  }

  void Snapshot(std::vector<dispatch::v1::Container> containers, uint64_t seq = 1,
                const std::string& agent = "host-a") {
    AgentMessage m;
    m.mutable_inventory_snapshot()->set_seq(seq);
    for (auto& c : containers) *m.mutable_inventory_snapshot()->add_containers() = c;
    dispatcher_.OnAgentMessage(agent, m);
  }

  void Event(const std::string& key, const std::string& event_id,
             const std::string& payload = "", const std::string& agent = "host-a") {
    AgentMessage m;
    m.mutable_event()->set_key(key);
    m.mutable_event()->set_event_id(event_id);
    m.mutable_event()->set_payload(payload);
    m.mutable_event()->set_observed_unix_nanos(absl::ToUnixNanos(clock_.Now()));
    dispatcher_.OnAgentMessage(agent, m);
  }

  void Result(uint64_t command_id, CommandResult::Outcome outcome, const std::string& error = "",
              const std::string& agent = "host-a") {
    AgentMessage m;
    m.mutable_command_result()->set_command_id(command_id);
    m.mutable_command_result()->set_outcome(outcome);
    m.mutable_command_result()->set_error(error);
    if (outcome == CommandResult::DELIVERED) m.mutable_command_result()->set_exec_id("e1");
    dispatcher_.OnAgentMessage(agent, m);
  }

  FakeClock clock_;
  FakeLink link_;
  Dispatcher dispatcher_;
};

const std::map<std::string, std::string> kTouch = {
    {"subscription.demo.some-event.container.command", "touch handled"}};
// Event id "tick", debounced for one second.
const std::map<std::string, std::string> kTickDebounced = {
    {"subscription.tick.container.command", "true"},
    {"subscription.tick.dispatching.debounce", "1000"}};

TEST_F(DispatcherTest, DeliversToSubscriberAndSettlesAfterTheExecStarted) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  Event("demo/some-event", "demo.some-event", "hello");

  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].container_id(), "c1");
  EXPECT_THAT(commands[0].argv(), ElementsAre("touch", "handled"));
  EXPECT_FALSE(commands[0].start_container());
  EXPECT_THAT(commands[0].env(), ::testing::Contains("DISPATCH_EVENT_ID=demo.some-event"));
  EXPECT_THAT(commands[0].env(), ::testing::Contains("DISPATCH_EVENT_PAYLOAD=hello"));
  EXPECT_THAT(commands[0].env(), ::testing::Contains("DISPATCH_EVENT_HOST=host-a"));
  EXPECT_TRUE(link_.TakeSettled().empty()) << "settled before the agent answered";

  Result(commands[0].command_id(), CommandResult::DELIVERED);
  std::vector<Settled> settled = link_.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].key(), "demo/some-event");
  EXPECT_EQ(settled[0].disposition(), Settled::DELETE);
  DispatcherStats stats = dispatcher_.stats();
  EXPECT_EQ(stats.events_settled_delivered, 1u);
  EXPECT_EQ(stats.deliveries[DeliveryOutcome::kDelivered], 1u);
  EXPECT_EQ(stats.events_in_flight, 0u);
}

// The "delivered" line users read: the exec's short id and dispatchd's own
// share of the latency, in milliseconds to the microsecond.
TEST_F(DispatcherTest, TheDeliveredLineGivesTheExecAndDispatchdsShareOfTheLatency) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  Event("demo/some-event", "demo.some-event");
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);

  std::string path = absl::StrCat(::testing::TempDir(), "/log-XXXXXX");
  const int fd = mkstemp(path.data());
  ASSERT_GE(fd, 0);
  const int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  close(fd);
  const int64_t observed = absl::ToUnixNanos(clock_.Now());
  AgentMessage m;
  m.mutable_command_result()->set_command_id(commands[0].command_id());
  m.mutable_command_result()->set_outcome(CommandResult::DELIVERED);
  m.mutable_command_result()->set_exec_id("0123456789abcdef0123");
  m.mutable_command_result()->set_exec_create_sent_unix_nanos(observed + 1499500);
  m.mutable_command_result()->set_exec_start_sent_unix_nanos(observed + 12345499);
  dispatcher_.OnAgentMessage("host-a", m);
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::ifstream in(path);
  std::stringstream log;
  log << in.rdbuf();
  unlink(path.c_str());

  EXPECT_THAT(log.str(), HasSubstr("] delivered demo.some-event to handler (exec 0123456789ab; "
                                   "file observed -> exec create sent 1.500 ms, -> exec start "
                                   "sent 12.345 ms)\n"));
}

TEST_F(DispatcherTest, HoldsEventsUntilTheInventoryIsFresh) {
  Connect();
  Event("demo/some-event", "demo.some-event");
  EXPECT_TRUE(link_.TakeCommands().empty());
  EXPECT_TRUE(link_.TakeSettled().empty()) << "routed on an inventory it does not have";
  EXPECT_EQ(dispatcher_.stats().events_held, 1u);

  Snapshot({MakeContainer("c1", "handler", kTouch)});
  EXPECT_EQ(link_.TakeCommands().size(), 1u);

  // Stream lost: hold again; a new snapshot releases.
  AgentMessage stale;
  stale.mutable_inventory_stale()->set_reason("events stream closed");
  dispatcher_.OnAgentMessage("host-a", stale);
  Event("demo/other", "demo.other");
  EXPECT_TRUE(link_.TakeSettled().empty());
  Snapshot({MakeContainer("c1", "handler", kTouch)}, 7);
  std::vector<Settled> settled = link_.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].key(), "demo/other");  // no subscriber: deleted
}

TEST_F(DispatcherTest, EventWithoutSubscribersIsSettledAtOnce) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  Event("nobody/listens", "nobody.listens");
  std::vector<Settled> settled = link_.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].disposition(), Settled::DELETE);
  EXPECT_EQ(dispatcher_.stats().events_settled_no_subscribers, 1u);
}

// The last delivery of an event that settles at once sends no Delivered
// notice: the Settled right behind it on the same stream ends the file.
TEST_F(DispatcherTest, TwoSubscribersBothServedBeforeSettling) {
  Connect();
  Snapshot({MakeContainer("c1", "one", kTouch), MakeContainer("c2", "two", kTouch)});
  Event("demo/some-event", "demo.some-event");
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 2u);
  Result(commands[0].command_id(), CommandResult::DELIVERED);
  EXPECT_TRUE(link_.TakeSettled().empty());
  Result(commands[1].command_id(), CommandResult::DELIVERED);
  std::vector<std::string> kinds;
  for (const ControllerMessage& sent : link_.sent) {
    kinds.push_back(sent.has_delivered() ? "delivered" : sent.has_settled() ? "settled" : "other");
  }
  EXPECT_THAT(kinds, ElementsAre("delivered", "settled"));
  EXPECT_EQ(link_.TakeSettled().size(), 1u);
}

// Each delivery is reported to the origin agent, which keeps it with the
// file; an event re-sent with that list (after a restart of either side)
// runs only on the subscribers it has not reached.
TEST_F(DispatcherTest, TheOriginAgentIsToldOfEachDelivery) {
  Connect();
  Snapshot({MakeContainer("c1", "one", kTouch), MakeContainer("c2", "two", kTouch)});
  AgentMessage m;
  m.mutable_event()->set_key("demo/some-event");
  m.mutable_event()->set_event_id("demo.some-event");
  m.mutable_event()->set_generation(77);
  dispatcher_.OnAgentMessage("host-a", m);
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 2u);
  Result(commands[1].command_id(), CommandResult::DELIVERED);
  std::vector<dispatch::v1::Delivered> delivered;
  for (const ControllerMessage& sent : link_.sent) {
    if (sent.has_delivered()) delivered.push_back(sent.delivered());
  }
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0].key(), "demo/some-event");
  EXPECT_EQ(delivered[0].generation(), 77u);
  EXPECT_EQ(delivered[0].to().agent_id(), "host-a");
  EXPECT_EQ(delivered[0].to().container_id(), commands[1].container_id());
  // Not for an outcome other than delivered.
  link_.sent.clear();
  Result(commands[0].command_id(), CommandResult::CONTAINER_GONE, "gone");
  for (const ControllerMessage& sent : link_.sent) EXPECT_FALSE(sent.has_delivered());
}

TEST_F(DispatcherTest, AnEventReSentWithItsDeliveriesSkipsThoseSubscribers) {
  Connect();
  Snapshot({MakeContainer("c1", "one", kTouch), MakeContainer("c2", "two", kTouch)});
  AgentMessage m;
  m.mutable_event()->set_key("demo/some-event");
  m.mutable_event()->set_event_id("demo.some-event");
  m.mutable_event()->set_generation(77);
  dispatch::v1::DeliveredTo* to = m.mutable_event()->add_delivered();
  to->set_agent_id("host-a");
  to->set_container_id("c1");
  dispatcher_.OnAgentMessage("host-a", m);
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].container_id(), "c2");
  EXPECT_TRUE(link_.TakeSettled().empty());
  Result(commands[0].command_id(), CommandResult::DELIVERED);
  EXPECT_EQ(link_.TakeSettled().size(), 1u);
  EXPECT_EQ(dispatcher_.stats().deliveries.at(DeliveryOutcome::kDelivered), 2u);
}

TEST_F(DispatcherTest, AnEventDeliveredEverywhereBeforeARestartSettlesWithoutACommand) {
  Connect();
  Snapshot({MakeContainer("c1", "one", kTouch)});
  AgentMessage m;
  m.mutable_event()->set_key("demo/some-event");
  m.mutable_event()->set_event_id("demo.some-event");
  dispatch::v1::DeliveredTo* to = m.mutable_event()->add_delivered();
  to->set_agent_id("host-a");
  to->set_container_id("c1");
  dispatcher_.OnAgentMessage("host-a", m);
  EXPECT_TRUE(link_.TakeCommands().empty());
  std::vector<Settled> settled = link_.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].disposition(), Settled::DELETE);
  EXPECT_EQ(dispatcher_.stats().events_settled_delivered, 1u);
}

TEST_F(DispatcherTest, InvalidLabelDoesNotStopAValidNeighbour) {
  Connect();
  Snapshot({MakeContainer("bad", "bad",
                          {{"subscription.demo.some-event.container.command", "echo 'unterminated"}}),
            MakeContainer("good", "good", kTouch)});
  EXPECT_EQ(dispatcher_.stats().subscriptions_invalid, 1u);
  ASSERT_EQ(dispatcher_.InvalidSubscriptions().size(), 1u);
  EXPECT_THAT(dispatcher_.InvalidSubscriptions()[0].invalid.reason, HasSubstr("quote"));
  Event("demo/some-event", "demo.some-event");
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].container_id(), "good");
}

TEST_F(DispatcherTest, SkippedSubscriptionsStillSettleTheFile) {
  Connect();
  Snapshot({MakeContainer("c1", "stopped", kTouch, dispatch::v1::Container::EXITED)});
  Event("demo/some-event", "demo.some-event");
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u) << "the agent inspects before a container is skipped";
  Result(commands[0].command_id(), CommandResult::NOT_RUNNING, "not running");
  std::vector<Settled> settled = link_.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].disposition(), Settled::DELETE);
  EXPECT_EQ(dispatcher_.stats().deliveries[DeliveryOutcome::kSkippedNotRunning], 1u);
}

TEST_F(DispatcherTest, RetriesWithBackoffThenDeadLetters) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  Event("demo/some-event", "demo.some-event");
  for (int attempt = 1; attempt <= 3; ++attempt) {
    std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
    ASSERT_EQ(commands.size(), 1u) << "attempt " << attempt;
    Result(commands[0].command_id(), CommandResult::FAILED, "Docker: 500 boom");
    if (attempt < 3) {
      EXPECT_TRUE(link_.TakeCommands().empty()) << "retried without waiting";
      clock_.Advance(absl::Seconds(1));  // the backoff ceiling
      dispatcher_.Poll();
    }
  }
  std::vector<Settled> settled = link_.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].disposition(), Settled::DEAD_LETTER);
  EXPECT_THAT(settled[0].error_json(), HasSubstr("500 boom"));
  EXPECT_THAT(settled[0].error_json(), HasSubstr("\"event_id\": \"demo.some-event\""));
  EXPECT_EQ(dispatcher_.stats().events_settled_dead_letter, 1u);
  EXPECT_EQ(dispatcher_.stats().retries, 2u);
}

// A Docker daemon that cannot be reached (restarting, say) is not the
// subscriber's failure: its attempts spend no budget, however many, and the
// event is delivered once Docker is back instead of dead-lettered.
TEST_F(DispatcherTest, AnUnreachableDockerSpendsNoAttempts) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  Event("demo/some-event", "demo.some-event");
  for (int attempt = 1; attempt <= 10; ++attempt) {  // max_attempts is 3
    std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
    ASSERT_EQ(commands.size(), 1u) << "attempt " << attempt;
    AgentMessage m;
    m.mutable_command_result()->set_command_id(commands[0].command_id());
    m.mutable_command_result()->set_outcome(CommandResult::FAILED);
    m.mutable_command_result()->set_error("create exec: no Docker socket at /run/docker.sock");
    m.mutable_command_result()->set_docker_unreachable(true);
    dispatcher_.OnAgentMessage("host-a", m);
    EXPECT_TRUE(link_.TakeCommands().empty()) << "retried without waiting";
    EXPECT_TRUE(link_.TakeSettled().empty()) << "attempt " << attempt;
    clock_.Advance(DeliveryQueue::kUnreachableMaxBackoff);
    dispatcher_.Poll();
  }
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  Result(commands[0].command_id(), CommandResult::DELIVERED);
  std::vector<Settled> settled = link_.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].disposition(), Settled::DELETE);
}

TEST_F(DispatcherTest, OneDeliveryInFlightPerContainerAndEvent) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  Event("demo/some-event", "demo.some-event", "first");
  Event("demo/some-event.2", "demo.some-event", "second");  // same event id, other file
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  Result(commands[0].command_id(), CommandResult::DELIVERED);
  commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_THAT(commands[0].env(), ::testing::Contains("DISPATCH_EVENT_PAYLOAD=second"));
}

TEST_F(DispatcherTest, DebounceCoalescesAndDeliversTheLatestAtTheEndOfThePeriod) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTickDebounced)});
  const absl::Time t0 = clock_.Now();
  Event("tick.0", "tick", "0");  // key differs from id only for the test's bookkeeping
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_THAT(commands[0].env(), ::testing::Contains("DISPATCH_EVENT_PAYLOAD=0"));
  Result(commands[0].command_id(), CommandResult::DELIVERED);
  EXPECT_EQ(link_.TakeSettled().size(), 1u);

  clock_.SetTime(t0 + absl::Milliseconds(800));
  Event("tick.800", "tick", "800");
  clock_.SetTime(t0 + absl::Milliseconds(900));
  Event("tick.900", "tick", "900");
  EXPECT_TRUE(link_.TakeCommands().empty());
  // 800 was coalesced into 900: its file is settled without an exec.
  std::vector<Settled> settled = link_.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].key(), "tick.800");
  EXPECT_EQ(dispatcher_.stats().debounce_pending, 1u);

  clock_.SetTime(t0 + absl::Milliseconds(999));
  EXPECT_EQ(dispatcher_.Poll(), t0 + absl::Seconds(1));
  EXPECT_TRUE(link_.TakeCommands().empty());
  clock_.SetTime(t0 + absl::Seconds(1));
  dispatcher_.Poll();
  commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_THAT(commands[0].env(), ::testing::Contains("DISPATCH_EVENT_PAYLOAD=900"));
  Result(commands[0].command_id(), CommandResult::DELIVERED);
  settled = link_.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].key(), "tick.900");
  EXPECT_EQ(dispatcher_.stats().deliveries[DeliveryOutcome::kCoalesced], 1u);
}

// Events may reach the controller out of the order they were written in (an
// agent sending again after a restart, several hosts): the debounced
// handler still gets the latest write.
TEST_F(DispatcherTest, AnOlderEventArrivingLateDoesNotReplaceTheNewerOneWaiting) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTickDebounced)});
  const absl::Time t0 = clock_.Now();
  Event("tick.0", "tick", "0");
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  Result(commands[0].command_id(), CommandResult::DELIVERED);
  link_.TakeSettled();

  clock_.SetTime(t0 + absl::Milliseconds(900));
  Event("tick.new", "tick", "new");  // written at 900 ms: waits until 1 s
  AgentMessage old = EventMessage("tick.old", "tick");
  old.mutable_event()->set_payload("old");
  old.mutable_event()->set_observed_unix_nanos(absl::ToUnixNanos(t0 + absl::Milliseconds(500)));
  dispatcher_.OnAgentMessage("host-a", old);  // written at 500 ms, arrives last
  std::vector<Settled> settled = link_.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].key(), "tick.old") << "the older one is coalesced";

  clock_.SetTime(t0 + absl::Seconds(1));
  dispatcher_.Poll();
  commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_THAT(commands[0].env(), ::testing::Contains("DISPATCH_EVENT_PAYLOAD=new"));
}

TEST_F(DispatcherTest, ReSentEventIsNotDispatchedTwice) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  Event("demo/some-event", "demo.some-event");
  Event("demo/some-event", "demo.some-event");
  EXPECT_EQ(link_.TakeCommands().size(), 1u);
  EXPECT_EQ(dispatcher_.stats().events_duplicate, 1u);
}

TEST_F(DispatcherTest, AgentThatReconnectsGetsItsSettledNoticeInsteadOfARedelivery) {
  Connect();
  FakeLink other;
  dispatcher_.AgentConnected("host-b", "host-b", &other);
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  AgentMessage snapshot_b;
  snapshot_b.mutable_inventory_snapshot()->set_seq(1);
  dispatcher_.OnAgentMessage("host-b", snapshot_b);
  // host-b observes an event that host-a's container handles.
  Event("demo/some-event", "demo.some-event", "", "host-b");
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  dispatcher_.AgentDisconnected("host-b", &other);
  Result(commands[0].command_id(), CommandResult::DELIVERED);
  // host-b comes back and re-sends its unsettled event.
  FakeLink again;
  dispatcher_.AgentConnected("host-b", "host-b", &again);
  dispatcher_.OnAgentMessage("host-b", snapshot_b);
  Event("demo/some-event", "demo.some-event", "", "host-b");
  EXPECT_TRUE(link_.TakeCommands().empty()) << "delivered twice";
  std::vector<Settled> settled = again.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].key(), "demo/some-event");
}

TEST_F(DispatcherTest, CommandsInFlightToADisconnectedAgentGoAgainWhenItIsBack) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  Event("demo/some-event", "demo.some-event");
  ASSERT_EQ(link_.TakeCommands().size(), 1u);
  FakeLink other;
  dispatcher_.AgentConnected("host-b", "host-b", &other);
  Snapshot({}, 1, "host-b");
  dispatcher_.AgentDisconnected("host-a", &link_);
  // Away: events are held, not routed on a partial view.
  Event("demo/other", "demo.other", "", "host-b");
  EXPECT_EQ(dispatcher_.stats().events_held, 1u);
  // It comes back within the grace period: the command goes out again at
  // once, without spending retry budget.
  clock_.Advance(absl::Seconds(3));
  dispatcher_.AgentConnected("host-a", "host-a", &link_);
  EXPECT_EQ(link_.TakeCommands().size(), 1u);
  EXPECT_EQ(dispatcher_.stats().retries, 0u);
  Snapshot({MakeContainer("c1", "handler", kTouch)}, 5);
  EXPECT_EQ(dispatcher_.stats().events_held, 0u);
  EXPECT_EQ(other.TakeSettled().size(), 1u);  // demo/other: no subscriber
}

// A session's last read and its end run on different threads, so a message
// can still arrive after AgentDisconnected. It is ignored: it must neither
// make the away agent fresh (events would be routed while it is away) nor
// reach code that answers on the session's link.
TEST_F(DispatcherTest, MessagesOfAnEndedSessionAreIgnored) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  Event("demo/some-event", "demo.some-event");
  ASSERT_EQ(link_.TakeCommands().size(), 1u);
  dispatcher_.AgentDisconnected("host-a", &link_);
  Snapshot({MakeContainer("c1", "handler", kTouch)}, 2);
  EXPECT_EQ(dispatcher_.stats().agents_fresh, 0u) << "an away agent made fresh";
  Event("demo/other", "demo.other");
  EXPECT_EQ(dispatcher_.stats().events_observed, 1u);
  EXPECT_TRUE(link_.sent.empty());
}

// An event whose debounced predecessor is due but not yet taken by Poll()
// takes its slot and goes at once; the predecessor is coalesced into it,
// not left in flight forever.
TEST_F(DispatcherTest, EventTakingTheSlotOfADuePendingOneCoalescesIt) {
  Connect();
  Snapshot({MakeContainer("c1", "handler",
                          {{"subscription.demo.some-event.container.command", "touch handled"},
                           {"subscription.demo.some-event.dispatching.debounce", "1000"}})});
  Event("demo/some-event", "demo.some-event", "0");
  std::vector<dispatch::v1::Command> first = link_.TakeCommands();
  ASSERT_EQ(first.size(), 1u);
  Result(first[0].command_id(), CommandResult::DELIVERED);
  clock_.Advance(absl::Milliseconds(800));
  AgentMessage pending;
  pending.mutable_event()->set_key("demo/some-event");
  pending.mutable_event()->set_event_id("demo.some-event");
  pending.mutable_event()->set_payload("800");
  pending.mutable_event()->set_generation(1);
  dispatcher_.OnAgentMessage("host-a", pending);
  EXPECT_EQ(dispatcher_.stats().debounce_pending, 1u);
  // Its time comes and goes without a Poll(); then a third event.
  clock_.Advance(absl::Milliseconds(300));
  AgentMessage third = pending;
  third.mutable_event()->set_payload("1100");
  third.mutable_event()->set_generation(2);
  dispatcher_.OnAgentMessage("host-a", third);
  std::vector<dispatch::v1::Command> next = link_.TakeCommands();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_THAT(next[0].env(), ::testing::Contains("DISPATCH_EVENT_PAYLOAD=1100"));
  Result(next[0].command_id(), CommandResult::DELIVERED);
  dispatcher_.Poll();
  const DispatcherStats stats = dispatcher_.stats();
  EXPECT_EQ(stats.events_in_flight, 0u);
  EXPECT_EQ(stats.deliveries.at(DeliveryOutcome::kCoalesced), 1u);
  EXPECT_EQ(link_.TakeSettled().size(), 3u);
}

TEST_F(DispatcherTest, LateResendOfAnEventSettledWhileAwayIsIgnored) {
  FakeLink other;
  Connect();
  dispatcher_.AgentConnected("host-b", "host-b", &other);
  Snapshot({}, 1, "host-a");
  Snapshot({MakeContainer("c2", "handler", kTouch)}, 1, "host-b");
  Event("demo/some-event", "demo.some-event");  // observed by host-a
  std::vector<dispatch::v1::Command> commands = other.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  dispatcher_.AgentDisconnected("host-a", &link_);
  Result(commands[0].command_id(), CommandResult::DELIVERED, "", "host-b");
  ASSERT_EQ(dispatcher_.stats().events_settled_delivered, 1u);  // kept for host-a
  // The ended session's last message re-sends it: nothing to answer it on.
  Event("demo/some-event", "demo.some-event");
  link_.sent.clear();
  // host-a's next session gets the notice.
  dispatcher_.AgentConnected("host-a", "host-a", &link_);
  Event("demo/some-event", "demo.some-event");
  EXPECT_EQ(link_.TakeSettled().size(), 1u);
  EXPECT_EQ(dispatcher_.stats().events_observed, 1u);
}

TEST_F(DispatcherTest, AgentThatStaysAwayLeavesTheIndexAfterTheGracePeriod) {
  FakeLink other;
  Connect();
  dispatcher_.AgentConnected("host-b", "host-b", &other);
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  AgentMessage empty;
  empty.mutable_inventory_snapshot()->set_seq(1);
  dispatcher_.OnAgentMessage("host-b", empty);
  ASSERT_EQ(dispatcher_.subscription_count(), 1u);
  dispatcher_.AgentDisconnected("host-a", &link_);
  Event("demo/some-event", "demo.some-event", "", "host-b");
  EXPECT_TRUE(other.TakeSettled().empty()) << "routed while host-a may come back";
  clock_.Advance(absl::Seconds(15));  // 3 heartbeat periods
  dispatcher_.Poll();
  EXPECT_EQ(dispatcher_.subscription_count(), 0u);
  std::vector<Settled> settled = other.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(dispatcher_.Agents().size(), 1u);
}

TEST(DispatcherStartupTest, HoldsEventsDuringTheStartupGrace) {
  FakeClock clock;
  DispatcherOptions options;
  options.startup_grace = absl::Seconds(15);
  Dispatcher dispatcher(options, &clock);
  FakeLink link;
  ConnectWithoutContainers(dispatcher, link);
  dispatcher.OnAgentMessage("host-a", EventMessage("e", "e"));
  EXPECT_TRUE(link.TakeSettled().empty());
  EXPECT_EQ(dispatcher.Poll(), clock.Now() + absl::Seconds(5)) << "heartbeat comes first";
  clock.Advance(absl::Seconds(15));
  dispatcher.Poll();
  EXPECT_EQ(link.TakeSettled().size(), 1u);
}

TEST_F(DispatcherTest, SilentAgentIsClosedAfterMissedHeartbeats) {
  Connect();
  clock_.Advance(absl::Seconds(14));
  dispatcher_.Poll();
  EXPECT_TRUE(link_.closed.empty());
  clock_.Advance(absl::Seconds(2));
  dispatcher_.Poll();
  ASSERT_EQ(link_.closed.size(), 1u);
  EXPECT_THAT(link_.closed[0], HasSubstr("heartbeat"));
}

TEST_F(DispatcherTest, LabelChangeIsFollowedWithoutRestart) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  AgentMessage delta;
  delta.mutable_inventory_delta()->set_seq(2);
  *delta.mutable_inventory_delta()->add_upserted() =
      MakeContainer("c1", "handler", {{"subscription.demo.other.container.command", "true"}});
  dispatcher_.OnAgentMessage("host-a", delta);
  Event("demo/some-event", "demo.some-event");
  EXPECT_TRUE(link_.TakeCommands().empty());
  Event("demo/other", "demo.other");
  EXPECT_EQ(link_.TakeCommands().size(), 1u);
}

class RecordingSink : public sinks::Sink {
 public:
  absl::Status Write(sinks::EventPtr event) override {
    events.push_back(std::move(event));
    return absl::OkStatus();
  }
  absl::Status Close() override { return absl::OkStatus(); }
  std::vector<sinks::EventPtr> events;
};

TEST(DispatcherForwardTest, EveryEventIsForwardedOnce) {
  FakeClock clock;
  auto sink = std::make_shared<RecordingSink>();
  DispatcherOptions options;
  options.forward = sink;
  Dispatcher dispatcher(options, &clock);
  FakeLink link;
  dispatcher.AgentConnected("host-a", "host-a", &link);
  AgentMessage snapshot;
  snapshot.mutable_inventory_snapshot()->set_seq(1);
  *snapshot.mutable_inventory_snapshot()->add_containers() =
      MakeContainer("c1", "handler", {{"subscription.a.b.txt.container.command", "true"}});
  dispatcher.OnAgentMessage("host-a", snapshot);
  AgentMessage event;
  event.mutable_event()->set_key("a/b.txt");
  event.mutable_event()->set_event_id("a.b.txt");
  event.mutable_event()->set_payload("content");
  dispatcher.OnAgentMessage("host-a", event);
  dispatcher.OnAgentMessage("host-a", event);  // re-sent while in flight: not forwarded twice
  ASSERT_EQ(sink->events.size(), 1u);
  EXPECT_EQ(sink->events[0]->id, "a.b.txt");
  EXPECT_EQ(sink->events[0]->payload, "content");
  EXPECT_EQ(sink->events[0]->source_host, "host-a");
  EXPECT_EQ(sink->events[0]->path, "a/b.txt");
  // An event nobody subscribes to is forwarded too, then settled.
  dispatcher.OnAgentMessage("host-a", EventMessage("lonely", "lonely"));
  ASSERT_EQ(sink->events.size(), 2u);
  EXPECT_EQ(sink->events[1]->id, "lonely");
  EXPECT_TRUE(link.TakeSettled().empty()) << "not before the destination took it";
  sink->events.clear();  // the destination took both
  dispatcher.Poll();
  std::vector<Settled> settled = link.TakeSettled();
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].key(), "lonely");
}

// The forwarding hold: files wait until every destination let go of their
// event, within a bound.
class DispatcherForwardHoldTest : public DispatcherTest {
 protected:
  DispatcherForwardHoldTest() : dispatcher_(HoldOptions(), &clock_) {}

  DispatcherOptions HoldOptions() {
    DispatcherOptions options = Options();
    options.forward = sink_;
    options.forward_hold_events = 2;
    options.forward_hold_bytes = 10;
    return options;
  }
  void Connect() {
    dispatcher_.AgentConnected("host-a", "host-a", &link_);
    link_.sent.clear();
    AgentMessage m;
    m.mutable_inventory_snapshot()->set_seq(1);
    *m.mutable_inventory_snapshot()->add_containers() = MakeContainer("c1", "handler", kTouch);
    dispatcher_.OnAgentMessage("host-a", m);
  }
  void Send(const std::string& key, const std::string& event_id, const std::string& payload = "") {
    AgentMessage m = EventMessage(key, event_id);
    m.mutable_event()->set_payload(payload);
    dispatcher_.OnAgentMessage("host-a", m);
  }
  std::vector<std::string> SettledKeys() {
    std::vector<std::string> keys;
    for (const Settled& s : link_.TakeSettled()) keys.push_back(s.key());
    return keys;
  }

  std::shared_ptr<RecordingSink> sink_ = std::make_shared<RecordingSink>();
  Dispatcher dispatcher_;  // hides DispatcherTest's
};

TEST_F(DispatcherForwardHoldTest, DeliveredEventKeepsItsFileUntilTheDestinationTookIt) {
  Connect();
  Send("demo/some-event", "demo.some-event");
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  AgentMessage result;
  result.mutable_command_result()->set_command_id(commands[0].command_id());
  result.mutable_command_result()->set_outcome(CommandResult::DELIVERED);
  dispatcher_.OnAgentMessage("host-a", result);
  dispatcher_.Poll();
  EXPECT_TRUE(SettledKeys().empty()) << "delivered, but the destination still has it";
  EXPECT_EQ(dispatcher_.stats().events_awaiting_forward, 1u);
  dispatch::v1::ListEventsResponse listed = dispatcher_.ListEvents();
  ASSERT_EQ(listed.events_size(), 1);
  EXPECT_EQ(listed.events(0).state(), dispatch::v1::EventInfo::FORWARDING);
  // While an event is held, Poll comes back soon to look for its release.
  EXPECT_LE(dispatcher_.Poll(), clock_.Now() + absl::Milliseconds(20));

  sink_->events.clear();
  EXPECT_TRUE(SettledKeys().empty()) << "settled by Poll, not by the destination's thread";
  dispatcher_.Poll();
  EXPECT_THAT(SettledKeys(), ElementsAre("demo/some-event"));
  EXPECT_EQ(dispatcher_.stats().events_awaiting_forward, 0u);
  EXPECT_EQ(dispatcher_.stats().events_settled_delivered, 1u);
}

TEST_F(DispatcherForwardHoldTest, ABusyHoldLetsLaterEventsSettleOnceQueued) {
  Connect();
  Send("a", "a");
  Send("b", "b");
  Send("c", "c");  // the hold has 2 events already: settled at once
  dispatcher_.Poll();
  EXPECT_THAT(SettledKeys(), ElementsAre("c"));
  EXPECT_EQ(sink_->events.size(), 3u) << "every event is still forwarded";
  EXPECT_EQ(dispatcher_.stats().events_forward_unheld, 1u);
  EXPECT_EQ(dispatcher_.stats().events_awaiting_forward, 2u);

  sink_->events.erase(sink_->events.begin());  // "a" sent
  dispatcher_.Poll();
  EXPECT_THAT(SettledKeys(), ElementsAre("a"));
  Send("d", "d");  // room again
  dispatcher_.Poll();
  EXPECT_TRUE(SettledKeys().empty());
  EXPECT_EQ(dispatcher_.stats().events_awaiting_forward, 2u);
  sink_->events.clear();
  dispatcher_.Poll();
  EXPECT_THAT(SettledKeys(), ::testing::UnorderedElementsAre("b", "d"));
}

TEST_F(DispatcherForwardHoldTest, TheHoldCountsPayloadBytesToo) {
  Connect();
  Send("a", "a", "12345678");
  Send("b", "b", "12345678");  // 16 bytes would pass the bound of 10
  dispatcher_.Poll();
  EXPECT_THAT(SettledKeys(), ElementsAre("b"));
  EXPECT_EQ(dispatcher_.stats().events_awaiting_forward, 1u);
}

class FailingSink : public sinks::Sink {
 public:
  absl::Status Write(sinks::EventPtr) override { return absl::UnavailableError("closed"); }
  absl::Status Close() override { return absl::OkStatus(); }
};

TEST(DispatcherForwardTest, AnEventTheDestinationsRefuseAtOnceSettles) {
  FakeClock clock;
  DispatcherOptions options;
  options.forward = std::make_shared<FailingSink>();
  Dispatcher dispatcher(options, &clock);
  FakeLink link;
  ConnectWithoutContainers(dispatcher, link);
  dispatcher.OnAgentMessage("host-a", EventMessage("lonely", "lonely"));
  dispatcher.Poll();
  EXPECT_EQ(link.TakeSettled().size(), 1u);
  EXPECT_EQ(dispatcher.stats().events_awaiting_forward, 0u);
}

TEST(DispatcherForwardTest, ADestinationMayLetGoAfterTheDispatcherIsGone) {
  FakeClock clock;
  auto sink = std::make_shared<RecordingSink>();
  {
    DispatcherOptions options;
    options.forward = sink;
    Dispatcher dispatcher(options, &clock);
    FakeLink link;
    dispatcher.AgentConnected("host-a", "host-a", &link);
    dispatcher.OnAgentMessage("host-a", EventMessage("lonely", "lonely"));
    dispatcher.AgentDisconnected("host-a", &link);
  }
  ASSERT_EQ(sink->events.size(), 1u);
  sink->events.clear();  // must not touch the Dispatcher
}

TEST_F(DispatcherTest, ListsSubscriptionsAndAgents) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  std::vector<Target> subs = dispatcher_.Subscriptions();
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_EQ(subs[0].subscription.event_id, "demo.some-event");
  std::vector<AgentInfo> agents = dispatcher_.Agents();
  ASSERT_EQ(agents.size(), 1u);
  EXPECT_EQ(agents[0].agent_id, "host-a");
  EXPECT_TRUE(agents[0].inventory_fresh);
}

// Explain: one test per reason a handler would or would not run.
class ExplainTest : public DispatcherTest {
 protected:
  dispatch::v1::Explanation ExplainOne(const std::string& event_id, const std::string& host = "") {
    dispatch::v1::ExplainRequest request;
    request.set_event_id(event_id);
    request.set_host(host);
    absl::StatusOr<dispatch::v1::ExplainResponse> response = dispatcher_.Explain(request);
    EXPECT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->containers_size(), 1) << response->DebugString();
    return response->containers_size() > 0 ? response->containers(0)
                                            : dispatch::v1::Explanation();
  }
};

TEST_F(ExplainTest, ARunningSubscriberIsDelivered) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  const dispatch::v1::Explanation x = ExplainOne("demo.some-event");
  EXPECT_EQ(x.verdict(), dispatch::v1::Explanation::DELIVER);
  EXPECT_EQ(x.container().container_name(), "handler");
}

TEST_F(ExplainTest, HostScopeOnAnotherHost) {
  Connect();
  Snapshot({MakeContainer("c1", "local", {{"subscription.h.container.command", "true"},
                                          {"subscription.h.dispatching.scope", "host"}})});
  const dispatch::v1::Explanation x = ExplainOne("h", "host-b");
  EXPECT_EQ(x.verdict(), dispatch::v1::Explanation::NOT_DELIVERED);
  EXPECT_EQ(x.reason(), dispatch::v1::Explanation::OTHER_HOST);
  EXPECT_THAT(x.detail(), HasSubstr("host-b"));
  EXPECT_EQ(ExplainOne("h", "host-a").verdict(), dispatch::v1::Explanation::DELIVER);
}

TEST_F(ExplainTest, StoppedWithoutContainerStart) {
  Connect();
  Snapshot({MakeContainer("c1", "stopped", kTouch, dispatch::v1::Container::EXITED)});
  const dispatch::v1::Explanation x = ExplainOne("demo.some-event");
  EXPECT_EQ(x.reason(), dispatch::v1::Explanation::NOT_RUNNING);
  EXPECT_EQ(x.container_state(), dispatch::v1::CONTAINER_STATE_EXITED);
}

TEST_F(ExplainTest, AnInvalidLabelAndItsReason) {
  Connect();
  Snapshot({MakeContainer("c1", "broken", {{"subscription.b.container.command", "echo 'open"}})});
  const dispatch::v1::Explanation x = ExplainOne("b");
  EXPECT_EQ(x.reason(), dispatch::v1::Explanation::INVALID_LABEL);
  EXPECT_THAT(x.detail(), HasSubstr("quote"));
}

TEST_F(ExplainTest, DebouncePendingUntilItsTime) {
  Connect();
  Snapshot({MakeContainer("c1", "slow", {{"subscription.d.container.command", "true"},
                                         {"subscription.d.dispatching.debounce", "1000"}})});
  Event("d", "d");  // delivered at once; the next waits for the period
  clock_.Advance(absl::Milliseconds(200));
  const dispatch::v1::Explanation x = ExplainOne("d");
  EXPECT_EQ(x.verdict(), dispatch::v1::Explanation::DELIVER_LATER);
  EXPECT_EQ(x.reason(), dispatch::v1::Explanation::DEBOUNCE_PENDING);
  EXPECT_EQ(x.due_unix_nanos(), absl::ToUnixNanos(clock_.Now() + absl::Milliseconds(800)));
}

TEST_F(ExplainTest, AgentAwayOrInventoryStale) {
  Connect();
  Snapshot({MakeContainer("c1", "handler", kTouch)});
  AgentMessage stale;
  stale.mutable_inventory_stale()->set_reason("events stream lost");
  dispatcher_.OnAgentMessage("host-a", stale);
  EXPECT_EQ(ExplainOne("demo.some-event").reason(), dispatch::v1::Explanation::INVENTORY_STALE);
  dispatcher_.AgentDisconnected("host-a", &link_);
  const dispatch::v1::Explanation away = ExplainOne("demo.some-event", "host-a");
  EXPECT_EQ(away.reason(), dispatch::v1::Explanation::AGENT_AWAY);
  dispatch::v1::ExplainRequest request;
  request.set_event_id("demo.some-event");
  EXPECT_FALSE(dispatcher_.Explain(request)->would_route_now());
  EXPECT_THAT(dispatcher_.Explain(request)->held_reason(), HasSubstr("host-a is away"));
}

TEST_F(ExplainTest, ALabelThatAlmostMatches) {
  Connect();
  Snapshot({MakeContainer("c1", "prefix", {{"subscription.demo.container.command", "true"}}),
            MakeContainer("c2", "case", {{"subscription.Demo.Ping.container.command", "true"}})});
  dispatch::v1::ExplainRequest request;
  request.set_event_id("demo.ping");
  absl::StatusOr<dispatch::v1::ExplainResponse> response = dispatcher_.Explain(request);
  ASSERT_TRUE(response.ok());
  ASSERT_EQ(response->containers_size(), 2);
  for (const auto& x : response->containers()) {
    EXPECT_EQ(x.reason(), dispatch::v1::Explanation::NEAR_MISS) << x.DebugString();
  }
  EXPECT_THAT(response->containers(0).detail(), HasSubstr("only in case"));
  EXPECT_THAT(response->containers(1).detail(), HasSubstr("a prefix of 'demo.ping'"));
}

TEST_F(DispatcherTest, ListEventsShowsHeldAndInFlightRecipients) {
  Connect();
  Event("early", "early");  // no inventory yet: held
  dispatch::v1::ListEventsResponse listed = dispatcher_.ListEvents();
  ASSERT_EQ(listed.events_size(), 1);
  EXPECT_EQ(listed.events(0).state(), dispatch::v1::EventInfo::HELD);
  EXPECT_THAT(listed.events(0).held_reason(), HasSubstr("not fresh"));
  Snapshot({MakeContainer("c1", "handler", kTouch)});  // routes it: no subscriber
  Event("demo/some-event", "demo.some-event");
  listed = dispatcher_.ListEvents();
  ASSERT_EQ(listed.events_size(), 1);
  EXPECT_EQ(listed.events(0).state(), dispatch::v1::EventInfo::IN_FLIGHT);
  ASSERT_EQ(listed.events(0).recipients_size(), 1);
  EXPECT_EQ(listed.events(0).recipients(0).state(), dispatch::v1::RecipientState::IN_FLIGHT);
  dispatch::v1::GetEventRequest get;
  get.set_event_id("demo.some-event");
  EXPECT_TRUE(dispatcher_.GetEvent(get).ok());
  get.set_event_id("nothing");
  EXPECT_EQ(dispatcher_.GetEvent(get).status().code(), absl::StatusCode::kNotFound);
}

// An inventory snapshot (seq 1) and an event (generation 1), as an agent
// sends them.
AgentMessage SnapshotOf(std::vector<dispatch::v1::Container> containers) {
  AgentMessage m;
  m.mutable_inventory_snapshot()->set_seq(1);
  for (auto& c : containers) *m.mutable_inventory_snapshot()->add_containers() = c;
  return m;
}

AgentMessage EventOf(const std::string& key, const std::string& event_id) {
  AgentMessage m;
  m.mutable_event()->set_key(key);
  m.mutable_event()->set_event_id(event_id);
  m.mutable_event()->set_generation(1);
  return m;
}

// A new leader knows its agents from the membership list: events wait
// until every listed agent is back and fresh, and not a moment longer (no
// fixed start-up grace).
TEST(DispatcherTermTest, ANewLeaderRoutesAsSoonAsTheListedAgentsAreBack) {
  FakeClock clock;
  DispatcherOptions options;
  options.expected_agents = {{"host-a", "host-a"}, {"host-b", "host-b"}};
  Dispatcher dispatcher(options, &clock);
  FakeLink a, b;
  dispatcher.AgentConnected("host-a", "host-a", &a);
  dispatcher.OnAgentMessage("host-a", SnapshotOf({}));
  dispatcher.OnAgentMessage("host-a", EventOf("demo/some-event", "demo.some-event"));
  EXPECT_EQ(dispatcher.stats().events_held, 1u);  // host-b's subscribers may exist
  EXPECT_EQ(dispatcher.KnownAgents().size(), 2u);
  dispatcher.AgentConnected("host-b", "host-b", &b);
  dispatcher.OnAgentMessage("host-b", SnapshotOf({MakeContainer("c1", "handler", kTouch)}));
  EXPECT_EQ(dispatcher.stats().events_held, 0u);
  EXPECT_EQ(b.TakeCommands().size(), 1u);  // routed at once, no clock advanced
}

TEST(DispatcherTermTest, AListedAgentThatDoesNotComeBackIsWaitedForOnlyTheAwayGrace) {
  FakeClock clock;
  DispatcherOptions options;
  options.expected_agents = {{"gone", "gone"}};
  Dispatcher dispatcher(options, &clock);
  FakeLink a;
  dispatcher.AgentConnected("host-a", "host-a", &a);
  dispatcher.OnAgentMessage("host-a", SnapshotOf({MakeContainer("c1", "h", kTouch)}));
  dispatcher.OnAgentMessage("host-a", EventOf("demo/some-event", "demo.some-event"));
  EXPECT_TRUE(a.TakeCommands().empty());
  clock.Advance(options.heartbeat_period * options.missed_heartbeats);
  dispatcher.Poll();
  EXPECT_EQ(a.TakeCommands().size(), 1u);
  EXPECT_EQ(dispatcher.KnownAgents().count("gone"), 0u);
}

// Leadership ending: commands are held from the moment may_command says
// so; EndTerm closes every session, and one that connects afterwards.
TEST(DispatcherTermTest, CommandsStopWithLeadershipAndEndTermClosesSessions) {
  FakeClock clock;
  bool leading = true;
  DispatcherOptions options;
  options.may_command = [&leading] { return leading; };
  Dispatcher dispatcher(options, &clock);
  FakeLink a;
  dispatcher.AgentConnected("host-a", "host-a", &a);
  AgentMessage snapshot = SnapshotOf({MakeContainer("c1", "h", kTouch)});
  dispatcher.OnAgentMessage("host-a", snapshot);
  AgentMessage event = EventOf("demo/e1", "demo.some-event");
  dispatcher.OnAgentMessage("host-a", event);
  ASSERT_EQ(a.TakeCommands().size(), 1u);
  leading = false;
  event.mutable_event()->set_key("demo/e2");
  event.mutable_event()->set_event_id("demo.other");
  (*snapshot.mutable_inventory_snapshot()->mutable_containers(0)->mutable_labels())
      ["subscription.demo.other.container.command"] = "true";
  snapshot.mutable_inventory_snapshot()->set_seq(2);
  dispatcher.OnAgentMessage("host-a", snapshot);
  dispatcher.OnAgentMessage("host-a", event);
  clock.Advance(absl::Seconds(1));
  dispatcher.Poll();
  EXPECT_TRUE(a.TakeCommands().empty());
  dispatcher.EndTerm("this replica no longer leads");
  EXPECT_THAT(a.closed, ElementsAre("this replica no longer leads"));
  FakeLink late;
  dispatcher.AgentConnected("host-b", "host-b", &late);
  EXPECT_THAT(late.closed, ElementsAre("this replica no longer leads"));
  EXPECT_TRUE(late.sent.empty());
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
