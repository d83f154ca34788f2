// dispatchd_bench: runs the benchmarks of docs/benchmarks.md on a private real
// dockerd and writes the results table (Markdown) to stdout and --out.
//
//   bazel run -c opt //bench:dispatchd_bench -- --out=$PWD/bench/results.md
//
// Flags: --out=FILE, --latency-events=N (200), --burst-files=N (1000),
// --burst-containers=N (10), --burst-rounds=N (3), --routing-scale=F (1.0,
// multiplies the routed event counts), --reconcile-changes=N (50),
// --controller-log-level=LEVEL (info), --max-unsettled=N (2000, events the
// synthetic agent keeps unsettled at most), --backlog-files=N (100000: the
// backlog benchmark runs with N/10 and N files), --unsettled-events=N
// (20000), --fleet-agents=N (1000: agents of the fleet benchmark),
// --fleet-routing-events=N (100000), --skip-docker, --skip-controller,
// --skip-backlog, --skip-unsettled, --skip-fleet. The backlog,
// unsettled-event and fleet benchmarks need no Docker: with --skip-docker
// --skip-controller no dockerd is started. The fleet benchmark alone, with
// all its flags: //bench:fleet_bench (bench/fleet_main.cc).
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
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
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/backlog_bench.h"
#include "bench/bench_util.h"
#include "bench/controller_bench.h"
#include "bench/docker_bench.h"
#include "bench/fleet_bench.h"
#include "bench/unsettled_bench.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"

namespace dispatchd {
namespace bench {
namespace {

std::string FirstLine(const std::string& path, const std::string& prefix) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, prefix)) return line;
  }
  return "";
}

std::string MachineMarkdown(const std::string& docker_version, const double load[3]) {
  std::string cpu = FirstLine("/proc/cpuinfo", "model name");
  if (size_t colon = cpu.find(':'); colon != std::string::npos) cpu = cpu.substr(colon + 2);
  std::string mem = FirstLine("/proc/meminfo", "MemTotal:");
  utsname u{};
  uname(&u);
  return absl::StrFormat(
      "Machine: %u cores (%s), %s, Linux %s, Docker engine %s. Load average at the start: "
      "%.2f %.2f %.2f.\n\n",
      std::thread::hardware_concurrency(), cpu, mem, u.release,
      docker_version.empty() ? "not used" : docker_version, load[0], load[1], load[2]);
}

