#include "common/http_server.h"

#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/ip/v6_only.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "common/logging.h"

namespace dispatchd {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

constexpr absl::string_view kServerName = "dispatchd";

// path -> method -> handler.
using RouteTable = std::map<std::string, std::map<std::string, HttpHandler>>;

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  // Far enough to mean "never" without overflowing the steady clock.
  return absl::ToChronoNanoseconds(std::min(d, absl::Hours(24 * 365)));
}

Response PlainResponse(http::status status, unsigned version, absl::string_view body) {
  Response res{status, version};
  res.set(http::field::server, beast::string_view(kServerName.data(), kServerName.size()));
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::string(body);
  res.prepare_payload();
  return res;
}

// The whole of request handling, with no socket: routes `req` and builds the
// response (keep-alive as the client asked).
Response HandleRequest(const RouteTable& routes, const Request& req) {
  const beast::string_view target = req.target();
  const std::string path(target.substr(0, target.find('?')));
  const std::string method(req.method_string());
  const bool head = req.method() == http::verb::head;

  auto finish = [&](Response res) {
    res.keep_alive(req.keep_alive());
    if (head) res.body().clear();  // Content-Length still tells the GET size.
    return res;
  };

  auto route = routes.find(path);
  if (route == routes.end()) {
    return finish(PlainResponse(http::status::not_found, req.version(), "not found\n"));
  }
  const std::map<std::string, HttpHandler>& methods = route->second;
  auto handler = methods.find(method);
  if (handler == methods.end() && head) handler = methods.find("GET");
  if (handler == methods.end()) {
    std::set<std::string> allow;
    for (const auto& [m, h] : methods) allow.insert(m);
    if (allow.count("GET") != 0) allow.insert("HEAD");
    Response res = PlainResponse(http::status::method_not_allowed, req.version(),
                                 "method not allowed\n");
    res.set(http::field::allow, absl::StrJoin(allow, ", "));
    return finish(std::move(res));
  }

  HttpRequest request{method, std::string(target), path, req.body()};
  HttpResponse response;
  try {
    response = handler->second(request);
  } catch (const std::exception& e) {
    LOG(ERROR) << "HTTP handler for " << method << " " << path << " threw: " << e.what();
    return finish(
        PlainResponse(http::status::internal_server_error, req.version(), "internal error\n"));
  }
  if (response.status < 100 || response.status > 999) {
    LOG(ERROR) << "HTTP handler for " << method << " " << path << " returned status "
               << response.status;
    return finish(
        PlainResponse(http::status::internal_server_error, req.version(), "internal error\n"));
  }

  Response res;
  res.version(req.version());
  res.result(static_cast<unsigned>(response.status));
  res.set(http::field::server, beast::string_view(kServerName.data(), kServerName.size()));
  res.set(http::field::content_type, response.content_type);
  res.body() = std::move(response.body);
  res.prepare_payload();
  return finish(std::move(res));
}

// Parses "host:port", "[v6]:port" or ":port" (every interface). Hostnames
// are resolved once, here.
absl::StatusOr<std::vector<tcp::endpoint>> ParseListen(absl::string_view listen) {
  const size_t colon = listen.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\" has no :port"));
  }
  absl::string_view host = listen.substr(0, colon);
  const absl::string_view port_text = listen.substr(colon + 1);
  int port;
  if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\" has an invalid port"));
  }
  const bool bracketed = absl::ConsumePrefix(&host, "[");
  if (bracketed && !absl::ConsumeSuffix(&host, "]")) {
    return absl::InvalidArgumentError(absl::StrCat("listen address \"", listen, "\" has no ']'"));
  }
  if (!bracketed && host.find(':') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\": write IPv6 addresses as [addr]:port"));
  }
  const auto tcp_port = static_cast<unsigned short>(port);
  if (host.empty()) {
    // Dual-stack where IPv6 exists, else IPv4 only.
    return std::vector<tcp::endpoint>{tcp::endpoint(tcp::v6(), tcp_port),
                                      tcp::endpoint(tcp::v4(), tcp_port)};
  }
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(std::string(host), ec);
  if (!ec) return std::vector<tcp::endpoint>{tcp::endpoint(address, tcp_port)};
  if (bracketed) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\" has an invalid IPv6 address"));
  }
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(std::string(host), std::string(port_text),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve listen host \"", host, "\": ", ec.message()));
  }
  std::vector<tcp::endpoint> endpoints;
  for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  return endpoints;
}

