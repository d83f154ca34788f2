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
// Never opened and never reported: names starting with '.' and everything
// inside such a directory (including `.dead-letter/`), directories,
// symlinks, FIFOs, sockets and devices. Types are decided with lstat/d_type
// only, so a FIFO never blocks the watcher; scans never follow symlinks.
//
// The same path may be reported more than once (a scan racing an event, a
// rescan, a directory scanned right after its watch was added): the consumer
// de-duplicates. A reported file may already be gone by the time the
// consumer reads it. A scan cannot tell whether a file is still being
// written, so a file found by a scan may be reported before its writer
// closes it (and again on close).
//
// Threading: one watcher thread per Watcher. The callback is invoked only
// from that thread, one call at a time; it should return quickly (events
// queue in the kernel meanwhile, and an overflow costs a rescan). Stop() and
// Rescan() are thread-safe, but Stop() must not be called from the callback.
// Errors while scanning or watching (a directory removed mid-scan,
// permission denied, the inotify watch limit) are logged and skipped; they
// never stop the watcher.
#ifndef DISPATCHD_AGENT_WATCHER_H_
#define DISPATCHD_AGENT_WATCHER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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
  };

  // `relative_path` is relative to the root ("a/b.txt"), never hidden, and
  // passes ValidateRelativePath. `observed` is when the watcher saw the file.
  using Callback = std::function<void(const std::string& relative_path, absl::Time observed)>;

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

 private:
  Watcher(Options options, Callback callback, int inotify_fd, int wake_fd);

  void Run();
  // Drains the inotify fd; false on an unrecoverable read error.
  bool ReadEvents();
  void HandleEvent(int wd, uint32_t mask, absl::string_view name, absl::Time observed);
  // Watches `relative_dir` ("" is the root) and every visible directory
  // below it, and reports the regular files found. Each directory is watched
  // before it is listed.
  void WatchTree(const std::string& relative_dir);
  // WatchTree("") plus on_scan_complete unless stopped meanwhile.
  void FullScan();
  // Adds (or refreshes) the watch on one directory; false if it failed.
  bool AddWatch(const std::string& relative_dir);
  // Forgets the watches on `relative_dir` and every directory below it
  // (a directory moved away or out of the tree).
  void RemoveWatches(const std::string& relative_dir);
  void ForgetWatch(int wd);
  // Reports `relative_path` if lstat says it is a visible regular file.
  void MaybeReport(const std::string& relative_path, absl::Time observed);
  std::string FullPath(absl::string_view relative_path) const;

  const Options options_;
  const Callback callback_;
  const int inotify_fd_;
  const int wake_fd_;  // eventfd: Stop() and Rescan() write to it.

  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> rescan_requested_{false};

  // Watch bookkeeping; touched only by Start() (before the thread exists)
  // and then by the watcher thread.
  absl::flat_hash_map<int, std::string> wd_to_dir_;
  std::map<std::string, int> dir_to_wd_;  // ordered: subtrees are ranges

  absl::Mutex stop_mu_;
  std::thread thread_ ABSL_GUARDED_BY(stop_mu_);
};

}  // namespace dispatchd::agent

#endif  // DISPATCHD_AGENT_WATCHER_H_
