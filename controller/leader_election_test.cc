#include "controller/leader_election.h"

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

using ::testing::HasSubstr;

constexpr absl::Duration kTick = absl::Milliseconds(100);

// Three replicas on one FakeEtcd, run on a FakeClock in 100 ms ticks; every
// tick checks that at most one replica leads.
class ElectionTest : public ::testing::Test {
 protected:
  struct Replica {
    std::unique_ptr<PartitionableEtcd> etcd;
    std::unique_ptr<LeaderElector> elector;
    absl::Time next;
    bool running = true;
    std::vector<std::string> events;  // "started", "stopped: why"
  };

  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      auto r = std::make_unique<Replica>();
      r->etcd = std::make_unique<PartitionableEtcd>(&etcd_);
      LeaderElectionOptions options;
      options.identity = absl::StrCat("ctl-", i);
      options.address = absl::StrCat("127.0.0.1:770", i);
      Replica* raw = r.get();
      LeaderElector::Callbacks callbacks;
      callbacks.started_leading = [raw](absl::Time) {
        // Before Leading() turns true: the new term is ready first.
        EXPECT_FALSE(raw->elector->Leading());
        raw->events.push_back("started");
      };
      callbacks.stopped_leading = [raw](const std::string& why) {
        EXPECT_FALSE(raw->elector->Leading());
        raw->events.push_back(absl::StrCat("stopped: ", why));
      };
      r->elector =
          std::make_unique<LeaderElector>(r->etcd.get(), &clock_, options, callbacks);
      r->next = clock_.Now();
      replicas_.push_back(std::move(r));
    }
  }

  // Advances the clock by `d` in ticks, stepping every running replica
  // that is due, and checks the one-leader rule at each tick.
  void Run(absl::Duration d, bool check = true) {
    const absl::Time end = clock_.Now() + d;
    while (clock_.Now() < end) {
      for (auto& r : replicas_) {
        if (r->running && r->next <= clock_.Now()) r->next = r->elector->Step();
      }
      if (check) ASSERT_LE(LeaderCount(), 1) << "two replicas lead at " << clock_.Now();
      clock_.Advance(kTick);
    }
  }

  // Runs until some replica leads (at most `limit`); returns which, or -1.
  int RunUntilLeader(absl::Duration limit) {
    const absl::Time end = clock_.Now() + limit;
    while (clock_.Now() <= end) {
      for (size_t i = 0; i < replicas_.size(); ++i) {
        Replica& r = *replicas_[i];
        if (r.running && r.next <= clock_.Now()) r.next = r.elector->Step();
        if (r.running && r.elector->Leading()) return static_cast<int>(i);
      }
      clock_.Advance(kTick);
    }
    return -1;
  }

  int LeaderCount() const {
    int n = 0;
    // A killed replica's elector object is not a process that acts.
    for (const auto& r : replicas_) n += r->running && r->elector->Leading() ? 1 : 0;
    return n;
  }

  FakeClock clock_;
  FakeEtcd etcd_{&clock_};
  std::vector<std::unique_ptr<Replica>> replicas_;
};

TEST_F(ElectionTest, ExactlyOneLeadsAndTheOthersKnowWho) {
  const int leader = RunUntilLeader(absl::Seconds(1));
  ASSERT_GE(leader, 0);
  Run(absl::Seconds(10));  // renewals keep it leading
  EXPECT_TRUE(replicas_[leader]->elector->Leading());
  EXPECT_EQ(LeaderCount(), 1);
  for (const auto& r : replicas_) {
    EXPECT_EQ(r->elector->leader().identity, absl::StrCat("ctl-", leader));
    EXPECT_EQ(r->elector->leader().address, absl::StrCat("127.0.0.1:770", leader));
  }
  EXPECT_EQ(replicas_[leader]->events, std::vector<std::string>{"started"});
  EXPECT_EQ(replicas_[leader]->elector->transitions(), 1u);
}

// A killed leader renews no more; etcd lets its lease expire and another
// replica takes over within the lease duration and one retry period.
TEST_F(ElectionTest, AKilledLeaderIsReplacedOnceItsLeaseExpires) {
  const int old = RunUntilLeader(absl::Seconds(1));
  ASSERT_GE(old, 0);
  Run(absl::Seconds(2));
  replicas_[old]->running = false;  // kill -9: no Step, no revoke
  const absl::Time killed = clock_.Now();
  const int next = RunUntilLeader(absl::Seconds(10));
  ASSERT_GE(next, 0);
  EXPECT_NE(next, old);
  const LeaderElectionOptions& o = replicas_[next]->elector->options();
  EXPECT_LE(clock_.Now() - killed, o.lease_duration + o.retry_period + kTick);
}

// Cut off from etcd, a leader stops leading at its renew deadline, while its
// lease is still alive in etcd: nobody else can lead yet. Once it expires,
// another replica leads; the old one, back, sees the key held and does not.
TEST_F(ElectionTest, ALeaderCutOffStopsBeforeItsLeaseCanExpireAndDoesNotComeBackAsLeader) {
  const int old = RunUntilLeader(absl::Seconds(1));
  ASSERT_GE(old, 0);
  Run(absl::Seconds(1));
  const int64_t lease = etcd_.LeaseOf("/dispatchd/leader");
  ASSERT_NE(lease, 0);
  replicas_[old]->etcd->SetCutOff(true);
  // Step by step: when it stops leading, its lease must still be alive.
  bool stopped_while_lease_alive = false;
  for (int i = 0; i < 50 && !stopped_while_lease_alive; ++i) {
    Run(kTick);
    if (!replicas_[old]->elector->Leading()) {
      stopped_while_lease_alive = etcd_.LeaseAlive(lease);
      break;
    }
  }
  EXPECT_TRUE(stopped_while_lease_alive);
  const int next = RunUntilLeader(absl::Seconds(10));
  ASSERT_GE(next, 0);
  EXPECT_NE(next, old);
  ASSERT_EQ(replicas_[old]->events.size(), 2u);
  EXPECT_THAT(replicas_[old]->events[1], HasSubstr("renew deadline"));
  replicas_[old]->etcd->SetCutOff(false);
  Run(absl::Seconds(5));
  EXPECT_FALSE(replicas_[old]->elector->Leading());
  EXPECT_TRUE(replicas_[next]->elector->Leading());
  EXPECT_EQ(replicas_[old]->elector->leader().identity, absl::StrCat("ctl-", next));
}

