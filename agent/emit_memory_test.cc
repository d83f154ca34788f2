#include "agent/emit_memory.h"

#include "common/testing/fake_clock.h"
#include "gtest/gtest.h"

namespace dispatchd::agent {
namespace {

TEST(EmitMemoryTest, RemembersAKeyForTheTtl) {
  FakeClock clock;
  EmitMemory memory(&clock, {.ttl = absl::Minutes(10)});
  EXPECT_FALSE(memory.Find("k").has_value());
  const absl::Time written = clock.Now() - absl::Milliseconds(3);
  memory.Remember("k", {"a/b", "a.b", written});
  clock.Advance(absl::Minutes(9));
  auto found = memory.Find("k");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->path, "a/b");
  EXPECT_EQ(found->event_id, "a.b");
  EXPECT_EQ(found->written, written) << "kept as given";
  clock.Advance(absl::Minutes(1));
  EXPECT_FALSE(memory.Find("k").has_value());
  EXPECT_EQ(memory.size(), 0u);
}

TEST(EmitMemoryTest, KeepsAtMostMaxKeysForgettingTheOldest) {
  FakeClock clock;
  EmitMemory memory(&clock, {.ttl = absl::Hours(1), .max_keys = 2});
  memory.Remember("a", {"a", "a", {}});
  clock.Advance(absl::Seconds(1));
  memory.Remember("b", {"b", "b", {}});
  clock.Advance(absl::Seconds(1));
  memory.Remember("c", {"c", "c", {}});
  EXPECT_FALSE(memory.Find("a").has_value());
  EXPECT_TRUE(memory.Find("b").has_value());
  EXPECT_TRUE(memory.Find("c").has_value());
  EXPECT_EQ(memory.size(), 2u);
}

TEST(EmitMemoryTest, ARememberedKeyAgainStartsItsTtlAgain) {
  FakeClock clock;
  EmitMemory memory(&clock, {.ttl = absl::Minutes(10)});
  memory.Remember("k", {"first", "first", {}});
  clock.Advance(absl::Minutes(8));
  memory.Remember("k", {"second", "second", {}});
  clock.Advance(absl::Minutes(5));  // the first entry's ttl is over, not the second's
  auto found = memory.Find("k");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->path, "second");
}

}  // namespace
}  // namespace dispatchd::agent
