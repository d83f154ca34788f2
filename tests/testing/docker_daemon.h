// PrivateDockerd: a Docker daemon of a test's own, so end-to-end tests never
// touch the machine's daemon. Everything it owns (data root, exec root,
// socket, pid file, log) lives in a fresh /tmp/dispatchd-dockerd-XXXXXX
// directory (unix socket paths must stay under 108 bytes), which the
// destructor removes. The daemon runs without a bridge or iptables, so test
// containers use `--network none`. Several can run side by side.
//
// Tests using it need tags ["local", "exclusive"]: it runs dockerd outside
// Bazel's sandbox and needs root.
//
// Thread-safety: Docker() and EnsureBusyboxImage() may be called from several
// threads; Start/Stop/Restart and destruction from one thread only.
#ifndef DISPATCHD_TESTS_TESTING_DOCKER_DAEMON_H_
#define DISPATCHD_TESTS_TESTING_DOCKER_DAEMON_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace dispatchd {
namespace testing {

class PrivateDockerd {
 public:
  static constexpr char kBusyboxImage[] = "dispatchd-test/busybox:latest";

  // Creates the temp directory, starts dockerd and waits (at most 60 s) until
  // it answers /_ping. On failure the error holds the tail of dockerd's log.
  static absl::StatusOr<std::unique_ptr<PrivateDockerd>> Start();

  // Stops the daemon if it runs, unmounts what it left and removes the temp
  // directory.
  ~PrivateDockerd();

  PrivateDockerd(const PrivateDockerd&) = delete;
  PrivateDockerd& operator=(const PrivateDockerd&) = delete;

  // SIGTERM, then waits for the process (bounded); SIGKILL if it does not
  // exit, also killing the containerd and shims it leaves behind. OK if
  // already stopped.
  absl::Status Stop();

  // Stop(), then start again on the same data root and socket; containers
  // and images survive.
  absl::Status Restart();

  // "unix:///tmp/dispatchd-dockerd-XXXXXX/docker.sock"
  std::string host() const;
  std::string socket_path() const;
  // The temp directory (for tests that need a scratch place near it).
  const std::string& dir() const { return dir_; }
  // dockerd's pid, or -1 while stopped.
  pid_t pid() const { return pid_; }

  // Runs `docker -H host() args...` and returns its stdout without trailing
  // whitespace, or an error holding stderr (Internal for a non-zero exit,
  // DeadlineExceeded after 120 s).
  absl::StatusOr<std::string> Docker(const std::vector<std::string>& args);

  // Imports kBusyboxImage (busybox-static and a link per applet) unless this
  // daemon already has it.
  absl::Status EnsureBusyboxImage();

 private:
  explicit PrivateDockerd(std::string dir);
  absl::Status Launch();
  std::string LogTail() const;
  void KillLeftovers();
  void Unmount();

  const std::string dir_;
  pid_t pid_ = -1;
  absl::Mutex image_mu_;
  bool has_image_ ABSL_GUARDED_BY(image_mu_) = false;
};

// Runs argv[0] (searched on PATH and the usual system directories) with
// stdin from /dev/null; returns stdout, or an error holding stderr. Exposed
// for tests that need another tool (tar, busybox).
absl::StatusOr<std::string> RunCommand(const std::vector<std::string>& argv,
                                       const std::vector<std::string>& extra_env = {});

}  // namespace testing
}  // namespace dispatchd

#endif  // DISPATCHD_TESTS_TESTING_DOCKER_DAEMON_H_
