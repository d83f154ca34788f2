#include "controller/event_ledger.h"

#include <string>

#include "absl/time/time.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::ObservedEvent;
using dispatch::v1::Settled;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Kind = EventLedger::Admission::Kind;

ObservedEvent MakeEvent(const std::string& key, uint64_t generation = 1,
                        const std::string& event_id = "demo.ev") {
  ObservedEvent event;
  event.set_key(key);
  event.set_event_id(event_id);
  event.set_generation(generation);
  event.set_payload("payload of " + key);
  return event;
}

class EventLedgerTest : public ::testing::Test {
 protected:
  EventLedgerTest() : ledger_(&clock_) {}

  // Admits a new event and returns its record.
  EventRecord& Admit(const std::string& key, uint64_t generation = 1,
                     const std::string& agent = "host-a") {
    EventLedger::Admission a = ledger_.Admit(agent, agent + ".example", MakeEvent(key, generation));
    EXPECT_EQ(a.kind, Kind::kNew);
    return *a.record;
  }

  FakeClock clock_;
  EventLedger ledger_;
};

TEST_F(EventLedgerTest, NewEventsGetRecordsAndIncreasingSequenceNumbers) {
  EventRecord& first = Admit("a/one");
  EventRecord& second = Admit("a/two");
  EXPECT_LT(first.seq, second.seq);
  EXPECT_EQ(first.origin_agent, "host-a");
  EXPECT_EQ(first.origin_host, "host-a.example");
  EXPECT_EQ(first.event.payload(), "payload of a/one");
  EXPECT_EQ(ledger_.Find(first.seq), &first);
  EXPECT_EQ(ledger_.in_flight(), 2u);
  EXPECT_EQ(ledger_.Find(12345), nullptr);
}

TEST_F(EventLedgerTest, ReSentEventIsADuplicateWhileItsRecordLives) {
  const uint64_t seq = Admit("a/one").seq;
  EventLedger::Admission again = ledger_.Admit("host-a", "host-a", MakeEvent("a/one"));
  EXPECT_EQ(again.kind, Kind::kDuplicate);
  EXPECT_EQ(again.record, nullptr);
  EXPECT_EQ(ledger_.in_flight(), 1u);
  EXPECT_EQ(ledger_.Find(seq)->seq, seq);
}

TEST_F(EventLedgerTest, AgentKeyAndGenerationTellEventsApart) {
  Admit("a/one", 1, "host-a");
  Admit("a/one", 2, "host-a");  // the file was written again
  Admit("a/one", 1, "host-b");  // another host's file of the same name
  Admit("a/two", 1, "host-a");
  EXPECT_EQ(ledger_.in_flight(), 4u);
}

TEST_F(EventLedgerTest, HeldEventsComeBackInArrivalOrder) {
  const uint64_t a = Admit("a").seq, b = Admit("b").seq;
  ledger_.Hold(a);
  ledger_.Hold(b);
  EXPECT_EQ(ledger_.held(), 2u);
  EXPECT_THAT(ledger_.TakeHeld(), ElementsAre(a, b));
  EXPECT_EQ(ledger_.held(), 0u);
  EXPECT_THAT(ledger_.TakeHeld(), IsEmpty());
}

TEST_F(EventLedgerTest, EventWithoutSubscribersSettlesAsDeleted) {
  EventRecord& record = Admit("nobody/listens");
  ledger_.MarkRouted(record, 0);
  EXPECT_TRUE(record.routed);
  EventLedger::Settlement s = ledger_.Settle(record);
  EXPECT_EQ(s.outcome, SettleOutcome::kNoSubscribers);
  EXPECT_EQ(s.origin_agent, "host-a");
  EXPECT_EQ(s.settled.key(), "nobody/listens");
  EXPECT_EQ(s.settled.generation(), 1u);
  EXPECT_EQ(s.settled.disposition(), Settled::DELETE);
  EXPECT_TRUE(s.settled.error_json().empty());
  EXPECT_EQ(ledger_.in_flight(), 0u);
}

TEST_F(EventLedgerTest, SettlesWhenTheLastSubscriptionIsResolved) {
  EventRecord& record = Admit("a/one");
  ledger_.MarkRouted(record, 3);
  EXPECT_FALSE(ledger_.Resolve(record));
  EXPECT_FALSE(ledger_.Resolve(record));
  EXPECT_TRUE(ledger_.Resolve(record));
  EventLedger::Settlement s = ledger_.Settle(record);
  EXPECT_EQ(s.outcome, SettleOutcome::kDelivered);
  EXPECT_EQ(s.settled.disposition(), Settled::DELETE);
}

TEST_F(EventLedgerTest, AFailedSubscriptionDeadLettersTheEventWithANote) {
  ObservedEvent event = MakeEvent("a/one");
  event.set_observed_unix_nanos(absl::ToUnixNanos(clock_.Now()));
  EventRecord& record = *ledger_.Admit("host-a", "a.example", event).record;
  ledger_.MarkRouted(record, 2);
  ledger_.RecordFailure(record, "one: gave up after 3 attempts: Docker: 500 boom");
  EXPECT_FALSE(ledger_.Resolve(record));
  EXPECT_TRUE(ledger_.Resolve(record));  // the other one was delivered
  clock_.Advance(absl::Seconds(2));
  EventLedger::Settlement s = ledger_.Settle(record);
  EXPECT_EQ(s.outcome, SettleOutcome::kDeadLettered);
  EXPECT_EQ(s.settled.disposition(), Settled::DEAD_LETTER);
  nlohmann::json note = nlohmann::json::parse(s.settled.error_json());
  EXPECT_EQ(note["event_id"], "demo.ev");
  EXPECT_EQ(note["path"], "a/one");
  EXPECT_EQ(note["host"], "a.example");
  EXPECT_EQ(note["observed_at"], "2026-01-01T00:00:00.000000Z");
  EXPECT_EQ(note["settled_at"], "2026-01-01T00:00:02.000000Z");
  EXPECT_EQ(note["errors"],
            nlohmann::json::array({"one: gave up after 3 attempts: Docker: 500 boom"}));
  EXPECT_THAT(s.settled.error_json(), ::testing::HasSubstr("\"event_id\": \"demo.ev\""))
      << "indented, as dispatchctl and people read it";
}

