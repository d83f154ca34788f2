#include "controller/forwarding_metrics.h"

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/testing/exposition.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using ::dispatchd::testing::Sample;

TEST(ForwardingMetricsTest, DestinationsStartAtZeroAndFollowTheStats) {
  Registry registry;
  std::vector<ForwardDestinationStats> stats = {
      {"https://user:secret@hooks.example:8443/in?token=abc", 0, 0, 0, 0},
      {"file:/var/log/events.jsonl", 0, 0, 0, 0},
  };
  ExportForwardingMetrics(registry, [&stats] { return stats; });
  const std::string https = "destination=\"https://hooks.example:8443/in\"";
  std::string text = SerializeText(registry);
  EXPECT_EQ(text.find("secret"), std::string::npos) << text;
  EXPECT_EQ(text.find("token"), std::string::npos) << text;
  EXPECT_EQ(Sample(text, "dispatchd_forward_events_total{" + https + ",result=\"sent\"}"), 0)
      << text;
  EXPECT_EQ(Sample(text, "dispatchd_forward_queue_depth{destination=\"file:/var/log/events.jsonl\"}"),
            0);
  EXPECT_EQ(Sample(text,
                   "dispatchd_forward_events_total{destination=\"file:/var/log/events.jsonl\","
                   "result=\"dead_lettered\"}"),
            0)
      << "present at 0 from the start";

  stats[0].sent = 7;
  stats[0].failed = 2;
  stats[0].dropped = 1;
  stats[0].dead_lettered = 3;
  stats[1].queue_depth = 5;
  text = SerializeText(registry);
  EXPECT_EQ(Sample(text, "dispatchd_forward_events_total{" + https + ",result=\"sent\"}"), 7);
  EXPECT_EQ(Sample(text, "dispatchd_forward_events_total{" + https + ",result=\"dropped\"}"), 1);
  EXPECT_EQ(Sample(text, "dispatchd_forward_events_total{" + https + ",result=\"dead_lettered\"}"),
            3);
  EXPECT_EQ(Sample(text, "dispatchd_forward_failures_total{" + https + "}"), 2);
  EXPECT_EQ(Sample(text, "dispatchd_forward_queue_depth{destination=\"file:/var/log/events.jsonl\"}"),
            5);
  stats[0].sent = 9;
  text = SerializeText(registry);
  EXPECT_EQ(Sample(text, "dispatchd_forward_events_total{" + https + ",result=\"sent\"}"), 9);
}

TEST(ForwardingMetricsTest, LabelDropsCredentialsQueryAndFragment) {
  EXPECT_EQ(ForwardDestinationLabel("http://a:b@h/p?x=1#f"), "http://h/p");
  EXPECT_EQ(ForwardDestinationLabel("http://h:80/p"), "http://h:80/p");
  EXPECT_EQ(ForwardDestinationLabel("log:audit"), "log:audit");
  EXPECT_EQ(ForwardDestinationLabel("http://h/p@x"), "http://h/p@x");
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
