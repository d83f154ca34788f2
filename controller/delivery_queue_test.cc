#include "controller/delivery_queue.h"

#include <algorithm>
#include <cstdint>
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
using ::testing::Optional;
using ::testing::UnorderedElementsAre;
using Verdict = DeliveryQueue::RetryPlan::Verdict;

Delivery MakeDelivery(uint64_t event_seq, const std::string& agent = "host-a",
                      const std::string& container = "c1") {
  Delivery delivery;
  delivery.event_seq = event_seq;
  delivery.recipient = Recipient{agent, container, "handler", "demo.ev"};
  return delivery;
}

// Adds `delivery` (its event and recipient) to lane `key` of `queue`.
bool AddTo(DeliveryQueue& queue, const std::string& key, const Delivery& delivery,
           absl::Time now) {
  return queue.Add(key, delivery.event_seq, [&] { return delivery.recipient; }, now);
}

// A random source that always answers the largest value below the bound, so
// every backoff is its ceiling less a nanosecond; the bounds asked for are
// kept.
struct MaxRandom {
  int64_t operator()(int64_t bound) {
    bounds->push_back(bound);
    return bound - 1;
  }
  std::vector<int64_t>* bounds;
};

class DeliveryQueueTest : public ::testing::Test {
 protected:
  DeliveryQueueTest() : queue_(Options(&bounds_)) {}

  static DeliveryQueueOptions Options(std::vector<int64_t>* bounds) {
    DeliveryQueueOptions options;
    options.min_backoff = absl::Milliseconds(100);
    options.max_backoff = absl::Milliseconds(350);
    options.max_attempts = 4;
    options.random = MaxRandom{bounds};
    return options;
  }

  // Sends the ready front of `key`, as the Dispatcher does; 0 if none.
  uint64_t Send(const std::string& key) {
    Delivery* front = queue_.Ready(key);
    if (front == nullptr) return 0;
    return queue_.MarkSent(key, *front, front->recipient.agent_id, clock_.Now());
  }

  FakeClock clock_;
  std::vector<int64_t> bounds_;
  DeliveryQueue queue_;
};

TEST_F(DeliveryQueueTest, LaneIsFifoWithOneDeliveryInFlight) {
  EXPECT_TRUE(AddTo(queue_, "lane", MakeDelivery(1), clock_.Now()));
  const uint64_t first = Send("lane");
  ASSERT_NE(first, 0u);
  EXPECT_FALSE(AddTo(queue_, "lane", MakeDelivery(2), clock_.Now())) << "the lane is busy";
  EXPECT_FALSE(AddTo(queue_, "lane", MakeDelivery(3), clock_.Now()));
  EXPECT_EQ(queue_.Ready("lane"), nullptr) << "two in flight";
  EXPECT_EQ(queue_.depth(), 2u) << "the one in flight is not counted";

  std::optional<DeliveryQueue::Answered> answered = queue_.TakeAnswered(first, "host-a");
  ASSERT_TRUE(answered.has_value());
  EXPECT_EQ(answered->key, "lane");
  EXPECT_EQ(answered->delivery->event_seq, 1u);
  EXPECT_EQ(answered->delivery->command_id, first);
  EXPECT_EQ(answered->delivery->sent_at, clock_.Now());
  bool next = false;
  EXPECT_THAT(queue_.Finish("lane", &next),
              Optional(::testing::Field(&Delivery::event_seq, 1u)));
  EXPECT_TRUE(next) << "the second became the front";

  std::vector<uint64_t> order;
  std::vector<bool> nexts;
  while (Delivery* front = queue_.Ready("lane")) {
    order.push_back(front->event_seq);
    const uint64_t command = queue_.MarkSent("lane", *front, "host-a", clock_.Now());
    ASSERT_TRUE(queue_.TakeAnswered(command, "host-a").has_value());
    queue_.Finish("lane", &next);
    nexts.push_back(next);
  }
  EXPECT_THAT(order, ElementsAre(2, 3));
  EXPECT_THAT(nexts, ElementsAre(true, false));
  EXPECT_EQ(queue_.lane_count(), 0u) << "a lane left empty is dropped by Finish itself";
  EXPECT_EQ(queue_.in_flight_count(), 0u);
}

