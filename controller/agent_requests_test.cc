#include "controller/agent_requests.h"

#include <optional>
#include <vector>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using ::dispatchd::testing::StatusIs;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1000);

struct Recorder {
  std::vector<absl::StatusOr<dispatch::v1::AgentMessage>> results;
  AgentRequests::Done Callback() {
    return [this](absl::StatusOr<dispatch::v1::AgentMessage> r) { results.push_back(r); };
  }
};

void RunAll(std::vector<AgentRequests::Completion> completions) {
  for (auto& c : completions) c.Run();
}

TEST(AgentRequestsTest, AnAnswerEndsItsRequestOnceAndOnlyFromItsAgent) {
  AgentRequests requests;
  Recorder rec;
  const uint64_t id = requests.Add("h1", kT0 + absl::Seconds(10), rec.Callback());
  dispatch::v1::AgentMessage answer;
  answer.mutable_write_event_result()->set_request_id(id);
  EXPECT_FALSE(requests.Answer(id, "h2", answer).has_value()) << "another agent's answer";
  auto completion = requests.Answer(id, "h1", answer);
  ASSERT_TRUE(completion.has_value());
  completion->Run();
  ASSERT_EQ(rec.results.size(), 1u);
  ASSERT_OK(rec.results[0]);
  EXPECT_EQ(rec.results[0]->write_event_result().request_id(), id);
  EXPECT_FALSE(requests.Answer(id, "h1", answer).has_value()) << "answered already";
  EXPECT_EQ(requests.size(), 0u);
}

TEST(AgentRequestsTest, AgentGoneFailsOnlyItsRequests) {
  AgentRequests requests;
  Recorder rec;
  requests.Add("h1", kT0 + absl::Seconds(10), rec.Callback());
  requests.Add("h2", kT0 + absl::Seconds(10), rec.Callback());
  RunAll(requests.AgentGone("h1"));
  ASSERT_EQ(rec.results.size(), 1u);
  EXPECT_THAT(rec.results[0], StatusIs(absl::StatusCode::kUnavailable,
                                       HasSubstr("agent h1 disconnected before answering")));
  EXPECT_EQ(requests.size(), 1u);
}

TEST(AgentRequestsTest, DeadlinesExpireInOrderAndFailAllEndsTheRest) {
  AgentRequests requests;
  Recorder rec;
  EXPECT_EQ(requests.NextDeadline(), std::nullopt);
  requests.Add("h1", kT0 + absl::Seconds(5), rec.Callback());
  requests.Add("h1", kT0 + absl::Seconds(3), rec.Callback());
  requests.Add("h1", kT0 + absl::Seconds(9), rec.Callback());
  EXPECT_EQ(requests.NextDeadline(), kT0 + absl::Seconds(3));
  RunAll(requests.Expire(kT0 + absl::Seconds(2)));
  EXPECT_TRUE(rec.results.empty());
  RunAll(requests.Expire(kT0 + absl::Seconds(5)));
  ASSERT_EQ(rec.results.size(), 2u);
  EXPECT_THAT(rec.results[0], StatusIs(absl::StatusCode::kUnavailable, HasSubstr("in time")));
  EXPECT_EQ(requests.NextDeadline(), kT0 + absl::Seconds(9));
  RunAll(requests.FailAll(absl::UnavailableError("shutting down")));
  ASSERT_EQ(rec.results.size(), 3u);
  EXPECT_THAT(rec.results[2], StatusIs(absl::StatusCode::kUnavailable, "shutting down"));
  EXPECT_EQ(requests.size(), 0u);
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
