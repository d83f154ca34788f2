#include "agent/watcher.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sys/inotify.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// Upper bound for an asynchronous report to arrive; a healthy run takes
// microseconds.
constexpr absl::Duration kReportTimeout = absl::Seconds(10);

// Collects reports from the watcher thread. Uses std::mutex rather than
// absl::Mutex so that --config=tsan sees the synchronization (Debian's
// abseil is not built with ThreadSanitizer annotations).
class Recorder {
 public:
  Watcher::Callback callback() {
    return [this](const std::string& path, absl::Time observed) {
      std::lock_guard<std::mutex> lock(mu_);
      counts_[path]++;
      last_observed_ = observed;
      changed_.notify_all();
      return Watcher::Report::kDone;
    };
  }

  std::function<void()> on_scan_complete() {
    return [this] {
      std::lock_guard<std::mutex> lock(mu_);
      ++scans_;
      changed_.notify_all();
    };
  }

  // Waits (bounded) until `path` has been reported at least `n` times.
  bool WaitFor(const std::string& path, int n = 1) {
    return WaitUntil([&] {
      auto it = counts_.find(path);
      return it != counts_.end() && it->second >= n;
    });
  }

  // Waits (bounded) until at least `n` full scans have completed.
  bool WaitForScans(int n) {
    return WaitUntil([&] { return scans_ >= n; });
  }

  bool WaitForTotalDistinct(size_t n) {
    return WaitUntil([&] { return counts_.size() >= n; });
  }

  int Count(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = counts_.find(path);
    return it == counts_.end() ? 0 : it->second;
  }

  int scans() {
    std::lock_guard<std::mutex> lock(mu_);
    return scans_;
  }

  std::vector<std::string> Paths() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> paths;
    for (const auto& [path, count] : counts_) paths.push_back(path);
    return paths;
  }

  absl::Time last_observed() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_observed_;
  }

 private:
  // `done` runs with mu_ held.
  bool WaitUntil(const std::function<bool()>& done) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, absl::ToChronoSeconds(kReportTimeout), done);
  }

  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, int> counts_ ABSL_GUARDED_BY(mu_);
  absl::Time last_observed_ ABSL_GUARDED_BY(mu_);
  int scans_ ABSL_GUARDED_BY(mu_) = 0;
};

void WriteFile(const std::string& path, absl::string_view content = "payload") {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  ASSERT_EQ(close(fd), 0);
}

void MakeDir(const std::string& path) {
  ASSERT_EQ(mkdir(path.c_str(), 0755), 0) << path << ": " << std::strerror(errno);
}

void Rename(const std::string& from, const std::string& to) {
  ASSERT_EQ(rename(from.c_str(), to.c_str()), 0)
      << from << " -> " << to << ": " << std::strerror(errno);
}

// Binds a unix socket at dir/name (relative bind: test paths can be longer
// than sun_path). The socket file stays after the fd is closed.
void MakeSocket(const std::string& dir, const std::string& name) {
  int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(cwd, 0);
  ASSERT_EQ(chdir(dir.c_str()), 0);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, name.c_str(), sizeof(addr.sun_path) - 1);
  int bound = bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  int bind_errno = errno;
  close(fd);
  ASSERT_EQ(fchdir(cwd), 0);
  close(cwd);
  ASSERT_EQ(bound, 0) << std::strerror(bind_errno);
}

class WatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string base_template = absl::StrCat(tmp != nullptr ? tmp : ".", "/watcher_XXXXXX");
    ASSERT_NE(mkdtemp(base_template.data()), nullptr);
    base_ = base_template;
    root_ = base_ + "/events";
    outside_ = base_ + "/outside";
    MakeDir(root_);
    MakeDir(outside_);
  }

  // Starts the watcher and waits for its initial scan to finish, so that
  // later reports come from events only (a scan racing an event may report a
  // file twice, which the contract allows but exact counts cannot).
  void StartWatcher() {
    auto watcher = Watcher::Start({.root = root_, .on_scan_complete = recorder_.on_scan_complete()},
                                  recorder_.callback());
    ASSERT_TRUE(watcher.ok()) << watcher.status();
    watcher_ = std::move(watcher).value();
    ASSERT_TRUE(recorder_.WaitForScans(1));
  }

  std::string InRoot(absl::string_view rel) const { return absl::StrCat(root_, "/", rel); }
  std::string Outside(absl::string_view rel) const { return absl::StrCat(outside_, "/", rel); }

  // Writes a new visible sentinel file and waits for its report. Events are
  // delivered in order, so everything done in the tree before this call has
  // been handled once it returns true.
  bool Sentinel() {
    std::string name = absl::StrCat("sentinel-", ++sentinels_);
    WriteFile(InRoot(name));
    sentinel_names_.push_back(name);
    return recorder_.WaitFor(name);
  }

  // Requests a full scan and waits until it has finished.
  bool RescanAndWait() {
    int done = recorder_.scans();
    watcher_->Rescan();
    return recorder_.WaitForScans(done + 1);
  }

  // Reported paths other than sentinels.
  std::vector<std::string> NonSentinelPaths() {
    std::vector<std::string> paths;
    for (const std::string& path : recorder_.Paths()) {
      if (std::find(sentinel_names_.begin(), sentinel_names_.end(), path) ==
          sentinel_names_.end()) {
        paths.push_back(path);
      }
    }
    return paths;
  }

  std::string base_;
  std::string root_;
  std::string outside_;
  Recorder recorder_;
  std::unique_ptr<Watcher> watcher_;
  int sentinels_ = 0;
  std::vector<std::string> sentinel_names_;
};

TEST_F(WatcherTest, ReportsAFileOnceItIsClosed) {
  StartWatcher();
  int fd = open(InRoot("rebuild").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "half", 4), 4);
  ASSERT_TRUE(Sentinel());
  EXPECT_EQ(recorder_.Count("rebuild"), 0) << "reported while still open for writing";

  ASSERT_EQ(close(fd), 0);
  ASSERT_TRUE(recorder_.WaitFor("rebuild"));
  ASSERT_TRUE(Sentinel());
  EXPECT_EQ(recorder_.Count("rebuild"), 1);
}

TEST_F(WatcherTest, RenameFromOutsideTheTreeGivesExactlyOneReport) {
  StartWatcher();
  WriteFile(Outside("deploy.tmp"));
  Rename(Outside("deploy.tmp"), InRoot("deploy"));
  ASSERT_TRUE(recorder_.WaitFor("deploy"));
  ASSERT_TRUE(Sentinel());
  EXPECT_EQ(recorder_.Count("deploy"), 1);
  EXPECT_THAT(NonSentinelPaths(), ElementsAre("deploy"));
}

TEST_F(WatcherTest, HiddenTempFileRenamedInsideTheTreeGivesExactlyOneReport) {
  StartWatcher();
  WriteFile(InRoot(".deploy.tmp"));
  Rename(InRoot(".deploy.tmp"), InRoot("deploy"));
  ASSERT_TRUE(recorder_.WaitFor("deploy"));
  ASSERT_TRUE(Sentinel());
  EXPECT_EQ(recorder_.Count("deploy"), 1);
  EXPECT_THAT(NonSentinelPaths(), ElementsAre("deploy"));
}

TEST_F(WatcherTest, NewDirectoriesAndTheFilesWrittenRightAwayArePickedUp) {
  StartWatcher();
  MakeDir(InRoot("d"));
  WriteFile(InRoot("d/first"));
  MakeDir(InRoot("d/e"));
  MakeDir(InRoot("d/e/f"));
  WriteFile(InRoot("d/e/f/deep"));
  ASSERT_TRUE(recorder_.WaitFor("d/first"));
  ASSERT_TRUE(recorder_.WaitFor("d/e/f/deep"));

  // The new directories stay watched.
  WriteFile(InRoot("d/e/f/later"));
  EXPECT_TRUE(recorder_.WaitFor("d/e/f/later"));
}

