#include "controller/forward_dead_letter.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "controller/forward_destination.h"
#include "nlohmann/json.hpp"
#include "sinks/event_json.h"
#include "sinks/http_sink.h"

namespace dispatchd {
namespace controller {
namespace {

constexpr size_t kMaxNameChars = 100;

std::string SanitizedName(absl::string_view destination) {
  const std::string label = ForwardDestinationLabel(destination);
  absl::string_view rest = label;
  std::string scheme;
  if (const size_t colon = rest.find(':'); colon != absl::string_view::npos) {
    scheme = absl::AsciiStrToLower(rest.substr(0, colon));
    rest.remove_prefix(colon + 1);
  }
  while (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
  std::string name;
  for (char c : rest) {
    const bool keep = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_';
    if (keep) {
      name.push_back(c);
    } else if (!name.empty() && name.back() != '-') {
      name.push_back('-');
    }
  }
  while (!name.empty() && (name.front() == '.' || name.front() == '-')) name.erase(0, 1);
  if (name.size() > kMaxNameChars) name.resize(kMaxNameChars);
  while (!name.empty() && name.back() == '-') name.pop_back();
  if (name.empty()) name = scheme.empty() ? "destination" : scheme;
  return name;
}

absl::Status OsError(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// mkdir -p, mode 0755.
absl::Status MakeDirectories(const std::string& dir) {
  for (size_t slash = dir.find('/', 1);; slash = dir.find('/', slash + 1)) {
    const std::string prefix = dir.substr(0, slash);
    if (!prefix.empty() && mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return OsError("cannot create directory", prefix);
    }
    if (slash == std::string::npos) break;
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> ForwardDeadLetterFileNames(const std::vector<std::string>& destinations) {
  std::vector<std::string> out;
  std::set<std::string> used;
  for (const std::string& destination : destinations) {
    const std::string base = absl::StrCat("forward-", SanitizedName(destination));
    std::string name = base;
    for (int n = 2; !used.insert(name).second; ++n) name = absl::StrCat(base, "-", n);
    out.push_back(absl::StrCat(name, ".jsonl"));
  }
  return out;
}

std::string ForwardDeadLetterLine(const sinks::Event& event, absl::string_view destination,
                                  int attempts, const absl::Status& reason, absl::Time at) {
  nlohmann::ordered_json line;
  line["dead_lettered_at"] = sinks::FormatRfc3339Utc(at);
  line["destination"] = ForwardDestinationLabel(destination);
  line["attempts"] = attempts;
  if (std::optional<sinks::HttpAnswer> answer = sinks::HttpAnswerOf(reason)) {
    line["status"] = answer->status;
    line["reason"] = answer->reason;
    line["answer"] = answer->body;
    line["answer_truncated"] = answer->body_truncated;
  } else {
    line["error"] = std::string(reason.message());
  }
  line["event"] = nlohmann::ordered_json::parse(sinks::EventToJson(event));
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

absl::Status AppendForwardDeadLetter(const std::string& dir, const std::string& file_name,
                                     absl::string_view line) {
  if (absl::Status status = MakeDirectories(dir); !status.ok()) return status;
  const std::string path = absl::StrCat(dir, "/", file_name);
  const std::string text = absl::StrCat(line, "\n");
  const int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return OsError("cannot open", path);
  const ssize_t n = write(fd, text.data(), text.size());
  const int write_errno = errno;
  if (close(fd) != 0 && n >= 0) return OsError("cannot close", path);
  if (n < 0) {
    errno = write_errno;
    return OsError("cannot append to", path);
  }
  if (static_cast<size_t>(n) != text.size()) {
    return absl::UnavailableError(
        absl::StrCat("short write to ", path, " (", n, " of ", text.size(), " bytes)"));
  }
  return absl::OkStatus();
}

}  // namespace controller
}  // namespace dispatchd
