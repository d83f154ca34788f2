// End to end: the real dispatchd (all-in-one, against a private dockerd)
// forwards every event to a real HTTP receiver started by the test and to a
// file; a receiver that is down for a while gets every event, in order, once
// it is up, and the files wait for it, so that a kill -9 meanwhile loses
// none; a bad destination stops start-up.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/http_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "tests/testing/e2e_fixture.h"

extern char** environ;

namespace dispatchd {
namespace testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// An HTTP receiver on 127.0.0.1 that records the bodies POSTed to /events.
class Receiver {
 public:
  // Port 0 picks a free port.
  absl::Status Start(int port = 0) {
    auto server = HttpServer::Start(absl::StrCat("127.0.0.1:", port),
                                    {{"POST /events", [this](const HttpRequest& request) {
                                        std::lock_guard<std::mutex> lock(mu_);
                                        bodies_.push_back(request.body);
                                        return HttpResponse{200, "text/plain", "ok"};
                                      }}});
    if (!server.ok()) return server.status();
    server_ = *std::move(server);
    port_ = server_->port();
    return absl::OkStatus();
  }
  void Stop() {
    if (server_ != nullptr) server_->Stop();
    server_.reset();
  }
  int port() const { return port_; }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_, "/events"); }
  std::vector<nlohmann::json> events() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<nlohmann::json> out;
    for (const std::string& body : bodies_) out.push_back(nlohmann::json::parse(body));
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> bodies_;
  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
};

std::vector<std::string> Ids(const std::vector<nlohmann::json>& events) {
  std::vector<std::string> ids;
  for (const nlohmann::json& e : events) ids.push_back(e.value("id", ""));
  return ids;
}

class ForwardingTest : public DockerHostTest {
 protected:
  // Writes events/<relative> and waits until dispatchd has settled it, so
  // the next event is observed after this one.
  void Emit(const std::string& relative, const std::string& payload) {
    const std::string path = events_ + "/" + relative;
    mkdir(path.substr(0, path.rfind('/')).c_str(), 0755);
    WriteFileAtomically(path, payload, dir_);
    ASSERT_TRUE(WaitFor([&] { return Gone(relative); })) << relative << " not settled\n" << Log();
  }

  // Writes events/<relative> and waits until dispatchd has observed it (its
  // file may wait for forwarding).
  void Observe(const std::string& relative, const std::string& event_id,
               const std::string& payload) {
    const std::string path = events_ + "/" + relative;
    mkdir(path.substr(0, path.rfind('/')).c_str(), 0755);
    WriteFileAtomically(path, payload, dir_);
    ASSERT_TRUE(WaitFor([&] {
      return Log().find("event " + event_id + " observed by") != std::string::npos;
    })) << relative << " not observed\n" << Log();
  }

  static std::vector<std::string> ForwardFlags(const Receiver& receiver) {
    return {"--forward-destination", receiver.url(), "--retry-min-backoff", "50ms",
            "--retry-max-backoff", "500ms"};
  }

  // Finds a free port for `receiver` and leaves it stopped, starts dispatchd
  // forwarding to it, writes <dir>/e1 .. e5 ("event 1" ...) and waits until
  // forwarding failed twice. Returns the event ids in order.
  std::vector<std::string> ObserveWhileTheReceiverIsDown(Receiver& receiver,
                                                         const std::string& dir) {
    EXPECT_TRUE(receiver.Start().ok());
    receiver.Stop();
    StartDispatchd(ForwardFlags(receiver));
    std::vector<std::string> ids;
    for (int i = 1; i <= 5; ++i) {
      ids.push_back(absl::StrCat(dir, ".e", i));
      Observe(absl::StrCat(dir, "/e", i), ids.back(), absl::StrCat("event ", i));
    }
    EXPECT_TRUE(WaitFor([&] {
      return Log().find("to " + receiver.url() + " failed (attempt 2)") != std::string::npos;
    })) << Log();
    return ids;
  }

  std::vector<nlohmann::json> FileLines(const std::string& path) {
    std::vector<nlohmann::json> out;
    for (absl::string_view line : absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty())) {
      out.push_back(nlohmann::json::parse(line));
    }
    return out;
  }
};


