// The standard process_* metrics (as Prometheus' Go and Java clients export
// them), read from /proc/self at every collection, and a build-info gauge.
//
//   RegisterProcessMetrics(registry);
//   RegisterBuildInfo(registry, "1.2.0");   // dispatchd_build_info{version="1.2.0"} 1
//
// Thread-safety: the functions may be called from any thread; the collect
// hook they install is serialized by the Registry.
#ifndef DISPATCHD_COMMON_PROCESS_METRICS_H_
#define DISPATCHD_COMMON_PROCESS_METRICS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/metrics.h"

namespace dispatchd {

// One reading of this process's resource use.
struct ProcessStats {
  absl::Duration cpu_time;  // user + system
  int64_t resident_memory_bytes = 0;
  int64_t virtual_memory_bytes = 0;
  absl::Time start_time;
  int64_t open_fds = 0;
  int64_t max_fds = 0;  // soft RLIMIT_NOFILE
};

// Reads /proc/self/stat, /proc/stat (boot time), /proc/self/fd and the fd limit.
absl::StatusOr<ProcessStats> ReadProcessStats();

// The fields of a /proc/<pid>/stat line that ProcessStats needs, in the
// kernel's units (clock ticks, pages, ticks since boot).
struct ProcStat {
  uint64_t utime_ticks = 0;
  uint64_t stime_ticks = 0;
  uint64_t start_time_ticks = 0;
  uint64_t vsize_bytes = 0;
  int64_t rss_pages = 0;
};
// Parses the contents of /proc/<pid>/stat (the command name may hold spaces
// and parentheses). InvalidArgument when the line is malformed.
absl::StatusOr<ProcStat> ParseProcStat(absl::string_view stat);

// Registers process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_start_time_seconds, process_open_fds
// and process_max_fds on `registry`, refreshed by a collect hook. Call once
// per registry. A failed read leaves the previous values and logs a warning.
void RegisterProcessMetrics(Registry& registry);

// Registers the gauge dispatchd_build_info{version="<version>"} = 1.
void RegisterBuildInfo(Registry& registry, absl::string_view version);

}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_PROCESS_METRICS_H_
