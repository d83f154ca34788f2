// The limit on open files (RLIMIT_NOFILE) that dispatchd runs with. A
// controller holds a descriptor per agent session and API connection, and
// when accept4 fails with EMFILE, gRPC 1.51 (Debian's) stops accepting on
// that port for good: no agent can reconnect until the controller restarts.
// So dispatchd raises its soft limit to the hard limit at start (which needs
// no privilege), logs the result, and a controller warns when even that is
// low for a fleet.
//
//   absl::StatusOr<OpenFileLimit> limit = RaiseOpenFileLimit();
//   LOG(INFO) << DescribeOpenFileLimit(*limit);
//   if (std::string w = OpenFileLimitWarning(*limit, kControllerOpenFiles); !w.empty()) ...
#ifndef DISPATCHD_COMMON_OPEN_FILE_LIMIT_H_
#define DISPATCHD_COMMON_OPEN_FILE_LIMIT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace dispatchd {

struct OpenFileLimit {
  uint64_t soft_before = 0;  // the soft limit this process was started with
  uint64_t soft = 0;         // the soft limit now
  uint64_t hard = 0;
};

// A controller with fewer open files than this may run out with a few
// thousand agents (one per session, plus API connections); the number of
// agents to expect is not known in advance.
constexpr uint64_t kControllerOpenFiles = 4096;

// Raises this process's soft RLIMIT_NOFILE to its hard limit (threads and
// children started later inherit it). An error if the limit cannot be read
// or set.
absl::StatusOr<OpenFileLimit> RaiseOpenFileLimit();

// "open files: soft limit raised from 1024 to 65536 (the hard limit)", or
// "... 65536 (the hard limit)" when it was there already.
std::string DescribeOpenFileLimit(const OpenFileLimit& limit);

// When `limit.soft` is below `wanted`: a warning that says what it costs
// and how to raise it; "" otherwise.
std::string OpenFileLimitWarning(const OpenFileLimit& limit, uint64_t wanted);

}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_OPEN_FILE_LIMIT_H_