TEST_F(WatcherTest, DirectoryTreeBuiltOutsideAndMovedInIsPickedUp) {
  StartWatcher();
  MakeDir(Outside("tree"));
  MakeDir(Outside("tree/a"));
  MakeDir(Outside("tree/a/b"));
  MakeDir(Outside("tree/.hidden"));
  WriteFile(Outside("tree/top"));
  WriteFile(Outside("tree/a/b/leaf"));
  WriteFile(Outside("tree/.hidden/secret"));
  WriteFile(Outside("tree/a/.dotfile"));
  Rename(Outside("tree"), InRoot("tree"));

  ASSERT_TRUE(recorder_.WaitFor("tree/top"));
  ASSERT_TRUE(recorder_.WaitFor("tree/a/b/leaf"));
  ASSERT_TRUE(Sentinel());
  EXPECT_THAT(NonSentinelPaths(), UnorderedElementsAre("tree/top", "tree/a/b/leaf"));

  WriteFile(InRoot("tree/a/b/later"));
  EXPECT_TRUE(recorder_.WaitFor("tree/a/b/later"));
}

TEST_F(WatcherTest, DirectoryRenamedInsideTheTreeReportsUnderItsNewName) {
  StartWatcher();
  MakeDir(InRoot("old"));
  WriteFile(InRoot("old/probe"));
  ASSERT_TRUE(recorder_.WaitFor("old/probe"));
  Rename(InRoot("old"), InRoot("new"));
  ASSERT_TRUE(recorder_.WaitFor("new/probe"));  // the moved-in directory is scanned

  WriteFile(InRoot("new/after"));
  ASSERT_TRUE(recorder_.WaitFor("new/after"));
  ASSERT_TRUE(Sentinel());
  EXPECT_EQ(recorder_.Count("old/after"), 0);
}

TEST_F(WatcherTest, DirectoryMovedOutOfTheTreeIsNoLongerWatched) {
  StartWatcher();
  MakeDir(InRoot("leaving"));
  WriteFile(InRoot("leaving/probe"));
  ASSERT_TRUE(recorder_.WaitFor("leaving/probe"));
  Rename(InRoot("leaving"), Outside("left"));
  WriteFile(Outside("left/outside-now"));
  ASSERT_TRUE(Sentinel());
  EXPECT_THAT(NonSentinelPaths(), ElementsAre("leaving/probe"));
}

TEST_F(WatcherTest, FilesPresentAtStartAreReported) {
  MakeDir(InRoot("d"));
  MakeDir(InRoot("d/e"));
  WriteFile(InRoot("top"));
  WriteFile(InRoot("d/mid"));
  WriteFile(InRoot("d/e/deep"));
  StartWatcher();
  EXPECT_TRUE(recorder_.WaitFor("top"));
  EXPECT_TRUE(recorder_.WaitFor("d/mid"));
  EXPECT_TRUE(recorder_.WaitFor("d/e/deep"));

  // Directories found by the scan are watched too.
  WriteFile(InRoot("d/e/new"));
  EXPECT_TRUE(recorder_.WaitFor("d/e/new"));
}

// Creates, under `dir`, one of each thing that must never be reported.
void MakeIgnoredEntries(const std::string& dir, const std::string& outside) {
  WriteFile(dir + "/.hidden");
  MakeDir(dir + "/.hidden-dir");
  WriteFile(dir + "/.hidden-dir/inside");
  MakeDir(dir + "/.dead-letter");
  MakeDir(dir + "/.dead-letter/a");
  WriteFile(dir + "/.dead-letter/a/failed");
  WriteFile(dir + "/.dead-letter/a/failed.error.json");
  ASSERT_EQ(mkfifo((dir + "/fifo").c_str(), 0644), 0) << std::strerror(errno);
  WriteFile(outside + "/target-file");
  ASSERT_EQ(symlink((outside + "/target-file").c_str(), (dir + "/link-to-file").c_str()), 0);
  MakeDir(outside + "/target-dir");
  WriteFile(outside + "/target-dir/through-link");
  ASSERT_EQ(symlink((outside + "/target-dir").c_str(), (dir + "/link-to-dir").c_str()), 0);
  MakeSocket(dir, "socket");
}