TEST_F(DeliveryQueueTest, TheRecipientIsMadeOnlyForAFront) {
  int made = 0;
  auto recipient = [&] {
    ++made;
    return Recipient{"host-a", "c1", "handler", "demo.ev"};
  };
  EXPECT_TRUE(queue_.Add("lane", 1, recipient, clock_.Now()));
  EXPECT_EQ(made, 1);
  Delivery* front = queue_.Ready("lane");
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(front->recipient.container_id, "c1");
  EXPECT_EQ(front->ready_at, clock_.Now());
  const uint64_t command = queue_.MarkSent("lane", *front, "host-a", clock_.Now());
  EXPECT_FALSE(queue_.Add("lane", 2, recipient, clock_.Now()));
  EXPECT_EQ(made, 1) << "waiting behind the front, it shares the front's recipient";

  ASSERT_TRUE(queue_.TakeAnswered(command, "host-a").has_value());
  bool next = false;
  ASSERT_TRUE(queue_.Finish("lane", &next).has_value());
  ASSERT_TRUE(next);
  front = queue_.Ready("lane");
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(front->event_seq, 2u);
  EXPECT_EQ(front->recipient.container_id, "c1");
}

TEST_F(DeliveryQueueTest, LanesAreIndependent) {
  EXPECT_TRUE(AddTo(queue_, "a", MakeDelivery(1, "host-a", "c1"), clock_.Now()));
  ASSERT_NE(Send("a"), 0u);
  EXPECT_TRUE(AddTo(queue_, "b", MakeDelivery(1, "host-a", "c2"), clock_.Now()))
      << "another container's lane is not held up";
  EXPECT_NE(Send("b"), 0u);
}

TEST_F(DeliveryQueueTest, ReadyAtIsWhenTheDeliveryEnteredTheQueue) {
  const absl::Time t0 = clock_.Now();
  AddTo(queue_, "lane", MakeDelivery(1), t0);
  clock_.Advance(absl::Milliseconds(7));
  Delivery* front = queue_.Ready("lane");
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(front->ready_at, t0);
}

TEST_F(DeliveryQueueTest, StaleOrForeignAnswersAreIgnored) {
  AddTo(queue_, "lane", MakeDelivery(1), clock_.Now());
  const uint64_t command = Send("lane");
  EXPECT_FALSE(queue_.TakeAnswered(command + 1, "host-a").has_value()) << "unknown command";
  EXPECT_FALSE(queue_.TakeAnswered(command, "host-b").has_value()) << "another agent";
  EXPECT_EQ(queue_.in_flight_count(), 1u) << "a foreign answer leaves the command in flight";
  EXPECT_TRUE(queue_.TakeAnswered(command, "host-a").has_value());
  EXPECT_FALSE(queue_.TakeAnswered(command, "host-a").has_value()) << "answered twice";
}

TEST_F(DeliveryQueueTest, BackoffDoublesFromTheMinimumAndSaturatesAtTheMaximum) {
  AddTo(queue_, "lane", MakeDelivery(1), clock_.Now());
  std::vector<absl::Duration> waits;
  for (int attempt = 1; attempt < 4; ++attempt) {
    ASSERT_NE(Send("lane"), 0u) << "attempt " << attempt;
    const absl::Time failed_at = clock_.Now();
    DeliveryQueue::RetryPlan plan = queue_.Retry("lane", "boom", failed_at);
    ASSERT_EQ(plan.verdict, Verdict::kScheduled);
    EXPECT_EQ(plan.delivery->attempts, attempt);
    EXPECT_EQ(plan.delivery->last_error, "boom");
    EXPECT_EQ(plan.delivery->ready_at, plan.at) << "re-enters the queue when the retry is due";
    waits.push_back(plan.at - failed_at);
    clock_.SetTime(plan.at);
    EXPECT_THAT(queue_.PopDueRetry(clock_.Now()), Optional(std::string("lane")));
  }
  // Bounds 100, 200, 350 (not 400) ms; the source answers bound - 1 ns.
  EXPECT_THAT(bounds_, ElementsAre(absl::ToInt64Nanoseconds(absl::Milliseconds(100)),
                                   absl::ToInt64Nanoseconds(absl::Milliseconds(200)),
                                   absl::ToInt64Nanoseconds(absl::Milliseconds(350))));
  EXPECT_THAT(waits, ElementsAre(absl::Milliseconds(100) - absl::Nanoseconds(1),
                                 absl::Milliseconds(200) - absl::Nanoseconds(1),
                                 absl::Milliseconds(350) - absl::Nanoseconds(1)));
}

