// Event ids: how a file's path under the events directory becomes the id
// that subscriptions name (README.md, "Event files").
//
//   some-dir/some-sub-dir/the-event-file -> some-dir.some-sub-dir.the-event-file
//   a/b.txt                              -> a.b.txt
//   with namespace "ns": a/b.txt         -> ns.a.b.txt
//
// Pure functions; thread-safe.
#ifndef DISPATCHD_CONTRACT_EVENT_ID_H_
#define DISPATCHD_CONTRACT_EVENT_ID_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dispatchd::contract {

// Maps a path relative to the events directory to its event id: every '/'
// becomes '.', everything else (dots, extensions) is kept. A non-empty
// `event_namespace` is prepended with a '.' separator.
// REQUIRES: ValidateRelativePath(relative_path).ok().
std::string EventIdFromRelativePath(absl::string_view relative_path,
                                    absl::string_view event_namespace);

// True if any component of `relative_path` starts with '.': hidden files and
// everything inside hidden directories (including `.dead-letter/`) are never
// events.
bool IsIgnoredRelativePath(absl::string_view relative_path);

// OK if `relative_path` names something strictly inside the events
// directory: not empty, not absolute, no empty, "." or ".." components, no
// NUL byte. InvalidArgument otherwise.
absl::Status ValidateRelativePath(absl::string_view relative_path);

// The longest file name component and relative path an Emit may write.
inline constexpr size_t kMaxEmitComponentBytes = 255;
inline constexpr size_t kMaxEmitPathBytes = 1024;

// The relative path an Emit through the API writes, from the event id or the
// path it names (exactly one non-empty). An id becomes one file at the top
// of the events directory, named by the id (without the agent's
// `event_namespace` and its '.', which the id must then start with), so
// that the file's event id is the id asked for. InvalidArgument naming the
// rule broken: neither or both given; empty, absolute, '.' or '..'
// components; a hidden component (such files are never events); a NUL
// byte; a '/' in an id; a component over kMaxEmitComponentBytes or a path
// over kMaxEmitPathBytes; an id outside the namespace.
absl::StatusOr<std::string> EmitRelativePath(absl::string_view event_id, absl::string_view path,
                                             absl::string_view event_namespace);

}  // namespace dispatchd::contract

#endif  // DISPATCHD_CONTRACT_EVENT_ID_H_
