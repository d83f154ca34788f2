// A fleet on one controller: N synthetic agents (bench/fleet.h, one process,
// one gRPC connection each) against a real `dispatchd controller` process on
// loopback. By default the controller is started with --state-dir, the
// fleet connects and sends its inventories, and the controller is stopped
// (SIGTERM) and started again on the same port and state directory: the
// storm below is the one after a restart, when the controller knows which
// agents to wait for. Measured, in order:
//
//   1. Connect storm: every agent opens its session at once, as when a
//      controller restarts under a running fleet. From that moment: every
//      Welcome received (connect); every inventory snapshot applied (the
//      controller's dispatchd_agents_fresh gauge, polled every 20 ms, and
//      the time of its last "inventory" log line); when routing resumed:
//      the Command of an event that the first agent sends as the storm
//      begins, for a subscription of the last agent, held until then; and
//      the Command of an event sent once every snapshot is applied. A lone
//      controller without a list of its agents (a fresh controller, or
//      `state_dir` false) holds events for a start-up grace of 3 heartbeat
//      periods after it started, so that agents of its previous run can
//      come back first; with the list it waits for exactly those agents.
//   2. Idle: controller and fleet CPU over a window in which the agents
//      only heartbeat.
//   3. Reconcile: one container of one agent changes its labels (an
//      InventoryDelta that adds a subscription), and the same agent sends
//      an event for that subscription right behind it: time from the change
//      sent to its Command received, while every other agent heartbeats;
//      and the same round trip for an existing subscription of another
//      agent (no change).
//   4. Routing: events observed by every agent in turn, each for a random
//      subscription of the fleet (so its Command goes to a random agent and
//      its Settled back to the first), at most `max_unsettled` unsettled:
//      events/s and the controller's CPU per delivered Command.
//   Memory: the controller's VmRSS fresh (no agent), with every agent
//   connected and subscribed, and its peak under the routing load (sampled
//   every 20 ms); its VmHWM at the end (the peak of the whole run).
//
// The benchmark process raises its RLIMIT_NOFILE soft limit to the hard
// limit (one socket per agent); the controller inherits it, unless
// `controller_nofile` sets the controller's own.
#ifndef DISPATCHD_BENCH_FLEET_BENCH_H_
#define DISPATCHD_BENCH_FLEET_BENCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace dispatchd {
namespace bench {

struct FleetBenchOptions {
  int agents = 1000;
  int containers = 100;   // per agent
  int subscriptions = 1;  // per container
  // The controller's --heartbeat (its default); the grace is 3 of them.
  absl::Duration heartbeat = absl::Seconds(5);
  // The storm follows a restart of the controller (first start, every
  // agent's inventory applied, SIGTERM, start again); false: a controller
  // started fresh.
  bool restart = true;
  // The controller runs with --state-dir (a directory of work_dir, empty
  // before its first start), so after a restart it waits for the agents it
  // knew rather than a fixed start-up grace.
  bool state_dir = true;
  absl::Duration idle_window = absl::Seconds(30);
  int reconcile_changes = 100;
  int64_t routing_events = 100000;
  uint64_t max_unsettled = 2000;
  std::string log_level = "info";
  // When > 0, the controller's RLIMIT_NOFILE, soft and hard (set on it
  // after it starts), to see what a controller with that limit does with
  // the fleet.
  int64_t controller_nofile = 0;
  // When set, `perf record -g` of the controller during the storm, the idle
  // window and the routing, into DIR/fleet-N-{storm,idle,routing}.perf.data.
  std::string profile_dir;
  // How long the storm may take (every Welcome, then every snapshot).
  absl::Duration storm_timeout = absl::Minutes(5);
  // Scratch directory (the controller's log); must exist.
  std::string work_dir;
};

struct FleetResult {
  int agents = 0;
  int containers = 0;     // in the fleet
  int subscriptions = 0;  // in the fleet
  double heartbeat_seconds = 0;
  int64_t nofile_limit = -1;       // this process's soft limit during the run
  int64_t controller_nofile = -1;  // the controller's soft limit

  bool restarted = false;       // the storm followed a restart of the controller
  bool state_dir = false;       // the controller ran with --state-dir
  double first_fresh_seen = -1;  // before the restart: connect -> every snapshot applied (s)
  // Agents the restarted controller waited for, from its state directory;
  // -1: none (it waited the fixed start-up grace).
  int64_t known_agents = -1;

  // Storm, seconds since every session was opened (-1: not seen).
  double listen_seconds = -1;         // controller started -> answering (before the storm)
  double welcome_p50 = -1;            // half the agents had their Welcome
  double welcome_last = -1;           // every agent had its Welcome
  double fresh_seen = -1;             // the gauge showed every inventory applied
  double last_inventory_logged = -1;  // the controller logged the last snapshot applied
  double grace_end = -1;      // 3 heartbeats after the controller was started (-1: no fixed grace)
  double resumed = -1;        // the event sent as the storm began, held: its Command received
  double resumed_logged = -1;  // the controller logged routing the held event
  double routed = -1;          // the event sent at fresh_seen: its Command received
  double storm_controller_cpu = 0;    // CPU seconds, storm start -> fresh_seen
  double storm_fleet_cpu = 0;
  // Connections the kernel dropped because the controller's accept queue
  // was full, and SYNs sent again, during the storm (/proc/net/netstat:
  // counts every process of the machine).
  int64_t storm_listen_overflows = 0;
  int64_t storm_syn_retransmits = 0;

  int64_t rss_idle_kib = -1;         // fresh controller, no agent
  int64_t rss_subscribed_kib = -1;   // every agent connected and subscribed
  int64_t rss_peak_kib = -1;         // sampled during the routing
  int64_t rss_hwm_kib = -1;          // VmHWM at the end: the peak of the whole run
  int64_t fleet_rss_kib = -1;        // this process with the fleet connected
  int64_t controller_fds = -1;       // open descriptors, every agent subscribed
  int64_t controller_fds_peak = -1;  // the most during the storm (sampled every 100 ms)
  int controller_threads = -1;
  int fleet_threads = -1;

  double idle_seconds = 0;
  double idle_controller_cpu = 0;  // CPU seconds in the idle window
  double idle_fleet_cpu = 0;
  uint64_t idle_heartbeats_sent = 0;      // by the agents, in the window
  uint64_t idle_heartbeats_received = 0;  // from the controller

  std::vector<double> reconcile_ms;  // label change -> its Command
  std::vector<double> baseline_ms;   // event of an existing subscription -> its Command

  int64_t routing_events = 0;
  uint64_t routing_commands = 0;
  double routing_seconds = 0;
  double routing_controller_cpu = 0;
  double routing_fleet_cpu = 0;

  uint64_t sessions_ended = 0;  // sessions that ended during the run (expected: 0)
  std::vector<std::string> end_reasons;
  int64_t missed_heartbeat_closes = 0;  // "missed 3 heartbeats" in the controller's log
};

absl::StatusOr<FleetResult> RunFleetBenchmark(const FleetBenchOptions& options);

// The Markdown section of `make bench`'s table: one column per run.
std::string FleetResultsMarkdown(const std::vector<FleetResult>& results,
                                 const FleetBenchOptions& options);

}  // namespace bench
}  // namespace dispatchd

#endif  // DISPATCHD_BENCH_FLEET_BENCH_H_
