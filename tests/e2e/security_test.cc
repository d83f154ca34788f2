// Security end to end, with the real dispatchd binary:
//   - /metrics exposes no token, payload or path: an all-in-one with a token
//     and a forwarding destination with a key in its query delivers an event with
//     recognizable markers in its path, payload, event id and command, emits
//     one through the API, refuses a wrong token; then /metrics, /healthz
//     and /readyz, scraped over real HTTP, contain none of those markers;
//   - a controller asked to listen off loopback without authentication
//     refuses to start (exit status 2, saying why) and never binds its port.
//     Nothing here serves on a non-loopback address: the refusal comes
//     before anything listens, and a dispatchd that would start anyway is
//     killed and fails the test.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/testing/exposition.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "tests/testing/e2e_fixture.h"

namespace dispatchd {
namespace testing {
namespace {

using ::testing::HasSubstr;

std::string DispatchctlBinary() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr) {
    std::string path = absl::StrCat(srcdir, "/", workspace != nullptr ? workspace : "dispatchd",
                                     "/cmd/dispatchctl/dispatchctl");
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return "bazel-bin/cmd/dispatchctl/dispatchctl";
}

// The first match of `pattern`'s group 1 in `log`, or "".
std::string Find(const std::string& log, const std::string& pattern) {
  std::smatch m;
  return std::regex_search(log, m, std::regex(pattern)) ? m[1].str() : "";
}

// True if something accepts TCP connections on 127.0.0.1:port.
bool Accepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool connected = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return connected;
}


class MetricsExposureTest : public DockerHostTest {};

TEST_F(MetricsExposureTest, MetricsShowNoTokenPayloadOrPath) {
  // Every marker is a string that must never appear on /metrics.
  const std::string token = "token-5ec7e7-never-shown";
  const std::string wrong_token = "wrong-token-d00d";
  const std::string forward_query = "fwdquery-77ab";
  const std::string dir = "sec-dir-4d1f";
  const std::string file = "sec-event-a7c2";
  const std::string event_id = dir + "." + file;
  const std::string payload = "payload-marker-e4d2";
  const std::string handled = "handled-b3e9";
  const std::string emit_dir = "emit-dir-c0d3";
  const std::string emit_file = "emitted-8e1f";
  const std::string emit_payload = "emit-payload-5a7b";

  const std::string handler = Name("sec-handler");
  Run(handler, {{absl::StrCat("subscription.", event_id, ".container.command"),
                 absl::StrCat("touch /", handled)}});
  // Forwarding to a port where nobody listens: the destination's series
  // exist and count failures, under a label without the query. Files do not
  // wait for it (--forward-hold-events 0), so that they settle.
  const int nobody = FreePort();
  StartDispatchd({"--token", token, "--agent-id", "sec-host", "--forward-destination",
                  absl::StrCat("http://127.0.0.1:", nobody, "/hook?key=", forward_query),
                  "--retry-max-backoff", "1s", "--forward-hold-events", "0"});
  const std::string address = Find(Log(), "controller listening on (\\S+)");
  int metrics_port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(Find(Log(), "metrics listening on 127\\.0\\.0\\.1:([0-9]+)"),
                               &metrics_port))
      << Log();

  // A delivered event.
  WriteFileAtomically(absl::StrCat(events_, "/", dir, "/", file), payload, dir_);
  ASSERT_TRUE(WaitFor([&] { return Gone(dir + "/" + file); })) << Log();
  ASSERT_TRUE(WaitFor([&] { return InContainer(handler, "/" + handled); })) << Log();

  // An event emitted through the API with the token; a call with a wrong one.
  WriteFile(dir_ + "/emit-payload", emit_payload);
  auto emitted = RunCommand({DispatchctlBinary(), "--controller", address, "--token", token, "emit",
                             "--path", emit_dir + "/" + emit_file, "--payload-file",
                             dir_ + "/emit-payload"});
  ASSERT_TRUE(emitted.ok()) << emitted.status();
  ASSERT_TRUE(WaitFor([&] { return Gone(emit_dir + "/" + emit_file); })) << Log();
  auto refused =
      RunCommand({DispatchctlBinary(), "--controller", address, "--token", wrong_token, "status"});
  ASSERT_FALSE(refused.ok());