TEST_F(DeliveryQueueTest, DefaultRandomSourceStaysWithinTheBound) {
  DeliveryQueue queue(DeliveryQueueOptions{.min_backoff = absl::Milliseconds(100),
                                           .max_backoff = absl::Seconds(1),
                                           .max_attempts = 100});
  AddTo(queue, "lane", MakeDelivery(1), clock_.Now());
  for (int attempt = 1; attempt < 50; ++attempt) {
    Delivery* front = queue.Ready("lane");
    ASSERT_NE(front, nullptr);
    queue.MarkSent("lane", *front, "host-a", clock_.Now());
    DeliveryQueue::RetryPlan plan = queue.Retry("lane", "boom", clock_.Now());
    ASSERT_EQ(plan.verdict, Verdict::kScheduled);
    const absl::Duration ceiling = std::min(
        absl::Seconds(1), absl::Milliseconds(100) * (int64_t{1} << std::min(attempt - 1, 10)));
    EXPECT_GE(plan.at, clock_.Now());
    EXPECT_LT(plan.at, clock_.Now() + ceiling) << "attempt " << attempt;
    clock_.SetTime(plan.at);
    ASSERT_TRUE(queue.PopDueRetry(clock_.Now()).has_value());
  }
}

TEST_F(DeliveryQueueTest, WaitingFrontIsNotReadyUntilItsRetryIsTaken) {
  AddTo(queue_, "lane", MakeDelivery(1), clock_.Now());
  Send("lane");
  DeliveryQueue::RetryPlan plan = queue_.Retry("lane", "boom", clock_.Now());
  ASSERT_EQ(plan.verdict, Verdict::kScheduled);
  EXPECT_FALSE(AddTo(queue_, "lane", MakeDelivery(2), clock_.Now())) << "the lane waits";
  EXPECT_EQ(queue_.Ready("lane"), nullptr);
  EXPECT_EQ(queue_.depth(), 2u);
  EXPECT_THAT(queue_.NextDeadline(), Optional(plan.at));
  EXPECT_FALSE(queue_.PopDueRetry(plan.at - absl::Nanoseconds(1)).has_value());
  clock_.SetTime(plan.at);
  EXPECT_EQ(queue_.Ready("lane"), nullptr) << "due, but not taken yet";
  EXPECT_THAT(queue_.PopDueRetry(plan.at), Optional(std::string("lane")));
  EXPECT_FALSE(queue_.NextDeadline().has_value());
  Delivery* front = queue_.Ready("lane");
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(front->event_seq, 1u) << "the retried delivery keeps its place";
}

TEST_F(DeliveryQueueTest, RetryBudgetIsSpentByTheLastAttempt) {
  AddTo(queue_, "lane", MakeDelivery(1), clock_.Now());
  for (int attempt = 1; attempt <= 4; ++attempt) {
    ASSERT_NE(Send("lane"), 0u);
    DeliveryQueue::RetryPlan plan =
        queue_.Retry("lane", "boom " + std::to_string(attempt), clock_.Now());
    if (attempt < 4) {
      ASSERT_EQ(plan.verdict, Verdict::kScheduled) << "attempt " << attempt;
      clock_.SetTime(plan.at);
      ASSERT_TRUE(queue_.PopDueRetry(clock_.Now()).has_value());
    } else {
      ASSERT_EQ(plan.verdict, Verdict::kBudgetExhausted);
      EXPECT_EQ(plan.delivery->attempts, 4);
      EXPECT_EQ(plan.delivery->last_error, "boom 4");
    }
  }
  EXPECT_FALSE(queue_.NextDeadline().has_value()) << "no retry after the last attempt";
  std::optional<Delivery> failed = queue_.Finish("lane");
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->attempts, 4);
  EXPECT_EQ(queue_.Ready("lane"), nullptr);
  EXPECT_EQ(queue_.lane_count(), 0u);
}

