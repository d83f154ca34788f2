// The agent session over real TLS on loopback: mutual authentication with
// certificates made by the openssl command line for this test.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/testing/fake_clock.h"
#include "common/tls.h"
#include "controller/dispatcher.h"
#include "controller/session_service.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/dispatch/v1/session.grpc.pb.h"

namespace dispatchd {
namespace controller {
namespace {

int Sh(const std::string& command) { return std::system(command.c_str()); }

class TlsSessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(absl::StrCat(std::getenv("TEST_TMPDIR"), "/pki"));
    const std::string d = *dir_;
    const std::string q = " >/dev/null 2>&1";
    ASSERT_EQ(Sh("mkdir -p " + d), 0);
    // A CA, a server certificate for 127.0.0.1 and a client certificate.
    ASSERT_EQ(Sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout " +
                 d + "/ca.key -out " + d + "/ca.pem" + q), 0);
    ASSERT_EQ(Sh("printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > " + d + "/san.ext"), 0);
    for (const char* who : {"server", "client", "stranger"}) {
      const std::string w = who;
      const std::string ca = w == "stranger" ? "stranger-ca" : "ca";
      if (w == "stranger") {
        ASSERT_EQ(Sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout " +
                     d + "/stranger-ca.key -out " + d + "/stranger-ca.pem" + q), 0);
      }
      ASSERT_EQ(Sh("openssl req -newkey rsa:2048 -nodes -subj /CN=" + w + " -keyout " + d + "/" +
                   w + ".key -out " + d + "/" + w + ".csr" + q), 0);
      ASSERT_EQ(Sh("openssl x509 -req -days 2 -in " + d + "/" + w + ".csr -CA " + d + "/" + ca +
                   ".pem -CAkey " + d + "/" + ca + ".key -CAcreateserial -extfile " + d +
                   "/san.ext -out " + d + "/" + w + ".pem" + q), 0);
    }
  }
  static void TearDownTestSuite() { delete dir_; }

  void StartServer() {
    auto creds = ServerCredentials(TlsFiles{F("server.pem"), F("server.key"), F("ca.pem")});
    ASSERT_TRUE(creds.ok()) << creds.status();
    dispatcher_ = std::make_unique<Dispatcher>(DispatcherOptions{}, &clock_);
    service_ = std::make_unique<SessionService>(dispatcher_.get(), SessionServiceOptions{});
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    builder.AddListeningPort("127.0.0.1:0", *creds, &port_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // Opens a session with `creds` and returns whether a Welcome came back.
  bool Handshake(std::shared_ptr<grpc::ChannelCredentials> creds) {
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), creds);
    auto stub = dispatch::v1::AgentSession::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub->Session(&context);
    dispatch::v1::AgentMessage hello;
    hello.mutable_hello()->set_agent_id("agent-1");
    dispatch::v1::ControllerMessage reply;
    const bool ok = stream->Write(hello) && stream->Read(&reply) && reply.has_welcome();
    context.TryCancel();
    stream->Finish();
    return ok;
  }

  static std::string F(const std::string& name) { return *dir_ + "/" + name; }

  static std::string* dir_;
  FakeClock clock_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<SessionService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

std::string* TlsSessionTest::dir_ = nullptr;

TEST_F(TlsSessionTest, AgentWithACertificateFromTheCaGetsIn) {
  StartServer();
  auto creds = ChannelCredentials(TlsFiles{F("client.pem"), F("client.key"), F("ca.pem")});
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_TRUE(Handshake(*creds));
}

TEST_F(TlsSessionTest, AgentWithoutACertificateIsRefused) {
  StartServer();
  auto creds = ChannelCredentials(TlsFiles{"", "", F("ca.pem")});
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_FALSE(Handshake(*creds));
}

TEST_F(TlsSessionTest, AgentWithACertificateFromAnotherCaIsRefused) {
  StartServer();
  auto creds = ChannelCredentials(TlsFiles{F("stranger.pem"), F("stranger.key"), F("ca.pem")});
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_FALSE(Handshake(*creds));
}

TEST_F(TlsSessionTest, PlaintextAgentIsRefused) {
  StartServer();
  EXPECT_FALSE(Handshake(grpc::InsecureChannelCredentials()));
}

TEST(TlsFilesTest, ErrorsNameTheProblem) {
  EXPECT_THAT(ServerCredentials(TlsFiles{"/nonexistent/cert.pem", "/nonexistent/key.pem", ""})
                  .status()
                  .message(),
              ::testing::HasSubstr("/nonexistent/cert.pem"));
  EXPECT_EQ(ServerCredentials(TlsFiles{"cert.pem", "", ""}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChannelCredentials(TlsFiles{"", "", ""}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChannelCredentials(TlsFiles{"c.pem", "", "ca.pem"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
