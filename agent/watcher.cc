#include "agent/watcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <climits>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/open_writers.h"
#include "common/logging.h"

namespace dispatchd::agent {
namespace {

// A file looked at without following a symlink or blocking (a FIFO opens
// at once): whether it could be opened, whether it is a regular file and,
// if so, whether a process holds it open for writing (asked with a read
// lease, released at once).
struct Probe {
  int open_error = 0;  // errno when it could not be opened
  bool regular = false;
  struct stat st {};
  Writers writers = Writers::kNone;
  int lease_error = 0;  // errno of kUnknown
};

Probe ProbeFile(int dir_fd, const char* name) {
  Probe probe;
  const int fd = openat(dir_fd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    probe.open_error = errno;
    return probe;
  }
  probe.regular = fstat(fd, &probe.st) == 0 && S_ISREG(probe.st.st_mode);
  if (probe.regular) probe.writers = TakeReadLease(fd, &probe.lease_error);
  close(fd);  // releases the lease
  return probe;
}


// Every watched directory gets the same mask. IN_CREATE is only acted on
// for directories: a file is an event once it is closed or moved in.
constexpr uint32_t kWatchMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                                IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK;

// Room for a couple of thousand events per read(2).
constexpr size_t kReadBufferSize = 64 * 1024;

bool IsHiddenName(absl::string_view name) { return !name.empty() && name.front() == '.'; }

std::string JoinRelative(absl::string_view dir, absl::string_view name) {
  if (dir.empty()) return std::string(name);
  return absl::StrCat(dir, "/", name);
}

// `mkdir -p`: creates `path` and its missing parents.
absl::Status MakeDirectories(const std::string& path) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    std::string prefix = path.substr(0, pos);
    if (mkdir(prefix.c_str(), 0777) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot create directory ", prefix));
    }
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot stat events directory ", path));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("events directory is not a directory: ", path));
  }
  // Settled files are deleted and undeliverable ones moved: without write
  // access every event would be dispatched again at each start.
  if (access(path.c_str(), W_OK | X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "events directory ", path, " is not writable (", strerror(errno),
        "): dispatchd deletes settled event files and moves undeliverable ones to "
        ".dead-letter/, so it needs write access (a container volume must not be read-only)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Watcher>> Watcher::Start(Options options, Callback callback) {
  if (options.root.empty()) return absl::InvalidArgumentError("empty events directory");
  if (callback == nullptr) return absl::InvalidArgumentError("no callback");
  if (options.clock == nullptr) return absl::InvalidArgumentError("no clock");
  if (options.add_watch == nullptr) {
    options.add_watch = [](int fd, const char* path, uint32_t mask) {
      return inotify_add_watch(fd, path, mask);
    };
  }
  while (options.root.size() > 1 && options.root.back() == '/') options.root.pop_back();
  if (absl::Status status = MakeDirectories(options.root); !status.ok()) return status;

  int inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd < 0) return absl::ErrnoToStatus(errno, "inotify_init1");
  int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    absl::Status status = absl::ErrnoToStatus(errno, "eventfd");
    close(inotify_fd);
    return status;
  }
  // The root is watched before Start() returns, so its failure is the
  // caller's error and nothing created after Start() can be missed.
  int root_wd = options.add_watch(inotify_fd, options.root.c_str(), kWatchMask);
  if (root_wd < 0) {
    absl::Status status =
        absl::ErrnoToStatus(errno, absl::StrCat("cannot watch events directory ", options.root));
    close(wake_fd);
    close(inotify_fd);
    return status;
  }
  std::unique_ptr<Watcher> watcher(
      new Watcher(std::move(options), std::move(callback), inotify_fd, wake_fd));
  watcher->wd_to_dir_[root_wd] = "";
  watcher->dir_to_wd_[""] = root_wd;
  {
    absl::MutexLock lock(&watcher->stop_mu_);
    Watcher* self = watcher.get();
    watcher->thread_ = std::thread([self] {
      self->Run();
      self->EndTicks();
    });
  }
  return watcher;
}

Watcher::Watcher(Options options, Callback callback, int inotify_fd, int wake_fd)
    : options_(std::move(options)),
      callback_(std::move(callback)),
      inotify_fd_(inotify_fd),
      wake_fd_(wake_fd) {}

Watcher::~Watcher() {
  Stop();
  close(wake_fd_);
  close(inotify_fd_);
}

