#include "controller/forwarder.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "common/testing/exposition.h"
#include "common/testing/fake_clock.h"
#include "controller/forwarding_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace dispatchd {
namespace controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

sinks::EventPtr MakeEvent(const std::string& id) {
  auto event = std::make_shared<sinks::Event>();
  event->id = id;
  event->path = id;
  event->payload = "payload-" + id;
  return event;
}

void SpinUntil(const std::function<bool()>& done) {
  while (!done()) std::this_thread::yield();
}

// A destination a test switches between down (every Write fails), up
// (records) and stuck (Write blocks until up or Close).
class ScriptedSink final : public sinks::Sink {
 public:
  enum class Mode { kUp, kDown, kStuck };
  explicit ScriptedSink(Mode mode) : mode_(mode) {}

  absl::Status Write(sinks::EventPtr event) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++attempts_;
    cv_.wait(lock, [&] { return mode_ != Mode::kStuck || closed_; });
    if (closed_) return sinks::ClosedError();
    if (mode_ == Mode::kDown) return absl::UnavailableError("receiver down");
    ids_.push_back(event->id);
    return absl::OkStatus();
  }
  absl::Status Close() override {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
    return absl::OkStatus();
  }
  void Set(Mode mode) {
    std::lock_guard<std::mutex> lock(mu_);
    mode_ = mode;
    cv_.notify_all();
  }
  int attempts() const {
    std::lock_guard<std::mutex> lock(mu_);
    return attempts_;
  }
  std::vector<std::string> ids() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Mode mode_;
  bool closed_ = false;
  int attempts_ = 0;
  std::vector<std::string> ids_;
};

class ForwarderTest : public ::testing::Test {
 protected:
  // Builds a forwarder whose destinations are ScriptedSinks, one per URI, in
  // the given initial modes.
  std::unique_ptr<Forwarder> Make(const std::vector<std::string>& uris,
                                  std::vector<ScriptedSink::Mode> modes, size_t queue_size) {
    for (ScriptedSink::Mode mode : modes) sinks_.push_back(std::make_shared<ScriptedSink>(mode));
    ForwarderOptions options;
    options.queue_size = queue_size;
    options.retry_min_backoff = absl::Seconds(1);
    options.retry_max_backoff = absl::Seconds(4);
    options.clock = &clock_;
    options.random = [](int64_t bound) { return bound - 1; };  // always the longest wait
    options.make_sink = [this, next = 0](const ForwardDestination&) mutable
        -> absl::StatusOr<std::shared_ptr<sinks::Sink>> { return sinks_[next++]; };
    absl::StatusOr<std::unique_ptr<Forwarder>> forwarder = Forwarder::Create(uris, options);
    EXPECT_TRUE(forwarder.ok()) << forwarder.status();
    return forwarder.ok() ? *std::move(forwarder) : nullptr;
  }

  FakeClock clock_;
  std::vector<std::shared_ptr<ScriptedSink>> sinks_;
};

TEST_F(ForwarderTest, RejectsUnknownSchemeAndMalformedAndDuplicates) {
  ForwarderOptions options;
  auto f = Forwarder::Create({"log:", "ftp://host/x"}, options);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(f.status().message(), HasSubstr("unknown scheme 'ftp'"));
  EXPECT_THAT(f.status().message(), HasSubstr("'ftp://host/x'"));
  f = Forwarder::Create({"http://"}, options);
  EXPECT_THAT(f.status().message(), HasSubstr("malformed forwarding destination 'http://'"));
  f = Forwarder::Create({"log:a", "log:a"}, options);
  EXPECT_THAT(f.status().message(), HasSubstr("listed twice"));
  options.queue_size = 0;
  EXPECT_FALSE(Forwarder::Create({"log:a"}, options).ok());
}

