// The HTTP sink over real TLS: a local HTTPS receiver (Python's http.server
// wrapped in ssl) with a certificate from a CA made here by the openssl
// command line.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sinks/http_sink.h"

namespace dispatchd {
namespace sinks {
namespace {

constexpr char kReceiver[] = R"(
import http.server, ssl, sys
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        with open(sys.argv[3], 'ab') as f:
            f.write(body + b'\n')
        self.send_response(200)
        self.send_header('Content-Length', '0')
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(('127.0.0.1', 0), Receiver)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
)";

int Sh(const std::string& command) { return std::system(command.c_str()); }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class HttpsSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/https");
    const std::string q = " >/dev/null 2>&1";
    ASSERT_EQ(Sh("mkdir -p " + dir_ + " && rm -f " + dir_ + "/bodies"), 0);
    for (const std::string ca : {"ca", "other-ca"}) {
      ASSERT_EQ(Sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=" + ca +
                   " -keyout " + dir_ + "/" + ca + ".key -out " + dir_ + "/" + ca + ".pem" + q),
                0);
    }
    ASSERT_EQ(Sh("printf 'subjectAltName=IP:127.0.0.1' > " + dir_ + "/san.ext"), 0);
    ASSERT_EQ(Sh("openssl req -newkey rsa:2048 -nodes -subj /CN=receiver -keyout " + dir_ +
                 "/server.key -out " + dir_ + "/server.csr" + q), 0);
    ASSERT_EQ(Sh("openssl x509 -req -days 2 -in " + dir_ + "/server.csr -CA " + dir_ +
                 "/ca.pem -CAkey " + dir_ + "/ca.key -CAcreateserial -extfile " + dir_ +
                 "/san.ext -out " + dir_ + "/server.pem" + q), 0);
    std::ofstream(dir_ + "/receiver.py") << kReceiver;

    int out[2];
    ASSERT_EQ(pipe(out), 0);
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      dup2(out[1], 1);
      close(out[0]);
      execlp("python3", "python3", (dir_ + "/receiver.py").c_str(), (dir_ + "/server.pem").c_str(),
             (dir_ + "/server.key").c_str(), (dir_ + "/bodies").c_str(), nullptr);
      _exit(127);
    }
    close(out[1]);
    FILE* f = fdopen(out[0], "r");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fscanf(f, "%d", &port_), 1) << "the receiver did not start";
    fclose(f);
  }

  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }

  EventPtr MakeEvent() {
    auto event = std::make_shared<Event>();
    event->id = "secure.event";
    event->payload = "over tls";
    event->source_host = "host-a";
    event->path = "secure/event";
    event->time = absl::FromUnixSeconds(1767225600);
    return event;
  }

  std::string dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

TEST_F(HttpsSinkTest, PostsOverTlsToAReceiverTheCaVouchesFor) {
  HttpSinkOptions options;
  options.ca_file = dir_ + "/ca.pem";
  auto sink = HttpSink::Create(absl::StrCat("https://127.0.0.1:", port_, "/hook"), options);
  ASSERT_TRUE(sink.ok()) << sink.status();
  ASSERT_TRUE((*sink)->Write(MakeEvent()).ok());
  const nlohmann::json body = nlohmann::json::parse(ReadAll(dir_ + "/bodies"));
  EXPECT_EQ(body["id"], "secure.event");
  EXPECT_EQ(body["payload"], "over tls");
  EXPECT_EQ(body["host"], "host-a");
  (*sink)->Close().IgnoreError();
}

TEST_F(HttpsSinkTest, RefusesAReceiverAnotherCaSigned) {
  HttpSinkOptions options;
  options.ca_file = dir_ + "/other-ca.pem";
  auto sink = HttpSink::Create(absl::StrCat("https://127.0.0.1:", port_, "/hook"), options);
  ASSERT_TRUE(sink.ok()) << sink.status();
  EXPECT_FALSE((*sink)->Write(MakeEvent()).ok());
  EXPECT_EQ(ReadAll(dir_ + "/bodies"), "") << "sent to an unverified receiver";
  (*sink)->Close().IgnoreError();
}

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
