#include "controller/subscription_index.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using ::dispatch::v1::Container;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

Container MakeContainer(const std::string& id, const std::string& name,
                        const std::map<std::string, std::string>& labels,
                        Container::State state = Container::RUNNING) {
  Container c;
  c.set_id(id);
  c.set_name(name);
  c.set_state(state);
  for (const auto& [k, v] : labels) (*c.mutable_labels())[k] = v;
  return c;
}

std::string Cmd(const std::string& event_id) {
  return absl::StrCat("subscription.", event_id, ".container.command");
}

// "agent/name" of each target, in order.
std::vector<std::string> Names(const std::vector<Target>& targets) {
  std::vector<std::string> out;
  for (const auto& t : targets) out.push_back(absl::StrCat(t.agent_id, "/", t.container_name));
  return out;
}

TEST(SubscriptionIndexTest, LookupReturnsTheSubscription) {
  SubscriptionIndex index("subscription");
  index.UpsertContainer(
      "host-a", MakeContainer("c1", "handler",
                              {{Cmd("demo.some-event"), "touch handled"},
                               {"subscription.demo.some-event.dispatching.debounce", "500"},
                               {"com.docker.compose.service", "handler"}},
                              Container::EXITED));
  std::vector<Target> targets = index.Lookup("demo.some-event", "host-b");
  ASSERT_EQ(targets.size(), 1u);
  const Target& t = targets[0];
  EXPECT_EQ(t.agent_id, "host-a");
  EXPECT_EQ(t.container_id, "c1");
  EXPECT_EQ(t.container_name, "handler");
  EXPECT_EQ(t.state, Container::EXITED);  // stopped containers count too
  EXPECT_EQ(t.subscription.event_id, "demo.some-event");
  EXPECT_THAT(t.subscription.argv, ElementsAre("touch", "handled"));
  EXPECT_EQ(t.subscription.debounce, absl::Milliseconds(500));
  EXPECT_EQ(t.subscription.labels.size(), 2u);
  EXPECT_THAT(index.Lookup("demo", "host-a"), IsEmpty());
  EXPECT_THAT(index.Lookup("demo.some-event.x", "host-a"), IsEmpty());
  EXPECT_EQ(index.subscription_count(), 1u);
  EXPECT_EQ(index.container_count(), 1u);
}

TEST(SubscriptionIndexTest, SnapshotReplaceRemovesVanishedContainers) {
  SubscriptionIndex index("subscription");
  index.ReplaceAgentInventory("a", {MakeContainer("c1", "one", {{Cmd("e"), "x"}}),
                                    MakeContainer("c2", "two", {{Cmd("e"), "y"}}),
                                    MakeContainer("c3", "three", {{Cmd("f"), "z"}})});
  index.ReplaceAgentInventory("b", {MakeContainer("c9", "nine", {{Cmd("e"), "w"}})});
  EXPECT_EQ(index.container_count(), 4u);
  EXPECT_EQ(index.subscription_count(), 4u);

  index.ReplaceAgentInventory("a", {MakeContainer("c2", "two", {{Cmd("e"), "y"}}),
                                    MakeContainer("c4", "four", {{Cmd("f"), "v"}})});
  EXPECT_THAT(Names(index.Lookup("e", "a")), ElementsAre("a/two", "b/nine"));
  EXPECT_THAT(Names(index.Lookup("f", "a")), ElementsAre("a/four"));
  EXPECT_EQ(index.container_count(), 3u);
  EXPECT_EQ(index.subscription_count(), 3u);
  EXPECT_FALSE(index.Find("a", "c1", "e").has_value());

  // An empty snapshot empties the agent; other agents are untouched.
  index.ReplaceAgentInventory("a", {});
  EXPECT_THAT(Names(index.Lookup("e", "a")), ElementsAre("b/nine"));
  EXPECT_THAT(index.Lookup("f", "a"), IsEmpty());
  EXPECT_EQ(index.container_count(), 1u);
  EXPECT_EQ(index.subscription_count(), 1u);
}

