// DispatchdProcess: the real dispatchd binary run as a child process, the
// way a user runs it, for end-to-end tests. Its stderr goes to a log file
// that tests can read (and that is printed when a test fails).
//
// Thread-compatible: one thread drives it.
#ifndef DISPATCHD_TESTS_TESTING_DISPATCHD_PROCESS_H_
#define DISPATCHD_TESTS_TESTING_DISPATCHD_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace dispatchd {
namespace testing {

class DispatchdProcess {
 public:
  // Starts `dispatchd args...` (the binary from this test's runfiles) with
  // stderr appended to `log_path`. Adds --metrics-listen=127.0.0.1:0 unless
  // `args` hold a --metrics-listen flag ("metrics listening on ADDR" in the
  // log then names the port).
  static absl::StatusOr<std::unique_ptr<DispatchdProcess>> Start(
      const std::vector<std::string>& args, const std::string& log_path,
      const std::vector<std::string>& extra_env = {});
  ~DispatchdProcess();  // SIGKILL if still running

  // SIGTERM and wait (bounded); returns the exit status (as from waitpid).
  absl::StatusOr<int> Terminate(absl::Duration timeout = absl::Seconds(20));
  // True while the process has not exited.
  bool Running();
  // How it exited (as from waitpid), once Running() or Terminate() saw it
  // exit; std::nullopt before, and after a Terminate() that had to kill it.
  std::optional<int> exit_status() const { return exit_status_; }
  std::string Log() const;
  // What AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer
  // reported in the log (under `make asan`), from the first report on; ""
  // when nothing was. The destructor fails the running test with it.
  std::string SanitizerReport() const;
  pid_t pid() const { return pid_; }

 private:
  DispatchdProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  bool reaped_ = false;
  std::optional<int> exit_status_;
};

// The dispatchd binary in the runfiles.
std::string DispatchdBinary();

// Polls `condition` every 20 ms until it holds or `timeout` passes; returns
// its last value. For waiting on another process, never for timing asserts.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(30));

// Writes `content` to `path` the way a careful writer does (a temporary
// file beside the events tree, then rename into place).
void WriteFileAtomically(const std::string& path, const std::string& content,
                         const std::string& scratch_dir);
// Writes `content` to `path` directly (open, write, close).
void WriteFile(const std::string& path, const std::string& content);
bool FileExists(const std::string& path);
std::string ReadFile(const std::string& path);
// A loopback TCP port that was free a moment ago (for programs that cannot
// bind port 0 and report the port).
int FreePort();
// What HttpGet got: the status code (0: no answer) and the body (chunked
// bodies de-chunked).
struct HttpResult {
  int status = 0;
  std::string body;
};
// GET http://127.0.0.1:port/target on a fresh connection (Connection:
// close), waiting at most 30 s for the answer.
HttpResult HttpGet(int port, const std::string& target);

// mkdtemp under /tmp; the caller removes it.
std::string MakeTempDir(const std::string& prefix);
void RemoveTree(const std::string& path);

}  // namespace testing
}  // namespace dispatchd

#endif  // DISPATCHD_TESTS_TESTING_DISPATCHD_PROCESS_H_