void Watcher::Stop() {
  absl::MutexLock lock(&stop_mu_);
  if (!thread_.joinable()) return;
  CHECK(thread_.get_id() != std::this_thread::get_id())
      << "Watcher::Stop() called from the watcher's callback";
  stop_requested_.store(true);
  uint64_t one = 1;
  // EAGAIN only if the counter is saturated, which already wakes the thread.
  (void)!write(wake_fd_, &one, sizeof(one));
  thread_.join();
}

void Watcher::EndTicks() {
  std::lock_guard<std::mutex> tick_lock(tick_mu_);
  ticks_done_ = ticks_requested_;  // no thread to wait for any more
  ticks_stopped_ = true;
  tick_done_.notify_all();
}

void Watcher::Rescan() {
  rescan_requested_.store(true);
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
}

void Watcher::Tick() {
  std::unique_lock<std::mutex> lock(tick_mu_);
  if (ticks_stopped_) return;  // no thread left to act
  const uint64_t ticket = ++ticks_requested_;
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  tick_done_.wait(lock, [this, ticket] { return ticks_done_ >= ticket; });
}

std::string Watcher::FullPath(absl::string_view relative_path) const {
  if (relative_path.empty()) return options_.root;
  return absl::StrCat(options_.root, "/", relative_path);
}

void Watcher::Run() {
  LOG(INFO) << "watching " << options_.root;
  FullScan();
  while (!stop_requested_.load()) {
    pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int ready = poll(fds, 2, PollTimeoutMs());
    if (ready < 0) {
      if (errno == EINTR) continue;
      LOG(ERROR) << "poll on inotify failed, watcher stops: " << std::strerror(errno);
      return;
    }
    uint64_t ticks = 0;
    if (fds[1].revents != 0) {
      uint64_t count;
      (void)!read(wake_fd_, &count, sizeof(count));
      if (stop_requested_.load()) break;
      {
        std::lock_guard<std::mutex> lock(tick_mu_);
        ticks = ticks_requested_;
      }
      if (rescan_requested_.exchange(false)) {
        LOG(INFO) << "rescanning " << options_.root;
        FullScan();
      }
    }
    if (fds[0].revents != 0 && !ReadEvents()) return;
    RunDue();
    if (ticks != 0) {
      std::lock_guard<std::mutex> lock(tick_mu_);
      ticks_done_ = std::max(ticks_done_, ticks);
      tick_done_.notify_all();
    }
  }
  LOG(INFO) << "stopped watching " << options_.root;
}

bool Watcher::ReadEvents() {
  alignas(inotify_event) char buffer[kReadBufferSize];
  while (!stop_requested_.load()) {
    ssize_t n = read(inotify_fd_, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      LOG(ERROR) << "reading inotify events failed, watcher stops: " << std::strerror(errno);
      return false;
    }
    absl::Time observed = options_.clock->Now();
    for (ssize_t offset = 0; offset < n && !stop_requested_.load();) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
      absl::string_view name =
          event->len == 0 ? absl::string_view()
                          : absl::string_view(event->name, strnlen(event->name, event->len));
      HandleEvent(event->wd, event->mask, name, observed);
      offset += sizeof(inotify_event) + event->len;
    }
  }
  return true;
}

void Watcher::HandleEvent(int wd, uint32_t mask, absl::string_view name, absl::Time observed) {
  if (mask & IN_Q_OVERFLOW) {
    LOG(WARNING) << "inotify queue overflowed, rescanning " << options_.root;
    FullScan();
    return;
  }
  auto it = wd_to_dir_.find(wd);
  if (it == wd_to_dir_.end()) return;  // a watch already forgotten
  const std::string dir = it->second;
  if (mask & (IN_IGNORED | IN_DELETE_SELF)) {
    if (dir.empty()) LOG(WARNING) << "events directory was removed: " << options_.root;
    ForgetWatch(wd);
    return;
  }
  if (mask & IN_MOVE_SELF) {
    // Subdirectories are handled by their parent's IN_MOVED_FROM.
    if (dir.empty()) LOG(WARNING) << "events directory was moved away: " << options_.root;
    return;
  }
  if (name.empty() || IsHiddenName(name)) return;
  std::string relative_path = JoinRelative(dir, name);
  if (mask & IN_ISDIR) {
    if (mask & IN_MOVED_FROM) {
      RemoveWatches(relative_path);
    } else if (mask & (IN_CREATE | IN_MOVED_TO)) {
      WatchTree(relative_path);
    }
    return;
  }
  if (mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) {
    // Its close is the signal a deferred file was waiting for.
    if (deferred_.erase(relative_path) != 0) deferred_count_.store(deferred_.size());
    MaybeReport(relative_path, observed);
  }
}