TEST(SubscriptionIndexTest, UpsertWithNewLabelsMovesTheSubscription) {
  SubscriptionIndex index("subscription");
  index.UpsertContainer("a", MakeContainer("c1", "h", {{Cmd("old.event"), "x"}}));
  ASSERT_EQ(index.Lookup("old.event", "a").size(), 1u);

  index.UpsertContainer("a", MakeContainer("c1", "h", {{Cmd("new.event"), "y"}}));
  EXPECT_THAT(index.Lookup("old.event", "a"), IsEmpty());
  EXPECT_FALSE(index.Find("a", "c1", "old.event").has_value());
  std::vector<Target> targets = index.Lookup("new.event", "a");
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_THAT(targets[0].subscription.argv, ElementsAre("y"));
  EXPECT_EQ(index.subscription_count(), 1u);
  EXPECT_EQ(index.container_count(), 1u);
}

TEST(SubscriptionIndexTest, UpsertChangesCommandAndState) {
  SubscriptionIndex index("subscription");
  index.UpsertContainer("a", MakeContainer("c1", "h", {{Cmd("e"), "one"}}, Container::RUNNING));
  index.UpsertContainer("a", MakeContainer("c1", "h", {{Cmd("e"), "one"}}, Container::EXITED));
  auto t = index.Find("a", "c1", "e");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->state, Container::EXITED);
  EXPECT_EQ(index.Lookup("e", "a").at(0).state, Container::EXITED);

  index.UpsertContainer("a", MakeContainer("c1", "h", {{Cmd("e"), "two words"}}));
  t = index.Find("a", "c1", "e");
  ASSERT_TRUE(t.has_value());
  EXPECT_THAT(t->subscription.argv, ElementsAre("two", "words"));
  EXPECT_EQ(t->state, Container::RUNNING);
  EXPECT_EQ(index.subscription_count(), 1u);
}

TEST(SubscriptionIndexTest, RenameKeepsLookupOrderedByName) {
  SubscriptionIndex index("subscription");
  index.UpsertContainer("a", MakeContainer("c1", "alpha", {{Cmd("e"), "x"}}));
  index.UpsertContainer("a", MakeContainer("c2", "beta", {{Cmd("e"), "x"}}));
  EXPECT_THAT(Names(index.Lookup("e", "a")), ElementsAre("a/alpha", "a/beta"));
  index.UpsertContainer("a", MakeContainer("c1", "zulu", {{Cmd("e"), "x"}}));
  EXPECT_THAT(Names(index.Lookup("e", "a")), ElementsAre("a/beta", "a/zulu"));
  EXPECT_EQ(index.subscription_count(), 2u);
}

TEST(SubscriptionIndexTest, RemoveContainer) {
  SubscriptionIndex index("subscription");
  index.UpsertContainer("a", MakeContainer("c1", "one", {{Cmd("e"), "x"}, {Cmd("f"), "x"}}));
  index.UpsertContainer("a", MakeContainer("c2", "two", {{Cmd("e"), "x"}}));
  index.RemoveContainer("a", "c1");
  EXPECT_THAT(Names(index.Lookup("e", "a")), ElementsAre("a/two"));
  EXPECT_THAT(index.Lookup("f", "a"), IsEmpty());
  EXPECT_EQ(index.subscription_count(), 1u);
  EXPECT_EQ(index.container_count(), 1u);
  // Unknown ids and agents are ignored.
  index.RemoveContainer("a", "nope");
  index.RemoveContainer("nobody", "c2");
  EXPECT_EQ(index.container_count(), 1u);
}

TEST(SubscriptionIndexTest, RemoveAgent) {
  SubscriptionIndex index("subscription");
  index.ReplaceAgentInventory(
      "a", {MakeContainer("c1", "one", {{Cmd("e"), "x"}, {"subscription.bad", "?"}}),
            MakeContainer("c2", "two", {{Cmd("e"), "x"}})});
  index.ReplaceAgentInventory("b", {MakeContainer("c1", "one", {{Cmd("e"), "x"}})});
  EXPECT_EQ(index.invalid_count(), 1u);
  index.RemoveAgent("a");
  EXPECT_THAT(Names(index.Lookup("e", "b")), ElementsAre("b/one"));
  EXPECT_EQ(index.container_count(), 1u);
  EXPECT_EQ(index.subscription_count(), 1u);
  EXPECT_EQ(index.invalid_count(), 0u);
  EXPECT_THAT(index.Invalid(), IsEmpty());
  index.RemoveAgent("a");  // again: nothing to do
  EXPECT_EQ(index.container_count(), 1u);
}

