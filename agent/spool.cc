#include "agent/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/open_writers.h"
#include "contract/event_id.h"
#include "common/status_macros.h"

namespace dispatchd::agent {
namespace {

constexpr absl::string_view kDeadLetterDir = ".dead-letter";
constexpr absl::string_view kErrorSuffix = ".error.json";
constexpr int kMaxDeadLetterSuffix = 10000;
constexpr absl::string_view kEmitDir = ".dispatchd-emit";
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxNoteBytes = 64 * 1024;
constexpr char kMarkAttribute[] = "user.dispatchd.event";
constexpr size_t kMaxMarkBytes = 64 * 1024;

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
  int Release() { return std::exchange(fd_, -1); }

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

enum class Sync { kNo, kYes };
absl::Status WriteWholeFile(int parent, const std::string& name, absl::string_view content,
                            absl::string_view what, Sync sync = Sync::kNo) {
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
  if (sync == Sync::kYes && fsync(fd.get()) != 0) return ErrnoStatus(errno, what);
  return absl::OkStatus();
}

// fsync of the directory `dir` (an O_PATH descriptor cannot be synced).
absl::Status SyncDir(int dir, absl::string_view what) {
  ScopedFd fd(openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || fsync(fd.get()) != 0) return ErrnoStatus(errno, what);
  return absl::OkStatus();
}

// Up to `limit` bytes of parent/name; "" when it cannot be read.
std::string ReadSmallFile(int parent, const std::string& name, size_t limit) {
  ScopedFd fd(openat(parent, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) return "";
  std::string data(limit, '\0');
  size_t length = 0;
  while (length < limit) {
    ssize_t n = read(fd.get(), &data[length], limit - length);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    length += n;
  }
  data.resize(length);
  return data;
}

// Collects the dead letters below `dir` (relative path `prefix`).
void CollectDeadLetters(int dir, const std::string& prefix, std::vector<DeadLetterEntry>* out) {
  const int listing = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (listing < 0) return;
  DIR* d = fdopendir(listing);  // owns `listing` from here on
  if (d == nullptr) {
    close(listing);
    return;
  }
  std::vector<std::pair<std::string, struct stat>> entries;
  while (struct dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (fstatat(dirfd(d), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    entries.emplace_back(name, st);
  }
  for (const auto& [name, st] : entries) {
    const std::string rel = prefix.empty() ? name : absl::StrCat(prefix, "/", name);
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd(d), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) continue;
      ScopedFd sub_fd(sub);
      CollectDeadLetters(sub_fd.get(), rel, out);
      continue;
    }
    if (!S_ISREG(st.st_mode)) continue;
    const std::string note = absl::StrCat(name, kErrorSuffix);
    // x.error.json is x's note, unless it is a dead letter with a note of its own.
    if (absl::EndsWith(name, kErrorSuffix)) {
      const std::string owner = name.substr(0, name.size() - kErrorSuffix.size());
      if (Exists(dirfd(d), owner) && !Exists(dirfd(d), note)) continue;
    }
    DeadLetterEntry entry;
    entry.rel = rel;
    entry.size = st.st_size;
    entry.dead_lettered = absl::FromUnixNanos(static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 +
                                              st.st_ctim.tv_nsec);
    struct stat note_st;
    if (fstatat(dirfd(d), note.c_str(), &note_st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG(note_st.st_mode)) {
      entry.error_json = ReadSmallFile(dirfd(d), note, kMaxNoteBytes);
      entry.dead_lettered = absl::FromUnixNanos(
          static_cast<int64_t>(note_st.st_mtim.tv_sec) * 1000000000 + note_st.st_mtim.tv_nsec);
    }
    out->push_back(std::move(entry));
  }
  closedir(d);
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

// Opens the regular file root/rel read-only, never following a symlink and
// never opening a FIFO or device (lstat first; the fstat into `*st` closes
// the race with a file swapped in between).
absl::StatusOr<ScopedFd> OpenEventFile(const std::string& root, absl::string_view rel,
                                       const std::string& what, struct stat* st) {
  SplitPath split = Split(rel);
  ASSIGN_OR_RETURN(ScopedFd parent, OpenParent(root, split, what));
  RETURN_IF_ERROR(CheckRegularFile(parent.get(), split.base, what));
  ScopedFd fd(
      openat(parent.get(), split.base.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, what);
  if (fstat(fd.get(), st) != 0) return ErrnoStatus(errno, what);
  if (!S_ISREG(st->st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": not a regular file"));
  }
  return fd;
}

}  // namespace

Spool::Spool(std::string root) : root_(std::move(root)) {}

absl::Status Spool::Write(absl::string_view rel, absl::string_view content) const {
  RETURN_IF_ERROR(CheckRelative(rel));
  const std::string what = absl::StrCat("writing event file ", rel);
  SplitPath split = Split(rel);
  ASSIGN_OR_RETURN(ScopedFd root_fd, OpenDir(AT_FDCWD, root_, Follow::kYes, what));
  ASSIGN_OR_RETURN(ScopedFd scratch, OpenDir(root_fd.get(), ".", Follow::kNo, what));
  ASSIGN_OR_RETURN(scratch, WalkDirs(std::move(scratch), {std::string(kEmitDir)}, Create::kYes,
                                     what));
  static std::atomic<uint64_t> counter{0};
  const std::string temp = absl::StrCat(getpid(), ".", counter.fetch_add(1), ".tmp");
  absl::Status written = WriteWholeFile(scratch.get(), temp, content, what, Sync::kYes);
  if (written.ok()) {
    absl::StatusOr<ScopedFd> parent = WalkDirs(std::move(root_fd), split.dirs, Create::kYes, what);
    if (!parent.ok()) {
      written = parent.status();
    } else if (renameat(scratch.get(), temp.c_str(), parent->get(), split.base.c_str()) != 0) {
      written = ErrnoStatus(errno, what);
    } else {
      return SyncDir(parent->get(), what);
    }
  }
  unlinkat(scratch.get(), temp.c_str(), 0);
  return written;
}

absl::StatusOr<std::vector<DeadLetterEntry>> Spool::ListDeadLetters() const {
  const std::string what = "listing dead letters";
  ASSIGN_OR_RETURN(ScopedFd root_fd, OpenDir(AT_FDCWD, root_, Follow::kYes, what));
  absl::StatusOr<ScopedFd> dir = OpenDir(root_fd.get(), std::string(kDeadLetterDir), Follow::kNo,
                                         what);
  std::vector<DeadLetterEntry> out;
  if (absl::IsNotFound(dir.status())) return out;
  if (!dir.ok()) return dir.status();
  CollectDeadLetters(dir->get(), "", &out);
  std::sort(out.begin(), out.end(),
            [](const DeadLetterEntry& a, const DeadLetterEntry& b) { return a.rel < b.rel; });
  return out;
}

absl::Status Spool::ReplayDeadLetter(absl::string_view rel) const {
  RETURN_IF_ERROR(CheckRelative(rel));
  const std::string what = absl::StrCat("replaying dead letter ", rel);
  SplitPath split = Split(rel);
  std::vector<std::string> source_dirs = {std::string(kDeadLetterDir)};
  source_dirs.insert(source_dirs.end(), split.dirs.begin(), split.dirs.end());
  ASSIGN_OR_RETURN(ScopedFd root_fd, OpenDir(AT_FDCWD, root_, Follow::kYes, what));
  ASSIGN_OR_RETURN(ScopedFd root_copy, OpenDir(root_fd.get(), ".", Follow::kNo, what));
  ASSIGN_OR_RETURN(ScopedFd source, WalkDirs(std::move(root_copy), source_dirs, Create::kNo, what));
  RETURN_IF_ERROR(CheckRegularFile(source.get(), split.base, what));
  {
    // A replay is a new event: whatever its earlier run recorded (who it
    // was delivered to) must not make it skip anyone.
    ScopedFd file(openat(source.get(), split.base.c_str(),
                         O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (file.get() >= 0) (void)fremovexattr(file.get(), kMarkAttribute);
  }
  ASSIGN_OR_RETURN(ScopedFd target, WalkDirs(std::move(root_fd), split.dirs, Create::kYes, what));
  absl::Status moved = RenameNoReplace(source.get(), split.base, target.get(), split.base, what);
  if (absl::IsAlreadyExists(moved)) {
    return absl::AlreadyExistsError(
        absl::StrCat(what, ": an event file ", rel, " is pending; replay it once that is settled"));
  }
  RETURN_IF_ERROR(moved);
  unlinkat(source.get(), absl::StrCat(split.base, kErrorSuffix).c_str(), 0);
  return absl::OkStatus();
}

absl::Status Spool::PurgeDeadLetter(absl::string_view rel) const {
  RETURN_IF_ERROR(CheckRelative(rel));
  const std::string what = absl::StrCat("purging dead letter ", rel);
  SplitPath split = Split(rel);
  std::vector<std::string> dirs = {std::string(kDeadLetterDir)};
  dirs.insert(dirs.end(), split.dirs.begin(), split.dirs.end());
  ASSIGN_OR_RETURN(ScopedFd root_fd, OpenDir(AT_FDCWD, root_, Follow::kYes, what));
  ASSIGN_OR_RETURN(ScopedFd dir, WalkDirs(std::move(root_fd), dirs, Create::kNo, what));
  RETURN_IF_ERROR(CheckRegularFile(dir.get(), split.base, what));
  if (unlinkat(dir.get(), split.base.c_str(), 0) != 0) return ErrnoStatus(errno, what);
  unlinkat(dir.get(), absl::StrCat(split.base, kErrorSuffix).c_str(), 0);
  return absl::OkStatus();
}

EventFile::EventFile(int fd, struct stat st, std::string rel)
    : fd_(fd), st_(st), rel_(std::move(rel)) {}
EventFile::EventFile(EventFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), st_(other.st_), rel_(std::move(other.rel_)) {}
EventFile& EventFile::operator=(EventFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    st_ = other.st_;
    rel_ = std::move(other.rel_);
  }
  return *this;
}
EventFile::~EventFile() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<EventFile> Spool::Open(absl::string_view rel) const {
  RETURN_IF_ERROR(CheckRelative(rel));
  const std::string what = absl::StrCat("reading event file ", rel);
  struct stat st;
  ASSIGN_OR_RETURN(ScopedFd fd, OpenEventFile(root_, rel, what, &st));
  return EventFile(fd.Release(), st, std::string(rel));
}

absl::StatusOr<Payload> Spool::Read(absl::string_view rel, int64_t max_bytes) const {
  if (max_bytes < 0) return absl::InvalidArgumentError("max_bytes < 0");
  ASSIGN_OR_RETURN(EventFile file, Open(rel));
  return file.Read(max_bytes);
}

absl::StatusOr<Payload> EventFile::Read(int64_t max_bytes) {
  if (max_bytes < 0) return absl::InvalidArgumentError("max_bytes < 0");
  const std::string what = absl::StrCat("reading event file ", rel_);
  struct stat st = st_;
  // A file still open for writing is not an event yet: its writer's close
  // reports it again. Otherwise the lease, held until the file closes, makes
  // a writer that opens it meanwhile wait until the read is done.
  Payload payload;
  switch (TakeReadLease(fd_)) {
    case Writers::kOpen:
      return absl::UnavailableError(absl::StrCat(what, ": still open for writing"));
    case Writers::kNone:
      payload.writers_checked = true;
      break;
    case Writers::kUnknown:
      break;
  }
  if (payload.writers_checked && fstat(fd_, &st) != 0) return ErrnoStatus(errno, what);
  payload.size = st.st_size;
  const size_t limit = static_cast<size_t>(max_bytes);
  std::string& data = payload.data;
  data.resize(std::min(limit, static_cast<size_t>(std::max<off_t>(st.st_size, 0))));
  size_t length = 0;
  while (length < limit) {
    if (length == data.size()) data.resize(std::min(limit, data.size() + kReadChunk));
    ssize_t n = read(fd_, &data[length], data.size() - length);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, what);
    }
    if (n == 0) break;
    length += n;
  }
  data.resize(length);
  // The buffer grew in 64 KiB steps to find the end: give back what the
  // payload does not use, since it waits in memory until settled.
  if (data.capacity() > data.size() + 4096) data.shrink_to_fit();
  char mark[4096];
  ssize_t mark_size = fgetxattr(fd_, kMarkAttribute, mark, sizeof(mark));
  if (mark_size > 0) {
    payload.mark.assign(mark, static_cast<size_t>(mark_size));
  } else if (mark_size < 0 && errno == ERANGE) {
    mark_size = fgetxattr(fd_, kMarkAttribute, nullptr, 0);
    if (mark_size > 0 && static_cast<size_t>(mark_size) <= kMaxMarkBytes) {
      payload.mark.resize(static_cast<size_t>(mark_size));
      mark_size = fgetxattr(fd_, kMarkAttribute, payload.mark.data(), payload.mark.size());
      payload.mark.resize(mark_size > 0 ? static_cast<size_t>(mark_size) : 0);
    }
  }
  payload.truncated = st.st_size > max_bytes;
  if (!payload.truncated && length == limit) {
    // The file may have grown since fstat().
    char probe;
    ssize_t n;
    do {
      n = read(fd_, &probe, 1);
    } while (n < 0 && errno == EINTR);
    payload.truncated = n > 0;
  }
  return payload;
}

absl::StatusOr<struct stat> EventFile::WriteMark(absl::string_view mark) {
  const std::string what = absl::StrCat("marking event file ", rel_);
  if (fsetxattr(fd_, kMarkAttribute, mark.data(), mark.size(), 0) != 0) {
    if (errno == ENOTSUP) {
      return absl::UnimplementedError(
          absl::StrCat(what, ": the file system keeps no user extended attributes"));
    }
    return ErrnoStatus(errno, what);
  }
  struct stat st;
  if (fstat(fd_, &st) != 0) return ErrnoStatus(errno, what);
  return st;
}

absl::StatusOr<struct stat> Spool::WriteMark(absl::string_view rel, absl::string_view mark) const {
  RETURN_IF_ERROR(CheckRelative(rel));
  const std::string what = absl::StrCat("marking event file ", rel);
  struct stat st;
  ASSIGN_OR_RETURN(ScopedFd fd, OpenEventFile(root_, rel, what, &st));
  return EventFile(fd.Release(), st, std::string(rel)).WriteMark(mark);
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
