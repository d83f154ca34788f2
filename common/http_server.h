// A small HTTP/1.1 server (Boost.Beast) for /metrics, /healthz and similar
// endpoints.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<HttpServer> server,
//                    HttpServer::Start("127.0.0.1:9090",
//                                      {{"/metrics", [&](const HttpRequest&) {
//                                          return HttpResponse{200, kPrometheusTextContentType,
//                                                              SerializeText(registry)};
//                                        }}}));
//
// Routing is by exact path; the query string is ignored for routing. A route
// key "/path" serves GET (and HEAD, which runs the GET handler and sends no
// body); a key "METHOD /path" (e.g. "POST /api/reload") serves that method.
// Unknown path -> 404; a known path with another method -> 405 with an Allow
// header; a malformed request -> 400; headers or body over their limits ->
// 431 / 413. Connections are kept alive as the client asks; a client idle or
// slow beyond the timeouts is disconnected.
//
// Threading: one internal I/O thread runs every connection; Start and Stop
// never block on clients. Handlers run on that thread, one at a time, so keep
// them quick (read a snapshot, do not wait on locks held across I/O).
// Thread-safety: port() and Stop() may be called from any thread except a
// handler.
#ifndef DISPATCHD_COMMON_HTTP_SERVER_H_
#define DISPATCHD_COMMON_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace dispatchd {

struct HttpRequest {
  std::string method;  // as sent: "GET", "HEAD", "POST", ...
  std::string target;  // as sent, with the query string
  std::string path;    // target without the query string
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  struct Options {
    // Waiting for a request's headers, including idle time on a kept-alive
    // connection.
    absl::Duration header_timeout = absl::Seconds(30);
    // Reading the body once the headers are in, and writing the response.
    absl::Duration io_timeout = absl::Seconds(30);
    size_t max_header_bytes = 16 * 1024;
    size_t max_body_bytes = 1024 * 1024;
  };

  // Binds `listen` ("127.0.0.1:9090", ":9090" for every interface,
  // "[::1]:0"; port 0 picks a free port) and starts serving `routes`.
  // InvalidArgument for a malformed address or route key; Unavailable (or
  // PermissionDenied) when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      absl::string_view listen, std::map<std::string, HttpHandler> routes);
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      absl::string_view listen, std::map<std::string, HttpHandler> routes, const Options& options);

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  // Stops the server (see Stop).
  ~HttpServer();

  // The bound port.
  int port() const { return port_; }

  // Closes the listener and every connection, waits for a running handler to
  // return and joins the I/O thread. Idempotent.
  // REQUIRES: not called from a handler.
  void Stop();

  class Impl;  // in http_server.cc

 private:
  HttpServer(std::unique_ptr<Impl> impl, int port);

  std::unique_ptr<Impl> impl_;
  const int port_;
};

}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_HTTP_SERVER_H_
