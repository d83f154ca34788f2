#include "controller/dispatcher_metrics.h"

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/testing/fake_clock.h"
#include "controller/dispatcher.h"
#include "gmock/gmock.h"
#include "common/testing/exposition.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::CommandResult;
using dispatch::v1::ControllerMessage;
using ::testing::HasSubstr;

class FakeLink : public AgentLink {
 public:
  void Send(ControllerMessage message) override { sent.push_back(std::move(message)); }
  void Close(const std::string&) override {}
  std::vector<dispatch::v1::Command> TakeCommands() {
    std::vector<dispatch::v1::Command> out;
    for (const auto& m : sent) {
      if (m.has_command()) out.push_back(m.command());
    }
    sent.clear();
    return out;
  }
  std::vector<ControllerMessage> sent;
};

using ::dispatchd::testing::Sample;

class DispatcherMetricsTest : public ::testing::Test {
 protected:
  DispatcherMetricsTest() : metrics_(registry_), dispatcher_(Options(&metrics_), &clock_) {
    ExportDispatcherGauges(registry_, &dispatcher_, &metrics_);
  }

  static DispatcherOptions Options(DispatcherMetrics* metrics) {
    DispatcherOptions options;
    options.retry_min_backoff = absl::Milliseconds(100);
    options.retry_max_backoff = absl::Seconds(1);
    options.max_attempts = 2;
    options.metrics = metrics;
    return options;
  }

  void Start(std::map<std::string, std::string> labels) {
    dispatcher_.AgentConnected("host-a", "host-a", &link_);
    AgentMessage m;
    m.mutable_inventory_snapshot()->set_seq(1);
    dispatch::v1::Container* c = m.mutable_inventory_snapshot()->add_containers();
    c->set_id("c1");
    c->set_name("handler");
    c->set_state(dispatch::v1::Container::RUNNING);
    for (auto& [k, v] : labels) (*c->mutable_labels())[k] = v;
    dispatcher_.OnAgentMessage("host-a", m);
    link_.sent.clear();
  }

  void Event(const std::string& key, const std::string& event_id) {
    AgentMessage m;
    m.mutable_event()->set_key(key);
    m.mutable_event()->set_event_id(event_id);
    m.mutable_event()->set_generation(++generation_);
    m.mutable_event()->set_observed_unix_nanos(absl::ToUnixNanos(clock_.Now()));
    dispatcher_.OnAgentMessage("host-a", m);
  }

  void Result(uint64_t command_id, CommandResult::Outcome outcome, absl::Time exec_start_sent) {
    AgentMessage m;
    m.mutable_command_result()->set_command_id(command_id);
    m.mutable_command_result()->set_outcome(outcome);
    if (outcome == CommandResult::DELIVERED) {
      m.mutable_command_result()->set_exec_id("e1");
      m.mutable_command_result()->set_exec_start_sent_unix_nanos(absl::ToUnixNanos(exec_start_sent));
    }
    dispatcher_.OnAgentMessage("host-a", m);
  }

  std::string Text() { return SerializeText(registry_); }

  Registry registry_;
  DispatcherMetrics metrics_;
  FakeClock clock_;
  FakeLink link_;
  Dispatcher dispatcher_;
  uint64_t generation_ = 0;
};

const std::map<std::string, std::string> kTouch = {
    {"subscription.demo.ev.container.command", "touch handled"}};

TEST_F(DispatcherMetricsTest, EveryKnownLabelValueStartsAtZero) {
  const std::string text = Text();
  for (const char* series : {
           "dispatchd_events_observed_total",
           "dispatchd_events_settled_total{outcome=\"delivered\"}",
           "dispatchd_events_settled_total{outcome=\"no_subscribers\"}",
           "dispatchd_events_settled_total{outcome=\"dead_lettered\"}",
           "dispatchd_deliveries_total{outcome=\"delivered\"}",
           "dispatchd_deliveries_total{outcome=\"coalesced\"}",
           "dispatchd_deliveries_total{outcome=\"skipped_container_gone\"}",
           "dispatchd_deliveries_total{outcome=\"skipped_not_running\"}",
           "dispatchd_deliveries_total{outcome=\"skipped_rejected\"}",
           "dispatchd_deliveries_total{outcome=\"skipped_unsubscribed\"}",
           "dispatchd_deliveries_total{outcome=\"failed\"}",
           "dispatchd_delivery_retries_total",
           "dispatchd_exec_exits_total{status=\"failure\"}",
           "dispatchd_delivery_latency_seconds_count",
           "dispatchd_subscriptions{state=\"invalid\"}",
           "dispatchd_agents_connected",
           "dispatchd_events_awaiting_forward",
           "workqueue_depth{name=\"dispatchd_deliveries\"}",
           "workqueue_adds_total{name=\"dispatchd_deliveries\"}",
           "workqueue_retries_total{name=\"dispatchd_deliveries\"}",
           "workqueue_queue_duration_seconds_count{name=\"dispatchd_deliveries\"}",
           "workqueue_work_duration_seconds_count{name=\"dispatchd_deliveries\"}",
       }) {
    EXPECT_EQ(Sample(text, series), 0) << series << "\n" << text;
  }
}

