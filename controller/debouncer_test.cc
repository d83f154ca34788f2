#include "controller/debouncer.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using Action = Debouncer::Decision::Action;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::IsEmpty;
using ::testing::Optional;

constexpr absl::Duration kD = absl::Milliseconds(1000);

absl::Duration Ms(int64_t ms) { return absl::Milliseconds(ms); }

// A caller as the dispatcher would be: events arrive at given offsets (ms)
// on a FakeClock, and whenever the clock reaches NextDeadline() the due
// items are delivered. Items are the event offsets, so a delivery says
// which event it carries.
class Simulation {
 public:
  struct Delivery {
    int64_t at_ms;
    int64_t item_ms;
    bool operator==(const Delivery& o) const { return at_ms == o.at_ms && item_ms == o.item_ms; }
  };

  explicit Simulation(absl::Duration period) : period_(period) {}

  void Run(const std::vector<int64_t>& event_ms) {
    for (int64_t t : event_ms) {
      AdvanceTo(start_ + Ms(t));
      Debouncer::Decision d = debouncer_.Offer("ev@c", period_, t, clock_.Now());
      if (d.coalesced.has_value()) coalesced_.push_back(static_cast<int64_t>(*d.coalesced));
      if (d.action == Action::kDeliverNow) {
        EXPECT_EQ(d.deliver_at, clock_.Now());
        deliveries_.push_back({t, t});
      }
    }
    // Drain whatever is still pending.
    while (auto next = debouncer_.NextDeadline()) AdvanceTo(*next);
  }

  const std::vector<Delivery>& deliveries() const { return deliveries_; }
  const std::vector<int64_t>& coalesced() const { return coalesced_; }

 private:
  void AdvanceTo(absl::Time t) {
    while (auto next = debouncer_.NextDeadline()) {
      if (*next > t) break;
      clock_.SetTime(*next);
      for (const Debouncer::Due& due : debouncer_.TakeDue(clock_.Now())) {
        EXPECT_EQ(due.key, "ev@c");
        deliveries_.push_back({(clock_.Now() - start_) / absl::Milliseconds(1),
                               static_cast<int64_t>(due.item)});
      }
    }
    clock_.SetTime(t);
  }

  absl::Duration period_;
  FakeClock clock_;
  const absl::Time start_ = clock_.Now();
  Debouncer debouncer_;
  std::vector<Delivery> deliveries_;
  std::vector<int64_t> coalesced_;
};

using D = Simulation::Delivery;

// ---- The D = 1000 table of the design ----

TEST(DebouncerTableTest, SingleEventDeliveredImmediately) {
  Simulation sim(kD);
  sim.Run({0});
  EXPECT_THAT(sim.deliveries(), ElementsAre(D{0, 0}));
  EXPECT_THAT(sim.coalesced(), IsEmpty());
}

TEST(DebouncerTableTest, SecondEventWithinPeriodDeliveredAtPeriodEnd) {
  Simulation sim(kD);
  sim.Run({0, 800});
  EXPECT_THAT(sim.deliveries(), ElementsAre(D{0, 0}, D{1000, 800}));
  EXPECT_THAT(sim.coalesced(), IsEmpty());
}

TEST(DebouncerTableTest, LatestPendingWinsAndEarlierIsCoalesced) {
  Simulation sim(kD);
  sim.Run({0, 800, 900});
  EXPECT_THAT(sim.deliveries(), ElementsAre(D{0, 0}, D{1000, 900}));
  EXPECT_THAT(sim.coalesced(), ElementsAre(800));
}

TEST(DebouncerTableTest, EventsFarApartBothImmediate) {
  Simulation sim(kD);
  sim.Run({0, 10000});
  EXPECT_THAT(sim.deliveries(), ElementsAre(D{0, 0}, D{10000, 10000}));
  EXPECT_THAT(sim.coalesced(), IsEmpty());
}

