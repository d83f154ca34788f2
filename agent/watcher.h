// Watcher: reports every regular file that appears under an events directory,
// recursively, using inotify (README.md, "Event files").
//
// A file "appears" when it is written and closed (IN_CLOSE_WRITE) or renamed
// into the tree (IN_MOVED_TO), so a writer that writes `x.tmp` elsewhere, or
// a hidden `.x.tmp` inside the tree, and renames it to `x` produces one
// report. Files present at start-up are reported by an initial scan, new
// directories are watched and then scanned (files created in them before the
// watch existed are reported), and a kernel queue overflow triggers a full
// rescan.
//
// A file that a scan finds is reported only once it is complete: a scan may
// meet files whose writers still hold them open (a directory created and
// filled at once, a writer caught by the start-up scan). Each is asked with
// a read lease (open_writers.h): a file open for writing is not reported
// then, and its writer's close (IN_CLOSE_WRITE, which the watch added before
// the listing sees) reports it. Where leases are not available (a file
// system without them, a file of another owner without CAP_LEASE), the file
// is reported once its size and mtime have not changed for `quiet_period`,
// or at its close, whichever comes first: a writer that pauses longer than
// the quiet period, holding a file that a scan found, may then see it
// reported early. That bound is the fallback's only one.
//
// Never opened for anything but that check and never reported: names
// starting with '.' and everything inside such a directory (including
// `.dead-letter/`), directories, symlinks, FIFOs, sockets and devices. Types
// are decided with lstat/d_type only, so a FIFO never blocks the watcher;
// scans never follow symlinks.
//
// When a directory cannot be watched because the inotify watch limit is
// reached (ENOSPC), the error names fs.inotify.max_user_watches, the
// directory is still scanned, and it is scanned again every
// `unwatched_scan_period` (retrying the watch) until a watch succeeds:
// slower, but nothing is missed. unwatched_directories() counts them.
//
// A file the consumer finds still open for writing (it answers
// Report::kStillOpen) is reported again at its next close and, meanwhile,
// again after a delay that starts at 10ms and doubles up to 2s: the kernel
// queues IN_CLOSE_WRITE before it stops counting the closing descriptor as a
// writer, so a consumer that asks right after the event can meet a writer
// that is in fact gone, and no later event would come. Scanned files left
// to their close are looked at again the same way.
//
// The same path may be reported more than once (a scan racing an event, a
// rescan, a directory scanned right after its watch was added): the consumer
// de-duplicates. A reported file may already be gone by the time the
// consumer reads it.
//
// Threading: one watcher thread per Watcher. The callback is invoked only
// from that thread, one call at a time; it should return quickly (events
// queue in the kernel meanwhile, and an overflow costs a rescan). Stop(),
// Rescan() and Tick() are thread-safe, but must not be called from the
// callback. Errors while scanning or watching (a directory removed
// mid-scan, permission denied) are logged and skipped; they never stop the
// watcher.
#ifndef DISPATCHD_AGENT_WATCHER_H_
#define DISPATCHD_AGENT_WATCHER_H_

#include <atomic>
#include <functional>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <memory>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/open_writers.h"
#include "common/clock.h"

namespace dispatchd::agent {

class Watcher {
 public:
  struct Options {
    // The events directory. Created (with parents) if missing. It may itself
    // be a symlink to a directory; nothing below it is followed.
    std::string root;
    // Source of the `observed` timestamps. Not owned; must outlive the
    // Watcher.
    const Clock* clock = Clock::Real();
    // Optional. Called from the watcher thread each time a full scan of the
    // tree has finished (the initial one, a Rescan(), an overflow rescan);
    // every file present when that scan began has been reported by then.
    // Lets the owner know when the start-up spool is fully loaded.
    std::function<void()> on_scan_complete;
    // Where read leases cannot be taken: how long a file found by a scan
    // must keep its size and mtime before it is reported.
    absl::Duration quiet_period = absl::Seconds(1);
    // False: never ask for leases, always use the quiet period (file systems
    // where leases misbehave; the fallback's tests).
    bool use_leases = true;
    // How often directories that could not be watched are scanned.
    absl::Duration unwatched_scan_period = absl::Seconds(10);
    // Optional. Called from the watcher thread when unwatched_directories()
    // changes.
    std::function<void(size_t)> on_unwatched_change;
    // inotify_add_watch(2), replaceable so that tests can run out of watches.
    std::function<int(int inotify_fd, const char* path, uint32_t mask)> add_watch;
  };

  // What the consumer made of a reported file.
  enum class Report {
    kDone,       // taken, or nothing to do with it
    kStillOpen,  // a process holds it open for writing: report it again later
  };

  // `relative_path` is relative to the root ("a/b.txt"), never hidden, and
  // passes ValidateRelativePath. `observed` is when the watcher saw the file
  // (for a file reported again, when it first did).
  using Callback =
      std::function<Report(const std::string& relative_path, absl::Time observed)>;

  // Creates the root if missing, watches the existing tree and starts the
  // watcher thread, which first scans the whole tree (files present at
  // start-up are reported) and then reports events. Fails if the root cannot
  // be created or watched (it is not a directory, inotify is unavailable).
  static absl::StatusOr<std::unique_ptr<Watcher>> Start(Options options, Callback callback);

  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Stop()s.
  ~Watcher();

