#include "common/logging.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <streambuf>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace dispatchd {

// An ostream that appends to a string it owns, reset for every line: the
// thread's one is reused, so a line allocates nothing once the thread has
// written a line as long (std::ostringstream builds a locale and a buffer
// for every line, and copies its text out).
class LogStream final : public std::ostream {
 public:
  LogStream() : std::ostream(nullptr) { rdbuf(&buf_); }

  // Empty, with the default format flags (a line that wrote std::hex does
  // not pass it on to the next).
  void Reset() {
    buf_.text.clear();
    clear();
    flags(std::ios_base::dec | std::ios_base::skipws);
    precision(6);
    width(0);
    fill(' ');
  }
  std::string& text() { return buf_.text; }

 private:
  struct Buf final : std::streambuf {
    int_type overflow(int_type c) override {
      if (!traits_type::eq_int_type(c, traits_type::eof())) text.push_back(static_cast<char>(c));
      return traits_type::not_eof(c);
    }
    std::streamsize xsputn(const char* s, std::streamsize n) override {
      text.append(s, static_cast<size_t>(n));
      return n;
    }
    std::string text;
  };
  Buf buf_;
};

namespace {

std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};

// A thread's buffers keep at most this much capacity between lines.
constexpr size_t kKeepCapacity = size_t{256} << 10;

// Every write of the process goes through this lock: a batch larger than a
// pipe's atomic write size (PIPE_BUF) is then never interleaved with
// another thread's line.
std::mutex& WriteMutex() {
  static std::mutex* mu = new std::mutex;  // never destroyed: used at exit
  return *mu;
}

void WriteAll(const char* data, size_t size) {
  std::lock_guard<std::mutex> lock(WriteMutex());
  while (size > 0) {
    const ssize_t n = ::write(STDERR_FILENO, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data += n;
    size -= static_cast<size_t>(n);
  }
}

struct ThreadLog {
  ThreadLog() { alive = true; }
  ~ThreadLog() {
    if (!batch.empty()) WriteAll(batch.data(), batch.size());
    alive = false;
  }
  void WriteBatch() {
    WriteAll(batch.data(), batch.size());
    batch.clear();
    if (batch.capacity() > kKeepCapacity) std::string().swap(batch);
  }

  LogStream stream;  // the line being written
  bool stream_busy = false;
  int batch_depth = 0;
  std::string batch;  // lines of the open batch
  // Trivially destructible, so still readable while thread-locals are
  // destroyed: false once `ThreadLog` is gone (a LOG from another
  // thread-local's destructor then writes directly).
  static thread_local bool alive;
};
thread_local bool ThreadLog::alive = false;

ThreadLog* Local() {
  thread_local ThreadLog log;
  return ThreadLog::alive ? &log : nullptr;
}

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
  int micros = static_cast<int>(absl::ToUnixMicros(t) - second * 1000000);
  // date ".uuuuuuZ", cut to the room there is (a year of five digits).
  char line[64];
  const size_t date = std::min(cached_date.size(), sizeof(line) - 9);
  std::memcpy(line, cached_date.data(), date);
  char* p = line + date;
  *p++ = '.';
  for (int i = 6; i-- > 0;) {
    p[i] = static_cast<char>('0' + micros % 10);
    micros /= 10;
  }
  p += 6;
  *p++ = 'Z';
  const size_t n = std::min(static_cast<size_t>(p - line), static_cast<size_t>(kLogTimeSize - 1));
  std::memcpy(out, line, n);
  out[n] = '\0';
}

LogBatch::LogBatch() {
  if (ThreadLog* log = Local()) ++log->batch_depth;
}

LogBatch::~LogBatch() {
  ThreadLog* log = Local();
  if (log == nullptr || log->batch_depth == 0) return;
  if (--log->batch_depth == 0 && !log->batch.empty()) log->WriteBatch();
}

LogMessage::LogMessage(LogLevel level, const char* file, int line) : level_(level) {
  ThreadLog* log = Local();
  if (log != nullptr && !log->stream_busy) {
    log->stream_busy = true;
    stream_ = &log->stream;
  } else {
    owned_ = std::make_unique<LogStream>();
    stream_ = owned_.get();
  }
  stream_->Reset();
  static const char kLetters[] = "DIWEF";
  char now[kLogTimeSize];
  FormatLogTime(absl::Now(), now);
  std::string& text = stream_->text();
  text.append(now);
  text.push_back(' ');
  text.push_back(kLetters[static_cast<int>(level)]);
  text.push_back(' ');
  text.append(file);
  text.push_back(':');
  absl::StrAppend(&text, line, "] ");
}

std::ostream& LogMessage::stream() { return *stream_; }

void LogMessage::Append(std::initializer_list<absl::string_view> pieces) {
  std::string& text = stream_->text();
  for (absl::string_view piece : pieces) text.append(piece.data(), piece.size());
}

LogMessage::~LogMessage() {
  std::string& text = stream_->text();
  text.push_back('\n');
  ThreadLog* log = Local();
  if (log != nullptr && log->batch_depth > 0 && level_ < LogLevel::kWarning) {
    log->batch.append(text);
    if (log->batch.size() >= kLogBatchBytes) log->WriteBatch();
  } else if (log != nullptr && !log->batch.empty()) {
    // Not held: the lines before it first, in the same write.
    log->batch.append(text);
    log->WriteBatch();
  } else {
    WriteAll(text.data(), text.size());
  }
  if (log != nullptr && stream_ == &log->stream) {
    if (text.capacity() > kKeepCapacity) std::string().swap(text);
    log->stream_busy = false;
  }
  if (level_ == LogLevel::kFatal) std::abort();
}

}  // namespace dispatchd
