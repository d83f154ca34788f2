#include "cmd/dispatchd/metrics_server.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
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

// One request on a fresh real TCP connection.
http::response<http::string_body> Fetch(int port, const std::string& method,
                                        const std::string& target) {
  asio::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)));
  timeval tv{60, 0};
  setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  asio::write(socket, asio::buffer(absl::StrCat(method, " ", target,
                                                " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")));
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  beast::error_code ec;
  http::read(socket, buffer, res, ec);
  EXPECT_FALSE(ec) << ec.message();
  return res;
}

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.AddCounter("dispatchd_test_total", "A test counter.").Add({}).Increment(3);
    auto server = StartMetricsServer("127.0.0.1:0", &registry_, [this] {
      return Readiness{ready_.load(), "agent session down"};
    });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  Registry registry_;
  std::atomic<bool> ready_{false};
  std::unique_ptr<HttpServer> server_;
};

TEST_F(MetricsServerTest, ServesMetricsInTheTextFormat) {
  auto res = Fetch(server_->port(), "GET", "/metrics");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(std::string(res[http::field::content_type]), std::string(kPrometheusTextContentType));
  EXPECT_THAT(res.body(), HasSubstr("# TYPE dispatchd_test_total counter\ndispatchd_test_total 3\n"));
}

TEST_F(MetricsServerTest, HealthIsAliveReadinessFollowsTheProbe) {
  EXPECT_EQ(Fetch(server_->port(), "GET", "/healthz").result_int(), 200);
  auto not_ready = Fetch(server_->port(), "GET", "/readyz");
  EXPECT_EQ(not_ready.result_int(), 503);
  EXPECT_THAT(not_ready.body(), HasSubstr("agent session down"));
  ready_ = true;
  EXPECT_EQ(Fetch(server_->port(), "GET", "/readyz").result_int(), 200);
}

// A standby controller replica is ready (orchestrators keep it), says so,
// and says who leads.
TEST(StandbyReadinessTest, AStandbyIsReadyAndNamesTheLeader) {
  Registry registry;
  auto server = StartMetricsServer("127.0.0.1:0", &registry, [] {
    Readiness r{true, ""};
    r.state = "standby";
    r.leader = "ctl-b 127.0.0.1:7701";
    return r;
  });
  ASSERT_TRUE(server.ok()) << server.status();
  auto res = Fetch((*server)->port(), "GET", "/readyz");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.body(), "standby\nleader: ctl-b 127.0.0.1:7701\n");
}

TEST_F(MetricsServerTest, BadRequestsGetProperCodes) {
  EXPECT_EQ(Fetch(server_->port(), "GET", "/nope").result_int(), 404);
  EXPECT_EQ(Fetch(server_->port(), "POST", "/metrics").result_int(), 405);
}

TEST(ReadinessTest, BothNeedsBoth) {
  EXPECT_TRUE(Both({true, ""}, {true, ""}).ready);
  Readiness r = Both({false, "a"}, {false, "b"});
  EXPECT_FALSE(r.ready);
  EXPECT_EQ(r.reason, "a; b");
  EXPECT_EQ(Both({true, ""}, {false, "b"}).reason, "b");
}

}  // namespace
}  // namespace dispatchd
