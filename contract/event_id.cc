#include "contract/event_id.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace dispatchd::contract {

std::string EventIdFromRelativePath(absl::string_view relative_path,
                                    absl::string_view event_namespace) {
  std::string id(relative_path);
  std::replace(id.begin(), id.end(), '/', '.');
  if (event_namespace.empty()) return id;
  return absl::StrCat(event_namespace, ".", id);
}

bool IsIgnoredRelativePath(absl::string_view relative_path) {
  for (absl::string_view component : absl::StrSplit(relative_path, '/')) {
    if (!component.empty() && component.front() == '.') return true;
  }
  return false;
}

absl::Status ValidateRelativePath(absl::string_view relative_path) {
  if (relative_path.empty()) {
    return absl::InvalidArgumentError("empty relative path");
  }
  if (relative_path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("relative path contains a NUL byte");
  }
  if (relative_path.front() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("path is absolute, not relative: ", relative_path));
  }
  for (absl::string_view component : absl::StrSplit(relative_path, '/')) {
    if (component.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("relative path has an empty component: ", relative_path));
    }
    if (component == "." || component == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("relative path has a '", component, "' component: ", relative_path));
    }
  }
  return absl::OkStatus();
}

}  // namespace dispatchd::contract