void Watcher::MaybeReport(const std::string& relative_path, absl::Time observed) {
  struct stat st;
  if (lstat(FullPath(relative_path).c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      LOG(DEBUG) << "gone before it was reported: " << relative_path;
    } else {
      LOG(WARNING) << "cannot lstat " << FullPath(relative_path) << ": " << std::strerror(errno);
    }
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    LOG(DEBUG) << "not a regular file, ignored: " << relative_path;
    return;
  }
  LOG(DEBUG) << "observed " << relative_path;
  ReportFile(relative_path, observed);
}

void Watcher::ReportFile(const std::string& relative_path, absl::Time observed) {
  auto it = still_open_.find(relative_path);
  if (it != still_open_.end()) observed = it->second.observed;
  if (callback_(relative_path, observed) == Report::kStillOpen) {
    LookAgainLater(relative_path, observed);
  } else if (it != still_open_.end()) {
    still_open_.erase(it);
    still_open_count_.store(still_open_.size());
  }
}

void Watcher::LookAgainLater(const std::string& relative_path, absl::Time observed) {
  auto [it, inserted] = still_open_.try_emplace(relative_path);
  StillOpen& entry = it->second;
  if (inserted) {
    entry.observed = observed;
    entry.delay = kStillOpenFirstDelay;
  } else {
    entry.delay = std::min(entry.delay * 2, kStillOpenMaxDelay);
  }
  entry.due = options_.clock->Now() + entry.delay;
  next_still_open_due_ = std::min(next_still_open_due_, entry.due);
  still_open_count_.store(still_open_.size());
}

int Watcher::AddWatch(const std::string& relative_dir) {
  // The root may be a symlink to the real directory; nothing below it is
  // followed.
  uint32_t mask = kWatchMask | (relative_dir.empty() ? 0 : IN_DONT_FOLLOW);
  int wd = options_.add_watch(inotify_fd_, FullPath(relative_dir).c_str(), mask);
  if (wd < 0) {
    const int error = errno;
    if (error == ENOENT || error == ENOTDIR) {
      LOG(DEBUG) << "directory gone before it was watched: " << relative_dir;
    } else if (error != ENOSPC) {  // ENOSPC: the caller explains
      LOG(WARNING) << "cannot watch " << FullPath(relative_dir) << ": " << std::strerror(error);
    }
    return error;
  }
  // The same directory (inode) always gets the same wd; a wd under another
  // name means the directory moved without us seeing it (queue overflow).
  auto by_wd = wd_to_dir_.find(wd);
  if (by_wd != wd_to_dir_.end() && by_wd->second != relative_dir) {
    auto stale = dir_to_wd_.find(by_wd->second);
    if (stale != dir_to_wd_.end() && stale->second == wd) dir_to_wd_.erase(stale);
  }
  // A different wd under this name is a directory that was replaced: its
  // watch may now be somewhere else, possibly outside the tree.
  auto by_dir = dir_to_wd_.find(relative_dir);
  if (by_dir != dir_to_wd_.end() && by_dir->second != wd) {
    inotify_rm_watch(inotify_fd_, by_dir->second);
    wd_to_dir_.erase(by_dir->second);
  }
  wd_to_dir_[wd] = relative_dir;
  dir_to_wd_[relative_dir] = wd;
  return 0;
}

void Watcher::RemoveWatches(const std::string& relative_dir) {
  std::vector<int> removed;
  auto exact = dir_to_wd_.find(relative_dir);
  if (exact != dir_to_wd_.end()) removed.push_back(exact->second);
  const std::string prefix = relative_dir + "/";
  for (auto it = dir_to_wd_.lower_bound(prefix);
       it != dir_to_wd_.end() && absl::StartsWith(it->first, prefix); ++it) {
    removed.push_back(it->second);
  }
  for (int wd : removed) {
    inotify_rm_watch(inotify_fd_, wd);
    ForgetWatch(wd);
  }
  unwatched_.erase(relative_dir);
  for (auto it = unwatched_.lower_bound(prefix);
       it != unwatched_.end() && absl::StartsWith(*it, prefix);) {
    it = unwatched_.erase(it);
  }
  UnwatchedChanged();
}

void Watcher::ForgetWatch(int wd) {
  auto it = wd_to_dir_.find(wd);
  if (it == wd_to_dir_.end()) return;
  auto by_dir = dir_to_wd_.find(it->second);
  if (by_dir != dir_to_wd_.end() && by_dir->second == wd) dir_to_wd_.erase(by_dir);
  wd_to_dir_.erase(it);
}

