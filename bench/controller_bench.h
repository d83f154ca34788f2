// Benchmarks of the controller alone: a real `dispatchd controller` process
// on loopback, driven by SyntheticAgents that speak the session protocol and
// only record (no Docker):
//   - routing: events per second with 1, 10 and 100 subscriptions per event;
//   - reconcile: with 10,000 subscriptions in the inventory, the time from a
//     label change reported by an agent to the index routing by it;
//   - memory: the controller's resident memory idle, with 10,000
//     subscriptions and under the routing load, and a real agent's idle.
#ifndef DISPATCHD_BENCH_CONTROLLER_BENCH_H_
#define DISPATCHD_BENCH_CONTROLLER_BENCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dispatchd {
namespace bench {

struct ControllerBenchOptions {
  // Events sent per fan-out (subscriptions per event).
  std::vector<std::pair<int, int64_t>> routing = {{1, 200000}, {10, 20000}, {100, 5000}};
  // Distinct event ids the events cycle through; every subscribing
  // container subscribes to all of them (so 100 x 100 = 10,000).
  int event_ids = 100;
  size_t max_unsettled = 2000;
  int reconcile_changes = 50;
  // When set, a real `dispatchd agent` is run against this Docker host to
  // measure its idle memory.
  std::string docker_host;
  std::string log_level = "info";
  // Scratch directory (logs); must exist.
  std::string work_dir;
};

struct RoutingResult {
  int subscriptions_per_event = 0;
  int subscriptions = 0;
  int64_t events = 0;
  double seconds = 0;
  // CPU time the controller process used during the run (all its threads).
  double controller_cpu_seconds = 0;
  // CPU time this process (the synthetic agent) used meanwhile: it shares
  // the machine's cores with the controller.
  double agent_cpu_seconds = 0;
  int64_t rss_idle_kib = -1;       // the fresh controller, before the agent connected
  int64_t rss_subscribed_kib = -1;  // inventory loaded, before the load
  int64_t rss_peak_kib = -1;        // sampled during the load
};

struct ControllerBenchResults {
  std::vector<RoutingResult> routing;
  int reconcile_subscriptions = 0;
  // Milliseconds: change sent -> Command for the changed subscription received.
  std::vector<double> reconcile_delta_ms;
  std::vector<double> reconcile_snapshot_ms;
  // The same round trip for an event of an unchanged subscription.
  std::vector<double> baseline_ms;
  int64_t agent_idle_rss_kib = -1;
};

absl::StatusOr<ControllerBenchResults> RunControllerBenchmarks(
    const ControllerBenchOptions& options);

std::string ControllerResultsMarkdown(const ControllerBenchResults& results);

}  // namespace bench
}  // namespace dispatchd

#endif  // DISPATCHD_BENCH_CONTROLLER_BENCH_H_