TEST_F(EventLedgerTest, SettledEventIsForgotten) {
  EventRecord& record = Admit("a/one");
  const uint64_t seq = record.seq;
  ledger_.MarkRouted(record, 0);
  ledger_.Settle(record);
  EXPECT_EQ(ledger_.Find(seq), nullptr);
  // A file of the same name and generation seen again is a new event (its
  // agent deleted the first one and this one is not a re-send).
  EXPECT_EQ(ledger_.Admit("host-a", "host-a", MakeEvent("a/one")).kind, Kind::kNew);
}

TEST_F(EventLedgerTest, NoticeForAnAwayAgentIsHandedBackOnceWhenItReSendsTheEvent) {
  EventRecord& record = Admit("a/one", 7, "host-b");
  ledger_.MarkRouted(record, 0);
  EventLedger::Settlement s = ledger_.Settle(record);
  ledger_.KeepUnacked(s.origin_agent, s.settled);
  EXPECT_EQ(ledger_.unacked(), 1u);

  EXPECT_EQ(ledger_.Admit("host-a", "host-a", MakeEvent("a/one", 7)).kind, Kind::kNew)
      << "another agent's file";
  EXPECT_EQ(ledger_.Admit("host-b", "host-b", MakeEvent("a/one", 8)).kind, Kind::kNew)
      << "another generation";
  EventLedger::Admission again = ledger_.Admit("host-b", "host-b", MakeEvent("a/one", 7));
  ASSERT_EQ(again.kind, Kind::kAlreadySettled);
  ASSERT_TRUE(again.settled.has_value());
  EXPECT_EQ(again.settled->key(), "a/one");
  EXPECT_EQ(again.settled->generation(), 7u);
  EXPECT_EQ(again.settled->disposition(), Settled::DELETE);
  EXPECT_EQ(ledger_.unacked(), 0u);
  EXPECT_EQ(ledger_.Admit("host-b", "host-b", MakeEvent("a/one", 7)).kind, Kind::kNew)
      << "handed back once";
}

TEST(EventLedgerPayloadTest, KeepsOnlyPayloadsAHandlerCanStillBeGiven) {
  FakeClock clock;
  EventLedger ledger(&clock, EventLedgerOptions{.keep_payload_bytes = 8});
  ObservedEvent small = MakeEvent("a");
  small.set_payload("12345678");
  small.set_size(8);
  EventRecord* kept = ledger.Admit("host-a", "host-a", small).record;
  ASSERT_NE(kept, nullptr);
  EXPECT_EQ(kept->event.payload(), "12345678");
  EXPECT_FALSE(PayloadDropped(kept->event));

  ObservedEvent large = MakeEvent("b");
  large.set_payload("123456789");
  large.set_size(1 << 20);  // the file; the payload may be cut at --max-payload-bytes
  large.set_payload_truncated(true);
  EventRecord* trimmed = ledger.Admit("host-a", "host-a", large).record;
  ASSERT_NE(trimmed, nullptr);
  EXPECT_TRUE(trimmed->event.payload().empty());
  EXPECT_TRUE(PayloadDropped(trimmed->event));
  EXPECT_EQ(trimmed->event.size(), 1 << 20) << "the file's size stays";
  EXPECT_TRUE(trimmed->event.payload_truncated());
  EXPECT_EQ(trimmed->event.key(), "b");
  EXPECT_EQ(trimmed->event.event_id(), "demo.ev");

  // An agent that does not report the size: the payload's stands in.
  ObservedEvent unsized = MakeEvent("c");
  unsized.set_payload(std::string(100, 'x'));
  EventRecord* record = ledger.Admit("host-a", "host-a", unsized).record;
  ASSERT_NE(record, nullptr);
  EXPECT_TRUE(PayloadDropped(record->event));
  EXPECT_EQ(record->event.size(), 100);

  // An empty file keeps its empty payload.
  ObservedEvent empty = MakeEvent("d");
  empty.set_payload("");
  EXPECT_FALSE(PayloadDropped(ledger.Admit("host-a", "host-a", empty).record->event));
}

TEST(EventLedgerPayloadTest, TheDefaultKeepsWhatTheDefaultEnvironmentLimitTakes) {
  FakeClock clock;
  EventLedger ledger(&clock);
  ObservedEvent at_limit = MakeEvent("a");
  at_limit.set_payload(std::string(4096, 'x'));
  EXPECT_EQ(ledger.Admit("host-a", "host-a", at_limit).record->event.payload().size(), 4096u);
  ObservedEvent over = MakeEvent("b");
  over.set_payload(std::string(4097, 'x'));
  EXPECT_TRUE(PayloadDropped(ledger.Admit("host-a", "host-a", over).record->event));
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
