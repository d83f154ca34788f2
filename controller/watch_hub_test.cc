#include "controller/watch_hub.h"

#include <atomic>
#include <vector>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::WatchUpdate;
using ::dispatchd::testing::StatusIs;
using ::testing::HasSubstr;

WatchUpdate Update(WatchUpdate::Kind kind, const std::string& event_id) {
  WatchUpdate u;
  u.set_kind(kind);
  u.set_event_id(event_id);
  return u;
}

TEST(WatchHubTest, FiltersByIdPrefixAndKindAndNumbersEveryUpdate) {
  WatchHub hub;
  auto exact = hub.Subscribe({.event_id = "a.b"}, 0, nullptr);
  auto prefix = hub.Subscribe({.event_id_prefix = "a."}, 0, nullptr);
  auto settled = hub.Subscribe({.kinds = {WatchUpdate::SETTLED}}, 0, nullptr);
  hub.Publish(Update(WatchUpdate::OBSERVED, "a.b"));
  hub.Publish(Update(WatchUpdate::OBSERVED, "a.c"));
  hub.Publish(Update(WatchUpdate::SETTLED, "x"));
  EXPECT_EQ(hub.published(), 3u);

  std::vector<WatchUpdate> got;
  ASSERT_OK(exact->Take(&got));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].seq(), 1u);
  got.clear();
  ASSERT_OK(prefix->Take(&got));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].event_id(), "a.c");
  EXPECT_EQ(got[1].seq(), 2u);
  got.clear();
  ASSERT_OK(settled->Take(&got));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].seq(), 3u);
}

TEST(WatchHubTest, AWatcherThatNeverReadsOverflowsAndOthersGoOn) {
  WatchHub hub;
  std::atomic<int> wakes{0};
  auto stuck = hub.Subscribe({}, 4, [&wakes] { ++wakes; });
  auto reader = hub.Subscribe({}, 4, nullptr);
  std::vector<WatchUpdate> read;
  for (int i = 0; i < 100; ++i) {
    hub.Publish(Update(WatchUpdate::OBSERVED, "e"));
    ASSERT_OK(reader->Take(&read));  // a reader that keeps up misses nothing
  }
  EXPECT_EQ(read.size(), 100u);
  // The stuck one got its 4, then was cut off, counting what it missed.
  std::vector<WatchUpdate> got;
  EXPECT_THAT(stuck->Take(&got),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("missed 96 updates")));
  EXPECT_EQ(got.size(), 4u);
  EXPECT_EQ(wakes.load(), 5) << "four updates, then the overflow";
}

TEST(WatchHubTest, UnsubscribesOnDestructionAndCloseEndsWatchers) {
  WatchHub hub;
  EXPECT_FALSE(hub.has_watchers());
  {
    auto gone = hub.Subscribe({}, 0, nullptr);
    EXPECT_EQ(hub.watchers(), 1u);
    EXPECT_TRUE(hub.has_watchers());
  }
  EXPECT_EQ(hub.watchers(), 0u);
  EXPECT_FALSE(hub.has_watchers());
  bool woken = false;
  auto watcher = hub.Subscribe({}, 0, [&woken] { woken = true; });
  hub.Close();
  EXPECT_TRUE(woken);
  std::vector<WatchUpdate> got;
  EXPECT_THAT(watcher->Take(&got), StatusIs(absl::StatusCode::kCancelled));
  hub.Publish(Update(WatchUpdate::OBSERVED, "late"));
  EXPECT_THAT(hub.Subscribe({}, 0, nullptr)->Take(&got), StatusIs(absl::StatusCode::kCancelled));
}

TEST(WatchHubTest, BufferIsClamped) {
  WatchHub hub;
  auto w = hub.Subscribe({}, 1 << 30, nullptr);
  for (size_t i = 0; i <= WatchHub::kMaxBuffer; ++i) {
    hub.Publish(Update(WatchUpdate::OBSERVED, "e"));
  }
  std::vector<WatchUpdate> got;
  EXPECT_THAT(w->Take(&got),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("missed 1 updates")));
  EXPECT_EQ(got.size(), WatchHub::kMaxBuffer);
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
