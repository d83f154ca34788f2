#include "controller/agent_table.h"

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

}  // namespace
}  // namespace controller
}  // namespace dispatchd