// //bench:backlog_bench in this binary's runfiles (or beside it).
std::string BacklogBenchBinary(const char* argv0) {
  if (const char* srcdir = std::getenv("TEST_SRCDIR")) {
    const char* workspace = std::getenv("TEST_WORKSPACE");
    const std::string path = absl::StrCat(
        srcdir, "/", workspace != nullptr ? workspace : "dispatchd", "/bench/backlog_bench");
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  std::string beside(argv0);
  beside = beside.substr(0, beside.rfind('/') + 1) + "backlog_bench";
  return beside;
}

int Run(int argc, char** argv) {
  std::string out_path;
  DockerBenchOptions docker_options;
  ControllerBenchOptions controller_options;
  double routing_scale = 1.0;
  int64_t backlog_files = 100000;
  UnsettledBenchOptions unsettled_options;
  unsettled_options.events = 20000;
  unsettled_options.payload_bytes = {0, 1024, 4096, 65536};
  FleetBenchOptions fleet_options;
  bool skip_docker = false, skip_controller = false, skip_backlog = false, skip_unsettled = false;
  bool skip_fleet = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* flag, auto* out) {
      const std::string prefix = absl::StrCat(flag, "=");
      if (!absl::StartsWith(arg, prefix)) return false;
      if constexpr (std::is_same_v<std::decay_t<decltype(*out)>, std::string>) {
        *out = arg.substr(prefix.size());
        return true;
      } else if constexpr (std::is_same_v<std::decay_t<decltype(*out)>, double>) {
        return absl::SimpleAtod(arg.substr(prefix.size()), out);
      } else {
        return absl::SimpleAtoi(arg.substr(prefix.size()), out);
      }
    };
    if (value("--out", &out_path) || value("--latency-events", &docker_options.latency_events) ||
        value("--burst-files", &docker_options.burst_files) ||
        value("--burst-containers", &docker_options.burst_containers) ||
        value("--burst-rounds", &docker_options.burst_rounds) ||
        value("--routing-scale", &routing_scale) ||
        value("--reconcile-changes", &controller_options.reconcile_changes) ||
        value("--controller-log-level", &controller_options.log_level) ||
        value("--max-unsettled", &controller_options.max_unsettled) ||
        value("--backlog-files", &backlog_files) ||
        value("--unsettled-events", &unsettled_options.events) ||
        value("--fleet-agents", &fleet_options.agents) ||
        value("--fleet-routing-events", &fleet_options.routing_events)) {
      continue;
    }
    if (arg == "--skip-docker") { skip_docker = true; continue; }
    if (arg == "--skip-controller") { skip_controller = true; continue; }
    if (arg == "--skip-backlog") {
      skip_backlog = true;
      continue;
    }
    if (arg == "--skip-unsettled") {
      skip_unsettled = true;
      continue;
    }
    if (arg == "--skip-fleet") {
      skip_fleet = true;
      continue;
    }
    std::cerr << "dispatchd_bench: unknown or bad flag " << arg << "\n";
    return 2;
  }
  for (auto& [fanout, events] : controller_options.routing) {
    events = std::max<int64_t>(1, static_cast<int64_t>(events * routing_scale));
  }
  // `bazel run` or a direct call: find dispatchd in this binary's runfiles.
  if (std::getenv("TEST_SRCDIR") == nullptr) {
    const std::string runfiles = absl::StrCat(argv[0], ".runfiles");
    if (access(runfiles.c_str(), F_OK) == 0) {
      setenv("TEST_SRCDIR", runfiles.c_str(), 1);
      setenv("TEST_WORKSPACE", "dispatchd", 1);
    }
  }

  const std::string work = testing::MakeTempDir("dispatchd-bench");
  docker_options.work_dir = work;
  controller_options.work_dir = work;
  std::string body;
  std::string docker_version;
  std::unique_ptr<testing::PrivateDockerd> daemon;
  int status = 0;
  const absl::Time started = absl::Now();
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  // Memory first, on a machine without a dockerd yet: each backlog run in a
  // process of its own, so its peak is its own.
  std::string memory_body;
  if (!skip_backlog) {
    std::vector<BacklogResult> backlog;
    for (int64_t files : {std::max<int64_t>(1, backlog_files / 10), backlog_files}) {
      BacklogBenchOptions backlog_options;
      backlog_options.files = files;
      backlog_options.log_level = controller_options.log_level;
      backlog_options.work_dir = work;
      absl::StatusOr<BacklogResult> r =
          RunBacklogBenchmarkProcess(BacklogBenchBinary(argv[0]), backlog_options,
                                     absl::StrCat(work, "/backlog-", files, ".log"));
      if (!r.ok()) {
        std::cerr << "backlog benchmark failed: " << r.status() << "\n";
        status = 1;
        break;
      }
      backlog.push_back(*r);
    }
    memory_body += BacklogResultsMarkdown(backlog);
  }
  if (!skip_unsettled) {
    memory_body += UnsettledResultsMarkdown(RunUnsettledBenchmark(unsettled_options));
  }
  // The fleet needs no Docker either: before any dockerd, on a quiet machine.
  std::string fleet_body;
  if (!skip_fleet) {
    fleet_options.log_level = controller_options.log_level;
    fleet_options.work_dir = work;
    absl::StatusOr<FleetResult> r = RunFleetBenchmark(fleet_options);
    if (r.ok()) {
      fleet_body = FleetResultsMarkdown({*r}, fleet_options);
    } else {
      std::cerr << "fleet benchmark failed: " << r.status() << "\n";
      status = 1;
    }
  }
  if (!skip_docker || !skip_controller) {
    absl::StatusOr<std::unique_ptr<testing::PrivateDockerd>> d = testing::PrivateDockerd::Start();
    if (!d.ok()) {
      std::cerr << "cannot start a private dockerd: " << d.status() << "\n";
      testing::RemoveTree(work);
      return 1;
    }
    daemon = *std::move(d);
    controller_options.docker_host = daemon->host();
  }
  // The routing benchmarks run first: right after the bursts the engine is
  // still tearing down their containers, and that load would be measured
  // as the controller's. The table keeps the sections in order.
  std::string controller_body;
  if (!skip_controller) {
    absl::StatusOr<ControllerBenchResults> r = RunControllerBenchmarks(controller_options);
    if (r.ok()) {
      controller_body = ControllerResultsMarkdown(*r);
    } else {
      std::cerr << "controller benchmarks failed: " << r.status() << "\n";
      status = 1;
    }
  }
  if (!skip_docker) {
    absl::StatusOr<DockerBenchResults> r = RunDockerBenchmarks(*daemon, docker_options);
    if (r.ok()) {
      docker_version = r->docker_version;
      body += DockerResultsMarkdown(*r);
    } else {
      std::cerr << "docker benchmarks failed: " << r.status() << "\n";
      status = 1;
    }
  }
  body += controller_body;
  body += memory_body;
  body += fleet_body;
  double load_end[3] = {0, 0, 0};
  getloadavg(load_end, 3);
  std::string table = absl::StrCat(
      "## Results of `make bench`\n\n", MachineMarkdown(docker_version, load),
      absl::StrFormat("Load average at the end: %.2f %.2f %.2f. Run took %.0f s.\n\n", load_end[0],
                      load_end[1], load_end[2], absl::ToDoubleSeconds(absl::Now() - started)),
      body);
  std::cout << table;
  if (!out_path.empty()) {
    std::ofstream out(out_path);
    out << table;
    if (!out) {
      std::cerr << "cannot write " << out_path << "\n";
      status = 1;
    }
  }
  daemon.reset();
  testing::RemoveTree(work);
  return status;
}

}  // namespace
}  // namespace bench
}  // namespace dispatchd

int main(int argc, char** argv) {
  // As in dispatchd itself: Debian's Abseil checks every Mutex acquisition
  // for lock-order cycles, which would load the synthetic agent (it shares
  // the 2 cores with the controller it measures).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return dispatchd::bench::Run(argc, argv);
}
