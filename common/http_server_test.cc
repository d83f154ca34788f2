#include "common/http_server.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/base/thread_annotations.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using ::testing::HasSubstr;

// A blocking HTTP client on a real TCP connection. A receive timeout keeps a
// broken server from hanging the test forever; no assertion depends on it.
class Client {
 public:
  explicit Client(int port, const char* address = "127.0.0.1") : socket_(ioc_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address(address), static_cast<uint16_t>(port)));
    timeval tv{60, 0};
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }

  void Send(const std::string& raw) { asio::write(socket_, asio::buffer(raw)); }

  // Reads one response; `head` when it answers a HEAD request (no body).
  http::response<http::string_body> Read(bool head = false) {
    http::response_parser<http::string_body> parser;
    parser.skip(head);
    beast::error_code ec;
    http::read(socket_, buffer_, parser, ec);
    EXPECT_FALSE(ec) << ec.message();
    return parser.release();
  }

  http::response<http::string_body> Get(const std::string& target) {
    Send(absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: test\r\n\r\n"));
    return Read();
  }

  // True once the server has closed the connection (EOF or reset), with no
  // further bytes before that.
  bool SeesClose() {
    char c;
    beast::error_code ec;
    const size_t n = socket_.read_some(asio::buffer(&c, 1), ec);
    return n == 0 && (ec == asio::error::eof || ec == asio::error::connection_reset);
  }

 private:
  asio::io_context ioc_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(HttpServer::Options options = {}) {
    std::map<std::string, HttpHandler> routes;
    routes["/metrics"] = [this](const HttpRequest& req) {
      std::lock_guard<std::mutex> lock(mu_);
      ++metrics_calls_;
      last_request_ = req;
      return HttpResponse{200, "text/plain; version=0.0.4", "up 1\n"};
    };
    routes["POST /echo"] = [](const HttpRequest& req) {
      return HttpResponse{201, "application/octet-stream", req.body};
    };
    routes["/teapot"] = [](const HttpRequest&) { return HttpResponse{418, "text/plain", "tea\n"}; };
    routes["/throws"] = [](const HttpRequest&) -> HttpResponse {
      throw std::runtime_error("handler bug");
    };
    absl::StatusOr<std::unique_ptr<HttpServer>> server =
        HttpServer::Start("127.0.0.1:0", std::move(routes), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
  }

  std::mutex mu_;
  int metrics_calls_ ABSL_GUARDED_BY(mu_) = 0;
  HttpRequest last_request_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, GetReturnsHandlerResponse) {
  StartServer();
  Client client(server_->port());
  auto res = client.Get("/metrics?debug=1&x=2");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.body(), "up 1\n");
  EXPECT_EQ(res[http::field::content_type], "text/plain; version=0.0.4");
  EXPECT_EQ(res[http::field::content_length], "5");
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_EQ(last_request_.method, "GET");
  EXPECT_EQ(last_request_.target, "/metrics?debug=1&x=2");
  EXPECT_EQ(last_request_.path, "/metrics");
}

TEST_F(HttpServerTest, HandlerStatusIsPassedThrough) {
  StartServer();
  Client client(server_->port());
  auto res = client.Get("/teapot");
  EXPECT_EQ(res.result_int(), 418);
  EXPECT_EQ(res.body(), "tea\n");
}

TEST_F(HttpServerTest, UnknownPathIs404) {
  StartServer();
  Client client(server_->port());
  EXPECT_EQ(client.Get("/nope").result_int(), 404);
  EXPECT_EQ(client.Get("/metrics/").result_int(), 404);  // exact paths only
  // The connection survives a 404.
  EXPECT_EQ(client.Get("/metrics").result_int(), 200);
}

