// Fuzzes how paths become event ids (contract/event_id.h).
//
// Input: text. Everything before the first newline is the event namespace,
// the rest is used both as a relative path and as an event id.
//
// Invariants:
// - ValidateRelativePath accepts exactly the non-empty, relative, NUL-free
//   paths without empty, "." or ".." components;
// - IsIgnoredRelativePath is true exactly when a component starts with '.';
// - EventIdFromRelativePath replaces '/' by '.' and prefixes "ns.";
// - what EmitRelativePath accepts is a valid, non-hidden path within the
//   length limits, and for an id it is one file whose event id is that id.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "contract/event_id.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace dispatchd::contract;

void CheckPath(const std::string& path, const std::string& ns) {
  const std::vector<std::string> components = absl::StrSplit(path, '/');
  bool well_formed = !path.empty() && path.find('\0') == std::string::npos && path[0] != '/';
  bool hidden = false;
  for (const std::string& c : components) {
    if (c.empty() || c == "." || c == "..") well_formed = false;
    if (!c.empty() && c[0] == '.') hidden = true;
  }
  const absl::Status valid = ValidateRelativePath(path);
  FUZZ_CHECK(valid.ok() == well_formed) << "ValidateRelativePath(" << path << "): " << valid;
  FUZZ_CHECK(IsIgnoredRelativePath(path) == hidden) << path;
  if (valid.ok()) {
    std::string want = path;
    for (char& c : want) {
      if (c == '/') c = '.';
    }
    if (!ns.empty()) want = absl::StrCat(ns, ".", want);
    FUZZ_CHECK(EventIdFromRelativePath(path, ns) == want) << path;
  }

  absl::StatusOr<std::string> emit = EmitRelativePath("", path, ns);
  if (emit.ok()) {
    FUZZ_CHECK(*emit == path) << "Emit rewrote the path " << path << " to " << *emit;
    FUZZ_CHECK(valid.ok() && !hidden) << "Emit accepted " << path;
    FUZZ_CHECK(path.size() <= kMaxEmitPathBytes) << path.size();
    for (const std::string& c : components) FUZZ_CHECK(c.size() <= kMaxEmitComponentBytes);
  } else if (valid.ok() && !hidden && path.size() <= kMaxEmitPathBytes) {
    bool long_component = false;
    for (const std::string& c : components) long_component |= c.size() > kMaxEmitComponentBytes;
    FUZZ_CHECK(long_component) << "Emit refused the valid path " << path << ": " << emit.status();
  }
  FUZZ_CHECK(!EmitRelativePath("", "", ns).ok());
  if (!path.empty()) FUZZ_CHECK(!EmitRelativePath(path, path, ns).ok()) << "both given";
}

void CheckEventId(const std::string& id, const std::string& ns) {
  absl::StatusOr<std::string> emit = EmitRelativePath(id, "", ns);
  if (!emit.ok()) return;
  FUZZ_CHECK(ValidateRelativePath(*emit).ok()) << "Emit(" << id << ") -> " << *emit;
  FUZZ_CHECK(emit->find('/') == std::string::npos) << *emit;
  FUZZ_CHECK(!IsIgnoredRelativePath(*emit)) << *emit;
  FUZZ_CHECK(emit->size() <= kMaxEmitComponentBytes) << emit->size();
  FUZZ_CHECK(EventIdFromRelativePath(*emit, ns) == id)
      << "the file " << *emit << " written for event id " << id << " (namespace " << ns
      << ") has event id " << EventIdFromRelativePath(*emit, ns);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t newline = input.find('\n');
  const std::string ns = newline == std::string::npos ? "" : input.substr(0, newline);
  const std::string rest = newline == std::string::npos ? input : input.substr(newline + 1);
  CheckPath(rest, ns);
  CheckPath(rest, "");
  CheckEventId(rest, ns);
  CheckEventId(rest, "");
  return 0;
}
