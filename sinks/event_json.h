// The JSON form of a forwarded event: one object, on one line, with the keys
// in this order:
//
//   {"id":"demo.some-event","payload":"hello\n","payload_truncated":false,
//    "host":"host-a","path":"demo/some-event","time":"2024-05-01T10:00:00.123Z"}
//
// `payload` is the file content as a JSON string when it is valid UTF-8;
// otherwise it is base64 (RFC 4648, with padding) and the object gains
// "payload_encoding":"base64" after it. `time` is RFC 3339 in UTC with as
// many fractional digits as needed. Pure functions; thread-safe.
#ifndef DISPATCHD_SINKS_EVENT_JSON_H_
#define DISPATCHD_SINKS_EVENT_JSON_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sinks/event.h"

namespace dispatchd {
namespace sinks {

// The object above, without a trailing newline. Never fails.
std::string EventToJson(const Event& event);

// True when `text` is well-formed UTF-8 (no overlong forms, no surrogates,
// nothing above U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// "2024-05-01T10:00:00.123Z": RFC 3339, UTC.
std::string FormatRfc3339Utc(absl::Time time);

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_EVENT_JSON_H_
