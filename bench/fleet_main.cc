// fleet_bench: the fleet benchmark of docs/benchmarks.md ("A fleet on one
// controller") alone; `make bench` runs it too (dispatchd_bench).
//
//   bazel run -c opt //bench:fleet_bench -- --agents=1000
//   bazel run -c opt //bench:fleet_bench -- --agents=1000,5000 --out=$PWD/fleet.md
//
// Flags: --agents=N[,N...] (1000; one run per N, each with a controller
// and a state directory of its own), --containers=N (100 per agent), --subscriptions=N (1 per
// container), --heartbeat=DURATION (5s, the controller's --heartbeat),
// --fresh-controller (the storm on a controller started fresh instead of
// one restarted under the fleet), --no-state-dir (the controller without
// --state-dir: after a restart it waits its fixed start-up grace),
// --storm-timeout-seconds=N (300), --idle-seconds=N (30),
// --reconcile-changes=N (100), --routing-events=N (100000),
// --max-unsettled=N (2000), --controller-log-level=LEVEL (info),
// --controller-nofile=N (the controller's RLIMIT_NOFILE; default: this
// process's, raised to its hard limit), --profile-dir=DIR (perf record of
// the controller during the storm, the idle window and the routing),
// --out=FILE (the table, also on stdout), --keep-logs (the controller's
// logs stay, their directory named on stderr). Progress goes to stderr.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/fleet_bench.h"
#include "tests/testing/dispatchd_process.h"

namespace dispatchd {
namespace bench {
namespace {

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "model name")) {
      if (size_t colon = line.find(':'); colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

int Run(int argc, char** argv) {
  FleetBenchOptions options;
  std::vector<int> agent_counts = {1000};
  std::string out_path;
  bool keep_logs = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    auto value = [&](absl::string_view flag, std::string* out) {
      if (!absl::ConsumePrefix(&arg, absl::StrCat(flag, "="))) return false;
      *out = std::string(arg);
      return true;
    };
    std::string v;
    bool ok = true;
    if (value("--agents", &v)) {
      agent_counts.clear();
      for (absl::string_view n : absl::StrSplit(v, ',')) {
        int count = 0;
        ok = ok && absl::SimpleAtoi(n, &count) && count > 0;
        agent_counts.push_back(count);
      }
    } else if (value("--containers", &v)) {
      ok = absl::SimpleAtoi(v, &options.containers) && options.containers > 0;
    } else if (value("--subscriptions", &v)) {
      ok = absl::SimpleAtoi(v, &options.subscriptions) && options.subscriptions > 0;
    } else if (value("--heartbeat", &v)) {
      ok = absl::ParseDuration(v, &options.heartbeat) && options.heartbeat > absl::ZeroDuration();
    } else if (value("--storm-timeout-seconds", &v)) {
      int seconds = 0;
      ok = absl::SimpleAtoi(v, &seconds) && seconds > 0;
      options.storm_timeout = absl::Seconds(seconds);
    } else if (value("--idle-seconds", &v)) {
      int seconds = 0;
      ok = absl::SimpleAtoi(v, &seconds);
      options.idle_window = absl::Seconds(seconds);
    } else if (value("--reconcile-changes", &v)) {
      ok = absl::SimpleAtoi(v, &options.reconcile_changes);
    } else if (value("--routing-events", &v)) {
      ok = absl::SimpleAtoi(v, &options.routing_events);
    } else if (value("--max-unsettled", &v)) {
      ok = absl::SimpleAtoi(v, &options.max_unsettled) && options.max_unsettled > 0;
    } else if (value("--controller-log-level", &v)) {
      options.log_level = v;
    } else if (value("--controller-nofile", &v)) {
      ok = absl::SimpleAtoi(v, &options.controller_nofile);
    } else if (value("--profile-dir", &v)) {
      options.profile_dir = v;
    } else if (value("--out", &v)) {
      out_path = v;
    } else if (arg == "--keep-logs") {
      keep_logs = true;
    } else if (arg == "--fresh-controller") {
      options.restart = false;
    } else if (arg == "--no-state-dir") {
      options.state_dir = false;
    } else {
      ok = false;
    }
    if (!ok) {
      std::cerr << "fleet_bench: unknown or bad flag " << argv[i] << "\n";
      return 2;
    }
  }
  // `bazel run` or a direct call: find dispatchd in this binary's runfiles.
  if (std::getenv("TEST_SRCDIR") == nullptr) {
    const std::string runfiles = absl::StrCat(argv[0], ".runfiles");
    if (access(runfiles.c_str(), F_OK) == 0) {
      setenv("TEST_SRCDIR", runfiles.c_str(), 1);
      setenv("TEST_WORKSPACE", "dispatchd", 1);
    }
  }
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  const std::string work = testing::MakeTempDir("dispatchd-fleet");
  options.work_dir = work;
  std::vector<FleetResult> results;
  int status = 0;
  for (int agents : agent_counts) {
    options.agents = agents;
    absl::StatusOr<FleetResult> r = RunFleetBenchmark(options);
    if (!r.ok()) {
      std::cerr << "fleet benchmark with " << agents << " agents failed: " << r.status() << "\n";
      status = 1;
      continue;
    }
    results.push_back(*std::move(r));
  }
  double load_end[3] = {0, 0, 0};
  getloadavg(load_end, 3);
  const std::string table = absl::StrCat(
      absl::StrFormat("Machine: %u cores (%s). Load average before: %.2f %.2f %.2f; after: "
                      "%.2f %.2f %.2f.\n\n",
                      std::thread::hardware_concurrency(), CpuModel(), load[0], load[1], load[2],
                      load_end[0], load_end[1], load_end[2]),
      FleetResultsMarkdown(results, options));
  std::cout << table;
  if (!out_path.empty()) {
    std::ofstream out(out_path);
    out << table;
    if (!out) {
      std::cerr << "cannot write " << out_path << "\n";
      status = 1;
    }
  }
  if (keep_logs) {
    std::cerr << "fleet_bench: the controllers' logs are in " << work << "\n";
  } else {
    testing::RemoveTree(work);
  }
  return status;
}

}  // namespace
}  // namespace bench
}  // namespace dispatchd

int main(int argc, char** argv) {
  // As in dispatchd: no lock-order checks on every Mutex acquisition (the
  // fleet shares the cores with the controller it measures).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return dispatchd::bench::Run(argc, argv);
}
