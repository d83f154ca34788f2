#include "sinks/http_sink.h"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "sinks/event_json.h"

namespace dispatchd {
namespace sinks {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr size_t kMaxResponseBodyBytes = 64 * 1024;
constexpr char kAnswerPayloadUrl[] = "type.dispatchd.dev/dispatchd.sinks.HttpAnswer";

// The payload of an error with an answer: "<status>\n<reason>\n<t|f><body>".
void AttachAnswer(absl::Status& status, const HttpAnswer& answer) {
  status.SetPayload(kAnswerPayloadUrl,
                    absl::Cord(absl::StrCat(answer.status, "\n", answer.reason, "\n",
                                            answer.body_truncated ? "t" : "f", answer.body)));
}

bool IsHostChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

absl::Status StatusFromHttp(unsigned code, absl::string_view summary) {
  if (code >= 500 || code == 408 || code == 429) return absl::UnavailableError(summary);
  switch (code) {
    case 400: return absl::InvalidArgumentError(summary);
    case 401: return absl::UnauthenticatedError(summary);
    case 403: return absl::PermissionDeniedError(summary);
    case 404: return absl::NotFoundError(summary);
    case 409: return absl::AbortedError(summary);
    case 413: return absl::ResourceExhaustedError(summary);
    default: return absl::UnknownError(summary);
  }
}

}  // namespace

std::optional<HttpAnswer> HttpAnswerOf(const absl::Status& status) {
  auto payload = status.GetPayload(kAnswerPayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  const std::string text(*payload);
  const size_t first = text.find('\n');
  const size_t second = first == std::string::npos ? first : text.find('\n', first + 1);
  HttpAnswer answer;
  if (second == std::string::npos || second + 1 >= text.size() ||
      !absl::SimpleAtoi(absl::string_view(text).substr(0, first), &answer.status)) {
    return std::nullopt;
  }
  answer.reason = text.substr(first + 1, second - first - 1);
  answer.body_truncated = text[second + 1] == 't';
  answer.body = text.substr(second + 2);
  return answer;
}

bool IsPermanentRejection(const absl::Status& status) {
  std::optional<HttpAnswer> answer = HttpAnswerOf(status);
  if (!answer.has_value()) return false;
  const int code = answer->status;
  return code >= 400 && code < 500 && code != 408 && code != 425 && code != 429;
}

absl::StatusOr<HttpUrl> ParseHttpUrl(absl::string_view url) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("malformed URL '", url, "': ", why));
  };
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) {
      return bad("spaces and control characters are not allowed (percent-encode them)");
    }
  }
  HttpUrl out;
  absl::string_view rest = url;
  if (absl::StartsWithIgnoreCase(rest, "http://")) {
    out.scheme = HttpUrl::Scheme::kHttp;
    out.port = 80;
    rest.remove_prefix(7);
  } else if (absl::StartsWithIgnoreCase(rest, "https://")) {
    out.scheme = HttpUrl::Scheme::kHttps;
    out.port = 443;
    rest.remove_prefix(8);
  } else {
    return bad("expected http:// or https://");
  }
  if (rest.find('#') != absl::string_view::npos) return bad("a fragment (#...) is not allowed");
  const size_t authority_end = rest.find_first_of("/?");
  absl::string_view authority = rest.substr(0, authority_end);
  const absl::string_view target =
      authority_end == absl::string_view::npos ? absl::string_view() : rest.substr(authority_end);
  if (authority.find('@') != absl::string_view::npos) {
    return bad("user information (user@host) is not supported");
  }
  absl::string_view port;
  bool has_port = false;
  if (absl::ConsumePrefix(&authority, "[")) {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return bad("unterminated [IPv6 address]");
    out.host = std::string(authority.substr(0, close));
    absl::string_view after = authority.substr(close + 1);
    has_port = absl::ConsumePrefix(&after, ":");
    if (!has_port && !after.empty()) return bad("junk after ]");
    port = after;
    if (out.host.empty()) return bad("empty host");
    for (char c : out.host) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') {
        return bad("invalid IPv6 address");
      }
    }
  } else {
    const size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    has_port = colon != absl::string_view::npos;
    if (has_port) port = authority.substr(colon + 1);
    if (out.host.empty()) return bad("empty host");
    for (char c : out.host) {
      if (!IsHostChar(c)) return bad("invalid host name");
    }
  }
  if (has_port) {
    int n = 0;
    if (port.empty() || port.size() > 5 ||
        !absl::ascii_isdigit(static_cast<unsigned char>(port.front())) ||
        !absl::SimpleAtoi(port, &n) || n < 1 || n > 65535) {
      return bad("invalid port");
    }
    out.port = n;
  }
  if (target.empty()) {
    out.target = "/";
  } else if (target.front() == '?') {
    out.target = absl::StrCat("/", target);
  } else {
    out.target = std::string(target);
  }
  return out;
}