TEST_F(ForwarderTest, DeliversInOrderAfterOutageAndCountsDropOldest) {
  std::unique_ptr<Forwarder> forwarder =
      Make({"http://a.example/"}, {ScriptedSink::Mode::kDown}, /*queue_size=*/3);
  ASSERT_NE(forwarder, nullptr);
  ScriptedSink& dst = *sinks_[0];
  ASSERT_TRUE(forwarder->sink()->Write(MakeEvent("e1")).ok());
  // e1 is being retried: its first attempt failed and the worker waits out
  // the backoff on the fake clock.
  SpinUntil([&] { return dst.attempts() == 1 && clock_.waiters() == 1; });
  for (const char* id : {"e2", "e3", "e4", "e5"}) {
    ASSERT_TRUE(forwarder->sink()->Write(MakeEvent(id)).ok()) << "never blocks, never fails";
  }
  // Bound 3: e2, the oldest waiting, was dropped.
  std::vector<ForwardDestinationStats> stats = forwarder->stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].destination, "http://a.example/");
  EXPECT_EQ(stats[0].dropped, 1u);
  EXPECT_EQ(stats[0].queue_depth, 3u);
  EXPECT_EQ(stats[0].sent, 0u);

  // Still down: the same event is retried after a doubled backoff.
  clock_.Advance(absl::Seconds(1));
  SpinUntil([&] { return dst.attempts() == 2 && clock_.waiters() == 1; });
  clock_.Advance(absl::Seconds(2));
  SpinUntil([&] { return dst.attempts() == 3 && clock_.waiters() == 1; });
  EXPECT_EQ(forwarder->stats()[0].failed, 3u);

  dst.Set(ScriptedSink::Mode::kUp);
  clock_.Advance(absl::Seconds(4));
  SpinUntil([&] { return dst.ids().size() == 4; });
  EXPECT_THAT(dst.ids(), ElementsAre("e1", "e3", "e4", "e5"));
  stats = forwarder->stats();
  EXPECT_EQ(stats[0].sent, 4u);
  EXPECT_EQ(stats[0].failed, 3u);
  EXPECT_EQ(stats[0].dropped, 1u);
  EXPECT_EQ(stats[0].queue_depth, 0u);
  EXPECT_TRUE(forwarder->Close(clock_.Now()).ok());
}

TEST_F(ForwarderTest, AStuckDestinationDelaysNeitherWritersNorOtherDestinations) {
  std::unique_ptr<Forwarder> forwarder =
      Make({"http://stuck.example/", "file:/fine"},
           {ScriptedSink::Mode::kStuck, ScriptedSink::Mode::kUp}, /*queue_size=*/100);
  ASSERT_NE(forwarder, nullptr);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(forwarder->sink()->Write(MakeEvent(absl::StrCat("e", i))).ok());
  }
  SpinUntil([&] { return sinks_[1]->ids().size() == 10; });
  EXPECT_EQ(sinks_[1]->ids().front(), "e0");
  EXPECT_EQ(sinks_[1]->ids().back(), "e9");
  EXPECT_TRUE(sinks_[0]->ids().empty());
  std::vector<ForwardDestinationStats> stats = forwarder->stats();
  EXPECT_EQ(stats[1].sent, 10u);
  EXPECT_EQ(stats[0].sent, 0u);

  // Close with a deadline that has passed: the stuck pipeline gives up on
  // its 10 events (counted as dropped) instead of hanging, and its
  // destination is closed.
  absl::Status status = forwarder->Close(clock_.Now());
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_THAT(status.message(), HasSubstr("http://stuck.example/"));
  stats = forwarder->stats();
  EXPECT_EQ(stats[0].dropped, 10u);
  EXPECT_EQ(stats[1].dropped, 0u);
  EXPECT_TRUE(sinks::IsClosed(forwarder->sink()->Write(MakeEvent("late"))));
  EXPECT_TRUE(forwarder->Close(clock_.Now()).ok()) << "idempotent";
}

