// Forwarded events that a destination rejected for good (an HTTP 4xx
// answer to every attempt of --forward-max-attempts): each is appended as
// one JSON line to a file of its destination,
// <--forward-dead-letter-dir>/forward-<name>.jsonl, and the destination's
// queue goes on with the next event.
//
//   {"dead_lettered_at":"2026-01-01T00:00:03Z","destination":"http://hooks.example/in",
//    "attempts":5,"status":404,"reason":"Not Found","answer":"no such hook",
//    "answer_truncated":false,"event":{"id":"demo.ping","payload":"hello\n",...}}
//
// - `destination`: the URI without credentials, query or fragment
//   (ForwardDestinationLabel).
// - `attempts`: the attempts the event took; `status` and `reason`: the
//   last answer's; `answer`: the first KiB of its body (bytes that are not
//   UTF-8 become U+FFFD), `answer_truncated` when the body was longer.
// - `event`: the event exactly as it was POSTed (sinks/event_json.h), so a
//   line can be sent again as it is.
//
// Pure functions and a small file appender; thread-safe.
#ifndef DISPATCHD_CONTROLLER_FORWARD_DEAD_LETTER_H_
#define DISPATCHD_CONTROLLER_FORWARD_DEAD_LETTER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sinks/event.h"

namespace dispatchd {
namespace controller {

// The dead-letter file name of each destination, in order:
// "forward-" + the destination without scheme, credentials, query or
// fragment, every run of characters other than letters, digits, '.' and
// '_' made one '-', at most 100 characters, + ".jsonl":
//   "https://user:pw@hooks.example:8443/in?token=x" -> "forward-hooks.example-8443-in.jsonl"
//   "file:/var/log/events.jsonl"                     -> "forward-var-log-events.jsonl.jsonl"
// Names that would be equal (http:// and https:// of the same place, say)
// get "-2", "-3", ... before ".jsonl" in the order given.
std::vector<std::string> ForwardDeadLetterFileNames(const std::vector<std::string>& destinations);

// The line above for `event`, without the trailing newline. `reason` is the
// error the destination's last attempt returned (its HttpAnswer, if any,
// gives status, reason and answer; otherwise they are left out and its
// message is given as "error").
std::string ForwardDeadLetterLine(const sinks::Event& event, absl::string_view destination,
                                  int attempts, const absl::Status& reason, absl::Time at);

// Appends `line` and a newline to dir/file_name with one write(2),
// creating `dir` (and its parents, mode 0755) and the file (0644) when
// missing. Errors name the path.
absl::Status AppendForwardDeadLetter(const std::string& dir, const std::string& file_name,
                                     absl::string_view line);

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_FORWARD_DEAD_LETTER_H_
