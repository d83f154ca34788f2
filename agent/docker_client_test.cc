#include "agent/docker_client.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/docker_daemon.h"
#include "common/testing/status_matchers.h"

namespace dispatchd {
namespace agent {
namespace {

using ::dispatchd::testing::PrivateDockerd;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr char kImage[] = "dispatchd-test/busybox:latest";

// ---------------------------------------------------------------------------
// Without a daemon: line splitting and the chunked events body.

TEST(LineSplitterTest, LinesSpanAppendsAndAppendsHoldSeveralLines) {
  internal::LineSplitter splitter;
  splitter.Append("{\"a\":");
  EXPECT_EQ(splitter.Pop(), std::nullopt);
  EXPECT_EQ(splitter.partial_size(), 5u);
  splitter.Append("1}\n{\"b\":2}\r\n{\"c\"");
  EXPECT_EQ(splitter.Pop(), "{\"a\":1}");
  EXPECT_EQ(splitter.Pop(), "{\"b\":2}");
  EXPECT_EQ(splitter.Pop(), std::nullopt);
  splitter.Append(":3}\n\n");
  EXPECT_EQ(splitter.Pop(), "{\"c\":3}");
  EXPECT_EQ(splitter.Pop(), "");
  EXPECT_EQ(splitter.Pop(), std::nullopt);
  EXPECT_EQ(splitter.partial_size(), 0u);
}

TEST(ParseDockerEventTest, ReadsTypeActionActorAndTime) {
  auto event = internal::ParseDockerEvent(
      R"({"status":"exec_die","id":"c1","Type":"container","Action":"exec_die",)"
      R"("Actor":{"ID":"c1","Attributes":{"execID":"e1","exitCode":"3","name":"web"}},)"
      R"("scope":"local","time":1795307704,"timeNano":1795307704143879705})");
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->type, "container");
  EXPECT_EQ(event->action, "exec_die");
  EXPECT_EQ(event->id, "c1");
  EXPECT_EQ(event->time, absl::FromUnixNanos(1795307704143879705));
  EXPECT_THAT(event->attributes, UnorderedElementsAre(Pair("execID", "e1"), Pair("exitCode", "3"),
                                                      Pair("name", "web")));
  EXPECT_FALSE(internal::ParseDockerEvent("{not json").ok());
  auto null_attributes = internal::ParseDockerEvent(
      R"({"Type":"container","Action":"start","Actor":{"ID":"c2","Attributes":null},"time":5})");
  ASSERT_TRUE(null_attributes.ok()) << null_attributes.status();
  EXPECT_THAT(null_attributes->attributes, IsEmpty());
  EXPECT_EQ(null_attributes->time, absl::FromUnixSeconds(5));
}

std::string EventLine(absl::string_view action, absl::string_view id) {
  return absl::StrCat(R"({"Type":"container","Action":")", action, R"(","Actor":{"ID":")", id,
                      R"(","Attributes":{}},"time":1})", "\n");
}

std::string Chunk(absl::string_view data) {
  char size[32];
  snprintf(size, sizeof(size), "%zx\r\n", data.size());
  return absl::StrCat(size, data, "\r\n");
}

class SocketPairTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    client_fd_ = fds[0];
    server_fd_ = fds[1];
  }
  void TearDown() override {
    if (server_fd_ >= 0) close(server_fd_);
  }
  void Send(absl::string_view data) {
    ASSERT_EQ(write(server_fd_, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  }
  int client_fd_ = -1;  // owned by the stream once adopted
  int server_fd_ = -1;
};

constexpr char kChunkedHeader[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

TEST_F(SocketPairTest, EventsSplitAcrossChunksAndTimeoutsLoseNothing) {
  Send(kChunkedHeader);
  auto stream = internal::NewEventStreamFromFd(client_fd_, absl::Seconds(10));
  ASSERT_TRUE(stream.ok()) << stream.status();

  // Nothing sent yet: a timeout, and the stream is still fine.
  auto none = (*stream)->Next(absl::Milliseconds(20));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, std::nullopt);

  const std::string first = EventLine("start", "c1");
  const std::string second = EventLine("die", "c2");
  const std::string third = EventLine("destroy", "c3");
  // Chunk 1: all of `first` and half of `second`.
  Send(Chunk(first + second.substr(0, 10)));
  auto e1 = (*stream)->Next(absl::Seconds(10));
  ASSERT_TRUE(e1.ok()) << e1.status();
  ASSERT_TRUE(e1->has_value());
  EXPECT_EQ((*e1)->action, "start");
  EXPECT_EQ((*e1)->id, "c1");
  // The half line is buffered; a timeout must not drop it.
  auto partial = (*stream)->Next(absl::Milliseconds(20));
  ASSERT_TRUE(partial.ok()) << partial.status();
  EXPECT_EQ(*partial, std::nullopt);
  // Chunk 2: the rest of `second` and all of `third`.
  Send(Chunk(second.substr(10) + third));
  auto e2 = (*stream)->Next(absl::InfiniteDuration());
  ASSERT_TRUE(e2.ok() && e2->has_value()) << e2.status();
  EXPECT_EQ((*e2)->action, "die");
  EXPECT_EQ((*e2)->id, "c2");
  auto e3 = (*stream)->Next(absl::ZeroDuration());
  ASSERT_TRUE(e3.ok() && e3->has_value()) << e3.status();
  EXPECT_EQ((*e3)->action, "destroy");

  // A tiny chunk per byte still yields the event.
  const std::string fourth = EventLine("rename", "c4");
  for (char c : fourth) Send(Chunk(std::string(1, c)));
  auto e4 = (*stream)->Next(absl::Seconds(10));
  ASSERT_TRUE(e4.ok() && e4->has_value()) << e4.status();
  EXPECT_EQ((*e4)->action, "rename");

  // The daemon ends the body: an error, and it stays an error.
  Send("0\r\n\r\n");
  auto end = (*stream)->Next(absl::Seconds(10));
  EXPECT_EQ(end.status().code(), absl::StatusCode::kUnavailable) << end.status();
  EXPECT_FALSE((*stream)->Next(absl::ZeroDuration()).ok());
}

TEST_F(SocketPairTest, PeerClosingMidStreamIsUnavailable) {
  Send(kChunkedHeader);
  auto stream = internal::NewEventStreamFromFd(client_fd_, absl::Seconds(10));
  ASSERT_TRUE(stream.ok()) << stream.status();
  Send(Chunk(EventLine("start", "c1") + "{\"Type\":"));
  close(server_fd_);
  server_fd_ = -1;
  auto e1 = (*stream)->Next(absl::Seconds(10));
  ASSERT_TRUE(e1.ok() && e1->has_value()) << e1.status();
  EXPECT_EQ((*e1)->id, "c1");
  auto broken = (*stream)->Next(absl::Seconds(10));
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kUnavailable) << broken.status();
}

// A peer that answers 200 with an empty body (not the engine, which
// streams): the stream is over at once, without reading past the end.
TEST_F(SocketPairTest, EmptyBodyEndsTheStream) {
  Send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n");
  auto stream = internal::NewEventStreamFromFd(client_fd_, absl::Seconds(10));
  ASSERT_TRUE(stream.ok()) << stream.status();
  auto ended = (*stream)->Next(absl::Seconds(10));
  EXPECT_EQ(ended.status().code(), absl::StatusCode::kUnavailable) << ended.status();
  auto again = (*stream)->Next(absl::Seconds(10));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnavailable) << again.status();
}

TEST_F(SocketPairTest, ErrorAnswerKeepsDockersMessage) {
  Send("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 33\r\n\r\n"
       "{\"message\":\"invalid filter 'x'\"}\n");
  auto stream = internal::NewEventStreamFromFd(client_fd_, absl::Seconds(10));
  ASSERT_FALSE(stream.ok());
  EXPECT_EQ(stream.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(stream.status().message()), HasSubstr("invalid filter 'x'"));
}