TEST(DebouncerTableTest, EventEvery500MsFor5Seconds) {
  std::vector<int64_t> events;
  for (int64_t t = 0; t < 5000; t += 500) events.push_back(t);
  Simulation sim(kD);
  sim.Run(events);

  EXPECT_THAT(sim.deliveries(), ElementsAre(D{0, 0}, D{1000, 500}, D{2000, 1500}, D{3000, 2500},
                                            D{4000, 3500}, D{5000, 4500}));
  EXPECT_THAT(sim.coalesced(), ElementsAre(1000, 2000, 3000, 4000));

  // The promises, checked independently of the exact schedule.
  std::set<int64_t> settled(sim.coalesced().begin(), sim.coalesced().end());
  for (size_t i = 0; i < sim.deliveries().size(); ++i) {
    const D& d = sim.deliveries()[i];
    EXPECT_LE(d.at_ms - d.item_ms, 1000) << "delivered later than D after its event";
    EXPECT_GE(d.at_ms, d.item_ms);
    if (i > 0) EXPECT_GE(d.at_ms - sim.deliveries()[i - 1].at_ms, 1000) << "two within D";
    // The delivered item is the latest event before the delivery (or the
    // event itself, when it is delivered the moment it arrives; a timer
    // firing at the same instant as an event goes first).
    int64_t latest = 0;
    for (int64_t e : events) {
      if (e < d.at_ms || (e == d.at_ms && d.item_ms == d.at_ms)) latest = e;
    }
    EXPECT_EQ(d.item_ms, latest);
    EXPECT_TRUE(settled.insert(d.item_ms).second) << "item settled twice: " << d.item_ms;
  }
  EXPECT_EQ(settled, std::set<int64_t>(events.begin(), events.end())) << "an event was lost";
}

// ---- Edges ----

TEST(DebouncerTest, EventExactlyOnePeriodAfterLastDeliveryIsImmediate) {
  Simulation sim(kD);
  sim.Run({0, 1000, 2000});
  EXPECT_THAT(sim.deliveries(), ElementsAre(D{0, 0}, D{1000, 1000}, D{2000, 2000}));
}

TEST(DebouncerTest, TieWithPendingDeadline) {
  // 800 is pending until 1000; at 1000 the timer fires first, then the
  // event at 1000 is within D of that delivery and waits for 2000.
  Simulation sim(kD);
  sim.Run({0, 800, 1000});
  EXPECT_THAT(sim.deliveries(), ElementsAre(D{0, 0}, D{1000, 800}, D{2000, 1000}));
}

TEST(DebouncerTest, ZeroPeriodDeliversEveryEventNow) {
  Simulation sim(absl::ZeroDuration());
  sim.Run({0, 1, 1, 2, 500});
  EXPECT_THAT(sim.deliveries(), ElementsAre(D{0, 0}, D{1, 1}, D{1, 1}, D{2, 2}, D{500, 500}));
  EXPECT_THAT(sim.coalesced(), IsEmpty());
}

TEST(DebouncerTest, ZeroPeriodKeepsNoStateAndADebounceAddedLaterStartsAfresh) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  Debouncer deb;
  EXPECT_EQ(deb.Offer("k", absl::ZeroDuration(), 1, t0).action, Action::kDeliverNow);
  EXPECT_EQ(deb.Offer("k", absl::ZeroDuration(), 2, t0).action, Action::kDeliverNow);
  EXPECT_EQ(deb.tracked_keys(), 0u);
  // The subscription gains a debounce at the same instant: its first event
  // goes now, the next one waits a period, as for a key never seen.
  EXPECT_EQ(deb.Offer("k", kD, 3, t0).action, Action::kDeliverNow);
  const Debouncer::Decision next = deb.Offer("k", kD, 4, t0 + Ms(10));
  EXPECT_EQ(next.action, Action::kPending);
  EXPECT_EQ(next.deliver_at, t0 + kD);
  EXPECT_EQ(deb.tracked_keys(), 1u);
}

