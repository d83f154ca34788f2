#include "controller/command_builder.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

dispatch::v1::ObservedEvent MakeEvent(const std::string& payload) {
  dispatch::v1::ObservedEvent event;
  event.set_key("demo/some-event");
  event.set_event_id("demo.some-event");
  event.set_payload(payload);
  event.set_generation(7);
  return event;
}

const Recipient kTo{"host-b", "c0ffee", "handler", "demo.some-event"};

// BuildCommand into a fresh Command.
dispatch::v1::Command Build(uint64_t command_id, const dispatch::v1::ObservedEvent& event,
                            absl::string_view origin_host, const Recipient& recipient,
                            const contract::Subscription& subscription, size_t max_payload) {
  dispatch::v1::Command command;
  BuildCommand(command_id, event, "agent-a", origin_host, recipient, subscription, max_payload,
               &command);
  return command;
}

contract::Subscription Touch() {
  contract::Subscription sub;
  sub.event_id = "demo.some-event";
  sub.argv = {"touch", "/tmp/handled file"};
  return sub;
}

TEST(BuildCommandTest, CarriesTheSubscriptionsCommandAndTheEventsEnvironment) {
  dispatch::v1::Command c = Build(42, MakeEvent("hello"), "host-a", kTo, Touch(), 4096);
  EXPECT_EQ(c.command_id(), 42u);
  EXPECT_EQ(c.event_id(), "demo.some-event");
  EXPECT_EQ(c.container_id(), "c0ffee");
  EXPECT_THAT(c.argv(), ElementsAre("touch", "/tmp/handled file"));
  EXPECT_FALSE(c.start_container());
  EXPECT_THAT(c.env(),
              ElementsAre("DISPATCH_EVENT_ID=demo.some-event", "DISPATCH_EVENT_HOST=host-a",
                          "DISPATCH_EVENT_PATH=demo/some-event", "DISPATCH_EVENT_PAYLOAD=hello"));
  // The event's identity, for the agent's check against running it twice.
  EXPECT_EQ(c.origin_agent(), "agent-a");
  EXPECT_EQ(c.key(), "demo/some-event");
  EXPECT_EQ(c.generation(), 7u);
}

TEST(BuildCommandTest, StartOnlySubscriptionStartsTheContainerAndExecsNothing) {
  contract::Subscription sub;
  sub.event_id = "demo.some-event";
  sub.start = contract::StartPolicy::kStartIfStopped;
  dispatch::v1::Command c = Build(1, MakeEvent(""), "host-a", kTo, sub, 4096);
  EXPECT_TRUE(c.start_container());
  EXPECT_THAT(c.argv(), IsEmpty());
}

TEST(BuildCommandTest, EmptyPayloadIsPassedEmpty) {
  dispatch::v1::Command c = Build(1, MakeEvent(""), "host-a", kTo, Touch(), 4096);
  EXPECT_THAT(c.env(), Contains("DISPATCH_EVENT_PAYLOAD="));
}

TEST(BuildCommandTest, PayloadUpToTheLimitIsPassed) {
  const std::string payload(16, 'x');
  dispatch::v1::Command c = Build(1, MakeEvent(payload), "host-a", kTo, Touch(), 16);
  EXPECT_THAT(c.env(), Contains("DISPATCH_EVENT_PAYLOAD=" + payload));
}

TEST(BuildCommandTest, PayloadOverTheLimitIsOmitted) {
  dispatch::v1::Command c = Build(1, MakeEvent(std::string(17, 'x')), "host-a", kTo, Touch(), 16);
  EXPECT_THAT(c.env(), Not(Contains(StartsWith("DISPATCH_EVENT_PAYLOAD"))));
  EXPECT_EQ(c.env_size(), 3) << "the other variables stay";
}

TEST(BuildCommandTest, PayloadWithANulByteIsOmitted) {
  dispatch::v1::Command c =
      Build(1, MakeEvent(std::string("a\0b", 3)), "host-a", kTo, Touch(), 4096);
  EXPECT_THAT(c.env(), Not(Contains(StartsWith("DISPATCH_EVENT_PAYLOAD"))));
  EXPECT_THAT(c.env(), Contains(HasSubstr("DISPATCH_EVENT_PATH=")));
}

TEST(BuildCommandTest, APayloadTheLedgerDroppedIsOmittedNotPassedEmpty) {
  dispatch::v1::ObservedEvent dropped = MakeEvent("");
  dropped.set_size(100000);  // the file's size; the ledger kept no payload
  dispatch::v1::Command c = Build(1, dropped, "host-a", kTo, Touch(), 1 << 20);
  EXPECT_THAT(c.env(), Not(Contains(StartsWith("DISPATCH_EVENT_PAYLOAD"))));
  EXPECT_EQ(c.env_size(), 3);
  // An empty file is an empty payload.
  dispatch::v1::ObservedEvent empty = MakeEvent("");
  empty.set_size(0);
  EXPECT_THAT(Build(1, empty, "h", kTo, Touch(), 4096).env(), Contains("DISPATCH_EVENT_PAYLOAD="));
}

TEST(BuildCommandTest, ZeroLimitPassesOnlyAnEmptyPayload) {
  EXPECT_THAT(Build(1, MakeEvent(""), "h", kTo, Touch(), 0).env(),
              Contains("DISPATCH_EVENT_PAYLOAD="));
  EXPECT_THAT(Build(1, MakeEvent("x"), "h", kTo, Touch(), 0).env(),
              Not(Contains(StartsWith("DISPATCH_EVENT_PAYLOAD"))));
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
