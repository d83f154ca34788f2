// Minimal leveled logging to stderr:
//   LOG(INFO) << "dispatched " << id;
//   CHECK(invariant) << "context";   // aborts: for broken invariants only
// Lines look like: 2026-11-22T10:00:00.123456Z I agent/watcher.cc:42] text
// Thread-safe: each message is written with one write(2).
#ifndef DISPATCHD_COMMON_LOGGING_H_
#define DISPATCHD_COMMON_LOGGING_H_

#include <sstream>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace dispatchd {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
// Accepts debug, info, warning (warn), error. Returns false otherwise.
bool ParseLogLevel(absl::string_view text, LogLevel* level);

// "2026-11-22T03:04:05.123456Z" (UTC, microseconds) and its NUL: the
// time stamp of every log line.
constexpr int kLogTimeSize = 28;
void FormatLogTime(absl::Time t, char out[kLogTimeSize]);

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Swallows the stream when a level is disabled.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace dispatchd

#define DISPATCHD_LOG_LEVEL_DEBUG ::dispatchd::LogLevel::kDebug
#define DISPATCHD_LOG_LEVEL_INFO ::dispatchd::LogLevel::kInfo
#define DISPATCHD_LOG_LEVEL_WARNING ::dispatchd::LogLevel::kWarning
#define DISPATCHD_LOG_LEVEL_ERROR ::dispatchd::LogLevel::kError
#define DISPATCHD_LOG_LEVEL_FATAL ::dispatchd::LogLevel::kFatal

#define LOG(severity)                                                    \
  (DISPATCHD_LOG_LEVEL_##severity < ::dispatchd::MinLogLevel())          \
      ? (void)0                                                          \
      : ::dispatchd::LogVoidify() &                                      \
            ::dispatchd::LogMessage(DISPATCHD_LOG_LEVEL_##severity, __FILE__, __LINE__).stream()

#define CHECK(cond)                                                                     \
  (cond) ? (void)0                                                                      \
         : ::dispatchd::LogVoidify() &                                                  \
               ::dispatchd::LogMessage(::dispatchd::LogLevel::kFatal, __FILE__, __LINE__) \
                       .stream()                                                        \
                   << "Check failed: " #cond " "

#endif  // DISPATCHD_COMMON_LOGGING_H_