TEST(DebouncerTest, LateTakeDueDoesNotShiftTheSchedule) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  Debouncer deb;
  EXPECT_EQ(deb.Offer("k", kD, 1, t0).action, Action::kDeliverNow);
  Debouncer::Decision d = deb.Offer("k", kD, 2, t0 + Ms(800));
  EXPECT_EQ(d.action, Action::kPending);
  EXPECT_EQ(d.deliver_at, t0 + Ms(1000));

  // The caller is 300 ms late collecting it.
  std::vector<Debouncer::Due> due = deb.TakeDue(t0 + Ms(1300));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].item, 2u);

  // The delivery counts at 1000, so 2000 is a full period later.
  EXPECT_EQ(deb.Offer("k", kD, 3, t0 + Ms(2000)).action, Action::kDeliverNow);
}

TEST(DebouncerTest, OverduePendingReplacedByNewEventDeliversNow) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  Debouncer deb;
  deb.Offer("k", kD, 1, t0);
  deb.Offer("k", kD, 2, t0 + Ms(800));  // due at 1000
  // Event at 1200 before anyone called TakeDue: it takes the 1000 slot.
  Debouncer::Decision d = deb.Offer("k", kD, 3, t0 + Ms(1200));
  EXPECT_EQ(d.action, Action::kDeliverNow);
  EXPECT_EQ(d.deliver_at, t0 + Ms(1200));
  EXPECT_THAT(d.coalesced, Optional(Eq(2u)));
  EXPECT_EQ(deb.pending(), 0u);
  EXPECT_THAT(deb.TakeDue(t0 + Ms(1200)), IsEmpty());
  // Slot recorded at 1000: an event at 2000 is a full period later.
  EXPECT_EQ(deb.Offer("k", kD, 4, t0 + Ms(2000)).action, Action::kDeliverNow);
}

TEST(DebouncerTest, AnItemWrittenBeforeThePendingOneIsCoalescedItself) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  Debouncer deb;
  deb.Offer("k", kD, 1, t0);
  deb.Offer("k", kD, 2, t0 + Ms(800), t0 + Ms(800));  // due at 1000
  // Offered at 900, written at 500: the pending item (written at 800) stays.
  Debouncer::Decision d = deb.Offer("k", kD, 3, t0 + Ms(900), t0 + Ms(500));
  EXPECT_EQ(d.action, Action::kCoalesced);
  EXPECT_EQ(d.deliver_at, t0 + Ms(1000));
  EXPECT_THAT(d.coalesced, Optional(Eq(3u)));
  EXPECT_EQ(deb.PendingOf("k"), std::make_pair(Debouncer::Item{2}, t0 + Ms(1000)));
  // Written after it: it takes the pending place, as always.
  d = deb.Offer("k", kD, 4, t0 + Ms(950), t0 + Ms(850));
  EXPECT_EQ(d.action, Action::kPending);
  EXPECT_THAT(d.coalesced, Optional(Eq(2u)));
  std::vector<Debouncer::Due> due = deb.TakeDue(t0 + Ms(1000));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].item, 4u);
}

TEST(DebouncerTest, PeriodDroppedToZeroWhilePendingDeliversLatestNow) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  Debouncer deb;
  deb.Offer("k", kD, 1, t0);
  deb.Offer("k", kD, 2, t0 + Ms(100));
  Debouncer::Decision d = deb.Offer("k", absl::ZeroDuration(), 3, t0 + Ms(200));
  EXPECT_EQ(d.action, Action::kDeliverNow);
  EXPECT_THAT(d.coalesced, Optional(Eq(2u)));
  EXPECT_EQ(deb.pending(), 0u);
  EXPECT_EQ(deb.NextDeadline(), std::nullopt);
}

TEST(DebouncerTest, ClockSteppingBackKeepsMaxDelay) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  Debouncer deb;
  deb.Offer("k", kD, 1, t0);
  // The wall clock steps back an hour.
  Debouncer::Decision d = deb.Offer("k", kD, 2, t0 - absl::Hours(1));
  EXPECT_EQ(d.action, Action::kPending);
  EXPECT_EQ(d.deliver_at, t0 - absl::Hours(1) + kD);
}