absl::Status BindError(const tcp::endpoint& endpoint, absl::string_view what,
                       const boost::system::error_code& ec) {
  std::string message = absl::StrCat("cannot ", what, " ", endpoint.address().to_string(), ":",
                                     endpoint.port(), ": ", ec.message());
  if (ec == asio::error::access_denied) return absl::PermissionDeniedError(message);
  return absl::UnavailableError(message);
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(RouteTable routes, const Options& options)
      : routes_(std::move(routes)), options_(options), acceptor_(asio::make_strand(ioc_)) {}

  ~Impl() { Stop(); }

  // Opens, binds and listens on the first endpoint that works; returns the
  // bound port.
  absl::StatusOr<int> Listen(const std::vector<tcp::endpoint>& endpoints) {
    absl::Status last;
    for (const tcp::endpoint& endpoint : endpoints) {
      boost::system::error_code ec;
      acceptor_.close(ec);
      acceptor_.open(endpoint.protocol(), ec);
      if (ec) {
        last = BindError(endpoint, "open a socket for", ec);
        continue;
      }
      // Not inherited by programs this process starts: a child holding the
      // listening socket would keep the port after Stop().
      fcntl(acceptor_.native_handle(), F_SETFD, FD_CLOEXEC);
      acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
      if (endpoint.address().is_v6() && endpoint.address().is_unspecified()) {
        acceptor_.set_option(asio::ip::v6_only(false), ec);
      }
      acceptor_.bind(endpoint, ec);
      if (ec) {
        last = BindError(endpoint, "bind", ec);
        continue;
      }
      acceptor_.listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        last = BindError(endpoint, "listen on", ec);
        continue;
      }
      const tcp::endpoint bound = acceptor_.local_endpoint(ec);
      if (ec) return BindError(endpoint, "read the bound address of", ec);
      return static_cast<int>(bound.port());
    }
    return last;
  }

  void Run() {
    DoAccept();
    thread_ = std::thread([this] {
      // No work guard: run() returns once the acceptor and every connection
      // are closed, which is how Stop() ends the thread.
      for (;;) {
        try {
          ioc_.run();
          return;
        } catch (const std::exception& e) {
          LOG(ERROR) << "HTTP server I/O thread caught: " << e.what();
        }
      }
    });
  }

  // Closes the acceptor and every connection, then joins the I/O thread.
  void Stop() ABSL_LOCKS_EXCLUDED(stop_mu_);

 private:
  class Session;

  void DoAccept() {
    acceptor_.async_accept(asio::make_strand(ioc_),
                           [this](boost::system::error_code ec, tcp::socket socket) {
                             OnAccept(ec, std::move(socket));
                           });
  }

  void OnAccept(boost::system::error_code ec, tcp::socket socket);

  const RouteTable routes_;
  const Options options_;
  asio::io_context ioc_{1};
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_{acceptor_.get_executor()};
  std::atomic<bool> stopping_{false};
  // Live connections, touched only on the acceptor's strand.
  std::vector<std::weak_ptr<Session>> sessions_;
  std::thread thread_;

  std::mutex stop_mu_;
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
};

// One connection: read a request, answer it, repeat while kept alive. Every
// step runs on the connection's strand under a deadline; the shared_ptr held
// by the pending operation keeps the session alive.
class HttpServer::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl* server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {}

  void Start() {
    asio::dispatch(stream_.get_executor(),
                   beast::bind_front_handler(&Session::DoReadHeader, shared_from_this()));
  }

  // Closes the connection from any thread; pending operations end with
  // operation_aborted.
  void Close() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      boost::system::error_code ec;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
      self->stream_.close();
    });
  }

 private:
  void DoReadHeader() {
    if (server_->stopping_.load()) return stream_.close();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(
        std::min<size_t>(server_->options_.max_header_bytes, UINT32_MAX)));
    parser_->body_limit(server_->options_.max_body_bytes);
    stream_.expires_after(ToChrono(server_->options_.header_timeout));
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::OnReadHeader, shared_from_this()));
  }

  void OnReadHeader(boost::system::error_code ec, size_t /*bytes*/) {
    if (ec) return OnReadError(ec);
    stream_.expires_after(ToChrono(server_->options_.io_timeout));
    if (parser_->is_done()) return OnRead({}, 0);
    if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
      continue_.emplace(http::status::continue_, parser_->get().version());
      http::async_write(stream_, *continue_,
                        beast::bind_front_handler(&Session::OnWriteContinue, shared_from_this()));
      return;
    }
    DoReadBody();
  }

  void OnWriteContinue(boost::system::error_code ec, size_t /*bytes*/) {
    continue_.reset();
    if (ec) return stream_.close();
    DoReadBody();
  }

  void DoReadBody() {
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(boost::system::error_code ec, size_t /*bytes*/) {
    if (ec) return OnReadError(ec);
    Request req = parser_->release();
    parser_.reset();
    response_ = HandleRequest(server_->routes_, req);
    DoWrite(/*close_after=*/response_.need_eof());
  }

  void OnReadError(boost::system::error_code ec) {
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      response_ = PlainResponse(http::status::request_header_fields_too_large, 11,
                                "request headers too large\n");
    } else if (ec == http::error::body_limit) {
      response_ = PlainResponse(http::status::payload_too_large, 11, "request body too large\n");
    } else if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      response_ = PlainResponse(http::status::bad_request, 11, "malformed request\n");
    } else {
      // Peer closed, timed out, reset, or the server is stopping.
      boost::system::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
      return stream_.close();
    }
    response_.keep_alive(false);
    DoWrite(/*close_after=*/true);
  }

  void DoWrite(bool close_after) {
    stream_.expires_after(ToChrono(server_->options_.io_timeout));
    http::async_write(
        stream_, response_,
        beast::bind_front_handler(&Session::OnWrite, shared_from_this(), close_after));
  }

  void OnWrite(bool close_after, boost::system::error_code ec, size_t /*bytes*/) {
    if (ec) return stream_.close();
    response_ = {};
    if (close_after) return DoLingeringClose();
    DoReadHeader();
  }

  // Sends FIN, then reads and drops what the client still sends for a short
  // while before closing: closing with unread input would send a reset that
  // can destroy the response in flight.
  void DoLingeringClose() {
    boost::system::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return stream_.close();
    stream_.expires_after(ToChrono(std::min(server_->options_.io_timeout, absl::Seconds(2))));
    DoDrain();
  }

  void DoDrain() {
    stream_.async_read_some(asio::buffer(drain_),
                            [self = shared_from_this()](boost::system::error_code ec, size_t) {
                              if (ec || self->server_->stopping_.load()) {
                                return self->stream_.close();
                              }
                              self->DoDrain();
                            });
  }

  Impl* const server_;  // outlives every session (Stop drains the I/O thread)
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::empty_body>> continue_;
  Response response_;
  char drain_[4096];
};

