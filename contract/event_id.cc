#include "contract/event_id.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
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

absl::StatusOr<std::string> EmitRelativePath(absl::string_view event_id, absl::string_view path,
                                             absl::string_view event_namespace) {
  if (event_id.empty() == path.empty()) {
    return absl::InvalidArgumentError(event_id.empty() ? "give an event id or a path"
                                                       : "give an event id or a path, not both");
  }
  if (!event_id.empty()) {
    if (event_id.find('\0') != absl::string_view::npos) {
      return absl::InvalidArgumentError("the event id contains a NUL byte");
    }
    if (event_id.find('/') != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          "an event id has no '/' (give a path to write a file in a directory)");
    }
    absl::string_view name = event_id;
    if (!event_namespace.empty()) {
      const std::string prefix = absl::StrCat(event_namespace, ".");
      if (!absl::ConsumePrefix(&name, prefix) || name.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("the agent's event namespace is '", event_namespace,
                         "': the event id must start with '", prefix, "'"));
      }
    }
    if (name.front() == '.') {
      return absl::InvalidArgumentError(
          "the event id starts with '.': hidden files are never events");
    }
    if (name.size() > kMaxEmitComponentBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("the event id is longer than ", kMaxEmitComponentBytes, " bytes"));
    }
    return std::string(name);
  }
  if (path.size() > kMaxEmitPathBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the path is longer than ", kMaxEmitPathBytes, " bytes"));
  }
  if (absl::Status valid = ValidateRelativePath(path); !valid.ok()) return valid;
  for (absl::string_view component : absl::StrSplit(path, '/')) {
    if (component.front() == '.') {
      return absl::InvalidArgumentError(absl::StrCat(
          "the path component '", component, "' starts with '.': hidden files are never events"));
    }
    if (component.size() > kMaxEmitComponentBytes) {
      return absl::InvalidArgumentError(absl::StrCat("a path component is longer than ",
                                                     kMaxEmitComponentBytes, " bytes"));
    }
  }
  return std::string(path);
}

}  // namespace dispatchd::contract
