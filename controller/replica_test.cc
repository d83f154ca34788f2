#include "controller/replica.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/fake_clock.h"
#include "controller/testing/fake_etcd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::ControllerMessage;
using ::testing::HasSubstr;
using ::testing::SizeIs;

class FakeLink : public AgentLink {
 public:
  void Send(ControllerMessage message) override { sent.push_back(std::move(message)); }
  void Close(const std::string& reason) override { closed.push_back(reason); }
  int commands() const {
    int n = 0;
    for (const auto& m : sent) n += m.has_command() ? 1 : 0;
    return n;
  }
  std::vector<ControllerMessage> sent;
  std::vector<std::string> closed;
};

AgentMessage Snapshot(uint64_t seq) {
  AgentMessage m;
  m.mutable_inventory_snapshot()->set_seq(seq);
  dispatch::v1::Container* c = m.mutable_inventory_snapshot()->add_containers();
  c->set_id("c1");
  c->set_name("handler");
  c->set_state(dispatch::v1::Container::RUNNING);
  (*c->mutable_labels())["subscription.demo.go.container.command"] = "true";
  return m;
}

AgentMessage Event(const std::string& key) {
  AgentMessage m;
  m.mutable_event()->set_key(key);
  m.mutable_event()->set_event_id("demo.go");
  m.mutable_event()->set_generation(1);
  return m;
}

class ReplicaTest : public ::testing::Test {
 protected:
  ReplicaTest() {
    for (int i = 0; i < 2; ++i) {
      views_.push_back(std::make_unique<PartitionableEtcd>(&etcd_));
      ReplicaOptions options;
      options.election.identity = absl::StrCat("ctl-", i);
      options.election.address = absl::StrCat("127.0.0.1:770", i);
      options.dispatcher.startup_grace = absl::Seconds(15);
      replicas_.push_back(std::make_unique<Replica>(views_.back().get(), &clock_, options));
    }
  }

  // Steps both replicas every 100 ms for `d`.
  void Run(absl::Duration d) {
    const absl::Time end = clock_.Now() + d;
    while (clock_.Now() < end) {
      for (size_t i = 0; i < replicas_.size(); ++i) {
        if (!stopped_[i] && next_[i] <= clock_.Now()) next_[i] = replicas_[i]->Step();
      }
      clock_.Advance(absl::Milliseconds(100));
    }
  }

  FakeClock clock_;
  FakeEtcd etcd_{&clock_};
  // Before the replicas: a term that ends in their destructor closes them.
  FakeLink link_, back_, late_;
  std::vector<std::unique_ptr<PartitionableEtcd>> views_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  absl::Time next_[2] = {absl::InfinitePast(), absl::InfinitePast()};
  bool stopped_[2] = {false, false};
};

TEST_F(ReplicaTest, ALeaderKeepsTheMembershipListAndItsSuccessorWaitsForThoseAgents) {
  Run(absl::Milliseconds(100));
  ASSERT_TRUE(replicas_[0]->Leading());
  ASSERT_FALSE(replicas_[1]->Leading());
  std::shared_ptr<Dispatcher> term = replicas_[0]->dispatcher();
  FakeLink& link = link_;
  term->AgentConnected("host-a", "host-a", &link);
  term->OnAgentMessage("host-a", Snapshot(1));
  Run(absl::Seconds(1));  // a renewal writes the list
  auto listed = etcd_.GetPrefix("/dispatchd/agents/", clock_.Now());
  ASSERT_TRUE(listed.ok());
  ASSERT_THAT(*listed, SizeIs(1));
  EXPECT_EQ((*listed)[0].key, "/dispatchd/agents/host-a");
  EXPECT_EQ((*listed)[0].value, "host-a");

  // The leader is cut off from etcd: commands stop at its renew deadline,
  // before its elector thread even looks.
  views_[0]->SetCutOff(true);
  clock_.Advance(absl::Seconds(2));
  EXPECT_FALSE(replicas_[0]->Leading());
  term->OnAgentMessage("host-a", Event("demo/go"));
  EXPECT_EQ(link.commands(), 0);
  // Its elector steps down: the term ends, the session is closed.
  Run(absl::Milliseconds(200));
  ASSERT_THAT(link.closed, SizeIs(1));
  EXPECT_THAT(link.closed[0], HasSubstr("no longer leads"));
  EXPECT_NE(replicas_[0]->dispatcher(), term);

  // The other replica leads once the lease expires, and waits for host-a
  // (not the 15 s start-up grace): the moment it is back, it routes.
  Run(absl::Seconds(3));
  ASSERT_TRUE(replicas_[1]->Leading());
  std::shared_ptr<Dispatcher> next = replicas_[1]->dispatcher();
  EXPECT_EQ(next->KnownAgents().count("host-a"), 1u);
  FakeLink& back = back_;
  next->AgentConnected("host-a", "host-a", &back);
  next->OnAgentMessage("host-a", Snapshot(1));
  next->OnAgentMessage("host-a", Event("demo/go"));
  EXPECT_EQ(back.commands(), 1);
}

TEST_F(ReplicaTest, TheFirstLeaderWithoutAListWaitsTheStartUpGrace) {
  Run(absl::Milliseconds(100));
  ASSERT_TRUE(replicas_[0]->Leading());
  std::shared_ptr<Dispatcher> term = replicas_[0]->dispatcher();
  FakeLink& link = link_;
  term->AgentConnected("host-a", "host-a", &link);
  term->OnAgentMessage("host-a", Snapshot(1));
  term->OnAgentMessage("host-a", Event("demo/go"));
  EXPECT_EQ(link.commands(), 0);
  Run(absl::Seconds(15));  // renewing all along
  term->Poll();
  EXPECT_EQ(link.commands(), 1);
}

TEST_F(ReplicaTest, AStandbysDispatcherTakesNoAgent) {
  Run(absl::Milliseconds(100));
  ASSERT_FALSE(replicas_[1]->Leading());
  // Sessions reach a standby only through a race with a step-down; its
  // idle Dispatcher then has nothing to route, and the next term's
  // BeginTerm ends it.
  std::shared_ptr<Dispatcher> idle = replicas_[1]->dispatcher();
  replicas_[0]->Stop();  // hands over at once
  stopped_[0] = true;
  Run(absl::Seconds(1));
  ASSERT_TRUE(replicas_[1]->Leading());
  FakeLink& late = late_;
  idle->AgentConnected("host-a", "host-a", &late);
  EXPECT_THAT(late.closed, SizeIs(1));
}

// A new agent is on the membership list at once, not at the next renewal:
// the elector's thread is nudged (the fake clock never moves here).
TEST_F(ReplicaTest, ANewAgentIsListedWithoutWaitingForTheNextRenewal) {
  replicas_[0]->Start();
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (!replicas_[0]->Leading() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_TRUE(replicas_[0]->Leading());
  auto listed = [&] {
    auto kvs = etcd_.GetPrefix("/dispatchd/agents/", clock_.Now());
    return kvs.ok() && kvs->size() == 1;
  };
  EXPECT_FALSE(listed());
  replicas_[0]->dispatcher()->AgentConnected("host-a", "host-a", &link_);
  while (!listed() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_TRUE(listed());
  replicas_[0]->Stop();
  stopped_[0] = true;
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