TEST_F(WatcherTest, IgnoredEntriesPresentAtStartAreNeverReported) {
  MakeIgnoredEntries(root_, outside_);
  WriteFile(InRoot("visible"));
  StartWatcher();
  EXPECT_THAT(NonSentinelPaths(), ElementsAre("visible"));
  ASSERT_TRUE(RescanAndWait());
  EXPECT_THAT(NonSentinelPaths(), ElementsAre("visible"));
  EXPECT_TRUE(Sentinel());  // still alive: the FIFO did not block it
}

TEST_F(WatcherTest, IgnoredEntriesCreatedLaterAreNeverReported) {
  StartWatcher();
  MakeIgnoredEntries(root_, outside_);
  // A symlink renamed into place is an IN_MOVED_TO that must still be ignored.
  ASSERT_EQ(symlink(Outside("target-file").c_str(), Outside("moved-link").c_str()), 0);
  Rename(Outside("moved-link"), InRoot("moved-link"));
  // So is a hidden file written through an existing hidden directory.
  WriteFile(InRoot(".hidden-dir/later"));
  ASSERT_TRUE(Sentinel());
  EXPECT_THAT(NonSentinelPaths(), IsEmpty());

  // A full scan ignores them too, and the FIFO (no writer) did not block it.
  ASSERT_TRUE(RescanAndWait());
  EXPECT_THAT(NonSentinelPaths(), IsEmpty());
  EXPECT_TRUE(Sentinel());
}

TEST_F(WatcherTest, RescanReportsExistingFilesAgain) {
  StartWatcher();
  WriteFile(InRoot("again"));
  MakeDir(InRoot("sub"));
  WriteFile(InRoot("sub/again"));
  ASSERT_TRUE(recorder_.WaitFor("again"));
  ASSERT_TRUE(recorder_.WaitFor("sub/again"));
  ASSERT_TRUE(Sentinel());
  const int before = recorder_.Count("again");
  const int sub_before = recorder_.Count("sub/again");

  ASSERT_TRUE(RescanAndWait());
  EXPECT_EQ(recorder_.Count("again"), before + 1);
  EXPECT_EQ(recorder_.Count("sub/again"), sub_before + 1);
}

TEST_F(WatcherTest, OddNamesArePassedThroughExactly) {
  StartWatcher();
  const std::vector<std::string> names = {"with space", "new\nline", "ünïcødé ✓",
                                          "dir with space/tab\there", "semi;colon$(x)"};
  MakeDir(InRoot("dir with space"));
  for (const std::string& name : names) WriteFile(InRoot(name));
  for (const std::string& name : names) EXPECT_TRUE(recorder_.WaitFor(name)) << name;
  ASSERT_TRUE(Sentinel());
  EXPECT_THAT(NonSentinelPaths(),
              UnorderedElementsAre("with space", "new\nline", "ünïcødé ✓",
                                   "dir with space/tab\there", "semi;colon$(x)"));
}

TEST_F(WatcherTest, StopIsPromptIdempotentAndFinal) {
  StartWatcher();
  ASSERT_TRUE(Sentinel());
  watcher_->Stop();  // the thread is blocked in poll(): must wake and return
  watcher_->Stop();
  WriteFile(InRoot("after-stop"));
  watcher_->Rescan();  // harmless once stopped
  EXPECT_EQ(recorder_.Count("after-stop"), 0);
  watcher_.reset();  // the destructor stops again
  EXPECT_EQ(recorder_.Count("after-stop"), 0);
}