void HttpServer::Impl::Stop() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true);
  asio::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
    accept_retry_.cancel();
    for (const std::weak_ptr<Session>& weak : sessions_) {
      if (std::shared_ptr<Session> session = weak.lock()) session->Close();
    }
    sessions_.clear();
  });
  if (thread_.joinable()) thread_.join();
}

void HttpServer::Impl::OnAccept(boost::system::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || stopping_.load()) return;  // acceptor closed
  if (ec) {
    // Out of descriptors and the like: keep serving the open connections and
    // try again shortly, rather than spinning on the error.
    LOG(WARNING) << "HTTP accept failed: " << ec.message();
    accept_retry_.expires_after(std::chrono::milliseconds(100));
    accept_retry_.async_wait([this](boost::system::error_code wait_ec) {
      if (!wait_ec && !stopping_.load()) DoAccept();
    });
    return;
  }
  fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);
  auto session = std::make_shared<Session>(this, std::move(socket));
  sessions_.erase(std::remove_if(sessions_.begin(), sessions_.end(),
                                 [](const std::weak_ptr<Session>& s) { return s.expired(); }),
                  sessions_.end());
  sessions_.push_back(session);
  session->Start();
  DoAccept();
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl, int port) : impl_(std::move(impl)), port_(port) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() { impl_->Stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    absl::string_view listen, std::map<std::string, HttpHandler> routes) {
  return Start(listen, std::move(routes), Options());
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    absl::string_view listen, std::map<std::string, HttpHandler> routes, const Options& options) {
  RouteTable table;
  for (auto& [key, handler] : routes) {
    std::string method = "GET";
    absl::string_view path = key;
    const size_t space = path.find(' ');
    if (space != absl::string_view::npos) {
      method = std::string(path.substr(0, space));
      path = path.substr(space + 1);
      if (method.empty() || method != absl::AsciiStrToUpper(method) ||
          http::string_to_verb(method) == http::verb::unknown) {
        return absl::InvalidArgumentError(absl::StrCat("route \"", key, "\": unknown method"));
      }
    }
    if (path.empty() || path[0] != '/' || path.find_first_of("? ") != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("route \"", key, "\": path must start with '/' and have no query"));
    }
    if (!handler) {
      return absl::InvalidArgumentError(absl::StrCat("route \"", key, "\" has no handler"));
    }
    if (!table[std::string(path)].emplace(method, std::move(handler)).second) {
      return absl::InvalidArgumentError(absl::StrCat("route \"", key, "\" given twice"));
    }
  }
  absl::StatusOr<std::vector<tcp::endpoint>> endpoints = ParseListen(listen);
  if (!endpoints.ok()) return endpoints.status();
  auto impl = std::make_unique<Impl>(std::move(table), options);
  absl::StatusOr<int> port = impl->Listen(*endpoints);
  if (!port.ok()) return port.status();
  impl->Run();
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl), *port));
}

}  // namespace dispatchd
