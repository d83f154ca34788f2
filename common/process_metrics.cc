#include "common/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace dispatchd {
namespace {

absl::Status ErrnoStatus(int error_number, absl::string_view what) {
  return absl::Status(absl::ErrnoToStatusCode(error_number),
                      absl::StrCat(what, ": ", std::strerror(error_number)));
}

absl::StatusOr<std::string> ReadSmallFile(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return content.str();
}

// Seconds since the epoch at which the system booted ("btime" in /proc/stat).
absl::StatusOr<int64_t> BootTimeSeconds() {
  ASSIGN_OR_RETURN(std::string stat, ReadSmallFile("/proc/stat"));
  for (absl::string_view line : absl::StrSplit(stat, '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) {
      int64_t seconds;
      if (absl::SimpleAtoi(line, &seconds)) return seconds;
    }
  }
  return absl::NotFoundError("no btime line in /proc/stat");
}

absl::StatusOr<int64_t> CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) {
    return ErrnoStatus(errno, "opendir /proc/self/fd");
  }
  // The directory's own descriptor is an artefact of counting; leave it out.
  const std::string own = absl::StrCat(dirfd(dir));
  int64_t count = 0;
  while (const dirent* entry = readdir(dir)) {
    absl::string_view name = entry->d_name;
    if (name == "." || name == ".." || name == own) continue;
    ++count;
  }
  closedir(dir);
  return count;
}

}  // namespace

absl::StatusOr<ProcStat> ParseProcStat(absl::string_view stat) {
  // "pid (comm) state ppid ..."; comm may contain anything, so split after
  // the last ')'.
  const size_t close = stat.rfind(')');
  if (close == absl::string_view::npos) {
    return absl::InvalidArgumentError("proc stat line without ')'");
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipWhitespace());
  // fields[0] is field 3 (state) of proc(5); field N is fields[N - 3].
  constexpr size_t kUtime = 14 - 3, kStime = 15 - 3, kStart = 22 - 3, kVsize = 23 - 3,
                   kRss = 24 - 3;
  if (fields.size() <= kRss) {
    return absl::InvalidArgumentError(
        absl::StrCat("proc stat line has ", fields.size() + 2, " fields, want at least 24"));
  }
  ProcStat out;
  if (!absl::SimpleAtoi(fields[kUtime], &out.utime_ticks) ||
      !absl::SimpleAtoi(fields[kStime], &out.stime_ticks) ||
      !absl::SimpleAtoi(fields[kStart], &out.start_time_ticks) ||
      !absl::SimpleAtoi(fields[kVsize], &out.vsize_bytes) ||
      !absl::SimpleAtoi(absl::StripAsciiWhitespace(fields[kRss]), &out.rss_pages)) {
    return absl::InvalidArgumentError("proc stat line has a non-numeric field");
  }
  return out;
}

absl::StatusOr<ProcessStats> ReadProcessStats() {
  ASSIGN_OR_RETURN(std::string stat_line, ReadSmallFile("/proc/self/stat"));
  ASSIGN_OR_RETURN(ProcStat stat, ParseProcStat(stat_line));
  ASSIGN_OR_RETURN(int64_t boot_seconds, BootTimeSeconds());
  const long ticks_per_second = sysconf(_SC_CLK_TCK);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (ticks_per_second <= 0 || page_size <= 0) {
    return absl::InternalError("sysconf(_SC_CLK_TCK or _SC_PAGESIZE) failed");
  }
  ProcessStats out;
  out.cpu_time = absl::Seconds(static_cast<double>(stat.utime_ticks + stat.stime_ticks) /
                               static_cast<double>(ticks_per_second));
  out.resident_memory_bytes = stat.rss_pages * page_size;
  out.virtual_memory_bytes = static_cast<int64_t>(stat.vsize_bytes);
  out.start_time = absl::FromUnixSeconds(boot_seconds) +
                   absl::Seconds(static_cast<double>(stat.start_time_ticks) /
                                 static_cast<double>(ticks_per_second));
  ASSIGN_OR_RETURN(out.open_fds, CountOpenFds());
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return ErrnoStatus(errno, "getrlimit(RLIMIT_NOFILE)");
  }
  out.max_fds = limit.rlim_cur == RLIM_INFINITY ? -1 : static_cast<int64_t>(limit.rlim_cur);
  return out;
}

void RegisterProcessMetrics(Registry& registry) {
  Counter& cpu = registry
                     .AddCounter("process_cpu_seconds_total",
                                 "Total user and system CPU time spent in seconds.")
                     .Add({});
  Gauge& rss = registry.AddGauge("process_resident_memory_bytes", "Resident memory size in bytes.")
                   .Add({});
  Gauge& vsize =
      registry.AddGauge("process_virtual_memory_bytes", "Virtual memory size in bytes.").Add({});
  Gauge& start = registry
                     .AddGauge("process_start_time_seconds",
                               "Start time of the process since unix epoch in seconds.")
                     .Add({});
  Gauge& open_fds =
      registry.AddGauge("process_open_fds", "Number of open file descriptors.").Add({});
  Gauge& max_fds =
      registry.AddGauge("process_max_fds", "Maximum number of open file descriptors.").Add({});

  registry.AddCollectHook([&cpu, &rss, &vsize, &start, &open_fds, &max_fds] {
    absl::StatusOr<ProcessStats> stats = ReadProcessStats();
    if (!stats.ok()) {
      LOG(WARNING) << "process metrics not updated: " << stats.status();
      return;
    }
    // A counter only moves forward: add what was used since the last read.
    const double cpu_seconds = absl::ToDoubleSeconds(stats->cpu_time);
    cpu.Increment(std::max(0.0, cpu_seconds - cpu.Value()));
    rss.Set(static_cast<double>(stats->resident_memory_bytes));
    vsize.Set(static_cast<double>(stats->virtual_memory_bytes));
    start.Set(absl::ToDoubleSeconds(stats->start_time - absl::UnixEpoch()));
    open_fds.Set(static_cast<double>(stats->open_fds));
    max_fds.Set(stats->max_fds < 0 ? std::numeric_limits<double>::infinity()
                                   : static_cast<double>(stats->max_fds));
  });
}

void RegisterBuildInfo(Registry& registry, absl::string_view version) {
  registry
      .AddGauge("dispatchd_build_info",
                "A metric with a constant '1' value labeled by the version of dispatchd.")
      .Add({{"version", std::string(version)}})
      .Set(1);
}

}  // namespace dispatchd
