#include "controller/agent_table.h"

#include <random>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Kind = AgentTable::HeartbeatAction::Kind;
using DeltaOrder = AgentTable::DeltaOrder;

// The table never calls its links; a distinct object per session is enough.
class NullLink : public AgentLink {
 public:
  void Send(dispatch::v1::ControllerMessage) override {}
  void Close(const std::string&) override {}
};

constexpr absl::Duration kPeriod = absl::Seconds(5);

class AgentTableTest : public ::testing::Test {
 protected:
  explicit AgentTableTest(absl::Duration startup_grace = absl::ZeroDuration())
      : table_(AgentTableOptions{.heartbeat_period = kPeriod,
                                 .missed_heartbeats = 3,
                                 .startup_grace = startup_grace},
               clock_.Now()) {}

  std::vector<std::string> Kinds(const std::vector<AgentTable::HeartbeatAction>& actions) {
    std::vector<std::string> out;
    for (const auto& a : actions) {
      out.push_back(a.agent_id + (a.kind == Kind::kCloseSilent ? ": close" : ": heartbeat"));
    }
    return out;
  }

  FakeClock clock_;
  AgentTable table_;
  NullLink link_a_, link_b_;
};

TEST_F(AgentTableTest, ConnectedAgentIsFreshAfterItsSnapshot) {
  table_.Connect("host-a", "a.example", &link_a_, clock_.Now());
  EXPECT_FALSE(table_.AllFresh(clock_.Now())) << "no snapshot yet";
  EXPECT_FALSE(table_.AcceptSnapshot("host-a", 4)) << "was not fresh";
  EXPECT_TRUE(table_.AllFresh(clock_.Now()));
  const AgentTable::Agent* a = table_.Find("host-a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->link, &link_a_);
  EXPECT_EQ(a->host, "a.example");
  EXPECT_EQ(a->seq, 4u);
  EXPECT_EQ(table_.connected_count(), 1u);
  EXPECT_EQ(table_.fresh_count(), 1u);
  EXPECT_EQ(table_.Find("host-b"), nullptr);
}

TEST_F(AgentTableTest, NoAgentsIsNotAllFresh) { EXPECT_FALSE(table_.AllFresh(clock_.Now())); }

TEST_F(AgentTableTest, AllFreshNeedsEveryAgent) {
  table_.Connect("host-a", "host-a", &link_a_, clock_.Now());
  table_.Connect("host-b", "host-b", &link_b_, clock_.Now());
  table_.AcceptSnapshot("host-a", 1);
  EXPECT_FALSE(table_.AllFresh(clock_.Now()));
  table_.AcceptSnapshot("host-b", 1);
  EXPECT_TRUE(table_.AllFresh(clock_.Now()));
  EXPECT_TRUE(table_.MarkStale("host-b")) << "was fresh";
  EXPECT_FALSE(table_.AllFresh(clock_.Now()));
  EXPECT_FALSE(table_.MarkStale("host-b"));
}

TEST_F(AgentTableTest, DeltasFollowTheirSequence) {
  table_.Connect("host-a", "host-a", &link_a_, clock_.Now());
  table_.AcceptSnapshot("host-a", 5);
  EXPECT_EQ(table_.AcceptDelta("host-a", 5), DeltaOrder::kCovered);
  EXPECT_EQ(table_.AcceptDelta("host-a", 3), DeltaOrder::kCovered);
  EXPECT_EQ(table_.AcceptDelta("host-a", 6), DeltaOrder::kNext);
  EXPECT_EQ(table_.Find("host-a")->seq, 6u);
  EXPECT_TRUE(table_.AllFresh(clock_.Now()));
  EXPECT_EQ(table_.AcceptDelta("host-a", 8), DeltaOrder::kGap);
  EXPECT_FALSE(table_.AllFresh(clock_.Now())) << "a delta was missed";
  EXPECT_EQ(table_.Find("host-a")->seq, 6u);
  table_.AcceptSnapshot("host-a", 9);
  EXPECT_TRUE(table_.AllFresh(clock_.Now()));
}

TEST_F(AgentTableTest, HeartbeatIsDueOncePerPeriod) {
  table_.Connect("host-a", "host-a", &link_a_, clock_.Now());
  clock_.Advance(kPeriod - absl::Milliseconds(1));
  table_.Heard("host-a", clock_.Now());
  EXPECT_THAT(table_.CheckHeartbeats(clock_.Now()), IsEmpty());
  clock_.Advance(absl::Milliseconds(1));
  std::vector<AgentTable::HeartbeatAction> due = table_.CheckHeartbeats(clock_.Now());
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].kind, Kind::kSendHeartbeat);
  EXPECT_EQ(due[0].link, &link_a_);
  EXPECT_THAT(table_.CheckHeartbeats(clock_.Now()), IsEmpty()) << "sent already";
  EXPECT_EQ(table_.NextDeadline(clock_.Now()), clock_.Now() + kPeriod);
}

