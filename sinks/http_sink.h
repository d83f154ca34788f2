// HttpSink: POSTs each event as JSON (EventToJson, Content-Type
// application/json) to an http:// or https:// URL, one request per event on
// a fresh connection (Boost.Beast; TLS through OpenSSL).
//
// Write returns OK for a 2xx answer. Any other answer is an error carrying
// the status code (5xx, 408 and 429 are Unavailable; 4xx map to the closest
// code) and the answer itself (HttpAnswerOf), as are connection, TLS and
// timeout failures (Unavailable, DeadlineExceeded; no answer); a
// RetryingSink in front of it retries. IsPermanentRejection tells an answer
// that retrying will not change (a 4xx) from a transient failure. Each
// attempt is bounded by `timeout` (resolve, connect, TLS handshake, request
// and response together).
//
// https verifies the peer's certificate chain and host name, against the
// system CA store unless `ca_file` names a PEM bundle to trust instead.
//
// Thread-safe; concurrent Writes use separate connections. Close makes a
// Write in progress return ClosedError() at once (it cancels the request),
// so a Queue in front of it can shut down on time.
#ifndef DISPATCHD_SINKS_HTTP_SINK_H_
#define DISPATCHD_SINKS_HTTP_SINK_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sinks/sink.h"

namespace dispatchd {
namespace sinks {

// An http:// or https:// URL taken apart.
struct HttpUrl {
  enum class Scheme { kHttp, kHttps };
  Scheme scheme = Scheme::kHttp;
  std::string host;    // "example.com", "127.0.0.1", "::1" (no brackets)
  int port = 0;        // explicit or the scheme's default (80, 443)
  std::string target;  // path and query, at least "/"
};

// Parses "http[s]://host[:port][/path][?query]" (scheme case-insensitive;
// IPv6 literals in brackets). InvalidArgument for anything else, including
// user information ("user@"), fragments, an empty host, a bad port, and
// spaces or control characters.
absl::StatusOr<HttpUrl> ParseHttpUrl(absl::string_view url);

// The answer of a destination that did not accept an event (not 2xx), as
// the error of HttpSink::Write carries it.
struct HttpAnswer {
  int status = 0;               // 404
  std::string reason;           // "Not Found", as sent
  std::string body;             // the first kHttpAnswerExcerptBytes bytes of the body
  bool body_truncated = false;  // the body was longer than `body`
};
inline constexpr size_t kHttpAnswerExcerptBytes = 1024;

// The answer `status` carries, if it is an error of HttpSink::Write that
// got one (not for connection, TLS or timeout failures).
std::optional<HttpAnswer> HttpAnswerOf(const absl::Status& status);

// True when `status` carries an answer that retrying the same request will
// not change: a 4xx other than 408 (Request Timeout), 425 (Too Early) and
// 429 (Too Many Requests). 5xx answers and failures without an answer are
// transient.
bool IsPermanentRejection(const absl::Status& status);

struct HttpSinkOptions {
  absl::Duration timeout = absl::Seconds(10);
  std::string ca_file;  // PEM; empty: the system's default CA store
};

class HttpSink final : public Sink {
 public:
  using Options = HttpSinkOptions;

  // InvalidArgument for a malformed URL or an unreadable `ca_file`.
  static absl::StatusOr<std::shared_ptr<HttpSink>> Create(absl::string_view url,
                                                          Options options = Options());
  ~HttpSink() override;

  absl::Status Write(EventPtr event) override;
  absl::Status Close() override;

  class Impl;  // in http_sink.cc

 private:
  explicit HttpSink(std::unique_ptr<Impl> impl);
  const std::unique_ptr<Impl> impl_;
};

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_HTTP_SINK_H_