TEST(SubscriptionIndexTest, HostScopeOnlyForEventsFromItsOwnAgent) {
  SubscriptionIndex index("subscription");
  index.UpsertContainer("a", MakeContainer("c1", "local", {{Cmd("e"), "x"},
                                                           {"subscription.e.dispatching.scope",
                                                            "host"}}));
  index.UpsertContainer("b", MakeContainer("c2", "global", {{Cmd("e"), "x"}}));
  EXPECT_THAT(Names(index.Lookup("e", "a")), ElementsAre("a/local", "b/global"));
  EXPECT_THAT(Names(index.Lookup("e", "b")), ElementsAre("b/global"));
  EXPECT_THAT(Names(index.Lookup("e", "")), ElementsAre("b/global"));
  // Find ignores scope: it answers "does this container subscribe".
  EXPECT_TRUE(index.Find("a", "c1", "e").has_value());
}

TEST(SubscriptionIndexTest, InvalidSubscriptionsListed) {
  SubscriptionIndex index("subscription");
  index.ReplaceAgentInventory(
      "b", {MakeContainer("c3", "zed", {{Cmd("ok"), "x"}, {Cmd("broken"), "echo 'oops"}})});
  index.ReplaceAgentInventory(
      "a", {MakeContainer("c2", "beta", {{"subscription.x.container.start", "maybe"}}),
            MakeContainer("c1", "alpha", {{"subscription.x.dispatching.debounce", "10"}})});
  EXPECT_EQ(index.invalid_count(), 3u);
  EXPECT_EQ(index.subscription_count(), 1u);
  EXPECT_THAT(index.Lookup("broken", "b"), IsEmpty());
  EXPECT_THAT(index.Lookup("x", "a"), IsEmpty());
  EXPECT_EQ(index.Lookup("ok", "b").size(), 1u);

  std::vector<InvalidEntry> invalid = index.Invalid();
  ASSERT_EQ(invalid.size(), 3u);
  EXPECT_EQ(invalid[0].agent_id, "a");
  EXPECT_EQ(invalid[0].container_name, "alpha");
  EXPECT_EQ(invalid[0].container_id, "c1");
  EXPECT_THAT(invalid[0].invalid.reason, HasSubstr("no container.command"));
  EXPECT_EQ(invalid[1].container_name, "beta");
  EXPECT_EQ(invalid[1].invalid.label, "subscription.x.container.start");
  EXPECT_EQ(invalid[2].agent_id, "b");
  EXPECT_EQ(invalid[2].container_id, "c3");
  EXPECT_EQ(invalid[2].invalid.event_id, "broken");
  EXPECT_THAT(invalid[2].invalid.reason, HasSubstr("unterminated single quote"));

  // Fixing the label clears it.
  index.UpsertContainer("b", MakeContainer("c3", "zed", {{Cmd("ok"), "x"}, {Cmd("broken"), "y"}}));
  EXPECT_EQ(index.invalid_count(), 2u);
  EXPECT_EQ(index.Invalid().size(), 2u);
  EXPECT_EQ(index.Lookup("broken", "b").size(), 1u);
}

