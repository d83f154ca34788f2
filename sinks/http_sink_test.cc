#include "sinks/http_sink.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/http_server.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sinks/testing/test_sinks.h"

namespace dispatchd {
namespace sinks {
namespace {

using testing::MakeEvent;

TEST(ParseHttpUrlTest, TakesApartHttpAndHttps) {
  absl::StatusOr<HttpUrl> url = ParseHttpUrl("http://example.com/hook?x=1");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->scheme, HttpUrl::Scheme::kHttp);
  EXPECT_EQ(url->host, "example.com");
  EXPECT_EQ(url->port, 80);
  EXPECT_EQ(url->target, "/hook?x=1");

  url = ParseHttpUrl("HTTPS://127.0.0.1:8443");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->scheme, HttpUrl::Scheme::kHttps);
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, 8443);
  EXPECT_EQ(url->target, "/");

  url = ParseHttpUrl("https://[::1]:9000/a/b");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->port, 9000);
  EXPECT_EQ(url->target, "/a/b");

  url = ParseHttpUrl("https://[::1]?q");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->port, 443);
  EXPECT_EQ(url->target, "/?q");
}

TEST(ParseHttpUrlTest, RejectsMalformed) {
  for (const char* bad : {"http://", "http:///path", "http://host:", "http://host:0",
                          "http://host:65536", "http://host:8x", "http://host:+80",
                          "http://user:pw@host/", "http://host/a#frag", "http://ho st/",
                          "http://host/a b", "http://[::1/", "http://[::1]x/",
                          "http://[zz]/", "http://ho%st/", "ftp://host/", "host/path"}) {
    absl::StatusOr<HttpUrl> url = ParseHttpUrl(bad);
    EXPECT_EQ(url.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    if (!url.ok()) {
      EXPECT_NE(url.status().message().find(bad), absl::string_view::npos) << bad;
    }
  }
}

// A receiver on 127.0.0.1, port 0, recording what it was sent.
class Receiver {
 public:
  explicit Receiver(int status = 200) : status_(status) {
    auto server = HttpServer::Start("127.0.0.1:0", {{"POST /hook", [this](const HttpRequest& r) {
                                                       std::lock_guard<std::mutex> lock(mu_);
                                                       bodies_.push_back(r.body);
                                                       return HttpResponse{status_, "text/plain",
                                                                           "nope"};
                                                     }}});
    EXPECT_TRUE(server.ok()) << server.status();
    if (server.ok()) server_ = *std::move(server);
  }
  std::string url(absl::string_view path = "/hook") const {
    return absl::StrCat("http://127.0.0.1:", server_->port(), path);
  }
  std::vector<std::string> bodies() const {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }
  HttpServer& server() { return *server_; }

 private:
  const int status_;
  mutable std::mutex mu_;
  std::vector<std::string> bodies_;
  std::unique_ptr<HttpServer> server_;
};

TEST(HttpSinkTest, PostsTheEventAsJson) {
  Receiver receiver;
  absl::StatusOr<std::shared_ptr<HttpSink>> sink = HttpSink::Create(receiver.url());
  ASSERT_TRUE(sink.ok()) << sink.status();
  ASSERT_TRUE((*sink)->Write(MakeEvent("first")).ok());
  ASSERT_TRUE((*sink)->Write(MakeEvent("second \"quoted\"")).ok());
  std::vector<std::string> bodies = receiver.bodies();
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(bodies[0])["id"], "first");
  EXPECT_EQ(nlohmann::json::parse(bodies[0])["payload"], "payload-first");
  EXPECT_EQ(nlohmann::json::parse(bodies[1])["id"], "second \"quoted\"");
}

TEST(HttpSinkTest, StatusCodesOtherThan2xxAreErrors) {
  struct Case {
    int status;
    absl::StatusCode code;
  };
  for (const Case& c : {Case{500, absl::StatusCode::kUnavailable},
                        Case{503, absl::StatusCode::kUnavailable},
                        Case{429, absl::StatusCode::kUnavailable},
                        Case{400, absl::StatusCode::kInvalidArgument},
                        Case{403, absl::StatusCode::kPermissionDenied},
                        Case{302, absl::StatusCode::kUnknown}}) {
    Receiver receiver(c.status);
    auto sink = HttpSink::Create(receiver.url());
    ASSERT_TRUE(sink.ok()) << sink.status();
    absl::Status status = (*sink)->Write(MakeEvent("a"));
    EXPECT_EQ(status.code(), c.code) << c.status << ": " << status;
    EXPECT_NE(status.message().find(absl::StrCat("HTTP ", c.status)), absl::string_view::npos)
        << status;
    EXPECT_EQ(receiver.bodies().size(), 1u) << "the request did arrive";
  }
  Receiver created(201);
  auto sink = HttpSink::Create(created.url());
  ASSERT_OK(sink);
  EXPECT_TRUE((*sink)->Write(MakeEvent("a")).ok());
}

TEST(HttpSinkTest, ErrorsCarryTheAnswerAndTellPermanentRejectionsFromTransientOnes) {
  struct Case {
    int status;
    bool permanent;
  };
  for (const Case& c : {Case{400, true}, Case{401, true}, Case{404, true}, Case{410, true},
                        Case{422, true}, Case{408, false}, Case{425, false}, Case{429, false},
                        Case{500, false}, Case{503, false}, Case{302, false}}) {
    Receiver receiver(c.status);
    auto sink = HttpSink::Create(receiver.url());
    ASSERT_OK(sink);
    const absl::Status status = (*sink)->Write(MakeEvent("a"));
    std::optional<HttpAnswer> answer = HttpAnswerOf(status);
    ASSERT_TRUE(answer.has_value()) << c.status << ": " << status;
    EXPECT_EQ(answer->status, c.status);
    EXPECT_EQ(answer->body, "nope");
    EXPECT_FALSE(answer->body_truncated);
    EXPECT_FALSE(answer->reason.empty()) << c.status;
    EXPECT_EQ(IsPermanentRejection(status), c.permanent) << c.status;
  }
  EXPECT_FALSE(HttpAnswerOf(absl::UnavailableError("connect: refused")).has_value());
  EXPECT_FALSE(IsPermanentRejection(absl::NotFoundError("no answer attached")));
}

