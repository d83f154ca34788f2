#include "sinks/retrying_sink.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sinks/testing/test_sinks.h"

namespace dispatchd {
namespace sinks {
namespace {

using ::dispatchd::sinks::testing::FailingSink;
using ::dispatchd::sinks::testing::MakeEvent;
using ::dispatchd::sinks::testing::RecordingSink;
using ::dispatchd::sinks::testing::SpinUntil;
using ::testing::ElementsAre;

TEST(RetryingSinkTest, BreakerScheduleOnFakeClock) {
  FakeClock clock;
  auto dst = std::make_shared<FailingSink>(4);
  RetryingSink sink(dst, std::make_shared<Breaker>(2, absl::Seconds(5), &clock),
                    {.clock = &clock});
  absl::Status status = absl::UnknownError("not returned");
  std::atomic<bool> done{false};
  std::thread writer([&] {
    status = sink.Write(MakeEvent("a"));
    done = true;
  });
  // Two failures open the breaker; the third attempt waits 5 s.
  SpinUntil([&] { return dst->attempts() == 2 && clock.waiters() == 1; });
  clock.Advance(absl::Seconds(4));
  EXPECT_EQ(dst->attempts(), 2);
  clock.Advance(absl::Seconds(1));
  SpinUntil([&] { return dst->attempts() == 3 && clock.waiters() == 1; });
  clock.Advance(absl::Seconds(5));
  SpinUntil([&] { return dst->attempts() == 4 && clock.waiters() == 1; });
  clock.Advance(absl::Seconds(5));
  writer.join();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(dst->attempts(), 5);
  EXPECT_THAT(dst->ids(), ElementsAre("a"));
  const SinkStats stats = sink.stats();
  EXPECT_EQ(stats.written, 1u);
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.retried, 4u);
}

TEST(RetryingSinkTest, ExponentialBackoffScheduleOnFakeClock) {
  FakeClock clock;
  auto dst = std::make_shared<FailingSink>(3);
  auto backoff = std::make_shared<ExponentialBackoff>(ExponentialBackoff::Options{
      .random = [](int64_t bound) { return bound - 1; }});
  RetryingSink sink(dst, backoff, {.clock = &clock});
  std::thread writer([&] { EXPECT_TRUE(sink.Write(MakeEvent("a")).ok()); });
  // Full jitter drawn at its top: waits of just under 2 s, 3 s, 5 s.
  for (int attempt = 1; attempt <= 3; ++attempt) {
    SpinUntil([&] { return dst->attempts() == attempt && clock.waiters() == 1; });
    const absl::Duration bound = backoff->Bound(attempt);
    clock.Advance(bound - absl::Nanoseconds(2));
    EXPECT_EQ(dst->attempts(), attempt);
    clock.Advance(absl::Nanoseconds(1));
  }
  writer.join();
  EXPECT_EQ(dst->attempts(), 4);
  EXPECT_EQ(backoff->Bound(3), absl::Seconds(5));
}

// Regression: go-events' RetryingSink.Close did not close the wrapped sink.
TEST(RetryingSinkTest, CloseClosesWrappedSinkOnce) {
  auto dst = std::make_shared<RecordingSink>();
  RetryingSink sink(dst, std::make_shared<Breaker>(1, absl::Seconds(1)));
  EXPECT_TRUE(sink.Close().ok());
  EXPECT_TRUE(sink.Close().ok());
  EXPECT_EQ(dst->close_calls(), 1);
  EXPECT_TRUE(IsClosed(sink.Write(MakeEvent("a"))));
}

TEST(RetryingSinkTest, CloseWakesAWriteWaitingOutItsBackoff) {
  FakeClock clock;
  auto dst = std::make_shared<FailingSink>(1000);
  RetryingSink sink(dst, std::make_shared<Breaker>(1, absl::Hours(1), &clock),
                    {.clock = &clock});
  absl::Status status;
  std::thread writer([&] { status = sink.Write(MakeEvent("a")); });
  SpinUntil([&] { return dst->attempts() == 1 && clock.waiters() == 1; });
  ASSERT_TRUE(sink.Close().ok());
  writer.join();
  EXPECT_TRUE(IsClosed(status));
  EXPECT_EQ(sink.stats().dropped, 1u);
  EXPECT_EQ(dst->close_calls(), 1);
}

class GiveUpAfter final : public RetryStrategy {
 public:
  explicit GiveUpAfter(int failures) : left_(failures) {}
  absl::Duration Proceed(const Event&) override { return absl::ZeroDuration(); }
  RetryDecision Failure(const Event&, const absl::Status&) override {
    return --left_ > 0 ? RetryDecision::kRetry : RetryDecision::kGiveUp;
  }
  void Success(const Event&) override {}

 private:
  std::atomic<int> left_;
};

TEST(RetryingSinkTest, GivingUpReturnsTheErrorInsteadOfDroppingSilently) {
  auto dst = std::make_shared<FailingSink>(10);
  RetryingSink sink(dst, std::make_shared<GiveUpAfter>(3));
  EXPECT_EQ(sink.Write(MakeEvent("a")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(dst->attempts(), 3);
  EXPECT_EQ(sink.stats().dropped, 1u);
  EXPECT_EQ(sink.stats().retried, 2u);
}

TEST(RetryingSinkTest, ClosedDestinationIsTerminal) {
  auto dst = std::make_shared<RecordingSink>();
  ASSERT_TRUE(dst->Close().ok());
  RetryingSink sink(dst, std::make_shared<Breaker>(1, absl::Seconds(1)));
  EXPECT_TRUE(IsClosed(sink.Write(MakeEvent("a"))));
}

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
