// backlog_bench: one run of the backlog benchmark (bench/backlog_bench.h) in
// a process of its own, so its peak memory is that run's. Prints the result
// as one JSON line on stdout; dispatchd's log goes to stderr.
//
//   bazel run -c opt //bench:backlog_bench -- --files=10000
//
// Flags: --files=N (100000), --directories=N (100), --payload-bytes=N
// (1024), --subscribed-every=N (10), --containers=N (100), --log-level=L
// (info), --work-dir=DIR (a new directory under /tmp, removed afterwards).
#include <iostream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bench/backlog_bench.h"
#include "tests/testing/dispatchd_process.h"

int main(int argc, char** argv) {
  // As in dispatchd itself (cmd/dispatchd/main.cc).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  dispatchd::bench::BacklogBenchOptions options;
  std::string work_dir;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto number = [&](const char* flag, auto* out) {
      const std::string prefix = absl::StrCat(flag, "=");
      return absl::StartsWith(arg, prefix) && absl::SimpleAtoi(arg.substr(prefix.size()), out);
    };
    if (number("--files", &options.files) || number("--directories", &options.directories) ||
        number("--payload-bytes", &options.payload_bytes) ||
        number("--subscribed-every", &options.subscribed_every) ||
        number("--containers", &options.containers)) {
      continue;
    }
    if (absl::StartsWith(arg, "--log-level=")) {
      options.log_level = arg.substr(12);
      continue;
    }
    if (absl::StartsWith(arg, "--work-dir=")) {
      work_dir = arg.substr(11);
      continue;
    }
    std::cerr << "backlog_bench: unknown or bad flag " << arg << "\n";
    return 2;
  }
  const bool own_dir = work_dir.empty();
  options.work_dir = own_dir ? dispatchd::testing::MakeTempDir("dispatchd-backlog") : work_dir;
  absl::StatusOr<dispatchd::bench::BacklogResult> result =
      dispatchd::bench::RunBacklogBenchmark(options);
  if (own_dir) dispatchd::testing::RemoveTree(options.work_dir);
  if (!result.ok()) {
    std::cerr << "backlog benchmark failed: " << result.status() << "\n";
    return 1;
  }
  std::cout << dispatchd::bench::BacklogResultToJson(*result) << std::endl;
  return 0;
}
