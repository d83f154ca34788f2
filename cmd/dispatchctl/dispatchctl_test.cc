#include "cmd/dispatchctl/dispatchctl.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/http_server.h"
#include "common/leader_redirect.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/dispatchd_process.h"  // FreePort: a port nobody listens on
#include "common/testing/status_matchers.h"

namespace dispatchd {
namespace ctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

absl::StatusOr<DispatchctlOptions> Parse(std::vector<std::string> args,
                                         std::map<std::string, std::string> env = {}) {
  return ParseDispatchctlOptions(args, [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(ParseDispatchctlOptionsTest, DefaultsAndFlags) {
  auto o = Parse({"status"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->command, Command::kStatus);
  EXPECT_THAT(o->controller, ElementsAre("127.0.0.1:7700"));
  EXPECT_EQ(o->token, "");
  EXPECT_EQ(o->format, OutputFormat::kTable);
  EXPECT_EQ(o->timeout, absl::Seconds(5));

  o = Parse({"--controller", "ctl:7701", "--json", "--token=t", "--timeout", "2s", "invalid"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->command, Command::kInvalid);
  EXPECT_THAT(o->controller, ElementsAre("ctl:7701"));
  EXPECT_EQ(o->token, "t");
  EXPECT_EQ(o->format, OutputFormat::kJson);
  EXPECT_EQ(o->timeout, absl::Seconds(2));

  EXPECT_EQ(Parse({"subscriptions"})->command, Command::kSubscriptions);
  EXPECT_EQ(Parse({"agents", "--json"})->command, Command::kAgents);
}

TEST(ParseDispatchctlOptionsTest, ControllerTakesAListOfReplicas) {
  auto o = Parse({"--controller", "a:7700, b:7700,,c:7700,a:7700", "agents"});
  ASSERT_OK(o);
  EXPECT_THAT(o->controller, ElementsAre("a:7700", "b:7700", "c:7700"));
  EXPECT_THAT(Parse({"status"}, {{"DISPATCHD_CONTROLLER", "x:1,y:2"}})->controller,
              ElementsAre("x:1", "y:2"));
  EXPECT_THAT(Parse({"--controller", " , ", "status"}).status().message(),
              HasSubstr("--controller needs an address"));
  EXPECT_THAT(DispatchctlUsage(), HasSubstr("--controller ADDR[,ADDR]"));
  EXPECT_THAT(DispatchctlUsage(), HasSubstr("follows the leader"));
}

TEST(ParseDispatchctlOptionsTest, TokenFromTheEnvironmentUnlessTheFlagIsGiven) {
  EXPECT_EQ(Parse({"status"}, {{"DISPATCHD_TOKEN", "env"}})->token, "env");
  EXPECT_EQ(Parse({"status", "--token", "flag"}, {{"DISPATCHD_TOKEN", "env"}})->token, "flag");
  EXPECT_EQ(Parse({"status"}, {{"DISPATCHD_TOKEN", "env"}, {"DISPATCHD_API_TOKEN", "api"}})->token,
            "api");
}

TEST(ParseDispatchctlOptionsTest, HealthAsksTheMetricsAddressFromFlagOrEnvironment) {
  auto o = Parse({"health"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->command, Command::kHealth);
  EXPECT_EQ(o->metrics, "127.0.0.1:9477");
  EXPECT_EQ(Parse({"health"}, {{"DISPATCHD_METRICS_LISTEN", "0.0.0.0:9000"}})->metrics,
            "0.0.0.0:9000");
  EXPECT_EQ(Parse({"health", "--metrics=127.0.0.1:1"},
                  {{"DISPATCHD_METRICS_LISTEN", "0.0.0.0:9000"}})->metrics,
            "127.0.0.1:1");
  EXPECT_THAT(Parse({"status"}, {{"DISPATCHD_CONTROLLER", "ctl:1"}})->controller,
              ElementsAre("ctl:1"));
}

// /readyz of a real HTTP server: 200 is healthy, 503 carries dispatchd's reason.
TEST(CheckHealthTest, ReadyIsOkAndNotReadyCarriesTheReason) {
  std::atomic<bool> ready{false};
  auto server = HttpServer::Start("127.0.0.1:0", {{"/readyz", [&ready](const HttpRequest&) {
                                                     if (ready) return HttpResponse{200, "text/plain", "ok\n"};
                                                     return HttpResponse{
                                                         503, "text/plain",
                                                         "agent: no Docker socket at /run/docker.sock\n"};
                                                   }}});
  ASSERT_TRUE(server.ok()) << server.status();
  DispatchctlOptions options;
  options.command = Command::kHealth;
  // A wildcard listen address is asked on loopback.
  options.metrics = absl::StrCat("0.0.0.0:", (*server)->port());
  auto health = CheckHealth(options);
  EXPECT_EQ(health.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(health.status().message()),
              HasSubstr("/readyz answered 503: agent: no Docker socket at /run/docker.sock"));
  ready = true;
  health = CheckHealth(options);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, "ok\n");
}


TEST(CheckHealthTest, NothingListeningNamesTheAddress) {
  DispatchctlOptions options;
  options.command = Command::kHealth;
  options.metrics = absl::StrCat("127.0.0.1:", ::dispatchd::testing::FreePort());
  options.timeout = absl::Seconds(2);
  auto health = CheckHealth(options);
  EXPECT_EQ(health.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(health.status().message()),
              HasSubstr("no answer from http://" + options.metrics + "/readyz"));
  options.metrics = "no-port";
  EXPECT_EQ(CheckHealth(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseDispatchctlOptionsTest, CommandsWithArgumentsAndTheirFlags) {
  auto emit = Parse({"emit", "demo.ping", "hello", "--host", "h1", "--idempotency-key", "k"});
  ASSERT_OK(emit);
  EXPECT_EQ(emit->command, Command::kEmit);
  EXPECT_THAT(emit->args, ElementsAre("demo.ping", "hello"));
  EXPECT_EQ(emit->host, "h1");
  EXPECT_EQ(emit->idempotency_key, "k");
  EXPECT_OK(Parse({"emit", "--path", "a/b"}));
  EXPECT_THAT(Parse({"emit"}).status().message(), HasSubstr("emit needs an event id"));
  auto watch = Parse({"watch", "demo.", "--prefix", "--kind", "delivery,dead-lettered"});
  ASSERT_OK(watch);
  EXPECT_TRUE(watch->prefix);
  EXPECT_THAT(watch->kinds, ElementsAre("DELIVERY", "DEAD_LETTERED"));
  EXPECT_THAT(Parse({"watch", "--kind", "sideways"}).status().message(), HasSubstr("--kind"));
  EXPECT_EQ(Parse({"explain", "x"})->command, Command::kExplain);
  EXPECT_EQ(Parse({"dead-letters"})->command, Command::kDeadLetters);
  EXPECT_THAT(Parse({"replay", "h1"}).status().message(),
              HasSubstr("usage: dispatchctl replay HOST PATH"));
  EXPECT_THAT(Parse({"purge", "h1", "a/b"})->args, ElementsAre("h1", "a/b"));
}

TEST(FormatTest, WatchLinesSayWhatHappened) {
  dispatch::v1::WatchUpdate u;
  u.set_kind(dispatch::v1::WatchUpdate::DELIVERY);
  u.set_event_id("demo.ping");
  u.mutable_recipient()->set_container_name("handler");
  u.mutable_recipient()->set_agent_id("h1");
  u.set_outcome(dispatch::v1::DELIVERY_OUTCOME_DELIVERED);
  u.set_exec_id("0123456789abcdef");
  const std::string line = FormatWatchUpdate(u, OutputFormat::kTable);
  EXPECT_THAT(line, HasSubstr("delivery  demo.ping  handler@h1 delivered exec 0123456789ab"));
  nlohmann::json json = nlohmann::json::parse(FormatWatchUpdate(u, OutputFormat::kJson));
  EXPECT_EQ(json["kind"], "DELIVERY");
  EXPECT_EQ(json["outcome"], "DELIVERY_OUTCOME_DELIVERED");
  u.Clear();
  u.set_kind(dispatch::v1::WatchUpdate::ROUTED);
  u.set_event_id("demo.none");
  EXPECT_THAT(FormatWatchUpdate(u, OutputFormat::kTable), HasSubstr("-> no subscribers"));
}

TEST(FormatTest, ExplainAndDeadLetterTables) {
  dispatch::v1::ExplainResponse explain;
  explain.set_event_id("a.b");
  explain.set_would_route_now(true);
  auto* x = explain.add_containers();
  x->mutable_container()->set_container_name("web");
  x->mutable_container()->set_agent_id("h1");
  x->set_verdict(dispatch::v1::Explanation::NOT_DELIVERED);
  x->set_reason(dispatch::v1::Explanation::NOT_RUNNING);
  x->set_detail("stopped, and container.start is not true");
  const std::string table = FormatExplain(explain, absl::Now(), OutputFormat::kTable);
  EXPECT_THAT(table, HasSubstr("event a.b: would be routed now"));
  EXPECT_THAT(table, HasSubstr("not-delivered  not-running: stopped, and container.start"));

  dispatch::v1::ListDeadLettersResponse dead;
  auto* d = dead.add_dead_letters();
  d->set_agent_id("h1");
  d->set_path("jobs/x");
  d->set_event_id("jobs.x");
  d->add_errors("web: gave up after 8 attempts");
  dead.add_unanswered_agents("h2");
  const std::string listing = FormatDeadLetters(dead, absl::Now(), OutputFormat::kTable);
  EXPECT_THAT(listing, HasSubstr("h1     jobs/x  jobs.x"));
  EXPECT_THAT(listing, HasSubstr("web: gave up after 8 attempts"));
  EXPECT_THAT(listing, HasSubstr("agent h2 did not answer"));
}

TEST(ParseDispatchctlOptionsTest, HelpNeedsNoCommand) {
  EXPECT_TRUE(Parse({"--help"})->help);
  EXPECT_TRUE(Parse({"-h"})->help);
  EXPECT_THAT(DispatchctlUsage(), HasSubstr("--controller ADDR"));
  EXPECT_THAT(DispatchctlUsage(), HasSubstr("subscriptions"));
}

TEST(ParseDispatchctlOptionsTest, BadUsageNamesTheProblem) {
  EXPECT_THAT(Parse({}).status().message(), HasSubstr("no command given"));
  EXPECT_THAT(Parse({"status", "agents"}).status().message(), HasSubstr("expected one command"));
  EXPECT_THAT(Parse({"sideways"}).status().message(), HasSubstr("unknown command 'sideways'"));
  EXPECT_THAT(Parse({"--nope", "status"}).status().message(), HasSubstr("unknown flag --nope"));
  EXPECT_THAT(Parse({"status", "--controller"}).status().message(), HasSubstr("needs a value"));
  EXPECT_THAT(Parse({"status", "--timeout=soon"}).status().message(), HasSubstr("--timeout"));
}

TEST(FormatTableTest, AlignsColumnsAndDoesNotPadTheLast) {
  EXPECT_EQ(FormatTable({{"A", "BB", "C"}, {"long", "x", "tail"}}),
            "A     BB  C\n"
            "long  x   tail\n");
}

TEST(JoinCommandTest, QuotesOnlyWhatNeedsIt) {
  EXPECT_EQ(JoinCommand({"touch", "handled"}), "touch handled");
  EXPECT_EQ(JoinCommand({"touch", "two words"}), "touch 'two words'");
  EXPECT_EQ(JoinCommand({"sh", "-c", "echo 'x' \"y\""}), "sh -c \"echo 'x' \\\"y\\\"\"");
  EXPECT_EQ(JoinCommand({"echo", ""}), "echo ''");
}

dispatch::v1::ListSubscriptionsResponse SampleSubscriptions() {
  dispatch::v1::ListSubscriptionsResponse r;
  dispatch::v1::SubscriptionInfo* s = r.add_subscriptions();
  s->set_event_id("demo.some-event");
  s->set_agent_id("host-a");
  s->set_container_id("0123456789abcdef0123");
  s->set_container_name("event-handler");
  s->set_container_state(dispatch::v1::CONTAINER_STATE_RUNNING);
  s->add_argv("touch");
  s->add_argv("handled");
  s->set_debounce_ms(1000);
  s->set_scope(dispatch::v1::SubscriptionInfo::SCOPE_CLUSTER);
  dispatch::v1::SubscriptionInfo* w = r.add_subscriptions();
  w->set_event_id("wake");
  w->set_agent_id("host-a");
  w->set_container_id("fedcba9876543210");
  w->set_container_state(dispatch::v1::CONTAINER_STATE_EXITED);
  w->set_start_container(true);
  w->set_scope(dispatch::v1::SubscriptionInfo::SCOPE_HOST);
  dispatch::v1::InvalidSubscriptionInfo* bad = r.add_invalid();
  bad->set_agent_id("host-a");
  bad->set_container_id("0123456789abcdef0123");
  bad->set_container_name("event-handler");
  bad->set_event_id("broken");
  bad->set_label("subscription.broken.container.command");
  bad->set_reason("subscription.broken.container.command: unterminated quote");
  return r;
}

TEST(FormatTest, SubscriptionsTable) {
  std::vector<std::string> lines = absl::StrSplit(
      FormatSubscriptions(SampleSubscriptions(), OutputFormat::kTable), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0],
            "EVENT            CONTAINER      AGENT   STATE    START  DEBOUNCE  SCOPE    COMMAND");
  EXPECT_EQ(lines[1],
            "demo.some-event  event-handler  host-a  running  no     1000ms    cluster  touch handled");
  // No name: the short id, as docker ps shows it.
  EXPECT_EQ(lines[2],
            "wake             fedcba987654   host-a  exited   yes    -         host     (start only)");
}

TEST(FormatTest, InvalidTableCarriesTheReason) {
  std::string out = FormatInvalid(SampleSubscriptions(), OutputFormat::kTable);
  EXPECT_THAT(out, HasSubstr("REASON"));
  EXPECT_THAT(out, HasSubstr("broken"));
  EXPECT_THAT(out, HasSubstr("unterminated quote"));
  EXPECT_THAT(out, Not(HasSubstr("demo.some-event")));
}

TEST(FormatTest, JsonIsTheProtoMappingOfOneList) {
  nlohmann::json subs =
      nlohmann::json::parse(FormatSubscriptions(SampleSubscriptions(), OutputFormat::kJson));
  ASSERT_TRUE(subs.contains("subscriptions"));
  EXPECT_FALSE(subs.contains("invalid"));
  ASSERT_EQ(subs["subscriptions"].size(), 2u);
  EXPECT_EQ(subs["subscriptions"][0]["event_id"], "demo.some-event");
  EXPECT_EQ(subs["subscriptions"][0]["argv"], nlohmann::json({"touch", "handled"}));
  EXPECT_EQ(subs["subscriptions"][0]["container_state"], "CONTAINER_STATE_RUNNING");
  EXPECT_EQ(subs["subscriptions"][1]["debounce_ms"], "0") << "zeros are printed too";

  nlohmann::json invalid =
      nlohmann::json::parse(FormatInvalid(SampleSubscriptions(), OutputFormat::kJson));
  EXPECT_FALSE(invalid.contains("subscriptions"));
  ASSERT_EQ(invalid["invalid"].size(), 1u);
  EXPECT_EQ(invalid["invalid"][0]["reason"],
            "subscription.broken.container.command: unterminated quote");
}

TEST(FormatTest, AgentsShowHowLongAgoTheyWereHeard) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  dispatch::v1::ListAgentsResponse r;
  dispatch::v1::AgentInfo* a = r.add_agents();
  a->set_agent_id("host-a");
  a->set_host("host-a.example");
  a->set_inventory_fresh(true);
  a->set_inventory_seq(42);
  a->set_last_heard_unix_nanos(absl::ToUnixNanos(now - absl::Milliseconds(3500)));
  dispatch::v1::AgentInfo* b = r.add_agents();
  b->set_agent_id("host-b");
  b->set_host("host-b");
  b->set_last_heard_unix_nanos(absl::ToUnixNanos(now - absl::Seconds(65)));
  EXPECT_EQ(FormatAgents(r, now, OutputFormat::kTable),
            "AGENT   HOST            INVENTORY  SEQ  LAST HEARD\n"
            "host-a  host-a.example  fresh      42   3s ago\n"
            "host-b  host-b          stale      0    1m5s ago\n");
}

TEST(FormatTest, StatusTableAndJson) {
  dispatch::v1::GetStatusResponse r;
  r.set_events_observed(3);
  r.mutable_deliveries()->set_delivered(2);
  r.mutable_deliveries()->set_skipped_not_running(1);
  r.set_subscriptions_invalid(1);
  std::string table = FormatStatus(r, OutputFormat::kTable);
  EXPECT_THAT(table, HasSubstr("events observed                     3\n"));
  EXPECT_THAT(table, HasSubstr("deliveries delivered                2\n"));
  EXPECT_THAT(table, HasSubstr("deliveries skipped, not running     1\n"));
  EXPECT_THAT(table, HasSubstr("subscriptions invalid               1\n"));
  nlohmann::json json = nlohmann::json::parse(FormatStatus(r, OutputFormat::kJson));
  EXPECT_EQ(json["events_observed"], "3");
  EXPECT_EQ(json["deliveries"]["delivered"], "2");
  EXPECT_EQ(json["events_held"], "0");
}

TEST(FormatTest, StatusSaysWhichReplicaAnsweredAndWhoLeads) {
  dispatch::v1::GetStatusResponse r;
  EXPECT_THAT(FormatStatus(r, OutputFormat::kTable), Not(HasSubstr("replica")));
  r.set_leader_election(true);
  r.set_replica_id("ctl-a");
  r.set_leader_id("ctl-b");
  r.set_leader_address("10.0.0.2:7700");
  std::string table = FormatStatus(r, OutputFormat::kTable);
  EXPECT_THAT(table, HasSubstr("ctl-a (standby)\n"));
  EXPECT_THAT(table, HasSubstr("ctl-b at 10.0.0.2:7700\n"));
  r.set_leading(true);
  r.set_leader_id("ctl-a");
  EXPECT_THAT(FormatStatus(r, OutputFormat::kTable), HasSubstr("ctl-a (leader)\n"));
  r.clear_leader_id();
  EXPECT_THAT(FormatStatus(r, OutputFormat::kTable), HasSubstr("none at the moment\n"));
}

// A controller that answers with canned responses and records the
// authorization metadata it was sent.
class FakeDispatch final : public dispatch::v1::Dispatch::CallbackService {
 public:
  grpc::ServerUnaryReactor* ListSubscriptions(
      grpc::CallbackServerContext* context, const dispatch::v1::ListSubscriptionsRequest*,
      dispatch::v1::ListSubscriptionsResponse* response) override {
    Record(*context);
    *response = SampleSubscriptions();
    return Answer(context);
  }
  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* context,
                                       const dispatch::v1::ListAgentsRequest*,
                                       dispatch::v1::ListAgentsResponse* response) override {
    Record(*context);
    response->add_agents()->set_agent_id("host-a");
    return Answer(context);
  }
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const dispatch::v1::GetStatusRequest*,
                                      dispatch::v1::GetStatusResponse* response) override {
    Record(*context);
    response->set_events_observed(7);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (hold_status_) {
      std::lock_guard<std::mutex> lock(mu_);
      held_ = reactor;  // answered by Release()
      return reactor;
    }
    reactor->Finish(status_);
    return reactor;
  }

  grpc::ServerWriteReactor<dispatch::v1::WatchUpdate>* Watch(
      grpc::CallbackServerContext* context, const dispatch::v1::WatchRequest* request) override {
    Record(*context);
    // One update for the event asked about, then the end of the stream.
    class OneUpdate final : public grpc::ServerWriteReactor<dispatch::v1::WatchUpdate> {
     public:
      OneUpdate(const grpc::Status& refusal, const std::string& event_id) {
        if (!refusal.ok()) {
          Finish(refusal);
          return;
        }
        update_.set_kind(dispatch::v1::WatchUpdate::OBSERVED);
        update_.set_event_id(event_id);
        StartWrite(&update_);
      }
      void OnWriteDone(bool) override { Finish(grpc::Status::OK); }
      void OnDone() override { delete this; }

     private:
      dispatch::v1::WatchUpdate update_;
    };
    return new OneUpdate(Refusal(context), request->event_id());
  }

  // Answers every call but GetStatus (which every replica answers) as a
  // replica that does not lead, naming the leader at `leader_address` ("":
  // none known).
  void Follow(std::string leader_address) {
    std::lock_guard<std::mutex> lock(mu_);
    following_ = true;
    leader_address_ = std::move(leader_address);
  }
  void set_status(grpc::Status status) { status_ = std::move(status); }
  void set_hold_status(bool hold) { hold_status_ = hold; }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    if (held_ != nullptr) held_->Finish(grpc::Status::OK);
    held_ = nullptr;
  }
  std::vector<std::string> authorizations() {
    std::lock_guard<std::mutex> lock(mu_);
    return authorizations_;
  }

 private:
  void Record(const grpc::CallbackServerContext& context) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = context.client_metadata().find("authorization");
    authorizations_.push_back(it == context.client_metadata().end()
                                  ? ""
                                  : std::string(it->second.data(), it->second.size()));
  }
  // The status set, or the redirect of a replica that does not lead.
  grpc::Status Refusal(grpc::CallbackServerContext* context) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!following_) return status_;
    AddLeaderMetadata(context, leader_address_);
    return NotLeaderStatus(leader_address_.empty() ? "" : "ctl-leader", leader_address_);
  }
  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(Refusal(context));
    return reactor;
  }

  grpc::Status status_ = grpc::Status::OK;
  bool following_ = false;
  std::string leader_address_;
  bool hold_status_ = false;
  std::mutex mu_;
  grpc::ServerUnaryReactor* held_ = nullptr;
  std::vector<std::string> authorizations_;
};

class RunDispatchctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
  }
  void TearDown() override {
    service_.Release();
    server_->Shutdown();
    for (auto& [address, replica] : replicas_) replica->server->Shutdown();
  }

  absl::StatusOr<std::string> Run(std::vector<std::string> args) {
    auto options = Parse(args);
    if (!options.ok()) return options.status();
    return RunDispatchctl(*options, Channels(), absl::Now());
  }

  // Another controller replica, at `address`.
  FakeDispatch& AddReplica(const std::string& address) {
    auto replica = std::make_unique<Replica>();
    grpc::ServerBuilder builder;
    builder.RegisterService(&replica->service);
    replica->server = builder.BuildAndStart();
    FakeDispatch& service = replica->service;
    replicas_[address] = std::move(replica);
    return service;
  }

  // An address nobody listens on.
  std::string Down() {
    down_.push_back(absl::StrCat("127.0.0.1:", ::dispatchd::testing::FreePort()));
    return down_.back();
  }

  // The replicas added at their addresses, Down() ones over TCP, and
  // service_ at any other address.
  ChannelFactory Channels() {
    return [this](const std::string& address) -> std::shared_ptr<grpc::ChannelInterface> {
      if (auto it = replicas_.find(address); it != replicas_.end()) {
        return it->second->server->InProcessChannel(grpc::ChannelArguments());
      }
      if (std::find(down_.begin(), down_.end(), address) != down_.end()) {
        return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
      }
      return channel_;
    };
  }

  struct Replica {
    FakeDispatch service;
    std::unique_ptr<grpc::Server> server;
  };

  FakeDispatch service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::map<std::string, std::unique_ptr<Replica>> replicas_;
  std::vector<std::string> down_;
};