TEST_F(AgentTableTest, SilentAgentIsClosedOnceAfterMissedHeartbeats) {
  table_.Connect("host-a", "host-a", &link_a_, clock_.Now());
  table_.Connect("host-b", "host-b", &link_b_, clock_.Now());
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(kPeriod);
    table_.Heard("host-b", clock_.Now());
    EXPECT_THAT(Kinds(table_.CheckHeartbeats(clock_.Now())),
                ElementsAre("host-a: heartbeat", "host-b: heartbeat"));
  }
  // host-a has been silent for exactly 3 periods: not yet too long (above).
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_THAT(Kinds(table_.CheckHeartbeats(clock_.Now())), ElementsAre("host-a: close"));
  EXPECT_THAT(table_.CheckHeartbeats(clock_.Now()), IsEmpty()) << "closed once";
  EXPECT_NE(table_.Find("host-a")->link, nullptr) << "until its session reports its end";
}

TEST_F(AgentTableTest, UnknownAgentIsNotHeard) {
  EXPECT_EQ(table_.Heard("host-a", clock_.Now()), nullptr);
  EXPECT_THAT(table_.Infos(), IsEmpty());
}

TEST_F(AgentTableTest, DisconnectOfAnotherSessionChangesNothing) {
  table_.Connect("host-a", "host-a", &link_a_, clock_.Now());
  table_.AcceptSnapshot("host-a", 1);
  EXPECT_FALSE(table_.Disconnect("host-a", &link_b_, clock_.Now()));
  EXPECT_FALSE(table_.Disconnect("host-b", &link_b_, clock_.Now()));
  EXPECT_TRUE(table_.AllFresh(clock_.Now()));
}

TEST_F(AgentTableTest, NewSessionReplacesTheOldOne) {
  EXPECT_EQ(table_.Connect("host-a", "host-a", &link_a_, clock_.Now()).replaced, nullptr);
  EXPECT_EQ(table_.Connect("host-a", "host-a", &link_a_, clock_.Now()).replaced, nullptr)
      << "the same session again";
  AgentTable::Connection c = table_.Connect("host-a", "host-a", &link_b_, clock_.Now());
  EXPECT_EQ(c.replaced, &link_a_);
  EXPECT_FALSE(c.was_away);
  EXPECT_FALSE(table_.Disconnect("host-a", &link_a_, clock_.Now())) << "the old session's end";
  EXPECT_EQ(table_.connected_count(), 1u);
}