// Quorum lost: every replica is cut off; the leader steps down and nobody
// leads until etcd is back.
TEST_F(ElectionTest, WithQuorumLostNobodyLeadsUntilItIsBack) {
  ASSERT_GE(RunUntilLeader(absl::Seconds(1)), 0);
  etcd_.SetCutOff(true);
  Run(absl::Seconds(3));
  EXPECT_EQ(LeaderCount(), 0);
  Run(absl::Seconds(20));
  EXPECT_EQ(LeaderCount(), 0);
  etcd_.SetCutOff(false);
  EXPECT_GE(RunUntilLeader(absl::Seconds(4)), 0);
}

// A clean shutdown revokes the lease: another replica takes over at its
// next look, without waiting for the lease to expire.
TEST_F(ElectionTest, StopHandsOverAtOnce) {
  const int old = RunUntilLeader(absl::Seconds(1));
  ASSERT_GE(old, 0);
  replicas_[old]->elector->Stop();
  replicas_[old]->running = false;
  EXPECT_EQ(etcd_.LeaseOf("/dispatchd/leader"), 0);
  const absl::Time stopped = clock_.Now();
  const int next = RunUntilLeader(absl::Seconds(5));
  ASSERT_GE(next, 0);
  EXPECT_LE(clock_.Now() - stopped, replicas_[next]->elector->options().retry_period + kTick);
  EXPECT_THAT(replicas_[old]->events.back(), HasSubstr("shutting down"));
}

// The leader key deleted by hand (outside the protocol, docs/ha.md): another
// replica may create it before the leader's next renewal, and then both
// lead for at most one retry period; the old leader sees the key held by
// another at that renewal and steps down.
TEST_F(ElectionTest, ADeletedLeaderKeyCostsTheOldLeaderItsLeadershipAtItsNextRenewal) {
  const int old = RunUntilLeader(absl::Seconds(1));
  ASSERT_GE(old, 0);
  ASSERT_TRUE(etcd_.Delete("/dispatchd/leader", clock_.Now()).ok());
  const LeaderElectionOptions& o = replicas_[old]->elector->options();
  Run(o.retry_period + kTick, /*check=*/false);
  EXPECT_EQ(LeaderCount(), 1);
  Run(absl::Seconds(5));
  EXPECT_EQ(LeaderCount(), 1);
  if (!replicas_[old]->elector->Leading()) {
    EXPECT_THAT(replicas_[old]->events.back(), HasSubstr("held by"));
  }
}

// The leader's own renewal finds the key gone first: it writes it again
// and keeps leading.
TEST_F(ElectionTest, ALeaderThatFindsItsKeyGoneWritesItAgain) {
  const int leader = RunUntilLeader(absl::Seconds(1));
  ASSERT_GE(leader, 0);
  const int64_t lease = etcd_.LeaseOf("/dispatchd/leader");
  ASSERT_TRUE(etcd_.Delete("/dispatchd/leader", clock_.Now()).ok());
  clock_.Advance(replicas_[leader]->elector->options().retry_period);
  replicas_[leader]->next = replicas_[leader]->elector->Step();  // before anyone else
  EXPECT_EQ(etcd_.LeaseOf("/dispatchd/leader"), lease);
  Run(absl::Seconds(5));
  EXPECT_TRUE(replicas_[leader]->elector->Leading());
}

TEST(LeaderElectionOptionsTest, TheTimingsMustLeaveALeaderTimeToStop) {
  LeaderElectionOptions o;
  o.identity = "a";
  EXPECT_TRUE(ValidateLeaderElectionOptions(o).ok());
  LeaderElectionOptions late = o;
  late.renew_deadline = late.lease_duration;
  EXPECT_THAT(ValidateLeaderElectionOptions(late).message(), HasSubstr("shorter than the lease"));
  LeaderElectionOptions short_lease = o;
  short_lease.lease_duration = absl::Seconds(1);
  EXPECT_THAT(ValidateLeaderElectionOptions(short_lease).message(), HasSubstr("at least 2s"));
  LeaderElectionOptions slow_retry = o;
  slow_retry.retry_period = o.renew_deadline;
  EXPECT_THAT(ValidateLeaderElectionOptions(slow_retry).message(), HasSubstr("retry period"));
  LeaderElectionOptions nameless = o;
  nameless.identity = "";
  EXPECT_FALSE(ValidateLeaderElectionOptions(nameless).ok());
}

TEST(LeaderValueTest, IdentityAndAddressRoundTrip) {
  LeaderInfo info = DecodeLeader(EncodeLeader({"ctl-a", "10.0.0.1:7700"}));
  EXPECT_EQ(info.identity, "ctl-a");
  EXPECT_EQ(info.address, "10.0.0.1:7700");
  EXPECT_EQ(DecodeLeader("only-id").identity, "only-id");
  EXPECT_EQ(DecodeLeader("only-id").address, "");
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