TEST_F(ForwarderTest, RealFileAndLogDestinations) {
  std::string dir = ::testing::TempDir() + "/forwarder_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const std::string path = dir + "/events.jsonl";
  auto forwarder = Forwarder::Create({"file:" + path, "log:audit"}, ForwarderOptions());
  ASSERT_TRUE(forwarder.ok()) << forwarder.status();
  ASSERT_TRUE((*forwarder)->sink()->Write(MakeEvent("a")).ok());
  ASSERT_TRUE((*forwarder)->sink()->Write(MakeEvent("b")).ok());
  EXPECT_TRUE((*forwarder)->Close(absl::Now() + absl::Seconds(30)).ok());
  std::vector<ForwardDestinationStats> stats = (*forwarder)->stats();
  EXPECT_EQ(stats[0].sent, 2u);
  EXPECT_EQ(stats[1].sent, 2u);
  FILE* f = fopen(path.c_str(), "r");
  ASSERT_NE(f, nullptr);
  char line[512];
  std::vector<std::string> lines;
  while (fgets(line, sizeof(line), f) != nullptr) lines.emplace_back(line);
  fclose(f);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr("\"id\":\"a\""));
  EXPECT_THAT(lines[1], HasSubstr("\"id\":\"b\""));
  unlink(path.c_str());
  rmdir(dir.c_str());
}

// A receiver on loopback that rejects events named "reject-<status>" with
// that status and takes every other event, recording the ids it took and
// counting every request per id.
class RejectingReceiver {
 public:
  RejectingReceiver() {
    auto server = HttpServer::Start(
        "127.0.0.1:0",
        {{"POST /hook", [this](const HttpRequest& request) {
            const std::string id = nlohmann::json::parse(request.body)["id"];
            std::lock_guard<std::mutex> lock(mu_);
            ++requests_[id];
            if (absl::StartsWith(id, "reject-")) {
              const int status = std::stoi(id.substr(7));
              return HttpResponse{status, "text/plain", absl::StrCat("no thanks (", status, ")")};
            }
            taken_.push_back(id);
            return HttpResponse{200, "text/plain", "ok"};
          }}});
    EXPECT_TRUE(server.ok()) << server.status();
    if (server.ok()) server_ = *std::move(server);
  }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", server_->port(), "/hook"); }
  std::vector<std::string> taken() const {
    std::lock_guard<std::mutex> lock(mu_);
    return taken_;
  }
  int requests(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = requests_.find(id);
    return it == requests_.end() ? 0 : it->second;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> taken_;
  std::map<std::string, int> requests_;
  std::unique_ptr<HttpServer> server_;
};

std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  FILE* f = fopen(path.c_str(), "r");
  if (f == nullptr) return out;
  char line[8192];
  while (fgets(line, sizeof(line), f) != nullptr) out.push_back(nlohmann::json::parse(line));
  fclose(f);
  return out;
}

