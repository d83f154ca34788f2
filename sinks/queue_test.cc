#include "sinks/queue.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sinks/testing/test_sinks.h"

namespace dispatchd {
namespace sinks {
namespace {

using ::dispatchd::sinks::testing::BlockingSink;
using ::dispatchd::sinks::testing::FailingSink;
using ::dispatchd::sinks::testing::MakeEvent;
using ::dispatchd::sinks::testing::RecordingSink;
using ::dispatchd::sinks::testing::SpinUntil;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

// Collects dead letters as "id:CODE".
class DeadLetters {
 public:
  DeadLetterFn hook() {
    return [this](const EventPtr& e, const absl::Status& s) {
      std::lock_guard<std::mutex> lock(mu_);
      entries_.push_back(e->id + ":" + std::string(absl::StatusCodeToString(s.code())));
    };
  }
  std::vector<std::string> entries() const {
    std::lock_guard<std::mutex> lock(mu_);
    return entries_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> entries_;
};

TEST(QueueTest, DeliversInOrderAndCloseDrainsThenClosesDestination) {
  auto dst = std::make_shared<RecordingSink>();
  Queue queue(dst);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(queue.Write(MakeEvent(std::to_string(i))).ok());
  ASSERT_TRUE(queue.Close().ok());
  const std::vector<std::string> ids = dst->ids();
  ASSERT_EQ(ids.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(ids[i], std::to_string(i));
  EXPECT_EQ(dst->close_calls(), 1);
  EXPECT_EQ(queue.stats().delivered, 100u);
}

TEST(QueueTest, FailedWriteGoesToDeadLetterNotSilentlyDropped) {
  DeadLetters dead;
  auto dst = std::make_shared<FailingSink>(1);
  Queue queue(dst, {.dead_letter = dead.hook()});
  ASSERT_TRUE(queue.Write(MakeEvent("a")).ok());
  ASSERT_TRUE(queue.Write(MakeEvent("b")).ok());
  ASSERT_TRUE(queue.Close().ok());
  EXPECT_THAT(dead.entries(), ElementsAre("a:UNAVAILABLE"));
  EXPECT_THAT(dst->ids(), ElementsAre("b"));
  const SinkStats stats = queue.stats();
  EXPECT_EQ(stats.written, 2u);
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.dropped, 1u);
}

// Regression: go-events' Queue.Close waited forever for a blocked sink.
TEST(QueueTest, CloseGivesUpOnBlockedSinkAtDeadline) {
  FakeClock clock;
  DeadLetters dead;
  auto dst = std::make_shared<BlockingSink>();
  Queue queue(dst, {.dead_letter = dead.hook(), .clock = &clock});
  ASSERT_TRUE(queue.Write(MakeEvent("a")).ok());
  ASSERT_TRUE(queue.Write(MakeEvent("b")).ok());
  ASSERT_TRUE(queue.Write(MakeEvent("c")).ok());
  SpinUntil([&] { return dst->blocked() == 1; });  // "a" is in flight

  absl::Status close_status;
  std::atomic<bool> closed{false};
  std::thread closer([&] {
    close_status = queue.Close(clock.Now() + absl::Seconds(10));
    closed = true;
  });
  SpinUntil([&] { return clock.waiters() == 1; });
  clock.Advance(absl::Seconds(9));
  EXPECT_FALSE(closed.load());  // deadline not reached yet
  clock.Advance(absl::Seconds(1));
  closer.join();

  EXPECT_EQ(close_status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(dead.entries(),
              ElementsAre("a:DEADLINE_EXCEEDED", "b:DEADLINE_EXCEEDED", "c:DEADLINE_EXCEEDED"));
  EXPECT_EQ(queue.stats().dropped, 3u);
  EXPECT_EQ(queue.stats().delivered, 0u);
  EXPECT_EQ(dst->close_calls(), 1);  // closing it unblocked the stuck write
  EXPECT_TRUE(queue.Close().ok());  // idempotent
  EXPECT_TRUE(IsClosed(queue.Write(MakeEvent("d"))));
}

TEST(QueueTest, CloseDrainsWhatItCanBeforeDeadline) {
  FakeClock clock;
  DeadLetters dead;
  auto dst = std::make_shared<BlockingSink>();
  Queue queue(dst, {.dead_letter = dead.hook(), .clock = &clock});
  ASSERT_TRUE(queue.Write(MakeEvent("a")).ok());
  ASSERT_TRUE(queue.Write(MakeEvent("b")).ok());
  SpinUntil([&] { return dst->blocked() == 1; });
  std::thread releaser([&] {
    SpinUntil([&] { return clock.waiters() == 1; });
    dst->Release();
  });
  EXPECT_TRUE(queue.Close(clock.Now() + absl::Seconds(10)).ok());
  releaser.join();
  EXPECT_THAT(dst->ids(), ElementsAre("a", "b"));
  EXPECT_TRUE(dead.entries().empty());
}

TEST(QueueTest, RejectPolicyRefusesWhenFull) {
  auto dst = std::make_shared<BlockingSink>();
  Queue queue(dst, {.capacity = 2, .policy = OverflowPolicy::kReject});
  ASSERT_TRUE(queue.Write(MakeEvent("in-flight")).ok());
  SpinUntil([&] { return dst->blocked() == 1; });
  ASSERT_TRUE(queue.Write(MakeEvent("a")).ok());
  ASSERT_TRUE(queue.Write(MakeEvent("b")).ok());
  EXPECT_EQ(queue.Write(MakeEvent("c")).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(queue.size(), 2u);
  dst->Release();
  ASSERT_TRUE(queue.Close().ok());
  EXPECT_THAT(dst->ids(), ElementsAre("in-flight", "a", "b"));
  EXPECT_EQ(queue.stats().dropped, 1u);
}

TEST(QueueTest, DropOldestPolicyEvictsToDeadLetter) {
  DeadLetters dead;
  auto dst = std::make_shared<BlockingSink>();
  Queue queue(dst, {.capacity = 2,
                    .policy = OverflowPolicy::kDropOldest,
                    .dead_letter = dead.hook()});
  ASSERT_TRUE(queue.Write(MakeEvent("in-flight")).ok());
  SpinUntil([&] { return dst->blocked() == 1; });
  for (const char* id : {"a", "b", "c", "d"}) ASSERT_TRUE(queue.Write(MakeEvent(id)).ok());
  EXPECT_THAT(dead.entries(), ElementsAre("a:RESOURCE_EXHAUSTED", "b:RESOURCE_EXHAUSTED"));
  dst->Release();
  ASSERT_TRUE(queue.Close().ok());
  EXPECT_THAT(dst->ids(), ElementsAre("in-flight", "c", "d"));
  EXPECT_EQ(queue.stats().dropped, 2u);
}

TEST(QueueTest, BlockPolicyWaitsForRoom) {
  auto dst = std::make_shared<BlockingSink>();
  Queue queue(dst, {.capacity = 1, .policy = OverflowPolicy::kBlock});
  ASSERT_TRUE(queue.Write(MakeEvent("in-flight")).ok());
  SpinUntil([&] { return dst->blocked() == 1; });
  ASSERT_TRUE(queue.Write(MakeEvent("a")).ok());
  std::atomic<bool> returned{false};
  std::thread writer([&] {
    EXPECT_TRUE(queue.Write(MakeEvent("b")).ok());
    returned = true;
  });
  SpinUntil([&] { return queue.stats().written == 3; });
  EXPECT_FALSE(returned.load());  // full, and the sink holds the worker
  dst->Release();
  writer.join();
  ASSERT_TRUE(queue.Close().ok());
  EXPECT_THAT(dst->ids(), ElementsAre("in-flight", "a", "b"));
}

TEST(QueueTest, CloseReleasesWritersBlockedOnAFullQueue) {
  FakeClock clock;
  DeadLetters dead;
  auto dst = std::make_shared<BlockingSink>();
  Queue queue(dst, {.capacity = 1, .dead_letter = dead.hook(), .clock = &clock});
  ASSERT_TRUE(queue.Write(MakeEvent("in-flight")).ok());
  SpinUntil([&] { return dst->blocked() == 1; });
  ASSERT_TRUE(queue.Write(MakeEvent("a")).ok());
  absl::Status blocked_status;
  std::thread writer([&] { blocked_status = queue.Write(MakeEvent("b")); });
  SpinUntil([&] { return queue.stats().written == 3; });
  // A deadline already passed: give up at once.
  EXPECT_EQ(queue.Close(clock.Now()).code(), absl::StatusCode::kDeadlineExceeded);
  writer.join();
  EXPECT_TRUE(IsClosed(blocked_status));
  EXPECT_THAT(dead.entries(), UnorderedElementsAre("in-flight:DEADLINE_EXCEEDED",
                                                   "a:DEADLINE_EXCEEDED"));
  EXPECT_EQ(queue.stats().dropped, 3u);  // two dead-lettered, one refused
}

TEST(QueueTest, NullEventIsRejected) {
  Queue queue(std::make_shared<RecordingSink>());
  EXPECT_EQ(queue.Write(nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(queue.stats().written, 0u);
}

TEST(QueueTest, DestructorClosesAndDrains) {
  auto dst = std::make_shared<RecordingSink>();
  {
    Queue queue(dst);
    ASSERT_TRUE(queue.Write(MakeEvent("a")).ok());
  }
  EXPECT_THAT(dst->ids(), ElementsAre("a"));
  EXPECT_EQ(dst->close_calls(), 1);
}

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