  const HttpResult scrape = HttpGet(metrics_port, "/metrics");
  ASSERT_EQ(scrape.status, 200);
  const std::string& metrics = scrape.body;
  // The scrape comes after the traffic: its counters moved.
  EXPECT_GE(Sample(metrics, "dispatchd_events_settled_total{outcome=\"delivered\"}"), 1) << metrics;
  EXPECT_GE(Sample(metrics, "dispatchd_events_settled_total{outcome=\"no_subscribers\"}"), 1);
  EXPECT_THAT(metrics, HasSubstr(absl::StrCat("destination=\"http://127.0.0.1:", nobody, "/hook\"")));
  const std::string health =
      HttpGet(metrics_port, "/healthz").body + HttpGet(metrics_port, "/readyz").body;

  for (const std::string& secret :
       {token, wrong_token, forward_query, dir, file, event_id,
        payload, handled, handler, emit_dir, emit_file, emit_payload, events_, dir_}) {
    EXPECT_EQ(metrics.find(secret), std::string::npos) << "/metrics shows " << secret;
    EXPECT_EQ(health.find(secret), std::string::npos) << "/healthz or /readyz shows " << secret;
  }
}

// Starts `dispatchd args...` and expects it to refuse: exit status 2 and
// `message` in its log, within a bounded wait, without ever listening on
// `port`. A dispatchd still running after that is killed.
void ExpectRefusal(const std::vector<std::string>& args, int port, const std::string& message) {
  const std::string dir = MakeTempDir("dispatchd-refusal");
  ASSERT_FALSE(dir.empty());
  std::vector<std::string> all = args;
  all.push_back("--metrics-listen=");
  auto process = DispatchdProcess::Start(all, dir + "/dispatchd.log");
  ASSERT_TRUE(process.ok()) << process.status();
  const bool exited = WaitFor([&] { return !(*process)->Running(); }, absl::Seconds(30));
  const bool listened = Accepts(port);
  if (!exited) (*process)->Terminate().IgnoreError();
  const std::string log = (*process)->Log();
  RemoveTree(dir);
  ASSERT_TRUE(exited) << "dispatchd started: " << log;
  EXPECT_FALSE(listened) << log;
  ASSERT_TRUE((*process)->exit_status().has_value());
  const int status = *(*process)->exit_status();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << "status " << status << ": " << log;
  EXPECT_THAT(log, HasSubstr(message));
  EXPECT_THAT(log, HasSubstr("--insecure"));
}

TEST(ListenRefusalTest, OffLoopbackWithoutAuthenticationDispatchdRefusesToStart) {
  const int port = FreePort();
  const std::string any = absl::StrCat("0.0.0.0:", port);
  // Neither agents nor API callers would have to authenticate.
  ExpectRefusal({"controller", "--listen", any}, port,
                absl::StrCat("refusing to listen on ", any, " without a token for agents"));
  // All-in-one is a controller too.
  ExpectRefusal({"all-in-one", "--listen", any, "--events-dir", "/nonexistent/events",
                 "--docker-host", "unix:///nonexistent/docker.sock"},
                port, absl::StrCat("refusing to listen on ", any));
  // Agents must authenticate, the API would be open.
  ExpectRefusal({"controller", "--listen", any, "--agent-token", "agents-only"}, port,
                "without a token for the API");
  // An empty token is none; the IPv6 wildcard is off loopback; so is a host
  // name that only looks like a loopback address.
  ExpectRefusal({"controller", "--listen", absl::StrCat("[::]:", port), "--token="}, port,
                "refusing to listen on [::]:");
  ExpectRefusal({"controller", "--listen", absl::StrCat("127.0.0.1.nip.io:", port)}, port,
                "refusing to listen on 127.0.0.1.nip.io:");
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
