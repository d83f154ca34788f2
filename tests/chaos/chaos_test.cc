// The short chaos run of `make test` (the long one is `make chaos`): events
// written for 40 s while faults strike every ~5 s, in all-in-one mode and
// with a controller and three agents; the audit of tests/chaos/chaos.h must
// pass. The seed is fixed so that a failure can be run again as it was.
#include <iostream>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/chaos/chaos.h"

namespace dispatchd::chaos {
namespace {

ChaosOptions Short(bool all_in_one) {
  ChaosOptions options;
  options.cluster.all_in_one = all_in_one;
  options.cluster.hosts = all_in_one ? 1 : 3;
  options.seed = 20261129;
  options.duration = absl::Seconds(40);
  options.events_per_second = 6;
  options.fault_interval = absl::Seconds(5);
  return options;
}

TEST(ChaosTest, AllInOneLosesNothing) {
  absl::StatusOr<ChaosReport> report = RunChaos(Short(true));
  ASSERT_TRUE(report.ok()) << report.status();
  std::cout << report->Summary();
  EXPECT_TRUE(report->ok()) << report->Summary();
  EXPECT_GT(report->events_written, 100);
  EXPECT_GE(report->faults.size(), 4u);
}

TEST(ChaosTest, AControllerAndThreeAgentsLoseNothing) {
  absl::StatusOr<ChaosReport> report = RunChaos(Short(false));
  ASSERT_TRUE(report.ok()) << report.status();
  std::cout << report->Summary();
  EXPECT_TRUE(report->ok()) << report->Summary();
  EXPECT_GT(report->events_written, 100);
  EXPECT_GE(report->faults.size(), 4u);
}

}  // namespace
}  // namespace dispatchd::chaos