class HttpSink::Impl {
 public:
  Impl(std::string url, HttpUrl parsed, Options options, std::unique_ptr<ssl::context> tls)
      : url_(std::move(url)),
        parsed_(std::move(parsed)),
        options_(std::move(options)),
        tls_(std::move(tls)) {}

  absl::Status Write(const Event& event) {
    asio::io_context ioc;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return ClosedError();
      running_.insert(&ioc);
    }
    absl::Status status = Post(ioc, EventToJson(event));
    std::lock_guard<std::mutex> lock(mu_);
    running_.erase(&ioc);
    if (closed_) return ClosedError();
    return status;
  }

  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    for (asio::io_context* ioc : running_) ioc->stop();
  }

 private:
  using Deadline = std::chrono::steady_clock::time_point;

  // Runs `ioc` until the operation `start` began has called its handler, the
  // deadline passes or Close stops it. Returns the handler's error, or
  // timed_out / operation_aborted.
  beast::error_code Await(asio::io_context& ioc, Deadline deadline,
                          const std::function<void(std::function<void(beast::error_code)>)>& start) {
    bool done = false;
    beast::error_code result;
    start([&](beast::error_code ec) {
      done = true;
      result = ec;
    });
    {
      // Under the lock, so a Close cannot slip its stop() in before restart().
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return asio::error::operation_aborted;
      ioc.restart();
    }
    while (!done && !ioc.stopped() && std::chrono::steady_clock::now() < deadline) {
      ioc.run_one_until(deadline);
    }
    if (done) return result;
    if (std::chrono::steady_clock::now() >= deadline) return beast::error::timeout;
    return asio::error::operation_aborted;
  }

  absl::Status Failed(absl::string_view step, const beast::error_code& ec) const {
    const std::string message = absl::StrCat("POST ", url_, ": ", step, ": ", ec.message());
    if (ec == beast::error::timeout) return absl::DeadlineExceededError(message);
    return absl::UnavailableError(message);
  }

  template <typename Stream>
  absl::Status Exchange(asio::io_context& ioc, Deadline deadline, Stream& stream,
                        const tcp::resolver::results_type& endpoints, std::string body) {
    beast::error_code ec = Await(ioc, deadline, [&](auto done) {
      beast::get_lowest_layer(stream).async_connect(
          endpoints, [done](beast::error_code e, const tcp::endpoint&) { done(e); });
    });
    if (ec) return Failed("connect", ec);
    if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
      ec = Await(ioc, deadline, [&](auto done) {
        stream.async_handshake(ssl::stream_base::client, [done](beast::error_code e) { done(e); });
      });
      if (ec) return Failed("TLS handshake", ec);
    }
    http::request<http::string_body> request{http::verb::post, parsed_.target, 11};
    request.set(http::field::host, HostHeader());
    request.set(http::field::user_agent, "dispatchd");
    request.set(http::field::content_type, "application/json");
    request.set(http::field::connection, "close");
    request.body() = std::move(body);
    request.prepare_payload();
    ec = Await(ioc, deadline, [&](auto done) {
      http::async_write(stream, request,
                        [done](beast::error_code e, size_t) { done(e); });
    });
    if (ec) return Failed("sending the request", ec);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBodyBytes);
    ec = Await(ioc, deadline, [&](auto done) {
      http::async_read(stream, buffer, parser, [done](beast::error_code e, size_t) { done(e); });
    });
    if (ec && !(ec == http::error::body_limit && parser.is_header_done())) {
      return Failed("reading the response", ec);
    }
    const unsigned code = parser.get().result_int();
    if (code >= 200 && code < 300) return absl::OkStatus();
    const std::string& answered = parser.get().body();
    HttpAnswer answer;
    answer.status = static_cast<int>(code);
    answer.reason = std::string(parser.get().reason().data(), parser.get().reason().size());
    answer.body = answered.substr(0, kHttpAnswerExcerptBytes);
    // A body over the parser's limit is longer than what it holds.
    answer.body_truncated = answered.size() > answer.body.size() || !parser.is_done();
    std::string excerpt = answered.substr(0, 200);
    absl::StripTrailingAsciiWhitespace(&excerpt);
    absl::Status status =
        StatusFromHttp(code, absl::StrCat("POST ", url_, ": HTTP ", code, " ", answer.reason,
                                          excerpt.empty() ? "" : ": ", excerpt));
    AttachAnswer(status, answer);
    return status;
  }

  std::string HostHeader() const {
    const bool v6 = parsed_.host.find(':') != std::string::npos;
    std::string host = v6 ? absl::StrCat("[", parsed_.host, "]") : parsed_.host;
    const int default_port = parsed_.scheme == HttpUrl::Scheme::kHttps ? 443 : 80;
    if (parsed_.port != default_port) absl::StrAppend(&host, ":", parsed_.port);
    return host;
  }

  absl::Status Post(asio::io_context& ioc, std::string body) {
    const Deadline deadline =
        std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(options_.timeout);
    tcp::resolver resolver(ioc);
    tcp::resolver::results_type endpoints;
    beast::error_code ec = Await(ioc, deadline, [&](auto done) {
      resolver.async_resolve(parsed_.host, std::to_string(parsed_.port),
                             [&endpoints, done](beast::error_code e,
                                                tcp::resolver::results_type results) {
                               endpoints = std::move(results);
                               done(e);
                             });
    });
    if (ec) return Failed(absl::StrCat("resolving ", parsed_.host), ec);
    if (tls_ == nullptr) {
      beast::tcp_stream stream(ioc);
      return Exchange(ioc, deadline, stream, endpoints, std::move(body));
    }
    beast::ssl_stream<beast::tcp_stream> stream(ioc, *tls_);
    // SNI, and the name the certificate must carry.
    if (!SSL_set_tlsext_host_name(stream.native_handle(), parsed_.host.c_str())) {
      return absl::InternalError(absl::StrCat("POST ", url_, ": cannot set the TLS server name"));
    }
    stream.set_verify_callback(ssl::host_name_verification(parsed_.host));
    return Exchange(ioc, deadline, stream, endpoints, std::move(body));
  }

  const std::string url_;
  const HttpUrl parsed_;
  const Options options_;
  const std::unique_ptr<ssl::context> tls_;  // null for http://

  std::mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::set<asio::io_context*> running_ ABSL_GUARDED_BY(mu_);  // Writes in progress
};

