// Minimal leveled logging to stderr:
//   LOG(INFO) << "dispatched " << id;
//   CHECK(invariant) << "context";   // aborts: for broken invariants only
// Lines look like: 2026-11-22T10:00:00.123456Z I agent/watcher.cc:42] text
// Thread-safe: a line is never split or interleaved with another. Outside
// a LogBatch each line is written with one write(2) as it ends.
//
// A LogBatch collects the lines its thread writes while it is open and
// writes them together, in order, with one write(2) when the outermost
// batch of the thread closes: for a unit of work that logs a line per
// item (the controller's "delivered" lines of one agent batch), so that
// the lines cost one system call rather than one each. Lines at WARNING and
// above are never held: one of them writes the batch so far and itself at
// once. A batch is also written when it passes kLogBatchBytes. A process
// that dies with a batch open (a signal; CHECK writes it first) loses that
// batch's lines, at most one unit of work.
#ifndef DISPATCHD_COMMON_LOGGING_H_
#define DISPATCHD_COMMON_LOGGING_H_

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <ostream>
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

// A batch is written before it closes once it holds this many bytes.
constexpr size_t kLogBatchBytes = size_t{64} << 10;

// Holds the lines this thread logs below WARNING until the outermost
// LogBatch of the thread closes (see above). Nests; not movable.
class LogBatch {
 public:
  LogBatch();
  ~LogBatch();
  LogBatch(const LogBatch&) = delete;
  LogBatch& operator=(const LogBatch&) = delete;
};

class LogStream;

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream();
  // Appends the pieces to the line as they are, without the stream's
  // formatting: for the lines written once per delivery.
  void Append(std::initializer_list<absl::string_view> pieces);

 private:
  LogLevel level_;
  // The thread's reusable stream, or owned_ when that one is in use (a LOG
  // in the arguments of another) or gone (a LOG at thread exit).
  LogStream* stream_;
  std::unique_ptr<LogStream> owned_;
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
