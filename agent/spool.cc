#include "agent/spool.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "contract/event_id.h"
#include "common/status_macros.h"

namespace dispatchd::agent {
namespace {

constexpr absl::string_view kDeadLetterDir = ".dead-letter";
constexpr absl::string_view kErrorSuffix = ".error.json";
constexpr int kMaxDeadLetterSuffix = 10000;
constexpr size_t kReadChunk = 64 * 1024;

// Owns a file descriptor.
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~ScopedFd() { Reset(); }
  int get() const { return fd_; }

 private:
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int fd_;
};

// errno -> Status, with the codes the spool's callers branch on.
absl::Status ErrnoStatus(int error, absl::string_view what) {
  switch (error) {
    case ENOENT:
      return absl::NotFoundError(absl::StrCat(what, ": no such file"));
    case ELOOP:
    case ENOTDIR:
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": a path component is a symlink or not a directory"));
    case ENXIO:
    case EISDIR:
      return absl::FailedPreconditionError(absl::StrCat(what, ": not a regular file"));
    default:
      return absl::ErrnoToStatus(error, what);
  }
}

absl::Status CheckRelative(absl::string_view rel) {
  RETURN_IF_ERROR(contract::ValidateRelativePath(rel));
  if (contract::IsIgnoredRelativePath(rel)) {
    return absl::InvalidArgumentError(absl::StrCat("hidden path is not an event file: ", rel));
  }
  return absl::OkStatus();
}

// Opens a directory for use as the dirfd of *at() calls. `follow` only for
// the root, which may be a symlink.
enum class Follow { kNo, kYes };
absl::StatusOr<ScopedFd> OpenDir(int parent, const std::string& name, Follow follow,
                                 absl::string_view what) {
  int flags = O_PATH | O_DIRECTORY | O_CLOEXEC | (follow == Follow::kNo ? O_NOFOLLOW : 0);
  int fd = openat(parent, name.c_str(), flags);
  if (fd < 0) return ErrnoStatus(errno, what);
  return ScopedFd(fd);
}

// Walks `dirs` below `start` without following symlinks; with
// Create::kYes, missing directories are created first.
enum class Create { kNo, kYes };
absl::StatusOr<ScopedFd> WalkDirs(ScopedFd start, const std::vector<std::string>& dirs,
                                  Create create, absl::string_view what) {
  ScopedFd current = std::move(start);
  for (const std::string& dir : dirs) {
    if (create == Create::kYes && mkdirat(current.get(), dir.c_str(), 0755) != 0 &&
        errno != EEXIST) {
      return ErrnoStatus(errno, absl::StrCat(what, ": creating ", dir));
    }
    ASSIGN_OR_RETURN(current, OpenDir(current.get(), dir, Follow::kNo, what));
  }
  return current;
}

// A relative path split into its directories and its last component.
struct SplitPath {
  std::vector<std::string> dirs;
  std::string base;
};

SplitPath Split(absl::string_view rel) {
  SplitPath split;
  split.dirs = absl::StrSplit(rel, '/');
  split.base = std::move(split.dirs.back());
  split.dirs.pop_back();
  return split;
}

// The directory holding root/rel, reached without following symlinks.
absl::StatusOr<ScopedFd> OpenParent(const std::string& root, const SplitPath& split,
                                    absl::string_view what) {
  ASSIGN_OR_RETURN(ScopedFd root_fd, OpenDir(AT_FDCWD, root, Follow::kYes, what));
  return WalkDirs(std::move(root_fd), split.dirs, Create::kNo, what);
}

// OK if parent/name is a regular file (not following a symlink).
absl::Status CheckRegularFile(int parent, const std::string& name, absl::string_view what) {
  struct stat st;
  if (fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoStatus(errno, what);
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": not a regular file"));
  }
  return absl::OkStatus();
}

bool Exists(int parent, const std::string& name) {
  struct stat st;
  return fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
}

absl::Status WriteWholeFile(int parent, const std::string& name, absl::string_view content,
                            absl::string_view what) {
  ScopedFd fd(
      openat(parent, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (fd.get() < 0) return ErrnoStatus(errno, what);
  while (!content.empty()) {
    ssize_t n = write(fd.get(), content.data(), content.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, what);
    }
    content.remove_prefix(n);
  }
  return absl::OkStatus();
}

// Moves without replacing an existing target; AlreadyExists if there is one.
absl::Status RenameNoReplace(int from_dir, const std::string& from, int to_dir,
                             const std::string& to, absl::string_view what) {
  if (renameat2(from_dir, from.c_str(), to_dir, to.c_str(), RENAME_NOREPLACE) == 0) {
    return absl::OkStatus();
  }
  if (errno == EEXIST) return absl::AlreadyExistsError(absl::StrCat(what, ": target exists"));
  if (errno != EINVAL) return ErrnoStatus(errno, what);
  // The filesystem cannot do RENAME_NOREPLACE: check, then rename.
  if (Exists(to_dir, to)) return absl::AlreadyExistsError(absl::StrCat(what, ": target exists"));
  if (renameat(from_dir, from.c_str(), to_dir, to.c_str()) != 0) return ErrnoStatus(errno, what);
  return absl::OkStatus();
}

}  // namespace

