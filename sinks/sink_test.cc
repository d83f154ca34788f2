#include "sinks/sink.h"

#include "gtest/gtest.h"

namespace dispatchd {
namespace sinks {
namespace {

TEST(ClosedErrorTest, IsRecognisedAndDistinct) {
  EXPECT_TRUE(IsClosed(ClosedError()));
  EXPECT_EQ(ClosedError().code(), absl::StatusCode::kFailedPrecondition);
  // Same code and message but without the marker is not "closed".
  EXPECT_FALSE(IsClosed(absl::FailedPreconditionError("sink closed")));
  EXPECT_FALSE(IsClosed(absl::OkStatus()));
  EXPECT_FALSE(IsClosed(absl::UnavailableError("down")));
}

TEST(SinkCountersTest, SnapshotReadsEveryCounter) {
  SinkCounters counters;
  counters.AddWritten(4);
  counters.AddDelivered(3);
  counters.AddDropped();
  counters.AddRetried(2);
  const SinkStats stats = counters.Snapshot();
  EXPECT_EQ(stats.written, 4u);
  EXPECT_EQ(stats.delivered, 3u);
  EXPECT_EQ(stats.dropped, 1u);
  EXPECT_EQ(stats.retried, 2u);
}

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