TEST(SubscriptionIndexTest, InvalidSubscriptionLoggedOnceWhenItAppears) {
  SubscriptionIndex index("subscription");
  const Container bad = MakeContainer("c1", "handler", {{Cmd("e"), "echo \"oops"}});
  testing::internal::CaptureStderr();
  index.ReplaceAgentInventory("a", {bad});
  index.ReplaceAgentInventory("a", {bad});  // a relist: same labels
  Container renamed = bad;
  renamed.set_name("handler-2");
  renamed.set_state(Container::EXITED);
  index.UpsertContainer("a", renamed);  // re-parsed, but nothing new is invalid
  std::string log = testing::internal::GetCapturedStderr();

  size_t count = 0;
  for (size_t pos = log.find("invalid subscription"); pos != std::string::npos;
       pos = log.find("invalid subscription", pos + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 1u) << log;
  EXPECT_THAT(log, HasSubstr("handler"));
  EXPECT_THAT(log, HasSubstr(Cmd("e")));
  EXPECT_THAT(log, HasSubstr("unterminated double quote"));

  // A new problem is logged when it appears.
  testing::internal::CaptureStderr();
  index.UpsertContainer(
      "a", MakeContainer("c1", "handler-2", {{Cmd("e"), "echo \"oops"}, {"subscription.f", "x"}}));
  log = testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("subscription.f"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("unterminated double quote")));
}

TEST(SubscriptionIndexTest, TwoContainersOnTheSameEventInDeterministicOrder) {
  SubscriptionIndex index("subscription");
  // Inserted in an order that is neither the id order nor the name order.
  index.UpsertContainer("b", MakeContainer("id-1", "m", {{Cmd("e"), "x"}}));
  index.UpsertContainer("a", MakeContainer("id-9", "b-name", {{Cmd("e"), "x"}}));
  index.UpsertContainer("a", MakeContainer("id-2", "c-name", {{Cmd("e"), "x"}}));
  index.UpsertContainer("a", MakeContainer("id-5", "a-name", {{Cmd("e"), "x"}}));
  const std::vector<std::string> expected = {"a/a-name", "a/b-name", "a/c-name", "b/m"};
  EXPECT_EQ(Names(index.Lookup("e", "a")), expected);
  EXPECT_EQ(Names(index.Lookup("e", "a")), expected);

  // The same inventory built in another order gives the same answer.
  SubscriptionIndex other("subscription");
  other.UpsertContainer("a", MakeContainer("id-5", "a-name", {{Cmd("e"), "x"}}));
  other.UpsertContainer("a", MakeContainer("id-2", "c-name", {{Cmd("e"), "x"}}));
  other.UpsertContainer("b", MakeContainer("id-1", "m", {{Cmd("e"), "x"}}));
  other.UpsertContainer("a", MakeContainer("id-9", "b-name", {{Cmd("e"), "x"}}));
  EXPECT_EQ(Names(other.Lookup("e", "a")), expected);
}

TEST(SubscriptionIndexTest, LabelsOutsideTheNamespaceDoNotMatter) {
  SubscriptionIndex index("custom");
  index.UpsertContainer("a", MakeContainer("c1", "h", {{"custom.e.container.command", "x"},
                                                       {Cmd("e"), "ignored"},
                                                       {"version", "1"}}));
  index.UpsertContainer("a", MakeContainer("c1", "h", {{"custom.e.container.command", "x"},
                                                       {"version", "2"}}));
  std::vector<Target> targets = index.Lookup("e", "a");
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_THAT(targets[0].subscription.argv, ElementsAre("x"));
  EXPECT_EQ(targets[0].subscription.labels,
            (std::map<std::string, std::string>{{"custom.e.container.command", "x"}}));
  EXPECT_EQ(index.invalid_count(), 0u);
}

TEST(SubscriptionIndexTest, TenThousandSubscriptionsOneContainerChanges) {
  SubscriptionIndex index("subscription");
  // 100 containers on 4 agents, 100 subscriptions each; every container
  // also subscribes to the shared event "all".
  for (int c = 0; c < 100; ++c) {
    std::map<std::string, std::string> labels;
    for (int e = 0; e < 99; ++e) labels[Cmd(absl::StrCat("ev", c, ".", e))] = "run";
    labels[Cmd("all")] = "run";
    index.UpsertContainer(absl::StrCat("agent", c % 4),
                          MakeContainer(absl::StrCat("id", c), absl::StrCat("name", c), labels));
  }
  EXPECT_EQ(index.subscription_count(), 10000u);
  EXPECT_EQ(index.Lookup("all", "agent0").size(), 100u);

  // Container 7 replaces its labels: half of its events go, one new comes.
  std::map<std::string, std::string> labels;
  for (int e = 0; e < 50; ++e) labels[Cmd(absl::StrCat("ev7.", e))] = "run";
  labels[Cmd("ev7.new")] = "run";
  index.UpsertContainer("agent3", MakeContainer("id7", "name7", labels));

  EXPECT_EQ(index.subscription_count(), 10000u - 100u + 51u);
  EXPECT_EQ(index.Lookup("all", "agent0").size(), 99u);
  EXPECT_THAT(index.Lookup("ev7.60", "agent3"), IsEmpty());
  EXPECT_THAT(Names(index.Lookup("ev7.new", "agent3")), ElementsAre("agent3/name7"));
  EXPECT_THAT(Names(index.Lookup("ev8.60", "agent0")), ElementsAre("agent0/name8"));
  EXPECT_EQ(index.container_count(), 100u);
}