TEST_F(SocketPairTest, SilentPeerTimesOutTheHeader) {
  auto stream = internal::NewEventStreamFromFd(client_fd_, absl::Milliseconds(50));
  EXPECT_EQ(stream.status().code(), absl::StatusCode::kDeadlineExceeded) << stream.status();
}

TEST(NewDockerClientTest, RejectsHostsThatAreNotUnixSockets) {
  auto tcp = NewDockerClient({.host = "tcp://127.0.0.1:2375"});
  EXPECT_EQ(tcp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(tcp.status().message()), HasSubstr("tcp://127.0.0.1:2375"));
  EXPECT_EQ(NewDockerClient({.host = "unix://"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NewDockerClient({.host = "unix://" + std::string(200, 'x')}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NewDockerClientTest, MissingSocketIsUnavailableAndSaysHowToMountIt) {
  auto client = NewDockerClient({.host = "unix:///nonexistent-dir/docker.sock"});
  ASSERT_TRUE(client.ok()) << client.status();
  auto version = (*client)->Version();
  EXPECT_EQ(version.status().code(), absl::StatusCode::kUnavailable) << version.status();
  EXPECT_THAT(std::string(version.status().message()), HasSubstr("version"));
  EXPECT_THAT(std::string(version.status().message()),
              HasSubstr("no Docker socket at /nonexistent-dir/docker.sock"));
  EXPECT_THAT(std::string(version.status().message()),
              HasSubstr("-v /var/run/docker.sock:/nonexistent-dir/docker.sock"));
  EXPECT_EQ((*client)->ListContainers().status().code(), absl::StatusCode::kUnavailable);
  auto events = (*client)->OpenEventStream();
  EXPECT_EQ(events.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(events.status().message()), HasSubstr("no Docker socket"));
}

// A unix socket in a fresh temporary directory; `Serve` answers one
// connection with `reply` (after reading the request) and closes it.
class FakeSocket {
 public:
  FakeSocket() {
    char dir[] = "/tmp/dispatchd-docker-client-test-XXXXXX";
    dir_ = mkdtemp(dir);
    path_ = dir_ + "/docker.sock";
  }
  ~FakeSocket() {
    if (server_.joinable()) server_.join();
    if (fd_ >= 0) close(fd_);
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  // Binds the path; with `listen_too` false nobody accepts (connect is refused).
  void Bind(bool listen_too) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd_, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    ASSERT_LT(path_.size(), sizeof(addr.sun_path));
    memcpy(addr.sun_path, path_.c_str(), path_.size());
    ASSERT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    if (listen_too) ASSERT_EQ(listen(fd_, 4), 0);
  }
  void Serve(std::string reply) {
    Bind(/*listen_too=*/true);
    server_ = std::thread([this, reply = std::move(reply)] {
      const int conn = accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      char buf[4096];
      (void)read(conn, buf, sizeof(buf));  // the request: one read is enough here
      (void)write(conn, reply.data(), reply.size());
      close(conn);
    });
  }
  std::string host() const { return "unix://" + path_; }
  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  // Stops accepting: later connects are refused.
  void CloseListener() {
    close(fd_);
    fd_ = -1;
    unlink(path_.c_str());
  }

 private:
  std::string dir_;
  std::string path_;
  int fd_ = -1;
  std::thread server_;
};

// A unix socket whose server follows a script: connection i answers the
// requests that come on it with script[i], in order, then closes; after
// `stop_listening_after` connections it closes its listening socket but
// still serves the connection it has, as a Docker engine does while it
// shuts down. Counts the connections.
class ScriptedEngine {
 public:
  explicit ScriptedEngine(std::vector<std::vector<std::string>> script,
                          size_t stop_listening_after = SIZE_MAX) {
    socket_.Bind(/*listen_too=*/true);
    server_ = std::thread([this, script = std::move(script), stop_listening_after] {
      for (size_t i = 0; i < script.size(); ++i) {
        const int conn = accept(socket_.fd(), nullptr, nullptr);
        if (conn < 0) return;
        ++connections_;
        if (i + 1 == stop_listening_after) socket_.CloseListener();
        for (const std::string& reply : script[i]) {
          char buf[4096];
          if (read(conn, buf, sizeof(buf)) <= 0) break;  // one read holds a request here
          (void)write(conn, reply.data(), reply.size());
        }
        close(conn);
      }
    });
  }
  ~ScriptedEngine() { server_.join(); }
  std::string host() const { return socket_.host(); }
  int connections() const { return connections_; }

  static std::string Answer(int status, const std::string& body) {
    return absl::StrCat("HTTP/1.1 ", status, " X\r\nContent-Type: application/json\r\n",
                        "Content-Length: ", body.size(), "\r\n\r\n", body);
  }
  static std::string VersionAnswer() { return Answer(200, R"({"ApiVersion":"1.41"})"); }
  static std::string Stopped() {
    return Answer(200, R"({"Id":"x","Name":"/x","State":{"Status":"exited","Running":false},)"
                       R"("Config":{"Labels":{}}})");
  }

 private:
  FakeSocket socket_;
  std::atomic<int> connections_{0};
  std::thread server_;
};

TEST(NewDockerClientTest, SayWhatIsWrongWithTheSocket) {
  {
    FakeSocket not_listening;
    not_listening.Bind(/*listen_too=*/false);
    auto version = (*NewDockerClient({.host = not_listening.host()}))->Version();
    EXPECT_EQ(version.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(version.status().message()),
                HasSubstr("nothing listens on " + not_listening.path()));
  }
  {
    FakeSocket regular_file;
    FILE* f = fopen(regular_file.path().c_str(), "w");
    ASSERT_NE(f, nullptr);
    fclose(f);
    auto version = (*NewDockerClient({.host = regular_file.host()}))->Version();
    EXPECT_EQ(version.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(version.status().message()),
                HasSubstr(regular_file.path() + " is not a socket"));
  }
  {
    FakeSocket not_http;
    not_http.Serve("SSH-2.0-OpenSSH_9.2\r\n");
    auto version = (*NewDockerClient({.host = not_http.host()}))->Version();
    EXPECT_EQ(version.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(version.status().message()),
                HasSubstr(not_http.path() + " answered, but it is not a Docker engine"));
  }
  {
    FakeSocket other_http;
    other_http.Serve(
        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found");
    auto version = (*NewDockerClient({.host = other_http.host()}))->Version();
    EXPECT_EQ(version.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(version.status().message()), HasSubstr("is not a Docker engine"));
  }
}

// A Docker engine that shuts down closes its listening socket first, then
// stops the containers, and meanwhile still answers on connections already
// open, with containers that read as stopped. A call must never be answered
// by such an engine: each call opens a connection of its own, which fails
// once the engine stops listening (Unavailable: retried, nothing skipped).
TEST(DockerClientConnectionTest, AnEngineThatStopsListeningAnswersNoLaterCall) {
  ScriptedEngine engine({{ScriptedEngine::VersionAnswer(), ScriptedEngine::Stopped()}},
                        /*stop_listening_after=*/1);
  auto client = *NewDockerClient({.host = engine.host()});
  EXPECT_EQ(*client->Version(), "1.41");
  absl::StatusOr<ContainerInfo> inspected = client->InspectContainer("x");
  EXPECT_EQ(inspected.status().code(), absl::StatusCode::kUnavailable)
      << (inspected.ok() ? "answered by the engine that stopped listening" : "");
  EXPECT_EQ(engine.connections(), 1);
}

TEST(DefaultDockerHostTest, FollowsDockerHostElseTheUsualSockets) {
  ASSERT_EQ(setenv("DOCKER_HOST", "unix:///run/other.sock", 1), 0);
  EXPECT_EQ(DefaultDockerHost(), "unix:///run/other.sock");
  ASSERT_EQ(unsetenv("DOCKER_HOST"), 0);
  struct stat st;
  const bool run = stat("/run/docker.sock", &st) == 0;
  const bool var_run = stat("/var/run/docker.sock", &st) == 0;
  EXPECT_EQ(DefaultDockerHost(), !run && var_run ? "unix:///var/run/docker.sock"
                                                 : "unix:///run/docker.sock");
}

// ---------------------------------------------------------------------------
// Against a private dockerd.

class DockerClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto daemon = PrivateDockerd::Start();
    if (!daemon.ok()) {
      *start_error_ = daemon.status().ToString();
      return;
    }
    daemon_ = daemon->release();
    absl::Status image = daemon_->EnsureBusyboxImage();
    if (!image.ok()) *start_error_ = image.ToString();
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(start_error_->empty()) << *start_error_;
    auto client = NewDockerClient({.host = daemon_->host()});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  // `docker args...` on the private daemon; fails the test on error.
  std::string Docker(const std::vector<std::string>& args) {
    auto out = daemon_->Docker(args);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : "";
  }

  std::string RunSleeper(const std::string& name, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"run", "-d", "--network", "none", "--name", name};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {kImage, "sleep", "1000"});
    return Docker(args);
  }

  // Waits (bounded) until the exec has finished.
  ExecInfo AwaitExec(const std::string& exec_id) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (true) {
      auto info = client_->InspectExec(exec_id);
      EXPECT_TRUE(info.ok()) << info.status();
      if (!info.ok() || !info->running || absl::Now() > deadline) return info.ok() ? *info : ExecInfo{};
      absl::SleepFor(absl::Milliseconds(10));
    }
  }

  static PrivateDockerd* daemon_;
  static std::string* start_error_;
  std::unique_ptr<DockerApi> client_;
};

PrivateDockerd* DockerClientTest::daemon_ = nullptr;
std::string* DockerClientTest::start_error_ = new std::string();

const ContainerInfo* FindById(const std::vector<ContainerInfo>& all, const std::string& id) {
  for (const ContainerInfo& c : all) {
    if (c.id == id) return &c;
  }
  return nullptr;
}

TEST_F(DockerClientTest, VersionIsNegotiatedDownTo141) {
  auto version = client_->Version();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, "1.41");
}