TEST_F(DeliveryQueueTest, RetryOrFinishOfAnUnknownLaneDoesNothing) {
  EXPECT_EQ(queue_.Retry("nowhere", "boom", clock_.Now()).verdict, Verdict::kNoLane);
  EXPECT_FALSE(queue_.Finish("nowhere").has_value());
  EXPECT_FALSE(queue_.ClearRetry("nowhere"));
}

TEST_F(DeliveryQueueTest, DueRetriesComeInTimeOrder) {
  for (const char* key : {"a", "b", "c"}) {
    AddTo(queue_, key, MakeDelivery(1, "host-a", key), clock_.Now());
    Send(key);
  }
  const absl::Time t0 = clock_.Now();
  // b fails twice, a and c once; every backoff is its ceiling less 1 ns.
  queue_.Retry("b", "boom", t0);
  clock_.SetTime(t0 + absl::Milliseconds(100));
  ASSERT_TRUE(queue_.PopDueRetry(clock_.Now()).has_value());
  Send("b");
  // Due at t0 + 200 ms, t0 + 150 ms and t0 + 130 ms.
  queue_.Retry("b", "boom", t0);
  queue_.Retry("a", "boom", t0 + absl::Milliseconds(50));
  queue_.Retry("c", "boom", t0 + absl::Milliseconds(30));
  std::vector<std::string> due;
  while (std::optional<std::string> key = queue_.PopDueRetry(t0 + absl::Seconds(1))) {
    due.push_back(*key);
  }
  EXPECT_THAT(due, ElementsAre("c", "a", "b"));
}

TEST_F(DeliveryQueueTest, ClearedWaitLeavesAStaleTimerThatIsSkipped) {
  AddTo(queue_, "lane", MakeDelivery(1), clock_.Now());
  Send("lane");
  DeliveryQueue::RetryPlan plan = queue_.Retry("lane", "boom", clock_.Now());
  EXPECT_TRUE(queue_.ClearRetry("lane"));
  ASSERT_NE(queue_.Ready("lane"), nullptr) << "ready before its backoff";
  Send("lane");
  // Fails again at once: the new wait is later than the stale timer.
  DeliveryQueue::RetryPlan again = queue_.Retry("lane", "boom", clock_.Now());
  ASSERT_GT(again.at, plan.at);
  EXPECT_FALSE(queue_.PopDueRetry(plan.at).has_value()) << "the stale timer does not end the wait";
  EXPECT_THAT(queue_.PopDueRetry(again.at), Optional(std::string("lane")));
}

TEST_F(DeliveryQueueTest, AbandonedAgentsCommandsGoAgainWithoutSpendingAttempts) {
  AddTo(queue_, "a1", MakeDelivery(1, "host-a", "c1"), clock_.Now());
  AddTo(queue_, "a2", MakeDelivery(1, "host-a", "c2"), clock_.Now());
  AddTo(queue_, "b1", MakeDelivery(1, "host-b", "c3"), clock_.Now());
  const uint64_t a1 = Send("a1");
  Send("a2");
  const uint64_t b1 = Send("b1");
  EXPECT_THAT(queue_.LanesTo("host-a"), UnorderedElementsAre("a1", "a2"));

  queue_.AbandonAgent("host-a");
  EXPECT_EQ(queue_.in_flight_count(), 1u);
  EXPECT_FALSE(queue_.TakeAnswered(a1, "host-a").has_value()) << "a late answer is stale";
  Delivery* front = queue_.Ready("a1");
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(front->attempts, 0);
  EXPECT_NE(queue_.Ready("a2"), nullptr);
  EXPECT_EQ(queue_.Ready("b1"), nullptr) << "another agent's command stays";
  EXPECT_TRUE(queue_.TakeAnswered(b1, "host-b").has_value());
}