absl::StatusOr<std::shared_ptr<HttpSink>> HttpSink::Create(absl::string_view url,
                                                           Options options) {
  absl::StatusOr<HttpUrl> parsed = ParseHttpUrl(url);
  if (!parsed.ok()) return parsed.status();
  std::unique_ptr<ssl::context> tls;
  if (parsed->scheme == HttpUrl::Scheme::kHttps) {
    tls = std::make_unique<ssl::context>(ssl::context::tls_client);
    beast::error_code ec;
    if (options.ca_file.empty()) {
      tls->set_default_verify_paths(ec);
    } else {
      tls->load_verify_file(options.ca_file, ec);
    }
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot load CA certificates for ", url, ": ", ec.message()));
    }
    tls->set_verify_mode(ssl::verify_peer);
  }
  return std::shared_ptr<HttpSink>(new HttpSink(std::make_unique<Impl>(
      std::string(url), *std::move(parsed), std::move(options), std::move(tls))));
}

HttpSink::HttpSink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpSink::~HttpSink() = default;

absl::Status HttpSink::Write(EventPtr event) {
  if (event == nullptr) return absl::InvalidArgumentError("null event");
  return impl_->Write(*event);
}

absl::Status HttpSink::Close() {
  impl_->Close();
  return absl::OkStatus();
}

}  // namespace sinks
}  // namespace dispatchd