TEST(DebouncerTest, KeysAreIndependent) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  Debouncer deb;
  EXPECT_EQ(deb.Offer("a@c1", kD, 1, t0).action, Action::kDeliverNow);
  EXPECT_EQ(deb.Offer("b@c1", kD, 2, t0 + Ms(100)).action, Action::kDeliverNow);
  EXPECT_EQ(deb.Offer("a@c2", Ms(200), 3, t0 + Ms(100)).action, Action::kDeliverNow);
  Debouncer::Decision a = deb.Offer("a@c1", kD, 4, t0 + Ms(500));
  EXPECT_EQ(a.action, Action::kPending);
  EXPECT_EQ(a.deliver_at, t0 + Ms(1000));
  Debouncer::Decision b = deb.Offer("b@c1", kD, 5, t0 + Ms(500));
  EXPECT_EQ(b.action, Action::kPending);
  EXPECT_EQ(b.deliver_at, t0 + Ms(1100));
  EXPECT_FALSE(b.coalesced.has_value());
  EXPECT_EQ(deb.Offer("a@c2", Ms(200), 6, t0 + Ms(500)).action, Action::kDeliverNow);
  EXPECT_EQ(deb.pending(), 2u);
}

TEST(DebouncerTest, NextDeadlineIsEarliestPending) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  Debouncer deb;
  EXPECT_EQ(deb.NextDeadline(), std::nullopt);
  deb.Offer("slow", Ms(5000), 1, t0);
  deb.Offer("fast", Ms(300), 2, t0);
  EXPECT_EQ(deb.NextDeadline(), std::nullopt);  // both delivered now
  deb.Offer("slow", Ms(5000), 3, t0 + Ms(10));
  EXPECT_EQ(deb.NextDeadline(), t0 + Ms(5000));
  deb.Offer("fast", Ms(300), 4, t0 + Ms(10));
  EXPECT_EQ(deb.NextDeadline(), t0 + Ms(300));
  EXPECT_EQ(deb.TakeDue(t0 + Ms(300)).size(), 1u);
  EXPECT_EQ(deb.NextDeadline(), t0 + Ms(5000));
  EXPECT_EQ(deb.TakeDue(t0 + Ms(5000)).size(), 1u);
  EXPECT_EQ(deb.NextDeadline(), std::nullopt);
}

TEST(DebouncerTest, TakeDueOrderAcrossKeys) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  Debouncer deb;
  // Due at: b 1100, c 1200, d 1200, a 1300, e 5000.
  deb.Offer("a", Ms(1300), 0, t0);
  deb.Offer("b", Ms(1100), 0, t0);
  deb.Offer("c", Ms(1200), 0, t0);
  deb.Offer("d", Ms(1200), 0, t0);
  deb.Offer("e", Ms(5000), 0, t0);
  deb.Offer("d", Ms(1200), 14, t0 + Ms(1));
  deb.Offer("a", Ms(1300), 11, t0 + Ms(1));
  deb.Offer("e", Ms(5000), 15, t0 + Ms(1));
  deb.Offer("c", Ms(1200), 13, t0 + Ms(1));
  deb.Offer("b", Ms(1100), 12, t0 + Ms(1));
  EXPECT_THAT(deb.TakeDue(t0 + Ms(1099)), IsEmpty());

  std::vector<std::string> keys;
  std::vector<Debouncer::Item> items;
  for (const auto& due : deb.TakeDue(t0 + Ms(2000))) {
    keys.push_back(due.key);
    items.push_back(due.item);
  }
  EXPECT_THAT(keys, ElementsAre("b", "c", "d", "a"));
  EXPECT_THAT(items, ElementsAre(12u, 13u, 14u, 11u));
  EXPECT_EQ(deb.pending(), 1u);
}