TEST_F(HttpServerTest, OtherMethodOnGetRouteIs405WithAllow) {
  StartServer();
  Client client(server_->port());
  client.Send("DELETE /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
  auto res = client.Read();
  EXPECT_EQ(res.result_int(), 405);
  EXPECT_EQ(res[http::field::allow], "GET, HEAD");
  client.Send("GET /echo HTTP/1.1\r\nHost: test\r\n\r\n");
  res = client.Read();
  EXPECT_EQ(res.result_int(), 405);
  EXPECT_EQ(res[http::field::allow], "POST");
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_EQ(metrics_calls_, 0);
}

TEST_F(HttpServerTest, GarbageIs400AndClosed) {
  StartServer();
  Client client(server_->port());
  client.Send("this is not http\r\n\r\n");
  auto res = client.Read();
  EXPECT_EQ(res.result_int(), 400);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(client.SeesClose());
}

TEST_F(HttpServerTest, BadHeaderLineIs400) {
  StartServer();
  Client client(server_->port());
  client.Send("GET /metrics HTTP/1.1\r\nHost test\r\n\r\n");
  EXPECT_EQ(client.Read().result_int(), 400);
  EXPECT_TRUE(client.SeesClose());
}

TEST_F(HttpServerTest, HeadSendsHeadersWithoutBody) {
  StartServer();
  Client client(server_->port());
  client.Send("HEAD /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
  auto res = client.Read(/*head=*/true);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res[http::field::content_length], "5");
  EXPECT_EQ(res.body(), "");
  // No stray body bytes: the next response on this connection parses cleanly.
  client.Send("HEAD /nope HTTP/1.1\r\nHost: test\r\n\r\n");
  EXPECT_EQ(client.Read(/*head=*/true).result_int(), 404);
  auto next = client.Get("/metrics");
  EXPECT_EQ(next.result_int(), 200);
  EXPECT_EQ(next.body(), "up 1\n");
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_EQ(last_request_.method, "GET");
  EXPECT_EQ(metrics_calls_, 2);
}

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  StartServer();
  Client client(server_->port());
  auto first = client.Get("/metrics");
  EXPECT_EQ(first.result_int(), 200);
  EXPECT_TRUE(first.keep_alive());
  auto second = client.Get("/metrics");
  EXPECT_EQ(second.result_int(), 200);
  EXPECT_EQ(second.body(), "up 1\n");
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_EQ(metrics_calls_, 2);
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  StartServer();
  Client client(server_->port());
  client.Send(
      "GET /teapot HTTP/1.1\r\nHost: t\r\n\r\n"
      "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
      "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(client.Read().result_int(), 418);
  EXPECT_EQ(client.Read().result_int(), 404);
  auto last = client.Read();
  EXPECT_EQ(last.result_int(), 200);
  EXPECT_FALSE(last.keep_alive());
  EXPECT_TRUE(client.SeesClose());
}

TEST_F(HttpServerTest, PostBodyReachesHandler) {
  StartServer();
  Client client(server_->port());
  client.Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
  auto res = client.Read();
  EXPECT_EQ(res.result_int(), 201);
  EXPECT_EQ(res.body(), "hello world");
}

TEST_F(HttpServerTest, ExpectContinueGetsInterimResponse) {
  StartServer();
  Client client(server_->port());
  client.Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(client.Read().result_int(), 100);
  client.Send("abc");
  auto res = client.Read();
  EXPECT_EQ(res.result_int(), 201);
  EXPECT_EQ(res.body(), "abc");
}

TEST_F(HttpServerTest, BodyOverLimitIs413) {
  StartServer({.max_body_bytes = 16});
  Client client(server_->port());
  client.Send(absl::StrCat("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n",
                           std::string(100, 'x')));
  EXPECT_EQ(client.Read().result_int(), 413);
  EXPECT_TRUE(client.SeesClose());
}

TEST_F(HttpServerTest, HeadersOverLimitAre431) {
  StartServer({.max_header_bytes = 256});
  Client client(server_->port());
  client.Send(absl::StrCat("GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: ", std::string(1000, 'a'),
                           "\r\n\r\n"));
  EXPECT_EQ(client.Read().result_int(), 431);
}

TEST_F(HttpServerTest, ThrowingHandlerIs500) {
  StartServer();
  Client client(server_->port());
  EXPECT_EQ(client.Get("/throws").result_int(), 500);
  EXPECT_EQ(client.Get("/metrics").result_int(), 200);
}

TEST_F(HttpServerTest, IdleConnectionIsClosedAfterHeaderTimeout) {
  // The only way to end this test is the server's header timer firing.
  StartServer({.header_timeout = absl::Milliseconds(100)});
  Client idle(server_->port());
  EXPECT_TRUE(idle.SeesClose());
  Client slow(server_->port());
  slow.Send("GET /metrics HTTP/1.1\r\nHost:");  // and never the rest
  EXPECT_TRUE(slow.SeesClose());
}

TEST_F(HttpServerTest, StopReturnsWhileClientsHoldIdleConnections) {
  // Timeouts far beyond the test's own: only Stop() can end these connections.
  StartServer({.header_timeout = absl::Hours(1), .io_timeout = absl::Hours(1)});
  Client kept_alive(server_->port());
  EXPECT_EQ(kept_alive.Get("/metrics").result_int(), 200);
  Client silent(server_->port());
  Client partial(server_->port());
  partial.Send("GET /metrics HTTP/1.1\r\n");
  const int port = server_->port();
  server_->Stop();
  EXPECT_TRUE(kept_alive.SeesClose());
  EXPECT_TRUE(silent.SeesClose());
  EXPECT_TRUE(partial.SeesClose());
  server_->Stop();  // idempotent
  // Nothing listens any more.
  asio::io_context ioc;
  tcp::socket socket(ioc);
  beast::error_code ec;
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)),
                 ec);
  EXPECT_EQ(ec, asio::error::connection_refused);
}

