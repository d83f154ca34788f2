// `make chaos`: the chaos run of tests/chaos/chaos.h, for minutes, in
// all-in-one mode and with a controller and three agents. Prints one table
// row per run (docs/reliability.md keeps them) and exits 1 if a run failed
// its audit. Needs root (private dockerds).
//
//   chaos [--mode=all-in-one|cluster|both] [--seconds=N] [--seed=N]
//         [--rate=EVENTS_PER_SECOND] [--fault-interval-seconds=N] [--hosts=N]
//         [--drain-seconds=N]
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/chaos/chaos.h"

namespace {

bool Flag(const std::string& arg, const std::string& name, std::string* value) {
  const std::string prefix = "--" + name + "=";
  if (!absl::StartsWith(arg, prefix)) return false;
  *value = arg.substr(prefix.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // `bazel run` starts it in its runfiles tree (<runfiles>/<workspace>),
  // where the tests' helpers look for the dispatchd binary.
  if (std::getenv("TEST_SRCDIR") == nullptr) {
    if (char* cwd = getcwd(nullptr, 0); cwd != nullptr) {
      const std::string here = cwd;
      free(cwd);
      const size_t slash = here.rfind('/');
      setenv("TEST_SRCDIR", here.substr(0, slash).c_str(), 1);
      setenv("TEST_WORKSPACE", here.substr(slash + 1).c_str(), 1);
    }
  }
  std::string mode = "both";
  int64_t seconds = 300, hosts = 3, fault_interval = 6, drain = 600;
  uint64_t seed = static_cast<uint64_t>(absl::ToUnixSeconds(absl::Now()));
  double rate = 10;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string v;
    bool ok = true;
    if (Flag(arg, "mode", &v)) {
      mode = v;
      ok = mode == "both" || mode == "all-in-one" || mode == "cluster";
    } else if (Flag(arg, "seconds", &v)) {
      ok = absl::SimpleAtoi(v, &seconds) && seconds > 0;
    } else if (Flag(arg, "seed", &v)) {
      ok = absl::SimpleAtoi(v, &seed);
    } else if (Flag(arg, "rate", &v)) {
      ok = absl::SimpleAtod(v, &rate) && rate > 0;
    } else if (Flag(arg, "fault-interval-seconds", &v)) {
      ok = absl::SimpleAtoi(v, &fault_interval) && fault_interval > 0;
    } else if (Flag(arg, "drain-seconds", &v)) {
      ok = absl::SimpleAtoi(v, &drain) && drain > 0;
    } else if (Flag(arg, "hosts", &v)) {
      ok = absl::SimpleAtoi(v, &hosts) && hosts > 0 && hosts <= 8;
    } else {
      ok = false;
    }
    if (!ok) {
      std::cerr << "chaos: bad argument " << arg
                << "\nusage: chaos [--mode=all-in-one|cluster|both] [--seconds=N] [--seed=N] "
                   "[--rate=N] [--fault-interval-seconds=N] [--hosts=N] [--drain-seconds=N]\n";
      return 2;
    }
  }
  std::cout << "| mode | seed | duration | faults | events written | handler runs | duplicates / "
               "bound | missing | partial | dead letters | drain | result |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  bool all_ok = true;
  for (const bool all_in_one : {true, false}) {
    if ((all_in_one && mode == "cluster") || (!all_in_one && mode == "all-in-one")) continue;
    dispatchd::chaos::ChaosOptions options;
    options.cluster.all_in_one = all_in_one;
    options.cluster.hosts = static_cast<int>(hosts);
    options.seed = seed;
    options.duration = absl::Seconds(seconds);
    options.events_per_second = rate;
    options.fault_interval = absl::Seconds(fault_interval);
    options.drain_timeout = absl::Seconds(drain);
    absl::StatusOr<dispatchd::chaos::ChaosReport> report = dispatchd::chaos::RunChaos(options);
    if (!report.ok()) {
      std::cerr << "chaos run could not run: " << report.status() << "\n";
      return 2;
    }
    std::cout << report->Summary() << std::endl;
    all_ok &= report->ok();
    std::cout << "rerun: make chaos CHAOS_MODE=" << (all_in_one ? "all-in-one" : "cluster")
              << " CHAOS_SECONDS=" << seconds << " CHAOS_SEED=" << seed << "\n\n";
  }
  return all_ok ? 0 : 1;
}