TEST_F(DockerClientTest, ListShowsLabelsAndStates) {
  const std::string running = RunSleeper(
      "list-running", {"--label", "subscription.a.b.container.command=sh -c 'echo hi'",
                       "--label", "empty="});
  const std::string created = Docker({"create", "--network", "none", "--name", "list-created",
                                      "--label", "x=y", kImage, "true"});
  const std::string exited = RunSleeper("list-exited");
  Docker({"stop", "-t", "0", "list-exited"});

  auto all = client_->ListContainers();
  ASSERT_TRUE(all.ok()) << all.status();
  const ContainerInfo* r = FindById(*all, running);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->name, "list-running");
  EXPECT_EQ(r->state, ContainerState::kRunning);
  EXPECT_THAT(r->labels,
              UnorderedElementsAre(Pair("subscription.a.b.container.command", "sh -c 'echo hi'"),
                                   Pair("empty", "")));
  const ContainerInfo* c = FindById(*all, created);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->state, ContainerState::kCreated);
  EXPECT_THAT(c->labels, ElementsAre(Pair("x", "y")));
  const ContainerInfo* e = FindById(*all, exited);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->name, "list-exited");
  EXPECT_EQ(e->state, ContainerState::kExited);
  EXPECT_THAT(e->labels, IsEmpty());
}

