#include "agent/open_writers.h"

#include <fcntl.h>

#include <cerrno>
#include <csignal>
#include <mutex>

namespace dispatchd::agent {

Writers TakeReadLease(int fd, int* error) {
  static std::once_flag ignore_sigio;
  std::call_once(ignore_sigio, [] { std::signal(SIGIO, SIG_IGN); });
  if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) return Writers::kNone;
  const int e = errno;
  if (error != nullptr) *error = e;
  return e == EAGAIN ? Writers::kOpen : Writers::kUnknown;
}

void ReleaseLease(int fd) { (void)fcntl(fd, F_SETLEASE, F_UNLCK); }

}  // namespace dispatchd::agent
