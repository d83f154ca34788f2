// A few iterations of every benchmark of `make bench`, so the drivers do not
// rot: asserts only that each contender produced results, never timings.
#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/backlog_bench.h"
#include "bench/controller_bench.h"
#include "bench/docker_bench.h"
#include "bench/fleet_bench.h"
#include "bench/unsettled_bench.h"
#include "gtest/gtest.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"

namespace dispatchd {
namespace bench {
namespace {

TEST(BenchSmokeTest, EveryContenderProducesResults) {
  auto daemon = testing::PrivateDockerd::Start();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  const std::string work = testing::MakeTempDir("dispatchd-bench-smoke");

  DockerBenchOptions docker_options;
  docker_options.latency_events = 3;
  docker_options.latency_warmup = 1;
  docker_options.burst_files = 20;
  docker_options.burst_containers = 2;
  docker_options.burst_rounds = 1;
  docker_options.work_dir = work;
  absl::StatusOr<DockerBenchResults> docker = RunDockerBenchmarks(**daemon, docker_options);
  ASSERT_TRUE(docker.ok()) << docker.status();
  EXPECT_EQ(docker->floor_ms.size(), 3u);
  EXPECT_EQ(docker->dispatchd_ms.size(), 3u);
  EXPECT_EQ(docker->shell_ms.size(), 3u);
  EXPECT_EQ(docker->internal_create_ms.size(), 3u);
  ASSERT_EQ(docker->burst.size(), 1u);
  EXPECT_GT(docker->burst[0].floor_s, 0);
  EXPECT_GT(docker->burst[0].dispatchd_s, 0);
  EXPECT_GT(docker->burst[0].shell_s, 0);
  EXPECT_FALSE(DockerResultsMarkdown(*docker).empty());

  ControllerBenchOptions controller_options;
  controller_options.routing = {{1, 100}, {100, 20}};
  controller_options.reconcile_changes = 2;
  controller_options.docker_host = (*daemon)->host();
  controller_options.work_dir = work;
  absl::StatusOr<ControllerBenchResults> controller = RunControllerBenchmarks(controller_options);
  ASSERT_TRUE(controller.ok()) << controller.status();
  ASSERT_EQ(controller->routing.size(), 2u);
  EXPECT_GT(controller->routing[0].seconds, 0);
  EXPECT_EQ(controller->reconcile_delta_ms.size(), 2u);
  EXPECT_EQ(controller->reconcile_snapshot_ms.size(), 2u);
  EXPECT_GT(controller->agent_idle_rss_kib, 0);
  EXPECT_FALSE(ControllerResultsMarkdown(*controller).empty());
  testing::RemoveTree(work);
}

// The memory benchmarks need no Docker: a small backlog (in a child
// process, as `make bench` runs it) and a few unsettled events.
TEST(BenchSmokeTest, MemoryBenchmarksProduceResults) {
  const std::string work = testing::MakeTempDir("dispatchd-bench-smoke");
  BacklogBenchOptions backlog_options;
  backlog_options.files = 2000;
  backlog_options.directories = 10;
  backlog_options.containers = 10;
  backlog_options.work_dir = work;
  const std::string binary = absl::StrCat(std::getenv("TEST_SRCDIR"), "/",
                                          std::getenv("TEST_WORKSPACE"), "/bench/backlog_bench");
  absl::StatusOr<BacklogResult> backlog =
      RunBacklogBenchmarkProcess(binary, backlog_options, work + "/backlog.log");
  ASSERT_TRUE(backlog.ok()) << backlog.status();
  EXPECT_EQ(backlog->files, 2000);
  EXPECT_EQ(backlog->subscribed, 200);
  EXPECT_EQ(backlog->execs, 200) << "one exec per subscribed file";
  EXPECT_EQ(backlog->files_left, 0) << "every file settled and deleted";
  EXPECT_GT(backlog->drain_seconds, 0);
  EXPECT_GT(backlog->rss_peak_kib, 0);
  EXPECT_GE(backlog->heap_peak_bytes, 0) << "the binary allocates with jemalloc";
  EXPECT_FALSE(BacklogResultsMarkdown({*backlog, *backlog}).empty());

  UnsettledBenchOptions unsettled_options;
  unsettled_options.events = 200;
  unsettled_options.payload_bytes = {1024};
  const std::vector<UnsettledResult> unsettled = RunUnsettledBenchmark(unsettled_options);
  ASSERT_EQ(unsettled.size(), 3u);
  for (const UnsettledResult& r : unsettled) {
    EXPECT_EQ(r.unsettled, 200) << r.state << ": none of them settled";
  }
  EXPECT_FALSE(UnsettledResultsMarkdown(unsettled).empty());
  testing::RemoveTree(work);
}

// The fleet benchmark needs no Docker: a few agents, every phase once.
TEST(BenchSmokeTest, FleetBenchmarkProducesResults) {
  const std::string work = testing::MakeTempDir("dispatchd-bench-smoke");
  FleetBenchOptions options;
  options.agents = 5;
  options.containers = 10;
  options.subscriptions = 2;
  options.heartbeat = absl::Seconds(1);  // a start-up grace of 3 s, if it came to one
  options.idle_window = absl::Seconds(2);
  options.reconcile_changes = 3;
  options.routing_events = 200;
  options.max_unsettled = 50;
  options.work_dir = work;
  absl::StatusOr<FleetResult> r = RunFleetBenchmark(options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->subscriptions, 100);
  EXPECT_TRUE(r->restarted);
  EXPECT_GE(r->first_fresh_seen, 0);
  EXPECT_EQ(r->known_agents, 5) << "the restarted controller waited for the agents it knew";
  EXPECT_LT(r->grace_end, 0) << "and for no fixed grace";
  EXPECT_GE(r->resumed, 0);
  EXPECT_GE(r->listen_seconds, 0);
  EXPECT_GE(r->welcome_p50, 0);
  EXPECT_GE(r->welcome_last, 0);
  EXPECT_GE(r->fresh_seen, 0);
  EXPECT_GE(r->last_inventory_logged, 0) << "the controller logs each snapshot at info";
  EXPECT_GE(r->routed, 0);
  EXPECT_GT(r->rss_idle_kib, 0);
  EXPECT_GT(r->rss_subscribed_kib, 0);
  EXPECT_GT(r->rss_peak_kib, 0);
  EXPECT_GT(r->rss_hwm_kib, 0);
  EXPECT_GT(r->fleet_rss_kib, 0);
  EXPECT_GT(r->controller_threads, 0);
  EXPECT_GT(r->fleet_threads, 0);
  EXPECT_GT(r->idle_seconds, 0);
  EXPECT_EQ(r->reconcile_ms.size(), 3u);
  EXPECT_EQ(r->baseline_ms.size(), 3u);
  EXPECT_EQ(r->routing_events, 200);
  EXPECT_EQ(r->routing_commands, 200u) << "one Command per event (one subscriber each)";
  EXPECT_GT(r->routing_seconds, 0);
  EXPECT_EQ(r->sessions_ended, 0u) << ::testing::PrintToString(r->end_reasons);
  EXPECT_FALSE(FleetResultsMarkdown({*r}, options).empty());
  testing::RemoveTree(work);
}

}  // namespace
}  // namespace bench
}  // namespace dispatchd