TEST_F(RunDispatchctlTest, EachCommandCallsItsMethod) {
  auto subs = Run({"subscriptions"});
  ASSERT_TRUE(subs.ok()) << subs.status();
  EXPECT_THAT(*subs, HasSubstr("demo.some-event"));
  EXPECT_THAT(*subs, Not(HasSubstr("unterminated")));

  auto invalid = Run({"invalid"});
  ASSERT_TRUE(invalid.ok()) << invalid.status();
  EXPECT_THAT(*invalid, HasSubstr("unterminated quote"));

  auto agents = Run({"agents"});
  ASSERT_TRUE(agents.ok()) << agents.status();
  EXPECT_THAT(*agents, HasSubstr("host-a"));

  auto status = Run({"status", "--json"});
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(nlohmann::json::parse(*status)["events_observed"], "7");
}

TEST_F(RunDispatchctlTest, SendsTheTokenAsBearerMetadataOnlyWhenGiven) {
  ASSERT_TRUE(Run({"status"}).ok());
  ASSERT_TRUE(Run({"status", "--token", "s3cret"}).ok());
  EXPECT_THAT(service_.authorizations(), ElementsAre("", "Bearer s3cret"));
}

TEST_F(RunDispatchctlTest, RefusedCallSaysWhyAndHowToFixIt) {
  service_.set_status(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong token"));
  auto out = Run({"--controller", "ctl:7700", "agents"});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(out.status().message(), HasSubstr("ctl:7700"));
  EXPECT_THAT(out.status().message(), HasSubstr("wrong token"));
  EXPECT_THAT(out.status().message(), HasSubstr("--token"));
}

TEST_F(RunDispatchctlTest, GivesUpAtTheDeadline) {
  service_.set_hold_status(true);
  auto out = Run({"--timeout", "50ms", "status"});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(out.status().message(), HasSubstr("no answer from the controller at 127.0.0.1:7700"));
}

ChannelFactory InsecureChannels() {
  return [](const std::string& address) {
    return std::shared_ptr<grpc::ChannelInterface>(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  };
}

TEST(RunDispatchctlUnreachableTest, NamesTheAddress) {
  const int port = ::dispatchd::testing::FreePort();
  ASSERT_GT(port, 0);
  auto options = Parse({"--controller", absl::StrCat("127.0.0.1:", port), "status"});
  ASSERT_OK(options);
  auto out = RunDispatchctl(*options, InsecureChannels(), absl::Now());
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnavailable) << out.status();
  EXPECT_THAT(out.status().message(),
              HasSubstr(absl::StrCat("cannot reach the controller at 127.0.0.1:", port)));
  EXPECT_THAT(out.status().message(), HasSubstr("--controller"));
}

TEST(RunDispatchctlUnreachableTest, NamesEveryAddressWhenNoneCanBeReached) {
  const std::string a = absl::StrCat("127.0.0.1:", ::dispatchd::testing::FreePort());
  std::string b = a;
  while (b == a) b = absl::StrCat("127.0.0.1:", ::dispatchd::testing::FreePort());
  auto options = Parse({"--controller", absl::StrCat(a, ",", b), "agents"});
  ASSERT_OK(options);
  auto out = RunDispatchctl(*options, InsecureChannels(), absl::Now());
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnavailable) << out.status();
  EXPECT_THAT(out.status().message(),
              HasSubstr(absl::StrCat("cannot reach the controller at ", a, ", ", b, ": ")));
}