TEST_F(HttpServerTest, DestructorStops) {
  StartServer({.header_timeout = absl::Hours(1)});
  Client client(server_->port());
  EXPECT_EQ(client.Get("/metrics").result_int(), 200);
  server_.reset();
  EXPECT_TRUE(client.SeesClose());
}

TEST(HttpServerStartTest, ListenForms) {
  auto any = HttpServer::Start(":0", {{"/", [](const HttpRequest&) { return HttpResponse{}; }}});
  ASSERT_TRUE(any.ok()) << any.status();
  Client v4((*any)->port());
  EXPECT_EQ(v4.Get("/").result_int(), 200);

  auto localhost =
      HttpServer::Start("localhost:0", {{"/", [](const HttpRequest&) { return HttpResponse{}; }}});
  EXPECT_TRUE(localhost.ok()) << localhost.status();

  auto v6 = HttpServer::Start("[::1]:0", {{"/", [](const HttpRequest&) { return HttpResponse{}; }}});
  if (!v6.ok()) {
    GTEST_SKIP() << "no IPv6 loopback here: " << v6.status();
  }
  Client client((*v6)->port(), "::1");
  EXPECT_EQ(client.Get("/").result_int(), 200);
}

TEST(HttpServerStartTest, InvalidArguments) {
  const HttpHandler ok = [](const HttpRequest&) { return HttpResponse{}; };
  for (const char* listen : {"", "9090", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000", "::1:80",
                             "[::1:80", "[nothost]:80"}) {
    EXPECT_EQ(HttpServer::Start(listen, {{"/", ok}}).status().code(),
              absl::StatusCode::kInvalidArgument)
        << listen;
  }
  for (const char* route : {"metrics", "/a?b", "get /x", "BREW /x", "GET"}) {
    EXPECT_EQ(HttpServer::Start("127.0.0.1:0", {{route, ok}}).status().code(),
              absl::StatusCode::kInvalidArgument)
        << route;
  }
  EXPECT_EQ(HttpServer::Start("127.0.0.1:0", {{"/", nullptr}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(HttpServerStartTest, PortInUseIsUnavailable) {
  const HttpHandler ok = [](const HttpRequest&) { return HttpResponse{}; };
  auto first = HttpServer::Start("127.0.0.1:0", {{"/", ok}});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = HttpServer::Start(absl::StrCat("127.0.0.1:", (*first)->port()), {{"/", ok}});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

}  // namespace
}  // namespace dispatchd