TEST(HttpSinkTest, TheAnswerKeepsABoundedExcerptOfALongBody) {
  const std::string long_body(10 * 1024, 'x');
  auto server =
      HttpServer::Start("127.0.0.1:0", {{"POST /hook", [&](const HttpRequest&) {
                                           return HttpResponse{400, "text/plain", long_body};
                                         }}});
  ASSERT_OK(server);
  auto sink = HttpSink::Create(absl::StrCat("http://127.0.0.1:", (*server)->port(), "/hook"));
  ASSERT_OK(sink);
  const absl::Status status = (*sink)->Write(MakeEvent("a"));
  std::optional<HttpAnswer> answer = HttpAnswerOf(status);
  ASSERT_TRUE(answer.has_value()) << status;
  EXPECT_EQ(answer->status, 400);
  EXPECT_EQ(answer->reason, "Bad Request");
  EXPECT_EQ(answer->body, std::string(kHttpAnswerExcerptBytes, 'x'));
  EXPECT_TRUE(answer->body_truncated);
  EXPECT_LT(status.message().size(), 400u) << "the message keeps a short excerpt";
  (*server)->Stop();
}

TEST(HttpSinkTest, UnknownPathIsA404Error) {
  Receiver receiver;
  auto sink = HttpSink::Create(receiver.url("/elsewhere"));
  ASSERT_OK(sink);
  EXPECT_EQ((*sink)->Write(MakeEvent("a")).code(), absl::StatusCode::kNotFound);
}

TEST(HttpSinkTest, ReceiverDownIsUnavailableAndRecoversWhenItComesBack) {
  auto receiver = std::make_unique<Receiver>();
  const int port = receiver->server().port();
  const std::string url = receiver->url();
  receiver.reset();  // nothing listens there now
  auto sink = HttpSink::Create(url);
  ASSERT_OK(sink);
  absl::Status status = (*sink)->Write(MakeEvent("a"));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_NE(status.message().find("connect"), absl::string_view::npos) << status;

  std::vector<std::string> bodies;
  std::mutex mu;
  auto server = HttpServer::Start(absl::StrCat("127.0.0.1:", port),
                                  {{"POST /hook", [&](const HttpRequest& r) {
                                      std::lock_guard<std::mutex> lock(mu);
                                      bodies.push_back(r.body);
                                      return HttpResponse{204, "text/plain", ""};
                                    }}});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE((*sink)->Write(MakeEvent("a")).ok());
  (*server)->Stop();
  EXPECT_EQ(bodies.size(), 1u);
}

// A TCP listener that never accepts: connections complete in the kernel's
// backlog and then hear nothing.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() {
    for (int fd : accepted_) close(fd);
    close(fd_);
  }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_, "/hook"); }
  // True once a client connection is waiting (taken off the backlog, kept open).
  bool TakeConnection() {
    int fd = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return false;
    accepted_.push_back(fd);
    return true;
  }
  void SetNonBlocking() { fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK); }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::vector<int> accepted_;
};

TEST(HttpSinkTest, SilentReceiverTimesOut) {
  SilentListener listener;
  auto sink = HttpSink::Create(listener.url(), {.timeout = absl::Milliseconds(200)});
  ASSERT_OK(sink);
  absl::Status status = (*sink)->Write(MakeEvent("a"));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
}

TEST(HttpSinkTest, CloseCancelsAWriteInProgress) {
  SilentListener listener;
  listener.SetNonBlocking();
  auto sink = HttpSink::Create(listener.url(), {.timeout = absl::Hours(1)});
  ASSERT_OK(sink);
  std::shared_ptr<HttpSink> http = *sink;
  std::future<absl::Status> write =
      std::async(std::launch::async, [http] { return http->Write(MakeEvent("a")); });
  testing::SpinUntil([&] { return listener.TakeConnection(); });  // the Write is connected
  ASSERT_TRUE(http->Close().ok());
  EXPECT_TRUE(IsClosed(write.get()));
  EXPECT_TRUE(IsClosed(http->Write(MakeEvent("b"))));
  EXPECT_EQ(http->Write(nullptr).code(), absl::StatusCode::kInvalidArgument);
}

TEST(HttpSinkTest, HttpsSpeaksTlsAndFailsAgainstAPlainHttpServer) {
  Receiver receiver;
  auto sink = HttpSink::Create(absl::StrCat("https://127.0.0.1:", receiver.server().port(), "/hook"),
                               {.timeout = absl::Seconds(30)});
  ASSERT_TRUE(sink.ok()) << sink.status();
  absl::Status status = (*sink)->Write(MakeEvent("a"));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_NE(status.message().find("TLS handshake"), absl::string_view::npos) << status;
  EXPECT_TRUE(receiver.bodies().empty());
}

TEST(HttpSinkTest, UnreadableCaFileIsRejectedAtCreation) {
  auto sink = HttpSink::Create("https://127.0.0.1:1/", {.ca_file = "/nonexistent/ca.pem"});
  EXPECT_EQ(sink.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
