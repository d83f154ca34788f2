#include "sinks/filter.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sinks/testing/test_sinks.h"

namespace dispatchd {
namespace sinks {
namespace {

using ::dispatchd::sinks::testing::FailingSink;
using ::dispatchd::sinks::testing::MakeEvent;
using ::dispatchd::sinks::testing::RecordingSink;
using ::testing::ElementsAre;

TEST(FilterTest, PassesOnlyMatchingEvents) {
  auto dst = std::make_shared<RecordingSink>();
  Filter filter(dst, [](const Event& e) { return e.id != "skip"; });
  EXPECT_TRUE(filter.Write(MakeEvent("a")).ok());
  EXPECT_TRUE(filter.Write(MakeEvent("skip")).ok());
  EXPECT_TRUE(filter.Write(MakeEvent("b")).ok());
  EXPECT_THAT(dst->ids(), ElementsAre("a", "b"));
  const SinkStats stats = filter.stats();
  EXPECT_EQ(stats.written, 3u);
  EXPECT_EQ(stats.delivered, 2u);
  EXPECT_EQ(stats.dropped, 0u);
}

TEST(FilterTest, ReturnsDestinationError) {
  auto dst = std::make_shared<FailingSink>(1);
  Filter filter(dst, [](const Event&) { return true; });
  EXPECT_EQ(filter.Write(MakeEvent("a")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(filter.stats().dropped, 1u);
}

TEST(FilterTest, CloseClosesDestinationOnce) {
  auto dst = std::make_shared<RecordingSink>();
  Filter filter(dst, [](const Event&) { return true; });
  EXPECT_TRUE(filter.Close().ok());
  EXPECT_TRUE(filter.Close().ok());
  EXPECT_EQ(dst->close_calls(), 1);
  EXPECT_TRUE(IsClosed(filter.Write(MakeEvent("a"))));
}

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
