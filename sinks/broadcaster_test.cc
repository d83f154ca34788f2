#include "sinks/broadcaster.h"

#include <memory>
#include <string>
#include <vector>

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
using ::testing::IsEmpty;

TEST(BroadcasterTest, EveryMemberGetsEveryEventInOrder) {
  auto a = std::make_shared<RecordingSink>();
  auto b = std::make_shared<RecordingSink>();
  Broadcaster broadcaster({a, b});
  ASSERT_TRUE(broadcaster.Write(MakeEvent("1")).ok());
  ASSERT_TRUE(broadcaster.Write(MakeEvent("2")).ok());
  EXPECT_THAT(a->ids(), ElementsAre("1", "2"));
  EXPECT_THAT(b->ids(), ElementsAre("1", "2"));
  // The same immutable event object is shared, not copied.
  EXPECT_EQ(a->events()[0].get(), b->events()[0].get());
  EXPECT_EQ(broadcaster.stats().delivered, 4u);
}

// Regression: go-events removed a closed sink while iterating, so the sink
// after it missed the event and the last sink got it twice.
TEST(BroadcasterTest, ClosedMemberDoesNotSkipItsNeighbourOrDuplicate) {
  auto a = std::make_shared<RecordingSink>();
  auto closed1 = std::make_shared<RecordingSink>();
  auto closed2 = std::make_shared<RecordingSink>();
  auto c = std::make_shared<RecordingSink>();
  auto d = std::make_shared<RecordingSink>();
  Broadcaster broadcaster({a, closed1, closed2, c, d});
  ASSERT_TRUE(closed1->Close().ok());
  ASSERT_TRUE(closed2->Close().ok());

  ASSERT_TRUE(broadcaster.Write(MakeEvent("1")).ok());
  EXPECT_THAT(a->ids(), ElementsAre("1"));
  EXPECT_THAT(c->ids(), ElementsAre("1"));
  EXPECT_THAT(d->ids(), ElementsAre("1"));
  EXPECT_EQ(broadcaster.size(), 3u);  // closed members were removed

  ASSERT_TRUE(broadcaster.Write(MakeEvent("2")).ok());
  EXPECT_THAT(a->ids(), ElementsAre("1", "2"));
  EXPECT_THAT(c->ids(), ElementsAre("1", "2"));
  EXPECT_THAT(d->ids(), ElementsAre("1", "2"));
  EXPECT_THAT(closed1->ids(), IsEmpty());
}

TEST(BroadcasterTest, FailedMemberWriteGoesToDeadLetterAndOthersStillGetIt) {
  std::vector<std::string> dead;
  auto failing = std::make_shared<FailingSink>(1);
  auto ok = std::make_shared<RecordingSink>();
  Broadcaster broadcaster(
      {failing, ok},
      {.dead_letter = [&](const EventPtr& e, const absl::Status& s) {
        dead.push_back(e->id + ":" + std::string(absl::StatusCodeToString(s.code())));
      }});
  EXPECT_TRUE(broadcaster.Write(MakeEvent("1")).ok());
  EXPECT_THAT(dead, ElementsAre("1:UNAVAILABLE"));
  EXPECT_THAT(ok->ids(), ElementsAre("1"));
  EXPECT_EQ(broadcaster.stats().dropped, 1u);
  EXPECT_EQ(broadcaster.size(), 2u);  // a failing member stays
}

TEST(BroadcasterTest, AddAndRemove) {
  auto a = std::make_shared<RecordingSink>();
  auto b = std::make_shared<RecordingSink>();
  Broadcaster broadcaster;
  ASSERT_TRUE(broadcaster.Add(a).ok());
  ASSERT_TRUE(broadcaster.Add(a).ok());  // no duplicate membership
  ASSERT_TRUE(broadcaster.Add(b).ok());
  ASSERT_TRUE(broadcaster.Write(MakeEvent("1")).ok());
  ASSERT_TRUE(broadcaster.Remove(a).ok());
  EXPECT_EQ(broadcaster.Remove(a).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(broadcaster.Write(MakeEvent("2")).ok());
  EXPECT_THAT(a->ids(), ElementsAre("1"));
  EXPECT_THAT(b->ids(), ElementsAre("1", "2"));
  EXPECT_EQ(a->close_calls(), 0);  // Remove does not close
  EXPECT_EQ(broadcaster.Add(nullptr).code(), absl::StatusCode::kInvalidArgument);
}

TEST(BroadcasterTest, CloseClosesMembersAndRefusesAdd) {
  auto a = std::make_shared<RecordingSink>();
  Broadcaster broadcaster({a});
  ASSERT_TRUE(broadcaster.Close().ok());
  EXPECT_EQ(a->close_calls(), 1);
  EXPECT_TRUE(IsClosed(broadcaster.Add(std::make_shared<RecordingSink>())));
  EXPECT_TRUE(broadcaster.Close().ok());
  EXPECT_EQ(a->close_calls(), 1);
}

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
