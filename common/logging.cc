#include "common/logging.h"

#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
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
  thread_local std::string cached_date;  // "YYYY-MM-DDTHH:MM:SS"
  const int64_t second = absl::ToUnixSeconds(t);  // rounds down, also before 1970
  if (second != cached_second) {
    cached_date =
        absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(second), absl::UTCTimeZone());
    cached_second = second;
  }
  const int64_t micros = absl::ToUnixMicros(t) - second * 1000000;
  absl::SNPrintF(out, kLogTimeSize, "%s.%06dZ", cached_date, micros);
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