TEST_F(AgentTableTest, AwayAgentExpiresAfterTheGrace) {
  table_.Connect("host-a", "host-a", &link_a_, clock_.Now());
  table_.Connect("host-b", "host-b", &link_b_, clock_.Now());
  table_.AcceptSnapshot("host-a", 1);
  table_.AcceptSnapshot("host-b", 1);
  const absl::Time left = clock_.Now();
  ASSERT_TRUE(table_.Disconnect("host-a", &link_a_, left));
  EXPECT_FALSE(table_.AllFresh(clock_.Now())) << "an away agent is never fresh";
  EXPECT_EQ(table_.connected_count(), 1u);
  EXPECT_EQ(table_.fresh_count(), 1u);
  EXPECT_EQ(table_.away_grace(), absl::Seconds(15));
  EXPECT_EQ(table_.NextDeadline(clock_.Now()), clock_.Now() + kPeriod);
  clock_.Advance(absl::Seconds(12));
  EXPECT_EQ(table_.NextDeadline(clock_.Now()), left + absl::Seconds(15)) << "its expiry";
  EXPECT_THAT(table_.ExpiredAway(clock_.Now()), IsEmpty());
  std::vector<AgentTable::HeartbeatAction> due = table_.CheckHeartbeats(clock_.Now());
  ASSERT_EQ(due.size(), 1u) << "nothing is due to an away agent";
  EXPECT_EQ(due[0].agent_id, "host-b");
  clock_.SetTime(left + absl::Seconds(15));
  EXPECT_THAT(table_.ExpiredAway(clock_.Now()), ElementsAre("host-a"));
  EXPECT_THAT(table_.ExpiredAway(clock_.Now()), ElementsAre("host-a")) << "until removed";
  table_.Remove("host-a");
  EXPECT_THAT(table_.ExpiredAway(clock_.Now()), IsEmpty());
  EXPECT_TRUE(table_.AllFresh(clock_.Now()));
}

TEST_F(AgentTableTest, AgentBackWithinTheGraceWasAwayAndWaitsForItsSnapshot) {
  table_.Connect("host-a", "host-a", &link_a_, clock_.Now());
  table_.AcceptSnapshot("host-a", 3);
  table_.Disconnect("host-a", &link_a_, clock_.Now());
  std::vector<AgentInfo> infos = table_.Infos();
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_FALSE(infos[0].connected);
  EXPECT_FALSE(infos[0].inventory_fresh);
  clock_.Advance(absl::Seconds(14));
  AgentTable::Connection c = table_.Connect("host-a", "host-a", &link_b_, clock_.Now());
  EXPECT_TRUE(c.was_away);
  EXPECT_EQ(c.replaced, nullptr);
  EXPECT_FALSE(table_.AllFresh(clock_.Now()));
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT(table_.ExpiredAway(clock_.Now()), IsEmpty()) << "no longer away";
  EXPECT_EQ(table_.Find("host-a")->seq, 3u) << "kept until the snapshot";
  infos = table_.Infos();
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_TRUE(infos[0].connected);
  EXPECT_EQ(infos[0].inventory_seq, 3u);
}

TEST_F(AgentTableTest, FirstConnectionIsNotAReturn) {
  EXPECT_FALSE(table_.Connect("host-a", "host-a", &link_a_, clock_.Now()).was_away);
}

TEST_F(AgentTableTest, InfosAreInIdOrder) {
  table_.Connect("host-b", "b", &link_b_, clock_.Now());
  clock_.Advance(absl::Seconds(1));
  table_.Connect("host-a", "a", &link_a_, clock_.Now());
  std::vector<AgentInfo> infos = table_.Infos();
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_EQ(infos[0].agent_id, "host-a");
  EXPECT_EQ(infos[0].host, "a");
  EXPECT_EQ(infos[0].last_heard, clock_.Now());
  EXPECT_EQ(infos[1].agent_id, "host-b");
}

class AgentTableStartupTest : public AgentTableTest {
 protected:
  AgentTableStartupTest() : AgentTableTest(absl::Seconds(15)) {}
};

