// Fuzzes how forwarding destinations are read: the list as a user writes it
// (DISPATCHER_FORWARD_DESTINATION split by DISPATCHER_FORWARD_DELIMITER, or
// the --forward-destination / --forward-delimiter flags;
// cmd/dispatchd/options.h), each destination (controller/forward_destination.h)
// and the http(s) URLs (sinks/http_sink.h).
//
// Input: text. The first line is the delimiter (empty: the default ','), the
// rest the destination list.
//
// Invariants:
// - the environment and the flags give the same list; its entries are
//   non-empty, trimmed and free of the delimiter;
// - a parsed destination keeps the text as written; its kind follows the
//   scheme, in any letter case; an http(s) one has a URL that ParseHttpUrl
//   takes apart into a host without separators, a port in 1..65535 and a
//   target that starts with '/' and holds no space or control character;
//   a file one names a path that is the end of the text, not empty, not a
//   directory; a log one has a name of letters, digits, '.', '-', '_'.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "cmd/dispatchd/options.h"
#include "controller/forward_destination.h"
#include "sinks/http_sink.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using dispatchd::controller::ForwardDestination;

void CheckDestination(const std::string& uri) {
  absl::StatusOr<ForwardDestination> d = dispatchd::controller::ParseForwardDestination(uri);
  // The scheme is case-insensitive: the same text with the scheme's case
  // flipped parses the same way.
  std::string flipped = uri;
  const size_t colon = uri.find(':');
  for (size_t i = 0; colon != std::string::npos && i < colon; ++i) {
    const unsigned char c = static_cast<unsigned char>(flipped[i]);
    flipped[i] = absl::ascii_isupper(c) ? absl::ascii_tolower(c) : absl::ascii_toupper(c);
  }
  absl::StatusOr<ForwardDestination> f = dispatchd::controller::ParseForwardDestination(flipped);
  FUZZ_CHECK(d.ok() == f.ok()) << "'" << uri << "' and '" << flipped << "' parse differently";
  if (!d.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(d.status())) << d.status();
    return;
  }
  FUZZ_CHECK(f->kind == d->kind) << uri;
  FUZZ_CHECK(d->uri == uri) << "destination rewritten: " << d->uri;
  const std::string scheme = absl::AsciiStrToLower(uri.substr(0, colon));
  for (char c : uri) {
    FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7F) << "control character kept";
  }
  switch (d->kind) {
    case ForwardDestination::Kind::kHttp: {
      FUZZ_CHECK(scheme == "http" || scheme == "https") << uri;
      absl::StatusOr<dispatchd::sinks::HttpUrl> url = dispatchd::sinks::ParseHttpUrl(d->target);
      FUZZ_CHECK(url.ok()) << url.status();
      FUZZ_CHECK((url->scheme == dispatchd::sinks::HttpUrl::Scheme::kHttps) == (scheme == "https"));
      FUZZ_CHECK(!url->host.empty()) << uri;
      FUZZ_CHECK(url->host.find_first_of("/?#@[] ") == std::string::npos)
          << "host '" << url->host << "' of " << uri;
      FUZZ_CHECK(url->port >= 1 && url->port <= 65535) << url->port;
      FUZZ_CHECK(absl::StartsWith(url->target, "/")) << url->target;
      for (char c : url->target) {
        FUZZ_CHECK(static_cast<unsigned char>(c) > 0x20 && c != 0x7F)
            << "request target would break the request line: " << url->target;
      }
      FUZZ_CHECK(url->target.find('#') == std::string::npos) << url->target;
      break;
    }
    case ForwardDestination::Kind::kFile:
      FUZZ_CHECK(scheme == "file") << uri;
      FUZZ_CHECK(!d->target.empty() && absl::EndsWith(uri, d->target)) << uri;
      FUZZ_CHECK(!absl::EndsWith(d->target, "/")) << uri;
      FUZZ_CHECK(d->target.find('?') == std::string::npos) << uri;
      break;
    case ForwardDestination::Kind::kLog:
      FUZZ_CHECK(scheme == "log") << uri;
      for (char c : d->target) {
        FUZZ_CHECK(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
                   c == '_')
            << uri;
      }
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  // Whatever arrives through the environment or argv is a C string.
  input = input.substr(0, input.find('\0'));
  const size_t newline = input.find('\n');
  const std::string delimiter = newline == std::string::npos ? "" : input.substr(0, newline);
  const std::string value = newline == std::string::npos ? input : input.substr(newline + 1);

  // The fuzzer's own strings only, never the process environment.
  const std::map<std::string, std::string> env = {
      {"DISPATCHER_FORWARD_DESTINATION", value},
      {"DISPATCHER_FORWARD_DELIMITER", delimiter},
      {"DOCKER_HOST", "unix:///fuzz/docker.sock"},
  };
  auto lookup = [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  absl::StatusOr<dispatchd::DispatchdOptions> from_env =
      dispatchd::ParseDispatchdOptions({}, lookup);
  FUZZ_CHECK(from_env.ok()) << from_env.status();
  auto nothing = [](const char*) -> const char* { return nullptr; };
  std::vector<std::string> args = {"--forward-destination", value, "--docker-host",
                                   "unix:///fuzz/docker.sock"};
  if (!delimiter.empty()) {
    args.push_back("--forward-delimiter");
    args.push_back(delimiter);
  }
  absl::StatusOr<dispatchd::DispatchdOptions> from_flags =
      dispatchd::ParseDispatchdOptions(args, nothing);
  if (from_flags.ok()) {
    FUZZ_CHECK(from_flags->forward_destinations == from_env->forward_destinations)
        << "flags and environment split '" << value << "' differently";
  }
  const std::string effective = delimiter.empty() ? "," : delimiter;
  for (const std::string& d : from_env->forward_destinations) {
    FUZZ_CHECK(!d.empty()) << "empty destination";
    FUZZ_CHECK(d == std::string(absl::StripAsciiWhitespace(d))) << "untrimmed: '" << d << "'";
    FUZZ_CHECK(d.find(effective) == std::string::npos) << "'" << d << "' holds the delimiter";
    CheckDestination(d);
  }
  CheckDestination(value);
  return 0;
}
