// The Sink contract, run against every component of the package and a
// composed pipeline: null events, write after close, idempotent close,
// ordering, and 1,000 concurrent writers whose events each reach every
// output exactly once.
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sinks/broadcaster.h"
#include "sinks/channel.h"
#include "sinks/filter.h"
#include "sinks/queue.h"
#include "sinks/retry_strategy.h"
#include "sinks/retrying_sink.h"
#include "sinks/testing/test_sinks.h"

namespace dispatchd {
namespace sinks {
namespace {

using ::dispatchd::sinks::testing::MakeEvent;
using ::dispatchd::sinks::testing::RecordingSink;

// A component under test, the recorders at its far end, and any reader
// thread that must finish after Close.
struct Subject {
  std::shared_ptr<Sink> sink;
  std::vector<std::shared_ptr<RecordingSink>> outputs;
  std::thread reader;

  ~Subject() {
    if (reader.joinable()) {
      sink->Close().IgnoreError();
      reader.join();
    }
  }
  // Closes the component and waits until everything accepted has arrived.
  absl::Status CloseAndSettle() {
    absl::Status status = sink->Close();
    if (reader.joinable()) reader.join();
    return status;
  }
};

struct Component {
  std::string name;
  std::function<void(Subject*)> make;
};

std::shared_ptr<RecordingSink> Output(Subject* s) {
  s->outputs.push_back(std::make_shared<RecordingSink>());
  return s->outputs.back();
}

void MakeChannel(Subject* s, size_t capacity) {
  auto channel = std::make_shared<Channel>(capacity);
  auto out = Output(s);
  s->sink = channel;
  s->reader = std::thread([channel, out] {
    while (true) {
      absl::StatusOr<EventPtr> event = channel->Receive();
      if (!event.ok()) return;
      out->Write(*event).IgnoreError();
    }
  });
}

const std::vector<Component>& Components() {
  static const auto* components = new std::vector<Component>{
      {"Broadcaster",
       [](Subject* s) {
         s->sink = std::make_shared<Broadcaster>(
             std::vector<std::shared_ptr<Sink>>{Output(s), Output(s), Output(s)});
       }},
      {"Queue", [](Subject* s) { s->sink = std::make_shared<Queue>(Output(s)); }},
      {"BoundedBlockingQueue",
       [](Subject* s) {
         s->sink = std::make_shared<Queue>(
             Output(s), Queue::Options{.capacity = 8, .policy = OverflowPolicy::kBlock});
       }},
      {"RetryingSink",
       [](Subject* s) {
         s->sink = std::make_shared<RetryingSink>(Output(s),
                                                  std::make_shared<ExponentialBackoff>());
       }},
      {"Filter",
       [](Subject* s) {
         s->sink = std::make_shared<Filter>(Output(s), [](const Event&) { return true; });
       }},
      {"UnbufferedChannel", [](Subject* s) { MakeChannel(s, 0); }},
      {"BufferedChannel", [](Subject* s) { MakeChannel(s, 16); }},
      // go-events' canonical pipeline: broadcast to queued, retried sinks.
      {"Pipeline",
       [](Subject* s) {
         auto retried = std::make_shared<RetryingSink>(
             Output(s), std::make_shared<Breaker>(5, absl::Seconds(1)));
         auto filtered =
             std::make_shared<Filter>(Output(s), [](const Event&) { return true; });
         s->sink = std::make_shared<Broadcaster>(std::vector<std::shared_ptr<Sink>>{
             std::make_shared<Queue>(retried), std::make_shared<Queue>(filtered)});
       }},
  };
  return *components;
}

class ConformanceTest : public ::testing::TestWithParam<Component> {
 protected:
  void SetUp() override { GetParam().make(&subject_); }
  Subject subject_;
};

TEST_P(ConformanceTest, NullEventIsInvalidArgument) {
  EXPECT_EQ(subject_.sink->Write(nullptr).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(subject_.CloseAndSettle().ok());
  for (const auto& out : subject_.outputs) EXPECT_EQ(out->size(), 0u);
}

TEST_P(ConformanceTest, WriteAfterCloseIsClosedError) {
  ASSERT_TRUE(subject_.CloseAndSettle().ok());
  absl::Status status = subject_.sink->Write(MakeEvent("late"));
  EXPECT_TRUE(IsClosed(status)) << status;
}

TEST_P(ConformanceTest, DoubleCloseIsOkAndClosesOutputsOnce) {
  ASSERT_TRUE(subject_.CloseAndSettle().ok());
  EXPECT_TRUE(subject_.sink->Close().ok());
  for (const auto& out : subject_.outputs) {
    // A Channel's reader is not a sink it wraps; everything else closes its
    // destination exactly once.
    EXPECT_LE(out->close_calls(), 1);
  }
}

TEST_P(ConformanceTest, KeepsOrder) {
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(subject_.sink->Write(MakeEvent(absl::StrCat(i))).ok());
  ASSERT_TRUE(subject_.CloseAndSettle().ok());
  for (const auto& out : subject_.outputs) {
    const std::vector<std::string> ids = out->ids();
    ASSERT_EQ(ids.size(), 200u);
    for (int i = 0; i < 200; ++i) EXPECT_EQ(ids[i], absl::StrCat(i));
  }
}

TEST_P(ConformanceTest, ThousandConcurrentWritersEachEventExactlyOncePerOutput) {
  constexpr int kWriters = 1000;
  constexpr int kPerWriter = 3;
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([this, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        EXPECT_TRUE(subject_.sink->Write(MakeEvent(absl::StrCat(w, "-", i))).ok());
      }
    });
  }
  for (auto& t : writers) t.join();
  ASSERT_TRUE(subject_.CloseAndSettle().ok());
  for (const auto& out : subject_.outputs) {
    const std::vector<std::string> ids = out->ids();
    EXPECT_EQ(ids.size(), static_cast<size_t>(kWriters * kPerWriter));
    std::set<std::string> unique(ids.begin(), ids.end());
    EXPECT_EQ(unique.size(), ids.size()) << "an event arrived twice";
    for (int w = 0; w < kWriters; ++w) {
      for (int i = 0; i < kPerWriter; ++i) {
        EXPECT_EQ(unique.count(absl::StrCat(w, "-", i)), 1u);
      }
    }
    // Each writer's own events stay in its order.
    std::map<std::string, int> next;
    for (const std::string& id : ids) {
      const std::string writer = id.substr(0, id.find('-'));
      EXPECT_EQ(id, absl::StrCat(writer, "-", next[writer]++));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllComponents, ConformanceTest, ::testing::ValuesIn(Components()),
                         [](const ::testing::TestParamInfo<Component>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