TEST_F(DispatcherMetricsTest, CountsADeliveryWithItsLatencyAndExit) {
  Start(kTouch);
  const absl::Time observed = clock_.Now();
  Event("demo/ev", "demo.ev");
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(Sample(Text(), "dispatchd_events_in_flight"), 1);
  clock_.Advance(absl::Milliseconds(30));
  Result(commands[0].command_id(), CommandResult::DELIVERED, observed + absl::Milliseconds(25));
  AgentMessage exit;
  exit.mutable_exec_exit()->set_command_id(commands[0].command_id());
  exit.mutable_exec_exit()->set_exit_code(3);
  exit.mutable_exec_exit()->set_duration_ms(1500);
  dispatcher_.OnAgentMessage("host-a", exit);

  const std::string text = Text();
  EXPECT_EQ(Sample(text, "dispatchd_events_observed_total"), 1) << text;
  EXPECT_EQ(Sample(text, "dispatchd_events_settled_total{outcome=\"delivered\"}"), 1);
  EXPECT_EQ(Sample(text, "dispatchd_deliveries_total{outcome=\"delivered\"}"), 1);
  EXPECT_EQ(Sample(text, "dispatchd_commands_sent_total"), 1);
  EXPECT_EQ(Sample(text, "dispatchd_events_in_flight"), 0);
  EXPECT_EQ(Sample(text, "dispatchd_agents_connected"), 1);
  EXPECT_EQ(Sample(text, "dispatchd_agents_fresh"), 1);
  EXPECT_EQ(Sample(text, "dispatchd_subscriptions{state=\"valid\"}"), 1);
  // 25 ms from file closed to exec start: in the (0.016, 0.032] bucket.
  EXPECT_EQ(Sample(text, "dispatchd_delivery_latency_seconds_bucket{le=\"0.016\"}"), 0) << text;
  EXPECT_EQ(Sample(text, "dispatchd_delivery_latency_seconds_bucket{le=\"0.032\"}"), 1);
  EXPECT_DOUBLE_EQ(Sample(text, "dispatchd_delivery_latency_seconds_sum"), 0.025);
  EXPECT_EQ(Sample(text, "dispatchd_exec_exits_total{status=\"failure\"}"), 1);
  EXPECT_EQ(Sample(text, "dispatchd_exec_exits_total{status=\"success\"}"), 0);
  EXPECT_DOUBLE_EQ(Sample(text, "dispatchd_exec_duration_seconds_sum"), 1.5);
  EXPECT_EQ(Sample(text, "workqueue_adds_total{name=\"dispatchd_deliveries\"}"), 1);
  // Work: sent at t0, answered 30 ms later.
  EXPECT_DOUBLE_EQ(Sample(text, "workqueue_work_duration_seconds_sum{name=\"dispatchd_deliveries\"}"),
                   0.03);
}

TEST_F(DispatcherMetricsTest, RetriesThenDeadLetter) {
  Start(kTouch);
  Event("demo/ev", "demo.ev");
  std::vector<dispatch::v1::Command> commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  Result(commands[0].command_id(), CommandResult::FAILED, absl::Time());
  EXPECT_EQ(Sample(Text(), "dispatchd_delivery_retries_total"), 1);
  EXPECT_EQ(Sample(Text(), "workqueue_retries_total{name=\"dispatchd_deliveries\"}"), 1);
  clock_.Advance(absl::Seconds(2));
  dispatcher_.Poll();
  commands = link_.TakeCommands();
  ASSERT_EQ(commands.size(), 1u);
  Result(commands[0].command_id(), CommandResult::FAILED, absl::Time());

  const std::string text = Text();
  EXPECT_EQ(Sample(text, "dispatchd_deliveries_total{outcome=\"failed\"}"), 1) << text;
  EXPECT_EQ(Sample(text, "dispatchd_events_settled_total{outcome=\"dead_lettered\"}"), 1);
  EXPECT_EQ(Sample(text, "workqueue_adds_total{name=\"dispatchd_deliveries\"}"), 2);
  EXPECT_EQ(Sample(text, "dispatchd_commands_sent_total"), 2);
}

TEST_F(DispatcherMetricsTest, NoSubscribersAndDebounce) {
  Start({{"subscription.demo.ev.container.command", "touch handled"},
         {"subscription.demo.ev.dispatching.debounce", "1000"}});
  Event("other", "other");
  EXPECT_EQ(Sample(Text(), "dispatchd_events_settled_total{outcome=\"no_subscribers\"}"), 1);

  Event("demo/ev", "demo.ev");  // delivered at once
  ASSERT_EQ(link_.TakeCommands().size(), 1u);
  Event("demo/ev2", "demo.ev");  // pending
  EXPECT_EQ(Sample(Text(), "dispatchd_debounce_pending"), 1);
  Event("demo/ev3", "demo.ev");  // replaces the pending one
  EXPECT_EQ(Sample(Text(), "dispatchd_deliveries_total{outcome=\"coalesced\"}"), 1);
  EXPECT_EQ(Sample(Text(), "dispatchd_debounce_pending"), 1);
}

TEST_F(DispatcherMetricsTest, WorkQueueDepthCountsQueuedNotInFlight) {
  Start(kTouch);
  Event("demo/a", "demo.ev");
  Event("demo/b", "demo.ev");
  Event("demo/c", "demo.ev");
  // One lane, one in flight: two wait.
  EXPECT_EQ(Sample(Text(), "workqueue_depth{name=\"dispatchd_deliveries\"}"), 2);
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
