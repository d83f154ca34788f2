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

}  // namespace dispatchd::contract

#endif  // DISPATCHD_CONTRACT_EVENT_ID_H_