TEST_F(DockerClientTest, InspectByIdAndName) {
  const std::string id = RunSleeper("inspect-me", {"--label", "k=v"});
  auto by_id = client_->InspectContainer(id);
  ASSERT_TRUE(by_id.ok()) << by_id.status();
  EXPECT_EQ(by_id->id, id);
  EXPECT_EQ(by_id->name, "inspect-me");
  EXPECT_EQ(by_id->state, ContainerState::kRunning);
  EXPECT_THAT(by_id->labels, ElementsAre(Pair("k", "v")));
  auto by_name = client_->InspectContainer("inspect-me");
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(*by_name, *by_id);
}

TEST_F(DockerClientTest, InspectMissingIsNotFound) {
  auto missing = client_->InspectContainer("no-such-container");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("no-such-container"));
  // Odd characters are escaped, not sent raw into the path; '/' is refused.
  EXPECT_EQ(client_->InspectContainer("b?c#d").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->InspectContainer("a/../b").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->InspectContainer("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->InspectExec("no-such-exec").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->StartExec("no-such-exec").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->StartContainer("no-such-container").code(), absl::StatusCode::kNotFound);
}

TEST_F(DockerClientTest, ExecRunsTheCommandAndReportsItsExitCode) {
  const std::string id = RunSleeper("exec-target");
  auto exec = client_->CreateExec(id, {"sh", "-c", "echo ran > /tmp/marker"}, {});
  ASSERT_TRUE(exec.ok()) << exec.status();
  ASSERT_TRUE(client_->StartExec(*exec).ok());
  ExecInfo done = AwaitExec(*exec);
  EXPECT_FALSE(done.running);
  EXPECT_EQ(done.exit_code, 0);
  EXPECT_EQ(Docker({"exec", "exec-target", "cat", "/tmp/marker"}), "ran");

  auto failing = client_->CreateExec(id, {"sh", "-c", "exit 3"}, {});
  ASSERT_TRUE(failing.ok()) << failing.status();
  ASSERT_TRUE(client_->StartExec(*failing).ok());
  EXPECT_EQ(AwaitExec(*failing).exit_code, 3);
}

TEST_F(DockerClientTest, ExecSeesItsEnvironment) {
  const std::string id = RunSleeper("exec-env");
  auto exec = client_->CreateExec(
      id, {"sh", "-c", "echo \"$DISPATCH_EVENT_ID|$DISPATCH_EVENT_PAYLOAD\" > /tmp/env"},
      {"DISPATCH_EVENT_ID=some-dir.the-event-file", "DISPATCH_EVENT_PAYLOAD=with space"});
  ASSERT_TRUE(exec.ok()) << exec.status();
  ASSERT_TRUE(client_->StartExec(*exec).ok());
  EXPECT_EQ(AwaitExec(*exec).exit_code, 0);
  EXPECT_EQ(Docker({"exec", "exec-env", "cat", "/tmp/env"}), "some-dir.the-event-file|with space");
}

TEST_F(DockerClientTest, ExecInStoppedOrPausedContainerIsFailedPrecondition) {
  const std::string stopped = Docker({"create", "--network", "none", "--name", "exec-stopped",
                                      kImage, "sleep", "1000"});
  auto on_stopped = client_->CreateExec(stopped, {"true"}, {});
  EXPECT_EQ(on_stopped.status().code(), absl::StatusCode::kFailedPrecondition)
      << on_stopped.status();
  EXPECT_THAT(std::string(on_stopped.status().message()), HasSubstr("is not running"));

  const std::string paused = RunSleeper("exec-paused");
  Docker({"pause", "exec-paused"});
  auto on_paused = client_->CreateExec(paused, {"true"}, {});
  EXPECT_EQ(on_paused.status().code(), absl::StatusCode::kFailedPrecondition)
      << on_paused.status();
  EXPECT_THAT(std::string(on_paused.status().message()), HasSubstr("is paused"));
  auto inspected = client_->InspectContainer(paused);
  ASSERT_OK(inspected);
  EXPECT_EQ(inspected->state, ContainerState::kPaused);
  Docker({"unpause", "exec-paused"});
}

TEST_F(DockerClientTest, StartContainerStartsAStoppedOneAndAcceptsARunningOne) {
  const std::string id = Docker({"create", "--network", "none", "--name", "start-me", kImage,
                                 "sleep", "1000"});
  ASSERT_TRUE(client_->StartContainer(id).ok());
  auto inspected = client_->InspectContainer(id);
  ASSERT_TRUE(inspected.ok()) << inspected.status();
  EXPECT_EQ(inspected->state, ContainerState::kRunning);
  // Already running: Docker answers 304, which is fine.
  EXPECT_TRUE(client_->StartContainer(id).ok());
}

TEST_F(DockerClientTest, ConcurrentCallsAllSucceed) {
  const std::string id = RunSleeper("concurrent");
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 5; ++j) {
        if (client_->InspectContainer(id).ok() && client_->ListContainers().ok()) ++ok;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), 40);
}