TEST_F(ForwarderTest, AnEventRejectedForGoodIsDeadLetteredAndTheQueueMovesOn) {
  RejectingReceiver receiver;
  std::string dir = ::testing::TempDir() + "/forward_dead_letter_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const std::string dead_letter_dir = dir + "/.forward-dead-letter";  // created when needed
  ForwarderOptions options;
  options.queue_size = 100;
  options.retry_min_backoff = absl::Seconds(1);
  options.retry_max_backoff = absl::Seconds(4);
  options.max_rejected_attempts = 3;
  options.dead_letter_dir = dead_letter_dir;
  options.clock = &clock_;
  options.random = [](int64_t bound) { return bound - 1; };  // always the longest wait
  auto created = Forwarder::Create({receiver.url()}, options);
  ASSERT_TRUE(created.ok()) << created.status();
  Forwarder& forwarder = **created;
  Registry registry;
  ExportForwardingMetrics(registry, [&forwarder] { return forwarder.stats(); });

  const std::vector<std::string> ids = {"reject-400", "ok-1",       "reject-404",
                                        "ok-2",       "reject-410", "ok-3"};
  for (const std::string& id : ids) ASSERT_TRUE(forwarder.sink()->Write(MakeEvent(id)).ok());
  // Each rejection is retried after a backoff on the fake clock: move it on
  // whenever the worker waits, until every event is accounted for.
  auto settled = [&] {
    const ForwardDestinationStats s = forwarder.stats()[0];
    return s.sent == 3 && s.dead_lettered == 3;
  };
  while (!settled()) {
    SpinUntil([&] { return settled() || clock_.waiters() > 0; });
    if (clock_.waiters() > 0) clock_.Advance(options.retry_max_backoff);
  }
  EXPECT_THAT(receiver.taken(), ElementsAre("ok-1", "ok-2", "ok-3")) << "in order, none blocked";
  for (const char* id : {"reject-400", "reject-404", "reject-410"}) {
    EXPECT_EQ(receiver.requests(id), 3) << id << ": exactly its budget of attempts";
  }
  const ForwardDestinationStats stats = forwarder.stats()[0];
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(stats.failed, 9u);
  EXPECT_EQ(stats.queue_depth, 0u);
  EXPECT_EQ(stats.dead_letter_file,
            absl::StrCat(dead_letter_dir, "/forward-127.0.0.1-",
                         receiver.url().substr(17, receiver.url().size() - 22), "-hook.jsonl"));

  const std::vector<nlohmann::json> lines = ReadJsonLines(stats.dead_letter_file);
  ASSERT_EQ(lines.size(), 3u);
  const int statuses[] = {400, 404, 410};
  for (size_t i = 0; i < 3; ++i) {
    const nlohmann::json& line = lines[i];
    EXPECT_EQ(line["destination"], receiver.url());
    EXPECT_EQ(line["status"], statuses[i]);
    EXPECT_EQ(line["answer"], absl::StrCat("no thanks (", statuses[i], ")"));
    EXPECT_EQ(line["attempts"], 3);
    EXPECT_EQ(line["event"]["id"], absl::StrCat("reject-", statuses[i]));
    EXPECT_EQ(line["event"]["payload"], absl::StrCat("payload-reject-", statuses[i]));
  }
  EXPECT_EQ(lines[1]["reason"], "Not Found");
  EXPECT_EQ(lines[2]["reason"], "Gone");

  const std::string text = SerializeText(registry);
  const std::string series =
      absl::StrCat("dispatchd_forward_events_total{destination=\"", receiver.url(), "\",result=");
  EXPECT_EQ(::dispatchd::testing::Sample(text, series + "\"dead_lettered\"}"), 3) << text;
  EXPECT_EQ(::dispatchd::testing::Sample(text, series + "\"sent\"}"), 3) << text;
  EXPECT_EQ(::dispatchd::testing::Sample(text, series + "\"dropped\"}"), 0) << text;

  // A deadline the fake clock never reaches: the queue drains what is left.
  EXPECT_TRUE(forwarder.Close(clock_.Now() + absl::Hours(1)).ok());
  unlink(stats.dead_letter_file.c_str());
  rmdir(dead_letter_dir.c_str());
  rmdir(dir.c_str());
}

TEST_F(ForwarderTest, TransientFailuresKeepBeingRetriedPastTheBudget) {
  // 503 five times, then 200: a budget of 2 rejections does not apply.
  std::mutex mu;
  int requests = 0;
  auto server = HttpServer::Start(
      "127.0.0.1:0", {{"POST /hook", [&](const HttpRequest&) {
                         std::lock_guard<std::mutex> lock(mu);
                         return HttpResponse{++requests <= 5 ? 503 : 200, "text/plain", "busy"};
                       }}});
  ASSERT_TRUE(server.ok()) << server.status();
  ForwarderOptions options;
  options.max_rejected_attempts = 2;
  options.retry_min_backoff = absl::Seconds(1);
  options.retry_max_backoff = absl::Seconds(4);
  options.clock = &clock_;
  options.random = [](int64_t bound) { return bound - 1; };
  auto created =
      Forwarder::Create({absl::StrCat("http://127.0.0.1:", (*server)->port(), "/hook")}, options);
  ASSERT_TRUE(created.ok()) << created.status();
  Forwarder& forwarder = **created;
  ASSERT_TRUE(forwarder.sink()->Write(MakeEvent("e1")).ok());
  while (forwarder.stats()[0].sent == 0) {
    SpinUntil([&] { return forwarder.stats()[0].sent == 1 || clock_.waiters() > 0; });
    if (clock_.waiters() > 0) clock_.Advance(options.retry_max_backoff);
  }
  const ForwardDestinationStats stats = forwarder.stats()[0];
  EXPECT_EQ(stats.failed, 5u);
  EXPECT_EQ(stats.dead_lettered, 0u);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_TRUE(forwarder.Close(clock_.Now() + absl::Hours(1)).ok());
  (*server)->Stop();
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
