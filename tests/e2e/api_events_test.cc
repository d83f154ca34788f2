// The API's event calls end to end: the real dispatchd (all-in-one, or a
// controller and an agent) on a private dockerd, called over real gRPC by
// the generated C++ stubs, by dispatchctl and by the Python example.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/dispatch/v1/api.grpc.pb.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "tests/testing/e2e_fixture.h"

namespace dispatchd {
namespace testing {
namespace {

using dispatch::v1::WatchUpdate;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/",
                      workspace != nullptr ? workspace : "dispatchd", "/", path);
}

// The address in "controller listening on ADDR " of a log, or "".
std::string ListeningAddress(const std::string& log) {
  const std::string kMarker = "controller listening on ";
  size_t at = log.rfind(kMarker);
  if (at == std::string::npos) return "";
  at += kMarker.size();
  size_t end = log.find_first_of(" \n", at);
  return log.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

class ApiEventsTest : public DockerHostTest {
 protected:
  void StartAllInOne(std::vector<std::string> extra = {}) {
    extra.insert(extra.end(), {"--agent-id", "api-host"});
    StartDispatchd(extra);
    ASSERT_TRUE(WaitFor([&] { return !ListeningAddress(Log()).empty(); })) << Log();
    Connect(ListeningAddress(Log()));
  }

  void Connect(const std::string& address) {
    address_ = address;
    stub_ = dispatch::v1::Dispatch::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

  grpc::Status Emit(dispatch::v1::EmitRequest request, dispatch::v1::EmitResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    return stub_->Emit(&context, request, response);
  }

  dispatch::v1::EmitRequest EmitId(const std::string& id, const std::string& payload,
                                   const std::string& key = "") {
    dispatch::v1::EmitRequest request;
    request.set_event_id(id);
    request.set_payload(payload);
    request.set_idempotency_key(key);
    return request;
  }

  std::string Cat(const std::string& container, const std::string& path) {
    auto out = daemon_->Docker({"exec", container, "cat", path});
    return out.ok() ? *out : "";
  }

  // dispatchctl --controller <this dispatchd> args...
  absl::StatusOr<std::string> Dispatchctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {Runfile("cmd/dispatchctl/dispatchctl"), "--controller",
                                     address_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  std::string address_;
  std::unique_ptr<dispatch::v1::Dispatch::Stub> stub_;
};

TEST_F(ApiEventsTest, EmitRunsTheHandlerWithThePayload) {
  const std::string handler = Name("emit-handler");
  Run(handler, {{"subscription.api.emit.container.command",
                 "sh -c 'echo \"$DISPATCH_EVENT_PAYLOAD\" >> /got'"}});
  StartAllInOne();
  dispatch::v1::EmitResponse response;
  grpc::Status status = Emit(EmitId("api.emit", "from the API"), &response);
  ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << Log();
  EXPECT_EQ(response.event_id(), "api.emit");
  EXPECT_EQ(response.path(), "api.emit");
  EXPECT_EQ(response.agent_id(), "api-host");
  EXPECT_FALSE(response.duplicate());
  ASSERT_TRUE(WaitFor([&] { return Cat(handler, "/got") == "from the API"; })) << Log();
  EXPECT_TRUE(WaitFor([&] { return Gone("api.emit"); }));
  // A path works too.
  dispatch::v1::EmitRequest by_path;
  by_path.set_path("api/emit");
  by_path.set_payload("by path");
  ASSERT_TRUE(Emit(by_path, &response).ok());
  EXPECT_EQ(response.event_id(), "api.emit");
  EXPECT_EQ(response.path(), "api/emit");
  EXPECT_TRUE(WaitFor([&] { return Cat(handler, "/got") == "from the API\nby path"; })) << Log();
}

TEST_F(ApiEventsTest, BadEmitsAreRefusedNamingTheRuleAndWriteNothing) {
  StartAllInOne({"--max-payload-bytes", "64"});
  struct Case {
    dispatch::v1::EmitRequest request;
    grpc::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases;
  auto id = [](const std::string& v) {
    dispatch::v1::EmitRequest r;
    r.set_event_id(v);
    return r;
  };
  auto path = [](const std::string& v) {
    dispatch::v1::EmitRequest r;
    r.set_path(v);
    return r;
  };
  cases.push_back({dispatch::v1::EmitRequest(), grpc::StatusCode::INVALID_ARGUMENT, "give an event id"});
  cases.push_back({id(std::string(300, 'x')), grpc::StatusCode::INVALID_ARGUMENT, "longer than 255"});
  cases.push_back({path("a/../b"), grpc::StatusCode::INVALID_ARGUMENT, "'..'"});
  cases.push_back({path("/etc/x"), grpc::StatusCode::INVALID_ARGUMENT, "absolute"});
  cases.push_back({path("a/.hidden"), grpc::StatusCode::INVALID_ARGUMENT, "hidden"});
  cases.push_back({id(std::string("a\0b", 3)), grpc::StatusCode::INVALID_ARGUMENT, "NUL"});
  dispatch::v1::EmitRequest big = id("big");
  big.set_payload(std::string(65, 'x'));
  cases.push_back({big, grpc::StatusCode::INVALID_ARGUMENT, "--max-payload-bytes"});
  dispatch::v1::EmitRequest unknown_host = id("x");
  unknown_host.set_host("nowhere");
  cases.push_back({unknown_host, grpc::StatusCode::NOT_FOUND, "nowhere"});
  for (const Case& c : cases) {
    dispatch::v1::EmitResponse response;
    grpc::Status status = Emit(c.request, &response);
    EXPECT_EQ(status.error_code(), c.code) << c.request.ShortDebugString();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message)) << c.request.ShortDebugString();
  }
  // Nothing was written: the events tree is empty (hidden helpers aside).
  auto listing = RunCommand({"find", events_, "-not", "-path", "*/.*", "-type", "f"});
  ASSERT_TRUE(listing.ok());
  EXPECT_EQ(*listing, "");
}

// Watch sees an event's whole life, in order, and the Python example does
// the same with Debian's Python gRPC.
TEST_F(ApiEventsTest, WatchSeesTheWholeLifeOfAnEventInOrder) {
  const std::string handler = Name("watched");
  Run(handler, {{"subscription.api.watched.container.command", "true"}});
  StartAllInOne();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  dispatch::v1::WatchRequest request;
  request.set_event_id("api.watched");
  auto reader = stub_->Watch(&context, request);
  reader->WaitForInitialMetadata();
  dispatch::v1::EmitResponse emitted;
  ASSERT_TRUE(Emit(EmitId("api.watched", "x"), &emitted).ok());
  std::vector<WatchUpdate::Kind> kinds;
  WatchUpdate update;
  uint64_t last_seq = 0;
  while (reader->Read(&update)) {
    EXPECT_GT(update.seq(), last_seq);
    last_seq = update.seq();
    kinds.push_back(update.kind());
    if (update.kind() == WatchUpdate::ROUTED) {
      ASSERT_EQ(update.recipients_size(), 1);
      EXPECT_EQ(update.recipients(0).container_name(), handler);
    }
    if (update.kind() == WatchUpdate::DELIVERY) {
      EXPECT_EQ(update.outcome(), dispatch::v1::DELIVERY_OUTCOME_DELIVERED);
      EXPECT_FALSE(update.exec_id().empty());
    }
    if (update.kind() == WatchUpdate::EXEC_EXIT) {
      EXPECT_EQ(update.exit_code(), 0);
      break;
    }
  }
  context.TryCancel();
  EXPECT_THAT(kinds, ElementsAre(WatchUpdate::OBSERVED, WatchUpdate::ROUTED, WatchUpdate::DELIVERY,
                                 WatchUpdate::SETTLED, WatchUpdate::EXEC_EXIT))
      << Log();

  // The Python example: emit, then watch until settled.
  auto python = RunCommand(
      {"/usr/bin/python3", Runfile("clients/python/emit_and_watch.py"), "--controller", address_,
       "--event-id", "api.watched", "--payload", "from python"},
      {absl::StrCat("PYTHONPATH=", Runfile("clients/python"))});
  ASSERT_TRUE(python.ok()) << python.status() << "\n" << Log();
  EXPECT_THAT(*python, HasSubstr("emitted api.watched"));
  EXPECT_THAT(*python, HasSubstr("SETTLED"));
}

// A watcher that never reads is cut off with RESOURCE_EXHAUSTED while every
// event is still dispatched: the same burst settles in full with and
// without it (counted, not timed). The burst must outgrow what gRPC and the
// sockets buffer for a stream (megabytes), so it is of events without
// subscribers, each of which is observed, routed and settled.
TEST_F(ApiEventsTest, AStuckWatcherIsCutOffAndDispatchingGoesOn) {
  StartAllInOne();
  constexpr int kBurst = 20000;
  auto burst = [&](const std::string& dir) {
    for (int i = 0; i < kBurst; ++i) WriteFile(absl::StrCat(events_, "/", dir, "/e", i), "");
  };
  auto settled = [&] {
    grpc::ClientContext context;
    dispatch::v1::GetStatusResponse status;
    return stub_->GetStatus(&context, {}, &status).ok()
               ? status.events_settled_no_subscribers()
               : 0;
  };
  grpc::ClientContext context;
  dispatch::v1::WatchRequest request;
  request.set_buffer(16);
  auto reader = stub_->Watch(&context, request);
  reader->WaitForInitialMetadata();
  burst("with-watcher");
  ASSERT_TRUE(WaitFor([&] { return settled() == kBurst; }, absl::Seconds(120))) << settled();
  // Only now read: what was buffered, then the end of the stream.
  WatchUpdate update;
  int read = 0;
  while (reader->Read(&update)) ++read;
  grpc::Status end = reader->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << end.error_message();
  EXPECT_THAT(end.error_message(), HasSubstr("missed"));
  EXPECT_LT(read, 3 * kBurst);
  // Without a watcher: the same count.
  burst("without");
  EXPECT_TRUE(WaitFor([&] { return settled() == 2 * kBurst; }, absl::Seconds(120))) << settled();
}

// A client whose Emit may have been lost in a controller restart retries
// with the same idempotency key: the agent that wrote the file remembers the
// key, so the retry writes nothing and the handler runs once.
TEST_F(ApiEventsTest, EmitRetriedAcrossAControllerRestartRunsOnce) {
  const std::string handler = Name("once");
  Run(handler, {{"subscription.api.once.container.command",
                 "sh -c 'echo \"$DISPATCH_EVENT_PAYLOAD\" >> /ran'"}});
  const std::string address = absl::StrCat("127.0.0.1:", FreePort());
  auto start_controller = [&] {
    auto process = DispatchdProcess::Start(
        {"controller", "--listen", address, "--heartbeat", "1s", "--log-level", "debug"},
        dir_ + "/controller.log");
    EXPECT_TRUE(process.ok()) << process.status();
    return process.ok() ? *std::move(process) : nullptr;
  };
  std::unique_ptr<DispatchdProcess> controller = start_controller();
  ASSERT_NE(controller, nullptr);
  auto agent = DispatchdProcess::Start(
      {"agent", "--controller", address, "--agent-id", "api-host", "--events-dir", events_,
       "--docker-host", daemon_->host(), "--log-level", "debug"},
      dir_ + "/agent.log");
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto controller_log = [&] { return ReadFile(dir_ + "/controller.log"); };
  ASSERT_TRUE(WaitFor([&] {
    return controller_log().find("agent api-host inventory:") != std::string::npos;
  })) << controller_log();
  Connect(address);

  dispatch::v1::EmitResponse first;
  ASSERT_TRUE(Emit(EmitId("api.once", "first", "key-1"), &first).ok());
  EXPECT_FALSE(first.duplicate());
  ASSERT_TRUE(WaitFor([&] { return Cat(handler, "/ran") == "first"; })) << controller_log();
  ASSERT_TRUE(WaitFor([&] { return Gone("api.once"); }));

  // kill -9 and a new controller on the same address; the agent comes back.
  controller.reset();
  const size_t log_size = controller_log().size();
  controller = start_controller();
  ASSERT_NE(controller, nullptr);
  ASSERT_TRUE(WaitFor([&] {
    return controller_log().find("agent api-host inventory:", log_size) != std::string::npos;
  }, absl::Seconds(60))) << controller_log();

  // The client retries (its channel may still be reconnecting) with the key.
  dispatch::v1::EmitResponse retried;
  grpc::Status status;
  ASSERT_TRUE(WaitFor([&] {
    status = Emit(EmitId("api.once", "first", "key-1"), &retried);
    return status.ok();
  })) << status.error_code() << ": " << status.error_message();
  EXPECT_TRUE(retried.duplicate());
  EXPECT_EQ(retried.written_unix_nanos(), first.written_unix_nanos());
  EXPECT_FALSE(FileExists(events_ + "/api.once")) << "the retry wrote nothing";
  // A new key is a new event: it runs, after which the handler has run twice
  // in all, not three times.
  dispatch::v1::EmitResponse second;
  ASSERT_TRUE(Emit(EmitId("api.once", "second", "key-2"), &second).ok());
  EXPECT_TRUE(WaitFor([&] { return Cat(handler, "/ran") == "first\nsecond"; }))
      << Cat(handler, "/ran");
  agent->reset();
}

// An event that exhausts its attempts is listed, replayed once its cause is
// fixed (then delivered), or purged.
TEST_F(ApiEventsTest, DeadLettersAreListedReplayedAndPurged) {
  const std::string handler = Name("flaky");
  Run(handler, {{"subscription.api.dead.container.command", "touch /ran"}});
  ASSERT_OK(daemon_->Docker({"pause", handler}));
  StartAllInOne({"--max-attempts", "2", "--retry-min-backoff", "10ms", "--retry-max-backoff", "20ms"});
  dispatch::v1::EmitResponse r;
  ASSERT_TRUE(Emit(EmitId("api.dead", "1"), &r).ok());
  ASSERT_TRUE(WaitFor([&] { return FileExists(events_ + "/.dead-letter/api.dead"); })) << Log();
  // The same through dispatchctl, as a user would look.
  auto table = Dispatchctl({"dead-letters"});
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_THAT(*table, HasSubstr("api-host"));
  EXPECT_THAT(*table, HasSubstr("api.dead"));
  EXPECT_THAT(*table, HasSubstr("gave up"));
  auto explained = Dispatchctl({"explain", "api.dead"});
  ASSERT_TRUE(explained.ok()) << explained.status();
  EXPECT_THAT(*explained, HasSubstr("not-delivered"));
  EXPECT_THAT(*explained, HasSubstr(handler));

  grpc::ClientContext list_context;
  dispatch::v1::ListDeadLettersResponse listed;
  ASSERT_TRUE(stub_->ListDeadLetters(&list_context, {}, &listed).ok());
  ASSERT_EQ(listed.dead_letters_size(), 1);
  EXPECT_EQ(listed.dead_letters(0).agent_id(), "api-host");
  EXPECT_EQ(listed.dead_letters(0).path(), "api.dead");
  EXPECT_EQ(listed.dead_letters(0).event_id(), "api.dead");
  EXPECT_EQ(listed.dead_letters(0).attempts(), 2);
  ASSERT_GT(listed.dead_letters(0).errors_size(), 0);
  EXPECT_THAT(listed.dead_letters(0).errors(0), HasSubstr("gave up"));

  ASSERT_OK(daemon_->Docker({"unpause", handler}));
  grpc::ClientContext replay_context;
  dispatch::v1::ReplayDeadLetterRequest replay;
  replay.set_host("api-host");
  replay.set_path("api.dead");
  dispatch::v1::ReplayDeadLetterResponse replayed;
  ASSERT_TRUE(stub_->ReplayDeadLetter(&replay_context, replay, &replayed).ok());
  EXPECT_EQ(replayed.event_id(), "api.dead");
  ASSERT_TRUE(WaitFor([&] { return InContainer(handler, "/ran"); })) << Log();
  EXPECT_TRUE(WaitFor([&] { return Gone("api.dead"); }));

  auto emitted = Dispatchctl({"emit", "api.dead", "from dispatchctl"});
  ASSERT_TRUE(emitted.ok()) << emitted.status();
  EXPECT_THAT(*emitted, HasSubstr("emitted api.dead (api.dead on api-host)"));
  EXPECT_TRUE(WaitFor([&] { return Gone("api.dead"); }));

  // Another one, purged.
  ASSERT_OK(daemon_->Docker({"pause", handler}));
  ASSERT_TRUE(Emit(EmitId("api.dead", "2"), &r).ok());
  ASSERT_TRUE(WaitFor([&] { return FileExists(events_ + "/.dead-letter/api.dead"); })) << Log();
  grpc::ClientContext purge_context;
  dispatch::v1::PurgeDeadLetterRequest purge;
  purge.set_host("api-host");
  purge.set_path("api.dead");
  dispatch::v1::PurgeDeadLetterResponse purged;
  ASSERT_TRUE(stub_->PurgeDeadLetter(&purge_context, purge, &purged).ok());
  EXPECT_FALSE(FileExists(events_ + "/.dead-letter/api.dead"));
  EXPECT_FALSE(FileExists(events_ + "/.dead-letter/api.dead.error.json"));
  ASSERT_OK(daemon_->Docker({"unpause", handler}));
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