TEST_F(AgentTableStartupTest, NothingIsFreshDuringTheStartupGrace) {
  const absl::Time started = clock_.Now();
  table_.Connect("host-a", "host-a", &link_a_, clock_.Now());
  table_.AcceptSnapshot("host-a", 1);
  EXPECT_FALSE(table_.AllFresh(clock_.Now()));
  EXPECT_EQ(table_.NextDeadline(clock_.Now()), clock_.Now() + kPeriod) << "heartbeat first";
  clock_.Advance(absl::Seconds(12));
  EXPECT_EQ(table_.NextDeadline(clock_.Now()), started + absl::Seconds(15)) << "the grace ends";
  clock_.SetTime(started + absl::Seconds(15) - absl::Nanoseconds(1));
  EXPECT_FALSE(table_.AllFresh(clock_.Now()));
  clock_.SetTime(started + absl::Seconds(15));
  EXPECT_TRUE(table_.AllFresh(clock_.Now()));
  EXPECT_EQ(table_.NextDeadline(clock_.Now()), clock_.Now() + kPeriod);
}

// AllFresh and fresh_count keep a count of the agents that are not fresh
// instead of walking them: after every kind of transition they must say what
// a walk over Infos() says.
class AgentTableCountTest : public ::testing::Test {
 protected:
  static constexpr absl::Duration kGrace = absl::Seconds(15);

  AgentTableCountTest()
      : started_(clock_.Now()),
        table_(AgentTableOptions{.heartbeat_period = kPeriod,
                                 .missed_heartbeats = 3,
                                 .startup_grace = kGrace,
                                 .expected_agents = {{"host-x", "x"}, {"host-y", "y"}}},
               clock_.Now()) {}

  // The brute-force answer, from every agent's own state.
  void ExpectCountsAgree(const std::string& step) {
    SCOPED_TRACE(step);
    const absl::Time now = clock_.Now();
    const std::vector<AgentInfo> infos = table_.Infos();
    size_t fresh = 0;
    for (const AgentInfo& info : infos) fresh += info.inventory_fresh ? 1 : 0;
    const bool all_fresh = now >= started_ + kGrace && !infos.empty() && fresh == infos.size();
    EXPECT_EQ(table_.fresh_count(), fresh);
    EXPECT_EQ(table_.AllFresh(now), all_fresh);
    const std::string reason = table_.NotFreshReason(now);
    EXPECT_EQ(reason.empty(), all_fresh) << reason;
    if (now >= started_ + kGrace) {
      for (const AgentInfo& info : infos) {
        if (!info.inventory_fresh) {
          EXPECT_THAT(reason, HasSubstr("agent " + info.agent_id));
        }
      }
    }
  }

  FakeClock clock_;
  const absl::Time started_;
  AgentTable table_;
  NullLink links_[4];
};