// A lane keeps its recipient once: the deliveries behind the front come
// out with it, each with its own event, entry time and a fresh budget.
TEST_F(DeliveryQueueTest, DeliveriesBehindTheFrontComeOutWithTheLanesRecipient) {
  const absl::Time t0 = clock_.Now();
  AddTo(queue_, "lane", MakeDelivery(1), t0);
  const uint64_t first = Send("lane");
  clock_.Advance(absl::Milliseconds(3));
  const absl::Time t1 = clock_.Now();
  EXPECT_FALSE(AddTo(queue_, "lane", MakeDelivery(2), t1));
  clock_.Advance(absl::Milliseconds(4));
  EXPECT_FALSE(AddTo(queue_, "lane", MakeDelivery(3), clock_.Now()));
  EXPECT_EQ(queue_.depth(), 2u);

  std::vector<DeliveryQueue::Position> behind = queue_.PositionsOf(3);
  ASSERT_EQ(behind.size(), 1u);
  EXPECT_EQ(behind[0].state, DeliveryQueue::Position::State::kQueued);
  EXPECT_EQ(behind[0].delivery.recipient.container_id, "c1");
  EXPECT_EQ(behind[0].delivery.recipient.container_name, "handler");
  EXPECT_EQ(behind[0].delivery.event_seq, 3u);
  std::vector<DeliveryQueue::Position> front = queue_.PositionsOf(1);
  ASSERT_EQ(front.size(), 1u);
  EXPECT_EQ(front[0].state, DeliveryQueue::Position::State::kInFlight);

  // The front fails once, then is delivered: the next one starts afresh.
  ASSERT_TRUE(queue_.TakeAnswered(first, "host-a").has_value());
  ASSERT_EQ(queue_.Retry("lane", "exec failed", clock_.Now()).verdict, Verdict::kScheduled);
  std::optional<std::string> due = queue_.PopDueRetry(clock_.Now() + absl::Seconds(1));
  ASSERT_THAT(due, Optional(std::string("lane")));
  const uint64_t again = Send("lane");
  ASSERT_TRUE(queue_.TakeAnswered(again, "host-a").has_value());
  std::optional<Delivery> done = queue_.Finish("lane");
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->event_seq, 1u);
  EXPECT_EQ(done->attempts, 1);
  EXPECT_EQ(done->recipient.agent_id, "host-a");

  Delivery* next = queue_.Ready("lane");
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(next->event_seq, 2u);
  EXPECT_EQ(next->ready_at, t1);
  EXPECT_EQ(next->attempts, 0);
  EXPECT_TRUE(next->last_error.empty());
  EXPECT_EQ(next->command_id, 0u);
  EXPECT_EQ(next->recipient.agent_id, "host-a");
  EXPECT_EQ(next->recipient.container_id, "c1");
  EXPECT_EQ(next->recipient.container_name, "handler");
  EXPECT_EQ(next->recipient.event_id, "demo.ev");
  EXPECT_EQ(queue_.depth(), 2u);

  ASSERT_TRUE(queue_.Finish("lane").has_value());
  ASSERT_TRUE(queue_.Finish("lane").has_value());
  EXPECT_FALSE(queue_.Finish("lane").has_value());
  EXPECT_EQ(queue_.Ready("lane"), nullptr);
  EXPECT_EQ(queue_.lane_count(), 0u) << "an empty lane is dropped";
  EXPECT_EQ(queue_.depth(), 0u);
}

TEST_F(DeliveryQueueTest, CommandIdsAreNeverReused) {
  AddTo(queue_, "lane", MakeDelivery(1), clock_.Now());
  const uint64_t first = Send("lane");
  queue_.AbandonAgent("host-a");
  const uint64_t second = Send("lane");
  EXPECT_GT(second, first);
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