// Reads events until one matches `pred` (bounded by 30 s of waiting).
template <typename Pred>
std::optional<DockerEvent> AwaitEvent(DockerEventStream& stream, Pred pred) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    auto next = stream.Next(absl::Milliseconds(500));
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok()) return std::nullopt;
    if (next->has_value() && pred(**next)) return *next;
  }
  return std::nullopt;
}

TEST_F(DockerClientTest, EventStreamSeesStartDieAndExecDie) {
  auto stream = client_->OpenEventStream();
  ASSERT_TRUE(stream.ok()) << stream.status();
  const std::string id = RunSleeper("events-target", {"--label", "watch=me"});

  auto start = AwaitEvent(**stream, [&](const DockerEvent& e) {
    return e.id == id && e.action == "start";
  });
  ASSERT_TRUE(start.has_value());
  EXPECT_EQ(start->type, "container");
  EXPECT_EQ(start->attributes["name"], "events-target");
  EXPECT_EQ(start->attributes["watch"], "me");
  EXPECT_GT(start->time, absl::UnixEpoch());

  auto exec = client_->CreateExec(id, {"sh", "-c", "exit 5"}, {});
  ASSERT_TRUE(exec.ok()) << exec.status();
  ASSERT_TRUE(client_->StartExec(*exec).ok());
  auto exec_die = AwaitEvent(**stream, [&](const DockerEvent& e) {
    return e.id == id && e.action == "exec_die";
  });
  ASSERT_TRUE(exec_die.has_value());
  EXPECT_EQ(exec_die->attributes["execID"], *exec);
  EXPECT_EQ(exec_die->attributes["exitCode"], "5");

  Docker({"stop", "-t", "0", "events-target"});
  auto die = AwaitEvent(**stream, [&](const DockerEvent& e) {
    return e.id == id && e.action == "die";
  });
  ASSERT_TRUE(die.has_value());
  EXPECT_EQ(die->attributes["exitCode"], "137");

  // Quiet stream: a timeout, not an error.
  auto quiet = (*stream)->Next(absl::Milliseconds(50));
  EXPECT_TRUE(quiet.ok()) << quiet.status();
}

