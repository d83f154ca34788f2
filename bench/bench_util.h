// Small pieces the benchmark drivers share: percentiles, resident memory of
// a process, a directory watched for created files (the handlers' signal),
// and a process group run from a shell command line (the shell pipeline a
// user would write).
#ifndef DISPATCHD_BENCH_BENCH_UTIL_H_
#define DISPATCHD_BENCH_BENCH_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace dispatchd {
namespace bench {

// Percentiles of a sample, nearest-rank. All zero for an empty sample.
struct Summary {
  size_t n = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double min = 0;
  double max = 0;
};
Summary Summarize(std::vector<double> values);
double Median(std::vector<double> values);

// VmRSS / VmHWM of `pid` in KiB, from /proc; -1 if unreadable.
int64_t ResidentKib(pid_t pid);
int64_t PeakResidentKib(pid_t pid);
// Resets this process's VmHWM to its current VmRSS (/proc/self/clear_refs);
// false if the kernel refused.
bool ResetPeakResident();
// Bytes the application has allocated and not freed, as jemalloc counts
// them (stats.allocated); -1 when the process does not allocate with
// jemalloc (//common:allocator).
int64_t HeapAllocatedBytes();
// CPU time (user + system) `pid` has used so far, from /proc; zero if unreadable.
absl::Duration CpuTime(pid_t pid);

// Watches one directory (not recursive) for files created in it, and stamps
// each name with the time its inotify event was read. Thread-safe.
class CreatedFiles {
 public:
  static absl::StatusOr<std::unique_ptr<CreatedFiles>> Watch(const std::string& dir);
  ~CreatedFiles();

  // When `name` was created since the last Reset(); waits up to `timeout`.
  std::optional<absl::Time> WaitFor(const std::string& name, absl::Duration timeout);
  // Waits until `count` distinct names were created since the last Reset();
  // returns the time of the last of them, or nullopt on timeout.
  std::optional<absl::Time> WaitCount(size_t count, absl::Duration timeout);
  size_t count() const;
  // Forgets every name seen so far.
  void Reset();

 private:
  CreatedFiles(int fd) : fd_(fd) {}
  void Loop();

  const int fd_;
  mutable absl::Mutex mu_;
  std::map<std::string, absl::Time> seen_ ABSL_GUARDED_BY(mu_);
  absl::Time last_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// `bash -c script` in a process group of its own, stdout and stderr to
// `log_path`. Destroying it kills the whole group (SIGTERM, then SIGKILL).
class ShellProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ShellProcess>> Start(const std::string& script,
                                                             const std::string& log_path);
  ~ShellProcess();
  std::string Log() const;
  pid_t pid() const { return pid_; }

 private:
  ShellProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  const pid_t pid_;
  const std::string log_path_;
};

// Writes `content` to `path` (open, write, close) and returns the time taken
// just before close(): "file closed" for the latency benchmarks. Creates
// nothing else; the directory must exist.
absl::StatusOr<absl::Time> WriteAndClose(const std::string& path, const std::string& content);

// Number of regular files under `dir`, recursively, skipping hidden names.
size_t CountFiles(const std::string& dir);

// "1.234" (milliseconds with three decimals) and friends, for the tables.
std::string Ms(double ms);

}  // namespace bench
}  // namespace dispatchd

#endif  // DISPATCHD_BENCH_BENCH_UTIL_H_