TEST(SubscriptionIndexAllTest, ListsEveryValidSubscriptionInOrder) {
  SubscriptionIndex index("subscription");
  dispatch::v1::Container a;
  a.set_id("id-a");
  a.set_name("zeta");
  (*a.mutable_labels())["subscription.x.container.command"] = "true";
  (*a.mutable_labels())["subscription.b.container.command"] = "true";
  dispatch::v1::Container b;
  b.set_id("id-b");
  b.set_name("alpha");
  (*b.mutable_labels())["subscription.x.container.command"] = "true";
  (*b.mutable_labels())["subscription.bad.container.command"] = "'";
  index.ReplaceAgentInventory("host", {a, b});
  std::vector<Target> all = index.All();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].subscription.event_id, "b");
  EXPECT_EQ(all[1].subscription.event_id, "x");
  EXPECT_EQ(all[1].container_name, "alpha");
  EXPECT_EQ(all[2].container_name, "zeta");
}

TEST(SubscriptionIndexNearTest, ExactLabelsInvalidOnesAndNearMisses) {
  SubscriptionIndex index("subscription");
  dispatch::v1::Container exact;
  exact.set_id("c1");
  exact.set_name("exact");
  exact.set_state(dispatch::v1::Container::RUNNING);
  (*exact.mutable_labels())["subscription.demo.ping.container.command"] = "touch /x";
  (*exact.mutable_labels())["subscription.other.container.command"] = "true";
  dispatch::v1::Container broken;
  broken.set_id("c2");
  broken.set_name("broken");
  (*broken.mutable_labels())["subscription.demo.ping.container.command"] = "echo 'unterminated";
  dispatch::v1::Container prefix;
  prefix.set_id("c3");
  prefix.set_name("prefix");
  (*prefix.mutable_labels())["subscription.demo.container.command"] = "true";
  (*prefix.mutable_labels())["subscription.demo.ping.container.comand"] = "typo";
  dispatch::v1::Container unrelated;
  unrelated.set_id("c4");
  unrelated.set_name("unrelated");
  (*unrelated.mutable_labels())["subscription.x.container.command"] = "true";
  index.ReplaceAgentInventory("h1", {exact, broken, prefix, unrelated});

  std::vector<LabelMatch> near = index.Near("demo.ping");
  ASSERT_EQ(near.size(), 3u);
  EXPECT_EQ(near[0].container_name, "broken");
  EXPECT_FALSE(near[0].subscription.has_value());
  ASSERT_EQ(near[0].invalid.size(), 1u);
  EXPECT_THAT(near[0].invalid[0].reason, HasSubstr("quote"));
  EXPECT_EQ(near[1].container_name, "exact");
  ASSERT_TRUE(near[1].subscription.has_value());
  EXPECT_EQ(near[1].labels.size(), 1u) << "only the labels for this id";
  EXPECT_TRUE(near[1].near_misses.empty());
  EXPECT_EQ(near[2].container_name, "prefix");
  EXPECT_FALSE(near[2].subscription.has_value());
  ASSERT_EQ(near[2].near_misses.size(), 2u);
  EXPECT_THAT(near[2].near_misses[0], HasSubstr("a prefix of 'demo.ping'"));
  EXPECT_THAT(near[2].near_misses[1], HasSubstr("container.comand: no known suffix"));
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