void Watcher::FullScan() {
  WatchTree("");
  if (options_.on_scan_complete && !stop_requested_.load()) options_.on_scan_complete();
}

void Watcher::WatchTree(const std::string& relative_dir) {
  std::vector<std::string> pending = {relative_dir};
  while (!pending.empty() && !stop_requested_.load()) {
    std::string dir = std::move(pending.back());
    pending.pop_back();
    // Watch first, then list: a file created in between is seen by both,
    // never by neither. A directory that cannot be watched for want of
    // watches is still listed, and listed again periodically.
    if (const int error = AddWatch(dir); error == ENOSPC) {
      if (unwatched_.insert(dir).second && unwatched_.size() == 1) {
        LOG(ERROR) << "cannot watch " << FullPath(dir)
                   << ": the inotify watch limit is reached (ENOSPC); raise "
                      "fs.inotify.max_user_watches (sysctl). Directories without a watch are "
                      "scanned every "
                   << absl::FormatDuration(options_.unwatched_scan_period)
                   << " instead, so their events are late, not lost";
      }
      if (next_unwatched_scan_ == absl::InfiniteFuture()) {
        next_unwatched_scan_ = options_.clock->Now() + options_.unwatched_scan_period;
      }
    } else if (error != 0) {
      continue;
    } else if (unwatched_.erase(dir) != 0) {
      LOG(INFO) << "watching " << FullPath(dir) << " again";
    }
    UnwatchedChanged();
    const std::string path = FullPath(dir);
    int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (dir.empty() ? 0 : O_NOFOLLOW);
    int fd = open(path.c_str(), flags);
    if (fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) {
        LOG(DEBUG) << "directory gone before it was scanned: " << dir;
        if (unwatched_.erase(dir) != 0) UnwatchedChanged();
      } else {
        LOG(WARNING) << "cannot scan " << path << ": " << std::strerror(errno);
      }
      continue;
    }
    DIR* listing = fdopendir(fd);
    if (listing == nullptr) {
      LOG(WARNING) << "cannot scan " << path << ": " << std::strerror(errno);
      close(fd);
      continue;
    }
    while (!stop_requested_.load()) {
      errno = 0;
      const dirent* entry = readdir(listing);
      if (entry == nullptr) {
        if (errno != 0) LOG(WARNING) << "error scanning " << path << ": " << std::strerror(errno);
        break;
      }
      absl::string_view name = entry->d_name;
      if (IsHiddenName(name)) continue;  // also skips "." and ".."
      unsigned char type = entry->d_type;
      if (type == DT_UNKNOWN) {
        struct stat st;
        if (fstatat(dirfd(listing), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
      }
      if (type == DT_DIR) {
        pending.push_back(JoinRelative(dir, name));
      } else if (type == DT_REG) {
        ScannedFile(dirfd(listing), entry->d_name, JoinRelative(dir, name));
      }
    }
    closedir(listing);
  }
}

void Watcher::ScannedFile(int dir_fd, const char* name, const std::string& relative_path) {
  struct stat st;
  if (options_.use_leases) {
    const Probe probe = ProbeFile(dir_fd, name);
    if (probe.open_error != 0) {
      // Gone, or swapped for a symlink: nothing to report. Unreadable: the
      // consumer's read says why.
      if (probe.open_error == ENOENT || probe.open_error == ELOOP) return;
      LOG(DEBUG) << "found " << relative_path << " (cannot open it: "
                 << std::strerror(probe.open_error) << ")";
      ReportFile(relative_path, options_.clock->Now());
      return;
    }
    if (!probe.regular) return;
    st = probe.st;
    switch (probe.writers) {
      case Writers::kNone:
        LOG(DEBUG) << "found " << relative_path;
        ReportFile(relative_path, options_.clock->Now());
        return;
      case Writers::kOpen:
        // Its close reports it; looking again covers a close that is
        // already under way (see the class comment).
        LOG(DEBUG) << "found " << relative_path << ", still open for writing: reported when closed";
        LookAgainLater(relative_path, options_.clock->Now());
        return;
      case Writers::kUnknown:
        if (!lease_warning_logged_) {
          lease_warning_logged_ = true;
          LOG(WARNING) << "cannot ask whether " << FullPath(relative_path)
                       << " is still being written (read lease: " << std::strerror(probe.lease_error)
                       << "); files found by a scan are reported once they have not changed for "
                       << absl::FormatDuration(options_.quiet_period) << ", or when closed";
        }
        break;
    }
  } else if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
    return;
  }
  Deferred& deferred = deferred_[relative_path];
  deferred.size = st.st_size;
  deferred.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  deferred.inode = st.st_ino;
  deferred.due = options_.clock->Now() + options_.quiet_period;
  next_deferred_due_ = std::min(next_deferred_due_, deferred.due);
  deferred_count_.store(deferred_.size());
  LOG(DEBUG) << "found " << relative_path << ": reported after "
             << absl::FormatDuration(options_.quiet_period) << " without change";
}

