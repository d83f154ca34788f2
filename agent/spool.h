// Spool: the event files under the events directory, seen as the agent's
// spool: read an event's payload, delete it once settled, or move it to
// `.dead-letter/` when it cannot be delivered (README.md, "Event files").
//
// Every `rel` is a path relative to the root. It must pass
// ValidateRelativePath and must not be hidden (IsIgnoredRelativePath):
// hidden files are never events, so the spool never opens or deletes them;
// both are InvalidArgument. Paths are resolved one component at a time
// without following symlinks (only the root itself may be a symlink), so a
// `rel` can never reach outside the root, and only regular files are read,
// deleted or moved: anything else is FailedPrecondition and is left alone.
// A FIFO or device is never opened.
//
// Thread-safe: a Spool holds no mutable state beyond the filesystem.
#ifndef DISPATCHD_AGENT_SPOOL_H_
#define DISPATCHD_AGENT_SPOOL_H_

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace dispatchd::agent {

// A file in `.dead-letter/`, as ListDeadLetters finds it.
struct DeadLetterEntry {
  std::string rel;         // relative to .dead-letter/: where a replay puts it back
  std::string error_json;  // <rel>.error.json (at most 64 KiB; empty if missing)
  int64_t size = 0;
  absl::Time dead_lettered;  // the note's modification time (else the file's)
};

// An event file's content, bounded.
struct Payload {
  std::string data;        // at most the requested max_bytes
  bool truncated = false;  // the file holds more than `data`
  int64_t size = 0;        // the file's size (st_size) when it was opened
  // No process had the file open for writing while it was read (a read
  // lease was held); false where leases are not available.
  bool writers_checked = false;
  // The file's mark (extended attribute user.dispatchd.event, see
  // WriteMark), empty if it has none or the file system keeps none.
  std::string mark;
};

// One event file held open by Spool::Open, so that it is read and then
// marked through one descriptor (one path walk, one open). Where leases
// work, the read lease Read() takes is held until the EventFile closes.
class EventFile {
 public:
  EventFile(EventFile&& other) noexcept;
  EventFile& operator=(EventFile&& other) noexcept;
  ~EventFile();
  EventFile(const EventFile&) = delete;
  EventFile& operator=(const EventFile&) = delete;

  // As Spool::Read.
  absl::StatusOr<Payload> Read(int64_t max_bytes);
  // As Spool::WriteMark.
  absl::StatusOr<struct stat> WriteMark(absl::string_view mark);

 private:
  friend class Spool;
  EventFile(int fd, struct stat st, std::string what_rel);
  int fd_;
  struct stat st_;  // at open
  std::string rel_;
};

class Spool {
 public:
  // `root` is the events directory; it is not created here.
  explicit Spool(std::string root);

  // Reads at most `max_bytes` of root/rel. The file is opened with
  // O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC and fstat()ed: anything but a
  // regular file is FailedPrecondition; NotFound if it is gone;
  // InvalidArgument if max_bytes < 0. Unavailable while a process holds the
  // file open for writing (open_writers.h): it is not complete yet, and its
  // writer's close makes it an event again.
  absl::StatusOr<Payload> Read(absl::string_view rel, int64_t max_bytes) const;
  // Opens root/rel as Read does (the same errors), to read and mark it
  // through one descriptor.
  absl::StatusOr<EventFile> Open(absl::string_view rel) const;

  // Sets the extended attribute user.dispatchd.event of the regular file
  // root/rel to `mark` (what the agent keeps with an unsettled event) and
  // returns the file's stat afterwards (setting it changes the ctime).
  // NotFound if the file is gone; Unimplemented where the file system keeps
  // no user attributes.
  absl::StatusOr<struct stat> WriteMark(absl::string_view rel, absl::string_view mark) const;

  // Deletes the regular file root/rel. NotFound if it is already gone.
  // Directories are left in place, even when they become empty.
  absl::Status Delete(absl::string_view rel) const;

  // Writes `error_json` to root/.dead-letter/<rel>.error.json, then moves
  // root/rel to root/.dead-letter/<rel>, creating directories as needed.
  // An earlier dead letter is never overwritten: if .dead-letter/<rel>
  // exists, the file becomes .dead-letter/<rel>.1 (then .2, ...) with
  // <rel>.1.error.json beside it. NotFound if root/rel is gone. If the move
  // fails, root/rel stays in place (a stale .error.json may remain and is
  // overwritten by the next attempt).
  absl::Status DeadLetter(absl::string_view rel, absl::string_view error_json) const;

  // Writes root/rel with `content` atomically and durably, as an event file
  // emitted through the API: a temporary file in root/.dispatchd-emit/ (a
  // hidden directory, so never an event itself, on the same file system)
  // is written and fsync'd, missing directories of `rel` are created, the
  // file is renamed into place (replacing a file of that name, as a writer
  // would) and the directory is fsync'd. The watcher then sees one event.
  // On error nothing is left at root/rel.
  absl::Status Write(absl::string_view rel, absl::string_view content) const;

  // Every dead letter under root/.dead-letter/ (recursively, never
  // following symlinks), with its note; sorted by rel. Empty when there is
  // no .dead-letter/ directory.
  absl::StatusOr<std::vector<DeadLetterEntry>> ListDeadLetters() const;
  // Moves root/.dead-letter/<rel> back to root/<rel>, where it is a new
  // event, and removes its note. NotFound if there is no such dead letter;
  // AlreadyExists if an event file root/<rel> is pending (nothing moves).
  absl::Status ReplayDeadLetter(absl::string_view rel) const;
  // Deletes root/.dead-letter/<rel> and its note. NotFound if missing.
  absl::Status PurgeDeadLetter(absl::string_view rel) const;

  const std::string& root() const { return root_; }

 private:
  const std::string root_;
};

}  // namespace dispatchd::agent

#endif  // DISPATCHD_AGENT_SPOOL_H_