TEST_F(RunDispatchctlTest, TriesTheAddressesInOrderUntilOneAnswers) {
  const std::string down = Down();
  auto out = Run({"--controller", absl::StrCat(down, ",ctl-b:7700"), "agents"});
  ASSERT_OK(out);
  EXPECT_THAT(*out, HasSubstr("host-a"));
  EXPECT_EQ(service_.authorizations().size(), 1u);
}

TEST_F(RunDispatchctlTest, FollowsTheLeaderAReplicaNames) {
  FakeDispatch& standby = AddReplica("ctl-a:7700");
  standby.Follow("ctl-b:7700");  // service_
  auto out = Run({"--controller", "ctl-a:7700", "--token", "s3cret", "agents"});
  ASSERT_OK(out);
  EXPECT_THAT(*out, HasSubstr("host-a"));
  // Asked once each, with the token both times.
  EXPECT_THAT(standby.authorizations(), ElementsAre("Bearer s3cret"));
  EXPECT_THAT(service_.authorizations(), ElementsAre("Bearer s3cret"));
}

TEST_F(RunDispatchctlTest, FollowsOneRedirectOnly) {
  FakeDispatch& a = AddReplica("ctl-a:7700");
  FakeDispatch& b = AddReplica("ctl-b:7700");
  a.Follow("ctl-b:7700");
  b.Follow("ctl-a:7700");
  auto out = Run({"--controller", "ctl-a:7700", "subscriptions"});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition) << out.status();
  EXPECT_THAT(out.status().message(),
              HasSubstr("the controller at ctl-b:7700 (the leader, as ctl-a:7700 said) answered: "
                        "not the leader"));
  EXPECT_EQ(a.authorizations().size(), 1u);
  EXPECT_EQ(b.authorizations().size(), 1u);
}