TEST(DebouncerTest, ForgetReturnsPendingAndResetsKey) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  Debouncer deb;
  deb.Offer("k", kD, 1, t0);
  deb.Offer("k", kD, 2, t0 + Ms(100));
  deb.Offer("other", kD, 9, t0);
  EXPECT_THAT(deb.Forget("k"), Optional(Eq(2u)));
  EXPECT_EQ(deb.pending(), 0u);
  EXPECT_EQ(deb.NextDeadline(), std::nullopt);
  EXPECT_THAT(deb.TakeDue(t0 + Ms(5000)), IsEmpty());
  EXPECT_EQ(deb.Forget("k"), std::nullopt);
  EXPECT_EQ(deb.Forget("never-seen"), std::nullopt);
  // Idle key: nothing pending to return, but its state is gone.
  EXPECT_EQ(deb.Forget("other"), std::nullopt);
  EXPECT_EQ(deb.tracked_keys(), 0u);
  // A forgotten key starts over: its next event is delivered now.
  EXPECT_EQ(deb.Offer("k", kD, 3, t0 + Ms(200)).action, Action::kDeliverNow);
}

TEST(DebouncerTest, IdleKeysAreDroppedOncePeriodHasPassed) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  Debouncer deb;
  for (int i = 0; i < 1000; ++i) {
    deb.Offer("key" + std::to_string(i), kD, i, t0 + Ms(i % 10));
  }
  deb.Offer("busy", kD, 1, t0);
  deb.Offer("busy", kD, 2, t0 + Ms(500));  // pending until 1000
  EXPECT_EQ(deb.tracked_keys(), 1001u);

  // Still within their period: kept, because the next event must wait.
  deb.TakeDue(t0 + Ms(999));
  EXPECT_EQ(deb.tracked_keys(), 1001u);
  EXPECT_EQ(deb.Offer("key5", kD, 7, t0 + Ms(999)).action, Action::kPending);

  // busy and key5 are delivered at 1000 and 1005 and kept (their next
  // event must wait); every other key is dropped.
  std::vector<Debouncer::Due> due = deb.TakeDue(t0 + Ms(1009));
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].key, "busy");
  EXPECT_EQ(due[1].key, "key5");
  EXPECT_EQ(deb.tracked_keys(), 2u);
  // Dropping a key changed nothing observable: its next event is immediate.
  EXPECT_EQ(deb.Offer("key3", kD, 8, t0 + Ms(1010)).action, Action::kDeliverNow);
  // busy, delivered at 1000, still holds its next event until 2000.
  Debouncer::Decision busy = deb.Offer("busy", kD, 3, t0 + Ms(1500));
  EXPECT_EQ(busy.action, Action::kPending);
  EXPECT_EQ(busy.deliver_at, t0 + Ms(2000));

  deb.TakeDue(t0 + Ms(10000));
  EXPECT_EQ(deb.tracked_keys(), 0u);
  EXPECT_EQ(deb.pending(), 0u);
}

TEST(DebouncerWouldDeliverAtTest, AnswersWhatOfferWouldDoWithoutChangingIt) {
  Debouncer d;
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  const absl::Duration period = absl::Milliseconds(1000);
  EXPECT_EQ(d.WouldDeliverAt("k", period, t0), t0) << "first event: at once";
  EXPECT_EQ(d.tracked_keys(), 0u) << "asking changes nothing";
  d.Offer("k", period, 1, t0);
  EXPECT_EQ(d.WouldDeliverAt("k", period, t0 + absl::Milliseconds(800)),
            t0 + absl::Milliseconds(1000));
  EXPECT_EQ(d.pending(), 0u);
  EXPECT_EQ(d.WouldDeliverAt("k", period, t0 + absl::Milliseconds(1000)),
            t0 + absl::Milliseconds(1000));
  EXPECT_EQ(d.WouldDeliverAt("k", absl::ZeroDuration(), t0 + absl::Milliseconds(1)),
            t0 + absl::Milliseconds(1));
  EXPECT_EQ(d.PendingOf("k"), std::nullopt);
  // The answer matches what Offer then decides.
  const absl::Time asked = d.WouldDeliverAt("k", period, t0 + absl::Milliseconds(900));
  EXPECT_EQ(d.Offer("k", period, 2, t0 + absl::Milliseconds(900)).deliver_at, asked);
  auto pending = d.PendingOf("k");
  ASSERT_TRUE(pending.has_value());
  EXPECT_EQ(pending->first, 2u);
  EXPECT_EQ(pending->second, asked);
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
