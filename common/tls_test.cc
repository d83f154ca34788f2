// TLS 1.2 at least, on both ends of the agent <-> controller session, shown
// with real handshakes on loopback:
//   - a gRPC server built with ServerCredentials() refuses a client that
//     offers only TLS 1.0 or 1.1 (gRPC logs "unsupported protocol" and
//     closes the connection), and completes TLS 1.2 and 1.3 handshakes;
//   - a gRPC channel built with ChannelCredentials() will not talk to a
//     server that speaks only TLS 1.1, and does to one that speaks 1.2.
// gRPC sets these bounds itself (its SSL credentials default to TLS 1.2 ..
// 1.3); common/tls.cc only builds those credentials, and these tests keep
// that default from going away unnoticed.
//
// The other end of each handshake is OpenSSL used directly, with its
// security level lowered to 0: OpenSSL 3 would otherwise not even offer
// TLS 1.0/1.1 itself, and the test would prove nothing about dispatchd.
#include "common/tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpc/support/log.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace {

int Sh(const std::string& command) { return std::system(command.c_str()); }

// gRPC's own log lines, kept so that a test can read why gRPC's side of a
// handshake gave up (it closes the connection without sending the alert).
absl::Mutex log_mu;
std::vector<std::string>* grpc_log ABSL_GUARDED_BY(log_mu) = nullptr;

void KeepGrpcLog(gpr_log_func_args* args) {
  std::fprintf(stderr, "grpc: %s:%d %s\n", args->file, args->line, args->message);
  absl::MutexLock lock(&log_mu);
  if (grpc_log != nullptr) grpc_log->push_back(args->message);
}

// Waits (bounded) until gRPC logged a line containing `text`.
bool GrpcLogged(const std::string& text) {
  absl::MutexLock lock(&log_mu);
  auto logged = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(log_mu) {
    for (const std::string& line : *grpc_log) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  };
  return log_mu.AwaitWithTimeout(absl::Condition(&logged), absl::Seconds(10));
}

void ClearGrpcLog() {
  absl::MutexLock lock(&log_mu);
  grpc_log->clear();
}

// What one handshake came to.
struct Handshake {
  bool ok = false;
  int version = 0;      // the negotiated version when ok (TLS1_2_VERSION, ...)
  int reason = 0;       // ERR_GET_REASON of the first error when not ok
  std::string error;    // OpenSSL's text for it
};

Handshake Failed() {
  Handshake h;
  const unsigned long e = ERR_peek_error();
  h.reason = ERR_GET_REASON(e);
  char text[256] = {};
  ERR_error_string_n(e, text, sizeof(text));
  h.error = text;
  ERR_clear_error();
  return h;
}

// An SSL_CTX that speaks exactly `version` and nothing else.
SSL_CTX* ContextFor(const SSL_METHOD* method, int version) {
  SSL_CTX* ctx = SSL_CTX_new(method);
  SSL_CTX_set_security_level(ctx, 0);
  SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
  SSL_CTX_set_min_proto_version(ctx, version);
  SSL_CTX_set_max_proto_version(ctx, version);
  return ctx;
}

int LoopbackSocket() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

class TlsVersionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    {
      absl::MutexLock lock(&log_mu);
      grpc_log = new std::vector<std::string>();
    }
    gpr_set_log_function(KeepGrpcLog);
    dir_ = new std::string(absl::StrCat(std::getenv("TEST_TMPDIR"), "/tls-pki"));
    const std::string d = *dir_;
    const std::string q = " >/dev/null 2>&1";
    ASSERT_EQ(Sh("mkdir -p " + d), 0);
    ASSERT_EQ(Sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout " +
                 d + "/ca.key -out " + d + "/ca.pem" + q),
              0);
    ASSERT_EQ(Sh("printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > " + d + "/san.ext"), 0);
    for (const std::string who : {"server", "client"}) {
      ASSERT_EQ(Sh("openssl req -newkey rsa:2048 -nodes -subj /CN=" + who + " -keyout " + d +
                   "/" + who + ".key -out " + d + "/" + who + ".csr" + q),
                0);
      ASSERT_EQ(Sh("openssl x509 -req -days 2 -in " + d + "/" + who + ".csr -CA " + d +
                   "/ca.pem -CAkey " + d + "/ca.key -CAcreateserial -extfile " + d +
                   "/san.ext -out " + d + "/" + who + ".pem" + q),
                0);
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    gpr_set_log_function(nullptr);  // gRPC's default again
    absl::MutexLock lock(&log_mu);
    delete grpc_log;
    grpc_log = nullptr;
  }

  static std::string F(const std::string& name) { return *dir_ + "/" + name; }

  // The controller's gRPC server as dispatchd builds it: TLS with client
  // certificates required.
  void StartGrpcServer() {
    auto creds = ServerCredentials(TlsFiles{F("server.pem"), F("server.key"), F("ca.pem")});
    ASSERT_TRUE(creds.ok()) << creds.status();
    grpc::ServerBuilder builder;
    // A server needs a service to start; this one answers UNIMPLEMENTED.
    builder.RegisterCallbackGenericService(&service_);
    builder.AddListeningPort("127.0.0.1:0", *creds, &port_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  // A TLS handshake with the gRPC server from a client that speaks exactly
  // `version` and presents the client certificate.
  Handshake ClientHandshake(int version) {
    SSL_CTX* ctx = ContextFor(TLS_client_method(), version);
    SSL_CTX_use_certificate_chain_file(ctx, F("client.pem").c_str());
    SSL_CTX_use_PrivateKey_file(ctx, F("client.key").c_str(), SSL_FILETYPE_PEM);
    static const unsigned char kH2[] = {2, 'h', '2'};
    SSL_CTX_set_alpn_protos(ctx, kH2, sizeof(kH2));
    const int fd = LoopbackSocket();
    sockaddr_in addr = Loopback(port_);
    Handshake h;
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      h.error = "cannot connect";
    } else {
      SSL* ssl = SSL_new(ctx);
      SSL_set_fd(ssl, fd);
      if (SSL_connect(ssl) == 1) {
        h.ok = true;
        h.version = SSL_version(ssl);
        SSL_shutdown(ssl);
      } else {
        h = Failed();
      }
      SSL_free(ssl);
    }
    close(fd);
    SSL_CTX_free(ctx);
    return h;
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  static std::string* dir_;
  grpc::CallbackGenericService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

std::string* TlsVersionTest::dir_ = nullptr;

TEST_F(TlsVersionTest, TheControllerRefusesTls11AndTls10) {
  StartGrpcServer();
  for (int version : {TLS1_1_VERSION, TLS1_VERSION}) {
    ClearGrpcLog();
    Handshake h = ClientHandshake(version);
    EXPECT_FALSE(h.ok) << "TLS version 0x" << std::hex << version << " was accepted";
    // gRPC's server refused this client's version; it closes the
    // connection without sending its alert, so the client reads EOF.
    EXPECT_TRUE(h.reason == SSL_R_UNEXPECTED_EOF_WHILE_READING ||
                h.reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
        << h.error;
    EXPECT_TRUE(GrpcLogged("unsupported protocol")) << "version 0x" << std::hex << version;
  }
}

TEST_F(TlsVersionTest, TheControllerAcceptsTls12AndTls13) {
  StartGrpcServer();
  Handshake h12 = ClientHandshake(TLS1_2_VERSION);
  EXPECT_TRUE(h12.ok) << h12.error;
  EXPECT_EQ(h12.version, TLS1_2_VERSION);
  Handshake h13 = ClientHandshake(TLS1_3_VERSION);
  EXPECT_TRUE(h13.ok) << h13.error;
  EXPECT_EQ(h13.version, TLS1_3_VERSION);
}

// A TLS server on loopback that speaks exactly one version, and records how
// the first handshake went.
class OneVersionServer {
 public:
  OneVersionServer(int version, const std::string& cert, const std::string& key)
      : ctx_(ContextFor(TLS_server_method(), version)), listener_(LoopbackSocket()) {
    SSL_CTX_use_certificate_chain_file(ctx_, cert.c_str());
    SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM);
    // Picks h2 as gRPC asks, so that nothing but the version can fail.
    SSL_CTX_set_alpn_select_cb(
        ctx_,
        [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
           unsigned int inlen, void*) {
          static const unsigned char kH2[] = {2, 'h', '2'};
          unsigned char* selected = nullptr;
          if (SSL_select_next_proto(&selected, outlen, kH2, sizeof(kH2), in, inlen) !=
              OPENSSL_NPN_NEGOTIATED) {
            return SSL_TLSEXT_ERR_ALERT_FATAL;
          }
          *out = selected;
          return SSL_TLSEXT_ERR_OK;
        },
        nullptr);
    sockaddr_in addr = Loopback(0);
    bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(listener_, 8);
    socklen_t len = sizeof(addr);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~OneVersionServer() {
    stop_ = true;
    thread_.join();
    close(listener_);
    SSL_CTX_free(ctx_);
  }
  int port() const { return port_; }

  // The first handshake's outcome, once there was one (bounded wait).
  std::optional<Handshake> Await() {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](std::optional<Handshake>* h) { return h->has_value(); }, &first_),
                         absl::Seconds(30));
    return first_;
  }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      timeval tv{20, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      SSL* ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, fd);
      Handshake h;
      if (SSL_accept(ssl) == 1) {
        h.ok = true;
        h.version = SSL_version(ssl);
      } else {
        h = Failed();
      }
      SSL_free(ssl);
      close(fd);
      absl::MutexLock lock(&mu_);
      if (!first_.has_value()) first_ = h;
    }
  }

  SSL_CTX* const ctx_;
  const int listener_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::optional<Handshake> first_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Has an agent's channel (ChannelCredentials, as dispatchd builds it) open
// a connection to 127.0.0.1:port, and gives it time to try.
void ConnectAgentChannel(int port, const std::string& ca, const std::string& cert,
                         const std::string& key) {
  auto creds = ChannelCredentials(TlsFiles{cert, key, ca});
  ASSERT_TRUE(creds.ok()) << creds.status();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), *creds);
  channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

TEST_F(TlsVersionTest, TheAgentRefusesAControllerThatSpeaksOnlyTls11) {
  OneVersionServer server(TLS1_1_VERSION, F("server.pem"), F("server.key"));
  ConnectAgentChannel(server.port(), F("ca.pem"), F("client.pem"), F("client.key"));
  std::optional<Handshake> h = server.Await();
  ASSERT_TRUE(h.has_value()) << "the agent never connected";
  EXPECT_FALSE(h->ok) << "the agent spoke TLS 0x" << std::hex << h->version;
  // The agent offered nothing below TLS 1.2.
  EXPECT_EQ(h->reason, SSL_R_UNSUPPORTED_PROTOCOL) << h->error;
}

TEST_F(TlsVersionTest, TheAgentSpeaksTls12ToAControllerThatSpeaksOnlyTls12) {
  OneVersionServer server(TLS1_2_VERSION, F("server.pem"), F("server.key"));
  ConnectAgentChannel(server.port(), F("ca.pem"), F("client.pem"), F("client.key"));
  std::optional<Handshake> h = server.Await();
  ASSERT_TRUE(h.has_value()) << "the agent never connected";
  EXPECT_TRUE(h->ok) << h->error;
  EXPECT_EQ(h->version, TLS1_2_VERSION);
}

}  // namespace
}  // namespace dispatchd
