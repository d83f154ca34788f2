// The backlog benchmark: a large number of event files already present when
// dispatchd starts (DESIGN.md §6, "100,000 files present at start:
// dispatched with bounded memory").
//
// In one process, wired as `dispatchd all-in-one` wires them: the real
// Agent (watcher, spool, session, exec workers) and the real Dispatcher
// behind its SessionService, over gRPC's in-process channel; Docker is an
// InstantDockerApi (execs start and exit at once), so the figures are
// dispatchd's own. The files are spread over directories; every Nth has a
// subscriber (one container's label), the others have none and are deleted
// as soon as they are settled.
//
// Measured: the time from start to the last file settled (gone), events/s,
// the process's peak resident memory during that time (VmHWM, reset before
// the start) and its heap (jemalloc's allocated bytes, sampled), and the
// most events the agent and the controller held unsettled at once.
// Peak memory is only meaningful with one run per process (backlog_main.cc
// runs one; dispatchd_bench starts it once per backlog size).
#ifndef DISPATCHD_BENCH_BACKLOG_BENCH_H_
#define DISPATCHD_BENCH_BACKLOG_BENCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace dispatchd {
namespace bench {

struct BacklogBenchOptions {
  int64_t files = 100000;
  int directories = 100;         // files are spread evenly over d000/, d001/, ...
  int64_t payload_bytes = 1024;  // content of every file
  int subscribed_every = 10;     // every Nth file has a subscriber (10%)
  int containers = 100;          // subscribers; each holds 1/containers of the labels
  std::string log_level = "info";
  // The events directory is made below it and removed afterwards.
  std::string work_dir;
  absl::Duration timeout = absl::Minutes(30);
  absl::Duration sample_period = absl::Milliseconds(10);
};

struct BacklogResult {
  int64_t files = 0;
  int64_t subscribed = 0;  // files with a subscriber
  int64_t payload_bytes = 0;
  int64_t execs = 0;                 // execs Docker was asked to start
  int64_t files_left = 0;            // event files still there at the end (expected: 0)
  double create_seconds = 0;         // writing the files (not part of the drain)
  double drain_seconds = 0;          // start -> every event settled and its file gone
  int64_t rss_start_kib = -1;        // before dispatchd's parts started
  int64_t rss_peak_kib = -1;         // VmHWM during the drain
  bool rss_peak_reset = false;       // VmHWM was reset before the start (else it is the process's)
  int64_t heap_start_bytes = -1;     // jemalloc's stats.allocated (-1 without jemalloc)
  int64_t heap_peak_bytes = -1;      // largest sample during the drain
  int64_t peak_agent_unsettled = 0;  // the agent's files in flight, sampled
  int64_t peak_controller_in_flight = 0;  // the controller's unsettled events, sampled

  double events_per_second() const { return drain_seconds > 0 ? files / drain_seconds : 0; }
};

absl::StatusOr<BacklogResult> RunBacklogBenchmark(const BacklogBenchOptions& options);

// One run in a child process: `binary` (//bench:backlog_bench) with these
// options, its stderr (dispatchd's log) to `log_path`.
absl::StatusOr<BacklogResult> RunBacklogBenchmarkProcess(const std::string& binary,
                                                         const BacklogBenchOptions& options,
                                                         const std::string& log_path);

// One JSON object on one line, and back (for a run in a child process).
std::string BacklogResultToJson(const BacklogResult& result);
absl::StatusOr<BacklogResult> BacklogResultFromJson(const std::string& json);

// The Markdown section of `make bench`'s table.
std::string BacklogResultsMarkdown(const std::vector<BacklogResult>& results);

}  // namespace bench
}  // namespace dispatchd

#endif  // DISPATCHD_BENCH_BACKLOG_BENCH_H_
