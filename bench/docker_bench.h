// Benchmarks against a real Docker engine (docs/benchmarks.md), each comparing
// dispatchd all-in-one with what a user would otherwise run, in the same run
// and alternating, so machine noise cancels in the ratios:
//   - latency: file closed -> handler command running in the container, for
//     the floor (the same exec sent straight to the Docker API), dispatchd
//     and the inotifywait | docker exec shell pipeline;
//   - burst: many files at once for several subscribed containers, until
//     every handler ran and every file is settled, against a parallel API
//     client issuing the same execs and the shell pipeline.
// Handlers signal by `touch /signal/NAME` in a bind-mounted host directory
// that the driver watches with inotify.
#ifndef DISPATCHD_BENCH_DOCKER_BENCH_H_
#define DISPATCHD_BENCH_DOCKER_BENCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/testing/docker_daemon.h"

namespace dispatchd {
namespace bench {

struct DockerBenchOptions {
  int latency_events = 200;  // per contender, after the warm-up
  int latency_warmup = 5;
  int burst_files = 1000;
  int burst_containers = 10;
  int burst_rounds = 3;
  int floor_parallelism = 8;  // the API client's concurrent execs
  int exec_workers = 8;       // dispatchd --exec-workers
  // Scratch directory (logs, events, signals); must exist.
  std::string work_dir;
};

struct BurstRound {
  double floor_s = 0;
  double dispatchd_s = 0;
  double shell_s = 0;
};

struct DockerBenchResults {
  std::string docker_version;
  // Milliseconds, file closed (floor: exec create sent) -> handler running.
  std::vector<double> floor_ms, dispatchd_ms, shell_ms;
  // From dispatchd's own log: file observed -> exec create / start sent.
  std::vector<double> internal_create_ms, internal_start_ms;
  // The floor's exec create sent -> exec start sent (its create round trip).
  std::vector<double> floor_create_ms;
  std::vector<BurstRound> burst;
  int burst_files = 0;
  int burst_containers = 0;
  int floor_parallelism = 0;
  int64_t dispatchd_idle_rss_kib = -1;
  int64_t dispatchd_peak_rss_kib = -1;
};

absl::StatusOr<DockerBenchResults> RunDockerBenchmarks(testing::PrivateDockerd& daemon,
                                                       const DockerBenchOptions& options);

// The results as Markdown: a latency table and a burst table with ratios.
std::string DockerResultsMarkdown(const DockerBenchResults& results);

}  // namespace bench
}  // namespace dispatchd

#endif  // DISPATCHD_BENCH_DOCKER_BENCH_H_
