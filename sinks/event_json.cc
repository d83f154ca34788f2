#include "sinks/event_json.h"

#include <cstdint>

#include "absl/strings/escaping.h"
#include "nlohmann/json.hpp"

namespace dispatchd {
namespace sinks {

bool IsValidUtf8(absl::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int length = 0;
    uint32_t code = 0;
    uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      length = 2, code = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3, code = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4, code = c & 0x07, min = 0x10000;
    } else {
      return false;  // a continuation byte or 0xF8..0xFF where a sequence starts
    }
    if (end - p < length) return false;
    for (int i = 1; i < length; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      code = (code << 6) | (p[i] & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    p += length;
  }
  return true;
}

std::string FormatRfc3339Utc(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", time, absl::UTCTimeZone());
}

std::string EventToJson(const Event& event) {
  nlohmann::ordered_json json;
  json["id"] = event.id;
  if (IsValidUtf8(event.payload)) {
    json["payload"] = event.payload;
  } else {
    json["payload"] = absl::Base64Escape(event.payload);
    json["payload_encoding"] = "base64";
  }
  json["payload_truncated"] = event.payload_truncated;
  json["host"] = event.source_host;
  json["path"] = event.path;
  json["time"] = FormatRfc3339Utc(event.time);
  // Ids, hosts and paths come from file names, which need not be UTF-8:
  // replace what is not rather than throw.
  return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace sinks
}  // namespace dispatchd