// A daemon of its own, since it gets stopped.
TEST(DockerClientDaemonGoneTest, CallsAndStreamFailUnavailable) {
  auto daemon = PrivateDockerd::Start();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto client = NewDockerClient({.host = (*daemon)->host()});
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->Version().ok());
  auto stream = (*client)->OpenEventStream();
  ASSERT_TRUE(stream.ok()) << stream.status();

  ASSERT_TRUE((*daemon)->Stop().ok());

  auto list = (*client)->ListContainers();
  EXPECT_EQ(list.status().code(), absl::StatusCode::kUnavailable) << list.status();
  EXPECT_THAT(std::string(list.status().message()), HasSubstr("list containers"));
  EXPECT_EQ((*client)->InspectContainer("x").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*client)->CreateExec("x", {"true"}, {}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ((*client)->OpenEventStream().status().code(), absl::StatusCode::kUnavailable);

  absl::Status stream_status;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (stream_status.ok() && absl::Now() < deadline) {
    auto next = (*stream)->Next(absl::Seconds(1));
    if (!next.ok()) stream_status = next.status();
  }
  EXPECT_EQ(stream_status.code(), absl::StatusCode::kUnavailable) << stream_status;

  // Back again: the same client works without being recreated.
  ASSERT_TRUE((*daemon)->Restart().ok());
  EXPECT_TRUE((*client)->ListContainers().ok());
}

}  // namespace
}  // namespace agent
}  // namespace dispatchd