TEST_F(WatcherTest, StartCreatesAMissingRoot) {
  root_ = base_ + "/not/yet/there";
  StartWatcher();
  struct stat st;
  ASSERT_EQ(stat(root_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_TRUE(Sentinel());
}

TEST_F(WatcherTest, StartFailsWhenTheRootIsAFile) {
  WriteFile(base_ + "/plain-file");
  auto watcher = Watcher::Start({.root = base_ + "/plain-file"}, recorder_.callback());
  EXPECT_EQ(watcher.status().code(), absl::StatusCode::kFailedPrecondition) << watcher.status();
}

TEST_F(WatcherTest, ObservedTimeComesFromTheInjectedClock) {
  FakeClock clock(absl::FromUnixSeconds(1'000'000));
  auto watcher = Watcher::Start({.root = root_, .clock = &clock}, recorder_.callback());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  clock.Advance(absl::Seconds(5));
  WriteFile(InRoot("timed"));
  ASSERT_TRUE(recorder_.WaitFor("timed"));
  EXPECT_EQ(recorder_.last_observed(), absl::FromUnixSeconds(1'000'005));
}

// Fills the kernel's event queue while the callback is blocked: every file
// must still be reported, by the rescan that IN_Q_OVERFLOW triggers.
TEST_F(WatcherTest, QueueOverflowTriggersAFullRescan) {
  int max_queued = 0;
  std::ifstream("/proc/sys/fs/inotify/max_queued_events") >> max_queued;
  if (max_queued <= 0 || max_queued > 100000) GTEST_SKIP() << "queue size " << max_queued;

  std::mutex mu;
  std::condition_variable release;
  bool released = false;
  Recorder inner;
  Watcher::Callback record = inner.callback();
  auto watcher = Watcher::Start({.root = root_}, [&](const std::string& path, absl::Time t) {
    {
      std::unique_lock<std::mutex> lock(mu);
      release.wait(lock, [&] { return released; });
    }
    return record(path, t);
  });
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  WriteFile(InRoot("blocker"));
  // Each file is two events (IN_CREATE, IN_CLOSE_WRITE): twice the queue.
  const int files = max_queued;
  for (int i = 0; i < files; ++i) WriteFile(InRoot(absl::StrCat("f", i)));
  {
    std::lock_guard<std::mutex> lock(mu);
    released = true;
  }
  release.notify_all();
  EXPECT_TRUE(inner.WaitForTotalDistinct(files + 1));
  EXPECT_EQ(inner.Paths().size(), static_cast<size_t>(files + 1));
  (*watcher)->Stop();
}

// A writer that holds its file open across a scan: the scan must leave the
// file to its close (one report, after the writer is done), never report it
// half-written.
class OpenWriter {
 public:
  explicit OpenWriter(const std::string& path)
      : fd_(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) {}
  ~OpenWriter() { Close(); }
  bool ok() const { return fd_ >= 0; }
  bool Write(absl::string_view data) {
    return write(fd_, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

TEST_F(WatcherTest, ANewDirectorysScanLeavesAFileStillBeingWrittenToItsClose) {
  StartWatcher();
  // Built outside and moved in, so the scan of the new directory is certain
  // to meet the file while its writer holds it.
  MakeDir(Outside("nd"));
  MakeDir(Outside("nd/s1"));
  OpenWriter writer(Outside("nd/s1/x"));
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.Write("slow-"));
  Rename(Outside("nd"), InRoot("nd"));
  ASSERT_TRUE(Sentinel());  // the new tree has been watched and listed
  EXPECT_EQ(recorder_.Count("nd/s1/x"), 0);
  ASSERT_TRUE(writer.Write("1"));
  writer.Close();
  ASSERT_TRUE(recorder_.WaitFor("nd/s1/x"));
  ASSERT_TRUE(Sentinel());
  EXPECT_EQ(recorder_.Count("nd/s1/x"), 1);
}

TEST_F(WatcherTest, TheStartUpScanLeavesAFileStillBeingWrittenToItsClose) {
  MakeDir(InRoot("d"));
  OpenWriter writer(InRoot("d/x"));
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.Write("slow-"));
  WriteFile(InRoot("d/done"));
  StartWatcher();  // waits for the start-up scan
  EXPECT_EQ(recorder_.Count("d/done"), 1);
  EXPECT_EQ(recorder_.Count("d/x"), 0);
  ASSERT_TRUE(writer.Write("1"));
  writer.Close();
  ASSERT_TRUE(recorder_.WaitFor("d/x"));
  ASSERT_TRUE(Sentinel());
  EXPECT_EQ(recorder_.Count("d/x"), 1);
}

// The kernel queues IN_CLOSE_WRITE before it stops counting the closing
// writer, so a consumer can find a file it was just told of still open for
// writing. It answers kStillOpen and the watcher reports the file again
// after a delay that doubles (fake clock), with the time it first saw it,
// until the consumer takes it.
TEST_F(WatcherTest, AFileTheConsumerFindsStillOpenIsReportedAgainUntilTaken) {
  FakeClock clock(absl::FromUnixSeconds(2'000'000));
  std::mutex mu;
  std::vector<absl::Time> reports;
  auto watcher = Watcher::Start(
      {.root = root_, .clock = &clock, .on_scan_complete = recorder_.on_scan_complete()},
      [&](const std::string& path, absl::Time observed) {
        if (path != "x") return recorder_.callback()(path, observed);
        std::lock_guard<std::mutex> lock(mu);
        reports.push_back(observed);
        return reports.size() < 3 ? Watcher::Report::kStillOpen : Watcher::Report::kDone;
      });
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  ASSERT_TRUE(recorder_.WaitForScans(1));
  auto count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return reports.size();
  };
  const absl::Time first = clock.Now();
  WriteFile(InRoot("x"));
  ASSERT_TRUE(Sentinel());  // the close of x has been reported
  EXPECT_EQ(count(), 1u);
  EXPECT_EQ((*watcher)->still_open_files(), 1u);

  clock.Advance(Watcher::kStillOpenFirstDelay - absl::Milliseconds(1));
  (*watcher)->Tick();
  EXPECT_EQ(count(), 1u);
  clock.Advance(absl::Milliseconds(1));
  (*watcher)->Tick();
  EXPECT_EQ(count(), 2u);  // still open again: the delay doubles
  clock.Advance(Watcher::kStillOpenFirstDelay);
  (*watcher)->Tick();
  EXPECT_EQ(count(), 2u);
  clock.Advance(Watcher::kStillOpenFirstDelay);
  (*watcher)->Tick();
  EXPECT_EQ(count(), 3u);  // taken
  EXPECT_EQ((*watcher)->still_open_files(), 0u);
  clock.Advance(absl::Minutes(1));
  (*watcher)->Tick();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_THAT(reports, ElementsAre(first, first, first));
}

// A file found by a scan while its writer holds it is looked at again, and
// not reported while the writer is still there; its close reports it once.
TEST_F(WatcherTest, AScannedFileStillOpenIsLookedAtAgainButReportedOnlyWhenClosed) {
  FakeClock clock;
  MakeDir(InRoot("d"));
  OpenWriter writer(InRoot("d/x"));
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.Write("slow-"));
  auto watcher = Watcher::Start(
      {.root = root_, .clock = &clock, .on_scan_complete = recorder_.on_scan_complete()},
      recorder_.callback());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  ASSERT_TRUE(recorder_.WaitForScans(1));
  EXPECT_EQ((*watcher)->still_open_files(), 1u);
  for (int i = 0; i < 5; ++i) {
    clock.Advance(Watcher::kStillOpenMaxDelay);
    (*watcher)->Tick();
  }
  EXPECT_EQ(recorder_.Count("d/x"), 0);
  EXPECT_EQ((*watcher)->still_open_files(), 1u);
  writer.Close();
  ASSERT_TRUE(recorder_.WaitFor("d/x"));
  (*watcher)->Tick();
  EXPECT_EQ((*watcher)->still_open_files(), 0u);
  clock.Advance(absl::Minutes(1));
  (*watcher)->Tick();
  EXPECT_EQ(recorder_.Count("d/x"), 1);
}

// Without leases (a file system that has none), a file found by a scan is
// reported once its size and mtime held still for the quiet period, timed
// on the injected clock.
TEST_F(WatcherTest, WithoutLeasesAScannedFileWaitsOutItsQuietPeriod) {
  FakeClock clock;
  MakeDir(InRoot("d"));
  OpenWriter writer(InRoot("d/x"));
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.Write("slow-"));
  auto watcher = Watcher::Start({.root = root_,
                                 .clock = &clock,
                                 .on_scan_complete = recorder_.on_scan_complete(),
                                 .quiet_period = absl::Seconds(1),
                                 .use_leases = false},
                                recorder_.callback());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  ASSERT_TRUE(recorder_.WaitForScans(1));
  EXPECT_EQ(recorder_.Count("d/x"), 0);
  EXPECT_EQ((*watcher)->deferred_files(), 1u);

  clock.Advance(absl::Milliseconds(999));
  (*watcher)->Tick();
  EXPECT_EQ(recorder_.Count("d/x"), 0);

  ASSERT_TRUE(writer.Write("1"));  // it changed: another quiet period
  clock.Advance(absl::Milliseconds(1));
  (*watcher)->Tick();
  EXPECT_EQ(recorder_.Count("d/x"), 0);
  EXPECT_EQ((*watcher)->deferred_files(), 1u);

  clock.Advance(absl::Seconds(1));
  (*watcher)->Tick();
  EXPECT_EQ(recorder_.Count("d/x"), 1);
  EXPECT_EQ((*watcher)->deferred_files(), 0u);
  writer.Close();  // and the close reports it again, which the consumer de-duplicates
  ASSERT_TRUE(recorder_.WaitFor("d/x", 2));
}

