// Forwarding destinations as users write them (DISPATCHER_FORWARD_DESTINATION,
// --forward-destination), and the sink that delivers to each.
//
//   http://host[:port]/path, https://...  POST each event as JSON
//   file:/abs/path, file:///abs/path     append one JSON object per line
//   file:relative/path                   the same, relative to the working
//                                        directory
//   log:, log:name                       one INFO log line per event
//
// Schemes are case-insensitive. The old dispatcher's Camel options
// ("?option=value") do not exist here and are rejected. Pure functions;
// thread-safe.
#ifndef DISPATCHD_CONTROLLER_FORWARD_DESTINATION_H_
#define DISPATCHD_CONTROLLER_FORWARD_DESTINATION_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sinks/sink.h"

namespace dispatchd {
namespace controller {

struct ForwardDestination {
  enum class Kind { kHttp, kFile, kLog };  // kHttp covers https
  Kind kind = Kind::kLog;
  std::string uri;     // as written
  std::string target;  // kHttp: the URL; kFile: the path; kLog: the name (may be empty)
};

// InvalidArgument naming `uri` for an unknown scheme ("unknown scheme 'ftp'
// in forwarding destination 'ftp://x' ...") or a malformed destination.
absl::StatusOr<ForwardDestination> ParseForwardDestination(absl::string_view uri);

// How a destination is named where its URI could leak a secret (metric
// labels, dead-letter records): without credentials, query or fragment.
// "https://user:secret@host:8443/hook?token=x" -> "https://host:8443/hook".
std::string ForwardDestinationLabel(absl::string_view destination);

struct DestinationSinkOptions {
  absl::Duration http_timeout = absl::Seconds(10);  // per attempt
  std::string ca_file;  // https: PEM bundle to trust; empty: the system CA store
};

// The sink for `destination`: HttpSink, FileSink or LogSink. InvalidArgument
// when it cannot be set up (e.g. an unreadable CA file).
absl::StatusOr<std::shared_ptr<sinks::Sink>> NewDestinationSink(
    const ForwardDestination& destination, const DestinationSinkOptions& options);

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_FORWARD_DESTINATION_H_
