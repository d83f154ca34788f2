#include "sinks/file_sink.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "sinks/event_json.h"

namespace dispatchd {
namespace sinks {
namespace {

absl::Status OsError(int error, absl::string_view what, absl::string_view path) {
  const std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case EISDIR:
      return absl::FailedPreconditionError(message);
    default:
      return absl::UnavailableError(message);
  }
}

}  // namespace

absl::Status FileSink::Write(EventPtr event) {
  if (event == nullptr) return absl::InvalidArgumentError("null event");
  if (closed_.load(std::memory_order_acquire)) return ClosedError();
  const std::string line = absl::StrCat(EventToJson(*event), "\n");
  const int fd = open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return OsError(errno, "cannot open", path_);
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = write(fd, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : EIO;
      close(fd);
      return OsError(error, "cannot append to", path_);
    }
    written += static_cast<size_t>(n);
  }
  if (close(fd) != 0) return OsError(errno, "cannot close", path_);
  return absl::OkStatus();
}

absl::Status FileSink::Close() {
  closed_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

}  // namespace sinks
}  // namespace dispatchd
