#include "common/logging.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace dispatchd {
namespace {
std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};
}  // namespace

void SetMinLogLevel(LogLevel level) { g_min_level.store(static_cast<int>(level)); }
LogLevel MinLogLevel() { return static_cast<LogLevel>(g_min_level.load()); }

bool ParseLogLevel(absl::string_view text, LogLevel* level) {
  std::string t = absl::AsciiStrToLower(text);
  if (t == "debug") *level = LogLevel::kDebug;
  else if (t == "info") *level = LogLevel::kInfo;
  else if (t == "warning" || t == "warn") *level = LogLevel::kWarning;
  else if (t == "error") *level = LogLevel::kError;
  else return false;
  return true;
}

void FormatLogTime(absl::Time t, char out[kLogTimeSize]) {
  // Formatting the date is most of the cost of a log line; it changes once
  // a second, so each thread keeps the last one it formatted.
  thread_local int64_t cached_second = INT64_MIN;
  thread_local char cached[20];  // "YYYY-MM-DDTHH:MM:SS"
  const int64_t second = absl::ToUnixSeconds(t);
  if (second != cached_second) {
    const std::string date =
        absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(second), absl::UTCTimeZone());
    if (date.size() != sizeof(cached) - 1) {
      // Outside years 1000-9999: no cache, the general formatter.
      const std::string full = absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
      const size_t n = std::min(full.size(), static_cast<size_t>(kLogTimeSize) - 1);
      memcpy(out, full.data(), n);
      out[n] = '\0';
      return;
    }
    memcpy(cached, date.data(), date.size());
    cached[date.size()] = '\0';
    cached_second = second;
  }
  int64_t micros = absl::ToUnixMicros(t) - second * 1000000;
  memcpy(out, cached, 19);
  out[19] = '.';
  for (int i = 25; i >= 20; --i) {
    out[i] = static_cast<char>('0' + micros % 10);
    micros /= 10;
  }
  out[26] = 'Z';
  out[27] = '\0';
}

LogMessage::LogMessage(LogLevel level, const char* file, int line) : level_(level) {
  static const char kLetters[] = "DIWEF";
  char now[kLogTimeSize];
  FormatLogTime(absl::Now(), now);
  stream_ << now << ' ' << kLetters[static_cast<int>(level)] << ' ' << file << ':' << line
          << "] ";
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  const std::string text = stream_.str();
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(STDERR_FILENO, text.data() + off, text.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  if (level_ == LogLevel::kFatal) std::abort();
}

}  // namespace dispatchd