// "No replica leads" is an answer: the other replicas would say the same.
TEST_F(RunDispatchctlTest, AReplicaWithoutALeaderIsTheAnswer) {
  FakeDispatch& standby = AddReplica("ctl-a:7700");
  standby.Follow("");
  auto out = Run({"--controller", "ctl-a:7700,ctl-b:7700", "agents"});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition) << out.status();
  EXPECT_THAT(out.status().message(), HasSubstr("the controller at ctl-a:7700 answered: not the "
                                                "leader; no replica leads at the moment"));
  EXPECT_TRUE(service_.authorizations().empty());
}

TEST_F(RunDispatchctlTest, WatchFollowsTheLeader) {
  FakeDispatch& standby = AddReplica("ctl-a:7700");
  standby.Follow("ctl-b:7700");  // service_
  auto options = Parse({"--controller", absl::StrCat(Down(), ",ctl-a:7700"), "watch", "demo.x"});
  ASSERT_OK(options);
  std::vector<std::string> lines;
  absl::Status status = RunWatch(*options, Channels(), [&](const std::string& line) {
    lines.push_back(line);
    return false;  // enough
  });
  EXPECT_OK(status);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("observed  demo.x"));
  EXPECT_EQ(standby.authorizations().size(), 1u);
  EXPECT_EQ(service_.authorizations().size(), 1u);
}

}  // namespace
}  // namespace ctl
}  // namespace dispatchd