void Watcher::RunDue() {
  const absl::Time now = options_.clock->Now();
  if (!still_open_.empty() && now >= next_still_open_due_) {
    next_still_open_due_ = absl::InfiniteFuture();
    std::vector<std::string> due;
    for (const auto& [path, entry] : still_open_) {
      if (entry.due <= now) {
        due.push_back(path);
      } else {
        next_still_open_due_ = std::min(next_still_open_due_, entry.due);
      }
    }
    for (const std::string& path : due) {
      if (stop_requested_.load()) return;
      auto it = still_open_.find(path);
      if (it == still_open_.end()) continue;
      const absl::Time observed = it->second.observed;
      if (options_.use_leases) {
        const Probe probe = ProbeFile(AT_FDCWD, FullPath(path).c_str());
        if (probe.open_error == ENOENT || probe.open_error == ELOOP ||
            (probe.open_error == 0 && !probe.regular)) {
          still_open_.erase(it);  // gone, or no longer a file
          continue;
        }
        if (probe.writers == Writers::kOpen) {
          LookAgainLater(path, observed);
          continue;
        }
      } else if (struct stat st;
                 lstat(FullPath(path).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        still_open_.erase(it);  // gone, or no longer a file
        continue;
      }
      LOG(DEBUG) << "looking again at " << path << ", which was open for writing";
      ReportFile(path, observed);
    }
    still_open_count_.store(still_open_.size());
  }
  if (!deferred_.empty() && now >= next_deferred_due_) {
    next_deferred_due_ = absl::InfiniteFuture();
    for (auto it = deferred_.begin(); it != deferred_.end() && !stop_requested_.load();) {
      Deferred& d = it->second;
      if (d.due > now) {
        next_deferred_due_ = std::min(next_deferred_due_, d.due);
        ++it;
        continue;
      }
      struct stat st;
      if (lstat(FullPath(it->first).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        it = deferred_.erase(it);  // gone (or replaced by something that is not a file)
        continue;
      }
      const int64_t mtime_ns =
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
      if (st.st_size == d.size && mtime_ns == d.mtime_ns && st.st_ino == d.inode) {
        const std::string relative_path = it->first;
        it = deferred_.erase(it);
        LOG(DEBUG) << "quiet for " << absl::FormatDuration(options_.quiet_period) << ": "
                   << relative_path;
        ReportFile(relative_path, now);
        continue;
      }
      d.size = st.st_size;  // still changing: another quiet period
      d.mtime_ns = mtime_ns;
      d.inode = st.st_ino;
      d.due = now + options_.quiet_period;
      next_deferred_due_ = std::min(next_deferred_due_, d.due);
      ++it;
    }
    deferred_count_.store(deferred_.size());
  }
  if (!unwatched_.empty() && now >= next_unwatched_scan_) {
    LOG(WARNING) << unwatched_.size()
                 << " directories have no inotify watch (fs.inotify.max_user_watches): scanning them";
    const std::vector<std::string> dirs(unwatched_.begin(), unwatched_.end());
    for (const std::string& dir : dirs) {
      if (stop_requested_.load()) return;
      WatchTree(dir);
    }
    next_unwatched_scan_ =
        unwatched_.empty() ? absl::InfiniteFuture() : now + options_.unwatched_scan_period;
  } else if (unwatched_.empty()) {
    next_unwatched_scan_ = absl::InfiniteFuture();
  }
}

void Watcher::UnwatchedChanged() {
  const size_t n = unwatched_.size();
  if (unwatched_count_.exchange(n) != n && options_.on_unwatched_change) {
    options_.on_unwatched_change(n);
  }
}

int Watcher::PollTimeoutMs() const {
  absl::Time next = next_unwatched_scan_;
  if (!deferred_.empty()) next = std::min(next, next_deferred_due_);
  if (!still_open_.empty()) next = std::min(next, next_still_open_due_);
  if (next == absl::InfiniteFuture()) return -1;
  const absl::Duration wait = next - options_.clock->Now();
  if (wait <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(absl::Ceil(wait, absl::Milliseconds(1))), INT_MAX));
}

}  // namespace dispatchd::agent