TEST_F(ForwardingTest, ForwardsEveryEventToHttpAndFileBesideDeliveries) {
  Receiver receiver;
  ASSERT_TRUE(receiver.Start().ok());
  const std::string file = dir_ + "/forwarded.jsonl";
  const std::string handler = "forwarding-handler";
  containers_.push_back(handler);
  ASSERT_TRUE(daemon_
                  ->Docker({"run", "-d", "--network", "none", "--name", handler, "--label",
                            "subscription.demo.handled.container.command=touch /handled",
                            PrivateDockerd::kBusyboxImage, "sleep", "86400"})
                  .ok());
  StartDispatchd({"--forward-destination", absl::StrCat(receiver.url(), ",file:", file)});

  Emit("demo/handled", "for the handler");
  Emit("demo/plain", "say \"hi\"\n");
  Emit("demo/binary", std::string("\xFF\x00\x01", 3));
  EXPECT_TRUE(WaitFor([&] {
    return daemon_->Docker({"exec", handler, "test", "-e", "/handled"}).ok();
  })) << "deliveries to containers still happen";

  ASSERT_TRUE(WaitFor([&] { return receiver.events().size() == 3; })) << Log();
  ASSERT_TRUE(WaitFor([&] { return FileLines(file).size() == 3; })) << ReadFile(file);
  for (const std::vector<nlohmann::json>& events : {receiver.events(), FileLines(file)}) {
    EXPECT_THAT(Ids(events), ElementsAre("demo.handled", "demo.plain", "demo.binary"));
    const nlohmann::json& plain = events[1];
    EXPECT_EQ(plain["payload"], "say \"hi\"\n");
    EXPECT_EQ(plain["payload_truncated"], false);
    EXPECT_EQ(plain["path"], "demo/plain");
    EXPECT_FALSE(plain.value("host", "").empty());
    EXPECT_THAT(plain.value("time", ""), ::testing::MatchesRegex(
                                             "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z"));
    EXPECT_FALSE(plain.contains("payload_encoding"));
    EXPECT_EQ(events[2]["payload"], "/wAB");
    EXPECT_EQ(events[2]["payload_encoding"], "base64");
  }
  receiver.Stop();
}

TEST_F(ForwardingTest, ReceiverDownForAWhileGetsEveryEventInOrderOnceUp) {
  Receiver receiver;
  const std::vector<std::string> expected = ObserveWhileTheReceiverIsDown(receiver, "down");
  EXPECT_TRUE(receiver.events().empty());
  for (int i = 1; i <= 5; ++i) {
    EXPECT_FALSE(Gone(absl::StrCat("down/e", i))) << "kept until the receiver has it";
  }

  ASSERT_TRUE(receiver.Start(receiver.port()).ok()) << "the port was taken meanwhile";
  ASSERT_TRUE(WaitFor([&] { return receiver.events().size() >= 5; })) << Log();
  EXPECT_THAT(Ids(receiver.events()), ::testing::ElementsAreArray(expected));
  EXPECT_EQ(receiver.events()[0]["payload"], "event 1");
  EXPECT_THAT(Log(), HasSubstr("forwarding to " + receiver.url() + " works again"));
  for (int i = 1; i <= 5; ++i) {
    EXPECT_TRUE(WaitFor([&] { return Gone(absl::StrCat("down/e", i)); })) << i << "\n" << Log();
  }
  receiver.Stop();
}

// The forwarding queue is in memory: what it held when dispatchd was killed
// comes again from the files, which wait until the receiver has each event.
TEST_F(ForwardingTest, AKillWhileTheReceiverIsDownLosesNoForwardedEvent) {
  Receiver receiver;
  const std::vector<std::string> expected = ObserveWhileTheReceiverIsDown(receiver, "kill");
  dispatchd_.reset();  // SIGKILL: the queue in memory is gone

  ASSERT_TRUE(receiver.Start(receiver.port()).ok()) << "the port was taken meanwhile";
  StartDispatchd(ForwardFlags(receiver));
  ASSERT_TRUE(WaitFor([&] {
    std::vector<std::string> ids = Ids(receiver.events());
    return std::all_of(expected.begin(), expected.end(), [&](const std::string& id) {
      return std::find(ids.begin(), ids.end(), id) != ids.end();
    });
  })) << "received: " << absl::StrJoin(Ids(receiver.events()), ",") << "\n" << Log();
  for (int i = 1; i <= 5; ++i) {
    EXPECT_TRUE(WaitFor([&] { return Gone(absl::StrCat("kill/e", i)); })) << i << "\n" << Log();
  }
  receiver.Stop();
}

// Runs the binary directly: start-up must fail before anything runs, so
// there is no process to terminate, only an exit status to read.
TEST_F(ForwardingTest, BadDestinationStopsStartUpWithExitCode2) {
  struct Case {
    std::string destination;
    std::string message;
  };
  for (const Case& c :
       {Case{"ftp://example.com/x", "unknown scheme 'ftp' in forwarding destination "
                                    "'ftp://example.com/x'"},
        Case{"http://:80/x", "malformed forwarding destination 'http://:80/x'"}}) {
    std::vector<std::string> args = BaseArgs();
    args.insert(args.begin(), DispatchdBinary());
    args.push_back("--forward-destination");
    args.push_back("log:," + c.destination);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = dir_ + "/startup.log";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 2) << ReadFile(log);
    EXPECT_THAT(ReadFile(log), HasSubstr(c.message));
    EXPECT_THAT(ReadFile(log), ::testing::Not(HasSubstr("running"))) << "nothing may start";
  }
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