TEST_F(WatcherTest, WithoutLeasesTheCloseOfADeferredFileReportsItOnce) {
  FakeClock clock;
  MakeDir(InRoot("d"));
  OpenWriter writer(InRoot("d/x"));
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.Write("slow-"));
  auto watcher = Watcher::Start({.root = root_,
                                 .clock = &clock,
                                 .on_scan_complete = recorder_.on_scan_complete(),
                                 .use_leases = false},
                                recorder_.callback());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  ASSERT_TRUE(recorder_.WaitForScans(1));
  ASSERT_TRUE(writer.Write("1"));
  writer.Close();
  ASSERT_TRUE(recorder_.WaitFor("d/x"));
  (*watcher)->Tick();
  EXPECT_EQ((*watcher)->deferred_files(), 0u);
  clock.Advance(absl::Minutes(1));
  (*watcher)->Tick();
  EXPECT_EQ(recorder_.Count("d/x"), 1);
}

// The inotify watch limit: the directory that cannot be watched is still
// scanned, then scanned every unwatched_scan_period until a watch succeeds.
TEST_F(WatcherTest, ADirectoryWithoutAWatchIsScannedPeriodically) {
  FakeClock clock;
  std::atomic<bool> limit_reached{true};
  MakeDir(InRoot("full"));
  WriteFile(InRoot("full/early"));
  auto watcher = Watcher::Start(
      {.root = root_,
       .clock = &clock,
       .on_scan_complete = recorder_.on_scan_complete(),
       .unwatched_scan_period = absl::Seconds(10),
       .add_watch =
           [&limit_reached](int fd, const char* path, uint32_t mask) {
             if (limit_reached.load() && absl::EndsWith(path, "/full")) {
               errno = ENOSPC;
               return -1;
             }
             return inotify_add_watch(fd, path, mask);
           }},
      recorder_.callback());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  ASSERT_TRUE(recorder_.WaitForScans(1));
  EXPECT_EQ(recorder_.Count("full/early"), 1);  // listed although not watched
  EXPECT_EQ((*watcher)->unwatched_directories(), 1u);

  WriteFile(InRoot("full/late"));  // no watch: no event
  (*watcher)->Tick();
  EXPECT_EQ(recorder_.Count("full/late"), 0);
  clock.Advance(absl::Seconds(10));
  (*watcher)->Tick();
  EXPECT_EQ(recorder_.Count("full/late"), 1);
  EXPECT_EQ((*watcher)->unwatched_directories(), 1u);

  limit_reached.store(false);  // watches freed (or the limit raised)
  clock.Advance(absl::Seconds(10));
  (*watcher)->Tick();
  EXPECT_EQ((*watcher)->unwatched_directories(), 0u);
  WriteFile(InRoot("full/watched"));
  EXPECT_TRUE(recorder_.WaitFor("full/watched"));
}

}  // namespace
}  // namespace dispatchd::agent