  // Stops the watcher thread and waits for it; no callback runs after it
  // returns. Idempotent. REQUIRES: not called from the callback.
  void Stop();

  // Asks the watcher thread for a full scan of the tree (every existing
  // file is reported again). Returns at once.
  void Rescan();

  // Acts on what is due at the clock's Now() (files waiting out their quiet
  // period, directories to scan for want of a watch) and returns once the
  // watcher thread has. The thread does this by itself when the real clock
  // gets there; tests on a FakeClock advance it and call Tick().
  void Tick();

  // Directories that could not be watched (watch limit) and are scanned
  // every unwatched_scan_period instead.
  size_t unwatched_directories() const { return unwatched_count_.load(); }
  // Files found by a scan that wait out their quiet period.
  size_t deferred_files() const { return deferred_count_.load(); }
  // Files that were still open for writing and are looked at again.
  size_t still_open_files() const { return still_open_count_.load(); }

  // The first and the longest delay before a file still open for writing is
  // looked at again.
  static constexpr absl::Duration kStillOpenFirstDelay = absl::Milliseconds(10);
  static constexpr absl::Duration kStillOpenMaxDelay = absl::Seconds(2);

 private:
  // A file found by a scan, whose writers could not be asked.
  struct Deferred {
    int64_t size = 0;
    int64_t mtime_ns = 0;
    uint64_t inode = 0;
    absl::Time due;  // when it is looked at again
  };
  // A file that was still open for writing.
  struct StillOpen {
    absl::Time observed;  // when it was first reported
    absl::Time due;       // when it is reported again
    absl::Duration delay;
  };

  Watcher(Options options, Callback callback, int inotify_fd, int wake_fd);

  void Run();
  // The thread is done: Tick() returns at once from now on.
  void EndTicks();
  // Drains the inotify fd; false on an unrecoverable read error.
  bool ReadEvents();
  void HandleEvent(int wd, uint32_t mask, absl::string_view name, absl::Time observed);
  // Watches `relative_dir` ("" is the root) and every visible directory
  // below it, and reports the regular files found. Each directory is watched
  // before it is listed.
  void WatchTree(const std::string& relative_dir);
  // WatchTree("") plus on_scan_complete unless stopped meanwhile.
  void FullScan();
  // Adds (or refreshes) the watch on one directory; 0, or the errno.
  int AddWatch(const std::string& relative_dir);
  // A regular file `name` in the listed directory `dir_fd` found by a scan:
  // reported now, left for its close, or deferred (see the class comment).
  void ScannedFile(int dir_fd, const char* name, const std::string& relative_path);
  // Reports deferred files whose quiet period passed and scans unwatched
  // directories when due.
  void RunDue();
  // Publishes unwatched_.size().
  void UnwatchedChanged();
  // How long poll() may sleep: until the next due item, or forever (-1).
  int PollTimeoutMs() const;
  // Forgets the watches on `relative_dir` and every directory below it
  // (a directory moved away or out of the tree).
  void RemoveWatches(const std::string& relative_dir);
  void ForgetWatch(int wd);
  // Reports `relative_path` if lstat says it is a visible regular file.
  void MaybeReport(const std::string& relative_path, absl::Time observed);
  // Calls the callback and keeps still_open_ up to date with its answer.
  void ReportFile(const std::string& relative_path, absl::Time observed);
  // Looks at `relative_path` again after the next delay.
  void LookAgainLater(const std::string& relative_path, absl::Time observed);
  std::string FullPath(absl::string_view relative_path) const;

  const Options options_;
  const Callback callback_;
  const int inotify_fd_;
  const int wake_fd_;  // eventfd: Stop() and Rescan() write to it.

  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> rescan_requested_{false};
  std::atomic<size_t> unwatched_count_{0};
  std::atomic<size_t> deferred_count_{0};
  std::atomic<size_t> still_open_count_{0};

  // Tick(): requests made and handled. std::mutex, which ThreadSanitizer
  // sees (Debian's abseil is not built for it).
  std::mutex tick_mu_;
  std::condition_variable tick_done_;
  uint64_t ticks_requested_ = 0;  // guarded by tick_mu_
  uint64_t ticks_done_ = 0;       // guarded by tick_mu_
  bool ticks_stopped_ = false;    // guarded by tick_mu_

  // Watch bookkeeping; touched only by Start() (before the thread exists)
  // and then by the watcher thread.
  absl::flat_hash_map<int, std::string> wd_to_dir_;
  std::map<std::string, int> dir_to_wd_;  // ordered: subtrees are ranges
  // Watcher thread only.
  std::map<std::string, Deferred> deferred_;
  std::set<std::string> unwatched_;
  absl::Time next_unwatched_scan_ = absl::InfiniteFuture();
  absl::Time next_deferred_due_ = absl::InfiniteFuture();
  std::map<std::string, StillOpen> still_open_;
  absl::Time next_still_open_due_ = absl::InfiniteFuture();
  bool lease_warning_logged_ = false;

  absl::Mutex stop_mu_;
  std::thread thread_ ABSL_GUARDED_BY(stop_mu_);
};

}  // namespace dispatchd::agent

#endif  // DISPATCHD_AGENT_WATCHER_H_
