#include "controller/forward_destination.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "sinks/file_sink.h"
#include "sinks/http_sink.h"
#include "sinks/log_sink.h"

namespace dispatchd {
namespace controller {
namespace {

constexpr char kSupported[] = "supported: http://, https://, file: and log:";

// RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
bool IsScheme(absl::string_view s) {
  if (s.empty() || !absl::ascii_isalpha(static_cast<unsigned char>(s.front()))) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

// Errors name the destination without its credentials, query or fragment
// (they end up in logs), also where `why` quotes it.
absl::Status Malformed(absl::string_view uri, absl::string_view why) {
  const std::string label = ForwardDestinationLabel(uri);
  const std::string reason =
      uri.empty() ? std::string(why) : absl::StrReplaceAll(why, {{uri, label}});
  return absl::InvalidArgumentError(
      absl::StrCat("malformed forwarding destination '", label, "': ", reason));
}

}  // namespace

absl::StatusOr<ForwardDestination> ParseForwardDestination(absl::string_view uri) {
  for (char c : uri) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
      return Malformed(uri, "control characters are not allowed");
    }
  }
  const size_t colon = uri.find(':');
  if (colon == absl::string_view::npos || !IsScheme(uri.substr(0, colon))) {
    return Malformed(uri, absl::StrCat("it does not start with a scheme (", kSupported, ")"));
  }
  const std::string scheme = absl::AsciiStrToLower(uri.substr(0, colon));
  absl::string_view rest = uri.substr(colon + 1);
  ForwardDestination out;
  out.uri = std::string(uri);
  if (scheme == "http" || scheme == "https") {
    absl::StatusOr<sinks::HttpUrl> url = sinks::ParseHttpUrl(uri);
    if (!url.ok()) return Malformed(uri, url.status().message());
    out.kind = ForwardDestination::Kind::kHttp;
    out.target = std::string(uri);
    return out;
  }
  if (scheme == "file") {
    if (absl::ConsumePrefix(&rest, "//")) {
      // file:///abs/path or file://localhost/abs/path
      if (!absl::ConsumePrefix(&rest, "localhost") && !absl::StartsWith(rest, "/")) {
        return Malformed(uri, "only local files (file:///path or file:/path) are supported");
      }
      if (!absl::StartsWith(rest, "/")) return Malformed(uri, "expected a path after the host");
    }
    if (rest.find('?') != absl::string_view::npos) {
      return Malformed(uri, "options (?...) are not supported");
    }
    if (rest.empty()) return Malformed(uri, "the path is empty");
    if (absl::EndsWith(rest, "/")) return Malformed(uri, "the path names a directory");
    out.kind = ForwardDestination::Kind::kFile;
    out.target = std::string(rest);
    return out;
  }
  if (scheme == "log") {
    if (rest.find('?') != absl::string_view::npos) {
      return Malformed(uri, "options (?...) are not supported");
    }
    for (char c : rest) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' &&
          c != '_') {
        return Malformed(uri, "a log name may hold letters, digits, '.', '-' and '_'");
      }
    }
    out.kind = ForwardDestination::Kind::kLog;
    out.target = std::string(rest);
    return out;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown scheme '", uri.substr(0, colon),
                                                 "' in forwarding destination '",
                                                 ForwardDestinationLabel(uri), "' (", kSupported,
                                                 ")"));
}

std::string ForwardDestinationLabel(absl::string_view destination) {
  absl::string_view d = destination;
  if (size_t cut = d.find_first_of("?#"); cut != absl::string_view::npos) d = d.substr(0, cut);
  const size_t scheme_end = d.find("://");
  if (scheme_end == absl::string_view::npos) return std::string(d);
  const size_t authority = scheme_end + 3;
  const size_t path = d.find('/', authority);
  const size_t at = d.substr(0, path).rfind('@');
  if (at == absl::string_view::npos || at < authority) return std::string(d);
  return absl::StrCat(d.substr(0, authority), d.substr(at + 1));
}

absl::StatusOr<std::shared_ptr<sinks::Sink>> NewDestinationSink(
    const ForwardDestination& destination, const DestinationSinkOptions& options) {
  switch (destination.kind) {
    case ForwardDestination::Kind::kHttp: {
      absl::StatusOr<std::shared_ptr<sinks::HttpSink>> sink = sinks::HttpSink::Create(
          destination.target, {.timeout = options.http_timeout, .ca_file = options.ca_file});
      if (!sink.ok()) return sink.status();
      return std::shared_ptr<sinks::Sink>(*std::move(sink));
    }
    case ForwardDestination::Kind::kFile:
      return std::shared_ptr<sinks::Sink>(std::make_shared<sinks::FileSink>(destination.target));
    case ForwardDestination::Kind::kLog:
      return std::shared_ptr<sinks::Sink>(std::make_shared<sinks::LogSink>(destination.target));
  }
  return absl::InternalError("unknown destination kind");
}

}  // namespace controller
}  // namespace dispatchd
