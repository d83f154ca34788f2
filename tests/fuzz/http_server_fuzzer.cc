// Fuzzes the HTTP/1.1 request handling of /metrics, /healthz and /readyz
// (common/http_server.h, cmd/dispatchd/metrics_server.h): the input is the
// raw bytes a client sends on one connection (one or more pipelined
// requests, or garbage). Each input goes to two servers on loopback:
// - the metrics server exactly as dispatchd starts it (default limits);
// - a server with small limits and a POST route, so that header and body
//   limits (431, 413), Expect: 100-continue and bodies are reached by
//   small inputs.
// The client sends the bytes, half-closes, and reads until the server
// closes the connection.
//
// Invariants:
// - no crash or sanitizer report in the server, whatever the bytes;
// - the server always closes the connection after the client half-closed
//   (no connection left hanging);
// - whatever it answers is HTTP: every response starts with a status line
//   "HTTP/1.x NNN", and no request makes it answer 500 (the handlers never
//   fail), nor anything but the codes the server documents;
// And before the first input, the harness checks that plain requests get
// their usual answers (GET /healthz, GET /metrics, a POST with a body).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cmd/dispatchd/metrics_server.h"
#include "common/http_server.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace dispatchd;

struct Servers {
  Registry registry;
  std::unique_ptr<HttpServer> metrics;
  std::unique_ptr<HttpServer> small;
};

std::string Exchange(int port, const std::string& request);

Servers* StartServers() {
  SetMinLogLevel(LogLevel::kFatal);
  auto* s = new Servers;
  s->registry.AddCounter("dispatchd_fuzz_total", "A counter.").Add({}).Increment(3);
  auto metrics = StartMetricsServer("127.0.0.1:0", &s->registry,
                                    [] { return Readiness{false, "warming up"}; });
  FUZZ_CHECK(metrics.ok()) << metrics.status();
  s->metrics = *std::move(metrics);
  HttpServer::Options options;
  options.max_header_bytes = 256;
  options.max_body_bytes = 64;
  options.header_timeout = absl::Seconds(10);
  options.io_timeout = absl::Seconds(10);
  std::map<std::string, HttpHandler> routes;
  routes["/metrics"] = [](const HttpRequest&) { return HttpResponse{200, "text/plain", "m\n"}; };
  routes["POST /api/echo"] = [](const HttpRequest& r) {
    // The size, not the body: no body the server sends can look like a
    // status line to CheckResponses.
    return HttpResponse{200, "text/plain", absl::StrCat(r.body.size(), " bytes\n")};
  };
  auto small = HttpServer::Start("127.0.0.1:0", std::move(routes), options);
  FUZZ_CHECK(small.ok()) << small.status();
  s->small = *std::move(small);
  // The harness itself: plain requests get the answers dispatchd gives.
  const std::string health = Exchange(s->metrics->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  FUZZ_CHECK(absl::StartsWith(health, "HTTP/1.1 200 ") && absl::EndsWith(health, "\r\n\r\nok\n"))
      << health;
  const std::string scrape = Exchange(s->metrics->port(), "GET /metrics HTTP/1.0\r\n\r\n");
  FUZZ_CHECK(scrape.find("\ndispatchd_fuzz_total 3\n") != std::string::npos) << scrape;
  const std::string echo = Exchange(
      s->small->port(), "POST /api/echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
  FUZZ_CHECK(absl::StartsWith(echo, "HTTP/1.1 200 ") && absl::EndsWith(echo, "5 bytes\n")) << echo;
  return s;
}

// Sends `request`, half-closes, and returns everything the server sent
// until it closed the connection.
std::string Exchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  FUZZ_CHECK(fd >= 0) << errno;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int connected = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  if (connected != 0 && errno == EINTR) {
    // A signal interrupted it (libFuzzer's -timeout alarm rings every
    // second): the connection goes on being made; wait for it.
    pollfd p{fd, POLLOUT, 0};
    while (poll(&p, 1, 20000) < 0 && errno == EINTR) {
    }
    int error = 0;
    socklen_t size = sizeof(error);
    FUZZ_CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0) << std::strerror(errno);
    connected = error == 0 ? 0 : -1;
    errno = error;
  }
  FUZZ_CHECK(connected == 0) << std::strerror(errno);
  std::string response;
  size_t sent = 0;
  bool half_closed = false;
  char buffer[65536];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (true) {
    if (sent == request.size() && !half_closed) {
      shutdown(fd, SHUT_WR);
      half_closed = true;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (half_closed ? 0 : POLLOUT)), 0};
    const int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        deadline - std::chrono::steady_clock::now())
                                        .count());
    FUZZ_CHECK(ms > 0) << "the server did not close the connection within 20 s after the "
                          "client half-closed (got "
                       << response.size() << " bytes)";
    if (poll(&p, 1, ms) <= 0) continue;
    if (p.revents & POLLIN || p.revents & (POLLHUP | POLLERR)) {
      const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        break;  // reset: the server closed with input unread
      }
      response.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (p.revents & POLLOUT) {
      const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        sent = request.size();  // the server closed its side: stop sending
        continue;
      }
      sent += static_cast<size_t>(n);
    }
  }
  close(fd);
  return response;
}

// Checks every status line the server wrote. Responses are found by their
// status lines; bodies (metrics text, echoed bodies) cannot contain one at a
// line start except the echo, which the small server limits to 64 bytes and
// which is skipped by Content-Length.
void CheckResponses(const std::string& response, const std::set<int>& allowed) {
  if (response.empty()) return;
  FUZZ_CHECK(absl::StartsWith(response, "HTTP/1.")) << "not an HTTP response: "
                                                    << response.substr(0, 40);
  size_t pos = 0;
  while (pos < response.size()) {
    FUZZ_CHECK(response.compare(pos, 7, "HTTP/1.") == 0)
        << "no status line at offset " << pos << ": " << response.substr(pos, 40);
    int status = 0;
    FUZZ_CHECK(pos + 12 <= response.size() &&
               absl::SimpleAtoi(response.substr(pos + 9, 3), &status))
        << "bad status line: " << response.substr(pos, 40);
    FUZZ_CHECK(allowed.count(status) == 1) << "unexpected status " << status;
    const size_t end = response.find("\r\n\r\n", pos);
    FUZZ_CHECK(end != std::string::npos) << "unterminated header";
    size_t length = 0;
    const size_t cl = response.find("Content-Length: ", pos);
    if (status != 100 && cl != std::string::npos && cl < end) {
      const size_t eol = response.find("\r\n", cl);
      FUZZ_CHECK(absl::SimpleAtoi(response.substr(cl + 16, eol - cl - 16), &length));
    }
    pos = end + 4;
    // A HEAD response announces the GET's length but has no body: the next
    // status line may come right away.
    if (length > 0 && response.compare(pos, 7, "HTTP/1.") != 0) pos += length;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Servers* servers = StartServers();
  const std::string request(reinterpret_cast<const char*>(data), size);

  const std::string metrics = Exchange(servers->metrics->port(), request);
  CheckResponses(metrics, {200, 100, 400, 404, 405, 413, 431, 503});
  const std::string small = Exchange(servers->small->port(), request);
  CheckResponses(small, {200, 100, 400, 404, 405, 413, 431});
  return 0;
}
