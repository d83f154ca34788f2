#include "bench/bench_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

extern char** environ;

// jemalloc's control interface, when the binary links jemalloc
// (//common:allocator); null otherwise.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace dispatchd {
namespace bench {
namespace {

double NearestRank(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  if (rank < 1) rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

int64_t StatusField(pid_t pid, absl::string_view field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, field)) continue;
    rest = absl::StripAsciiWhitespace(rest);
    int64_t kib = 0;
    std::vector<absl::string_view> parts = absl::StrSplit(rest, ' ', absl::SkipEmpty());
    if (!parts.empty() && absl::SimpleAtoi(parts[0], &kib)) return kib;
  }
  return -1;
}

}  // namespace

Summary Summarize(std::vector<double> values) {
  Summary s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.n = values.size();
  s.p50 = NearestRank(values, 0.50);
  s.p90 = NearestRank(values, 0.90);
  s.p99 = NearestRank(values, 0.99);
  s.min = values.front();
  s.max = values.back();
  return s;
}

double Median(std::vector<double> values) { return Summarize(std::move(values)).p50; }

int64_t ResidentKib(pid_t pid) { return StatusField(pid, "VmRSS:"); }
int64_t PeakResidentKib(pid_t pid) { return StatusField(pid, "VmHWM:"); }

bool ResetPeakResident() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

int64_t HeapAllocatedBytes() {
  if (mallctl == nullptr) return -1;  // not linked with jemalloc
  // The statistics are a snapshot refreshed by writing "epoch"; this
  // thread's cache is flushed first so its frees count.
  mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
  uint64_t epoch = 1;
  size_t size = sizeof(epoch);
  mallctl("epoch", &epoch, &size, &epoch, size);
  size_t allocated = 0;
  size = sizeof(allocated);
  if (mallctl("stats.allocated", &allocated, &size, nullptr, 0) != 0) return -1;
  return static_cast<int64_t>(allocated);
}

absl::Duration CpuTime(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name may hold spaces: fields are counted after its ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return absl::ZeroDuration();
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(stat).substr(close + 2), ' ');
  int64_t utime = 0, stime = 0;
  // Fields 14 and 15 of proc(5); the list starts at field 3.
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::ZeroDuration();
  }
  return absl::Seconds(static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK));
}

absl::StatusOr<std::unique_ptr<CreatedFiles>> CreatedFiles::Watch(const std::string& dir) {
  const int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) return absl::InternalError(absl::StrCat("inotify_init1: ", strerror(errno)));
  if (inotify_add_watch(fd, dir.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("inotify_add_watch ", dir, ": ", strerror(err)));
  }
  std::unique_ptr<CreatedFiles> watcher(new CreatedFiles(fd));
  watcher->thread_ = std::thread([w = watcher.get()] { w->Loop(); });
  return watcher;
}

CreatedFiles::~CreatedFiles() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
  close(fd_);
}

void CreatedFiles::Loop() {
  alignas(inotify_event) char buf[64 * 1024];
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = read(fd_, buf, sizeof(buf));
    const absl::Time now = absl::Now();
    if (n <= 0) continue;
    absl::MutexLock lock(&mu_);
    for (ssize_t off = 0; off < n;) {
      const auto* e = reinterpret_cast<const inotify_event*>(buf + off);
      if (e->len > 0 && (e->mask & IN_ISDIR) == 0) {
        if (seen_.emplace(e->name, now).second) last_ = now;
      }
      off += sizeof(inotify_event) + e->len;
    }
  }
}

std::optional<absl::Time> CreatedFiles::WaitFor(const std::string& name, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto seen = [this, &name]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return seen_.count(name) != 0;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&seen), timeout)) return std::nullopt;
  return seen_[name];
}

std::optional<absl::Time> CreatedFiles::WaitCount(size_t count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return seen_.size() >= count;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&enough), timeout)) return std::nullopt;
  return last_;
}

size_t CreatedFiles::count() const {
  absl::MutexLock lock(&mu_);
  return seen_.size();
}

void CreatedFiles::Reset() {
  absl::MutexLock lock(&mu_);
  seen_.clear();
}

absl::StatusOr<std::unique_ptr<ShellProcess>> ShellProcess::Start(const std::string& script,
                                                                  const std::string& log_path) {
  std::string bash = "/bin/bash", dash_c = "-c", body = script;
  char* argv[] = {bash.data(), dash_c.data(), body.data(), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = -1;
  const int err = posix_spawn(&pid, bash.c_str(), &actions, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) return absl::InternalError(absl::StrCat("posix_spawn bash: ", strerror(err)));
  return std::unique_ptr<ShellProcess>(new ShellProcess(pid, log_path));
}

ShellProcess::~ShellProcess() {
  kill(-pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) break;
    usleep(20 * 1000);
    if (i == 99) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Whatever else of the group survived (the inotifywait, a docker CLI).
  kill(-pid_, SIGKILL);
}

std::string ShellProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<absl::Time> WriteAndClose(const std::string& path, const std::string& content) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", strerror(errno)));
  if (write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    close(fd);
    return absl::InternalError(absl::StrCat("write ", path, ": ", strerror(errno)));
  }
  const absl::Time closed = absl::Now();
  close(fd);
  return closed;
}

size_t CountFiles(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec)) ++n;
  }
  return n;
}

std::string Ms(double ms) { return absl::StrFormat("%.3f", ms); }

}  // namespace bench
}  // namespace dispatchd