TEST_F(AgentTableCountTest, EveryTransitionKeepsTheCount) {
  ExpectCountsAgree("expected agents, away from the start");
  table_.Connect("host-x", "x", &links_[0], clock_.Now());
  ExpectCountsAgree("an expected agent connects");
  table_.AcceptSnapshot("host-x", 1);
  ExpectCountsAgree("its snapshot");
  table_.AcceptSnapshot("host-x", 2);
  ExpectCountsAgree("a second snapshot of a fresh agent");
  table_.Connect("host-a", "a", &links_[1], clock_.Now());
  ExpectCountsAgree("a new agent connects");
  table_.AcceptSnapshot("host-a", 1);
  table_.Connect("host-y", "y", &links_[2], clock_.Now());
  table_.AcceptSnapshot("host-y", 5);
  ExpectCountsAgree("every agent fresh, within the start-up grace");
  clock_.SetTime(started_ + kGrace);
  ExpectCountsAgree("the start-up grace ends");
  EXPECT_TRUE(table_.AllFresh(clock_.Now()));

  EXPECT_EQ(table_.AcceptDelta("host-y", 6), DeltaOrder::kNext);
  ExpectCountsAgree("the next delta");
  EXPECT_EQ(table_.AcceptDelta("host-y", 6), DeltaOrder::kCovered);
  ExpectCountsAgree("a covered delta");
  EXPECT_EQ(table_.AcceptDelta("host-y", 9), DeltaOrder::kGap);
  ExpectCountsAgree("a delta gap");
  EXPECT_EQ(table_.AcceptDelta("host-y", 10), DeltaOrder::kGap);
  ExpectCountsAgree("another gap of an agent not fresh");
  table_.AcceptSnapshot("host-y", 11);
  ExpectCountsAgree("the snapshot after the gap");

  table_.MarkStale("host-a");
  ExpectCountsAgree("stale");
  table_.MarkStale("host-a");
  ExpectCountsAgree("stale again");
  table_.AcceptSnapshot("host-a", 2);

  table_.Connect("host-a", "a", &links_[3], clock_.Now());
  ExpectCountsAgree("a fresh agent opens a second session (replacing the first)");
  table_.Connect("host-a", "a", &links_[3], clock_.Now());
  ExpectCountsAgree("the same session again");
  EXPECT_FALSE(table_.Disconnect("host-a", &links_[1], clock_.Now()));
  ExpectCountsAgree("the replaced session ends");
  table_.AcceptSnapshot("host-a", 3);
  EXPECT_TRUE(table_.Disconnect("host-a", &links_[3], clock_.Now()));
  ExpectCountsAgree("a fresh agent disconnects");
  EXPECT_TRUE(table_.Disconnect("host-x", &links_[0], clock_.Now()));
  ExpectCountsAgree("another");
  table_.Connect("host-a", "a", &links_[1], clock_.Now());
  ExpectCountsAgree("an away agent comes back");
  table_.AcceptSnapshot("host-a", 4);
  ExpectCountsAgree("and is fresh");

  clock_.Advance(table_.away_grace());
  ASSERT_THAT(table_.ExpiredAway(clock_.Now()), ElementsAre("host-x"));
  table_.Remove("host-x");
  ExpectCountsAgree("an away agent expires");
  EXPECT_TRUE(table_.AllFresh(clock_.Now()));
  table_.MarkStale("host-y");
  table_.Remove("host-y");
  ExpectCountsAgree("a connected agent that is not fresh is forgotten");
  table_.Remove("host-a");
  ExpectCountsAgree("a fresh one is forgotten");
  table_.Remove("host-a");
  ExpectCountsAgree("an unknown one");
  EXPECT_FALSE(table_.AllFresh(clock_.Now())) << "no agent left";
}

TEST_F(AgentTableCountTest, RandomTransitionsKeepTheCount) {
  const std::vector<std::string> ids = {"host-a", "host-b", "host-c", "host-x", "host-y"};
  std::mt19937 random(20240613);
  for (int step = 0; step < 5000; ++step) {
    const std::string& id = ids[random() % ids.size()];
    const bool known = table_.Find(id) != nullptr;
    std::string what;
    switch (random() % 9) {
      case 0:
      case 1: {
        NullLink* link = &links_[random() % 4];
        table_.Connect(id, id, link, clock_.Now());
        what = "connect";
        break;
      }
      case 2:
        if (!known) continue;
        table_.AcceptSnapshot(id, table_.Find(id)->seq + 1 + random() % 3);
        what = "snapshot";
        break;
      case 3:
        if (!known) continue;
        // The next one, one covered, or one after a gap.
        table_.AcceptDelta(id, table_.Find(id)->seq + random() % 3);
        what = "delta";
        break;
      case 4:
        if (!known) continue;
        table_.MarkStale(id);
        what = "stale";
        break;
      case 5:
        if (!known) continue;
        table_.Disconnect(id, table_.Find(id)->link, clock_.Now());
        what = "disconnect";
        break;
      case 6:
        table_.Disconnect(id, &links_[random() % 4], clock_.Now());
        what = "disconnect of any session";
        break;
      case 7:
        for (const std::string& expired : table_.ExpiredAway(clock_.Now())) {
          table_.Remove(expired);
        }
        what = "expire";
        break;
      case 8:
        if (random() % 4 == 0) {
          table_.Remove(id);
          what = "forget";
        } else {
          clock_.Advance(absl::Seconds(random() % 4));
          what = "time passes";
        }
        break;
    }
    ExpectCountsAgree("step " + std::to_string(step) + ": " + what + " " + id);
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