Spool::Spool(std::string root) : root_(std::move(root)) {}

absl::StatusOr<Payload> Spool::Read(absl::string_view rel, int64_t max_bytes) const {
  RETURN_IF_ERROR(CheckRelative(rel));
  if (max_bytes < 0) return absl::InvalidArgumentError("max_bytes < 0");
  const std::string what = absl::StrCat("reading event file ", rel);
  SplitPath split = Split(rel);
  ASSIGN_OR_RETURN(ScopedFd parent, OpenParent(root_, split, what));
  // lstat first so that a FIFO or device is never even opened; the fstat
  // below closes the race with a file swapped in between.
  RETURN_IF_ERROR(CheckRegularFile(parent.get(), split.base, what));
  ScopedFd fd(
      openat(parent.get(), split.base.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, what);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, what);
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": not a regular file"));
  }

  Payload payload;
  payload.size = st.st_size;
  const size_t limit = static_cast<size_t>(max_bytes);
  std::string& data = payload.data;
  data.resize(std::min(limit, static_cast<size_t>(std::max<off_t>(st.st_size, 0))));
  size_t length = 0;
  while (length < limit) {
    if (length == data.size()) data.resize(std::min(limit, data.size() + kReadChunk));
    ssize_t n = read(fd.get(), &data[length], data.size() - length);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, what);
    }
    if (n == 0) break;
    length += n;
  }
  data.resize(length);
  payload.truncated = st.st_size > max_bytes;
  if (!payload.truncated && length == limit) {
    // The file may have grown since fstat().
    char probe;
    ssize_t n;
    do {
      n = read(fd.get(), &probe, 1);
    } while (n < 0 && errno == EINTR);
    payload.truncated = n > 0;
  }
  return payload;
}

absl::Status Spool::Delete(absl::string_view rel) const {
  RETURN_IF_ERROR(CheckRelative(rel));
  const std::string what = absl::StrCat("deleting event file ", rel);
  SplitPath split = Split(rel);
  ASSIGN_OR_RETURN(ScopedFd parent, OpenParent(root_, split, what));
  RETURN_IF_ERROR(CheckRegularFile(parent.get(), split.base, what));
  if (unlinkat(parent.get(), split.base.c_str(), 0) != 0) return ErrnoStatus(errno, what);
  return absl::OkStatus();
}

absl::Status Spool::DeadLetter(absl::string_view rel, absl::string_view error_json) const {
  RETURN_IF_ERROR(CheckRelative(rel));
  const std::string what = absl::StrCat("dead-lettering event file ", rel);
  SplitPath split = Split(rel);
  ASSIGN_OR_RETURN(ScopedFd parent, OpenParent(root_, split, what));
  RETURN_IF_ERROR(CheckRegularFile(parent.get(), split.base, what));

  std::vector<std::string> target_dirs = {std::string(kDeadLetterDir)};
  target_dirs.insert(target_dirs.end(), split.dirs.begin(), split.dirs.end());
  ASSIGN_OR_RETURN(ScopedFd root_fd, OpenDir(AT_FDCWD, root_, Follow::kYes, what));
  ASSIGN_OR_RETURN(ScopedFd target, WalkDirs(std::move(root_fd), target_dirs, Create::kYes, what));

  for (int suffix = 0; suffix <= kMaxDeadLetterSuffix; ++suffix) {
    std::string name = suffix == 0 ? split.base : absl::StrCat(split.base, ".", suffix);
    if (Exists(target.get(), name)) continue;
    // The note first: if the move then fails, the event is still in the
    // spool, and the next attempt overwrites the note.
    RETURN_IF_ERROR(
        WriteWholeFile(target.get(), absl::StrCat(name, kErrorSuffix), error_json, what));
    absl::Status moved = RenameNoReplace(parent.get(), split.base, target.get(), name, what);
    if (!absl::IsAlreadyExists(moved)) return moved;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat(what, ": ", kMaxDeadLetterSuffix, " dead letters with this name already"));
}

}  // namespace dispatchd::agent
