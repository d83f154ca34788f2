#include "sinks/channel.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"
#include "sinks/testing/test_sinks.h"
#include "common/testing/status_matchers.h"

namespace dispatchd {
namespace sinks {
namespace {

using ::dispatchd::sinks::testing::MakeEvent;
using ::dispatchd::sinks::testing::SpinUntil;

TEST(ChannelTest, UnbufferedWriteReturnsOnlyOnceTaken) {
  Channel channel(0);
  std::atomic<bool> returned{false};
  std::thread writer([&] {
    EXPECT_TRUE(channel.Write(MakeEvent("1")).ok());
    returned = true;
  });
  absl::StatusOr<EventPtr> got = channel.Receive();
  ASSERT_OK(got);
  EXPECT_EQ((*got)->id, "1");
  writer.join();
  EXPECT_TRUE(returned.load());
  EXPECT_EQ(channel.stats().delivered, 1u);
}

TEST(ChannelTest, UnbufferedWriteNotTakenGetsClosedError) {
  Channel channel(0);
  std::atomic<bool> returned{false};
  absl::Status status;
  std::thread writer([&] {
    status = channel.Write(MakeEvent("1"));
    returned = true;
  });
  // The event sits in the hand-off slot until a reader takes it.
  SpinUntil([&] { return channel.stats().written == 1; });
  EXPECT_FALSE(returned.load());
  ASSERT_TRUE(channel.Close().ok());
  writer.join();
  EXPECT_TRUE(IsClosed(status));
  EXPECT_TRUE(IsClosed(channel.Receive().status()));  // the event was given back
}

TEST(ChannelTest, BufferedEventsStayReadableAfterClose) {
  Channel channel(2);
  ASSERT_TRUE(channel.Write(MakeEvent("1")).ok());
  ASSERT_TRUE(channel.Write(MakeEvent("2")).ok());
  EXPECT_EQ(channel.TryReceive().status().code(), absl::StatusCode::kOk);
  ASSERT_TRUE(channel.Close().ok());
  EXPECT_TRUE(channel.closed());
  EXPECT_TRUE(IsClosed(channel.Write(MakeEvent("3"))));
  absl::StatusOr<EventPtr> second = channel.Receive();
  ASSERT_OK(second);
  EXPECT_EQ((*second)->id, "2");
  EXPECT_TRUE(IsClosed(channel.Receive().status()));
}

TEST(ChannelTest, FullBufferBlocksWriterUntilRead) {
  Channel channel(1);
  ASSERT_TRUE(channel.Write(MakeEvent("1")).ok());
  std::atomic<bool> returned{false};
  std::thread writer([&] {
    EXPECT_TRUE(channel.Write(MakeEvent("2")).ok());
    returned = true;
  });
  SpinUntil([&] { return channel.stats().written == 2; });
  EXPECT_FALSE(returned.load());  // buffer full, no reader yet
  EXPECT_EQ((*channel.Receive())->id, "1");
  writer.join();
  EXPECT_EQ((*channel.Receive())->id, "2");
}

TEST(ChannelTest, TryReceiveOnEmptyIsUnavailable) {
  Channel channel(1);
  EXPECT_EQ(channel.TryReceive().status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
