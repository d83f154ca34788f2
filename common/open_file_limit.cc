#include "common/open_file_limit.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace dispatchd {
namespace {

std::string Limit(uint64_t n) {
  return n == static_cast<uint64_t>(RLIM_INFINITY) ? std::string("unlimited") : absl::StrCat(n);
}

}  // namespace

absl::StatusOr<OpenFileLimit> RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::InternalError(absl::StrCat("getrlimit(RLIMIT_NOFILE): ", std::strerror(errno)));
  }
  OpenFileLimit out;
  out.soft_before = limit.rlim_cur;
  out.soft = limit.rlim_cur;
  out.hard = limit.rlim_max;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      return absl::InternalError(absl::StrCat("setrlimit(RLIMIT_NOFILE, ", Limit(limit.rlim_max),
                                              "): ", std::strerror(errno)));
    }
    out.soft = limit.rlim_max;
  }
  return out;
}

std::string DescribeOpenFileLimit(const OpenFileLimit& limit) {
  if (limit.soft == limit.soft_before) {
    return absl::StrCat("open files: limit ", Limit(limit.soft),
                        limit.soft == limit.hard ? " (the hard limit)" : "");
  }
  return absl::StrCat("open files: soft limit raised from ", Limit(limit.soft_before), " to ",
                      Limit(limit.soft), limit.soft == limit.hard ? " (the hard limit)" : "");
}

std::string OpenFileLimitWarning(const OpenFileLimit& limit, uint64_t wanted) {
  if (limit.soft >= wanted) return "";
  return absl::StrCat(
      "open files: the limit is ", Limit(limit.soft), ", below ", wanted,
      ": a controller holds one per agent session and API connection, and once it runs out "
      "it accepts no connection until it is restarted; raise the hard limit (LimitNOFILE= in "
      "a systemd unit, ulimit -Hn in a shell, --ulimit nofile=N:N for docker run)");
}

}  // namespace dispatchd
