#include "cmd/dispatchd/options.h"

#include <cstdio>
#include <cstdlib>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class OptionsTest : public ::testing::Test {
 protected:
  absl::StatusOr<DispatchdOptions> Parse(std::vector<std::string> args) {
    return ParseDispatchdOptions(args, [this](const char* name) -> const char* {
      auto it = env_.find(name);
      return it == env_.end() ? nullptr : it->second.c_str();
    });
  }
  std::map<std::string, std::string> env_;
};

TEST_F(OptionsTest, DefaultsAreAllInOneOnEventsWithTheLocalSocket) {
  auto o = Parse({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->mode, Mode::kAllInOne);
  EXPECT_EQ(o->events_dir, "./events");
  EXPECT_EQ(o->label_namespace, "subscription");
  EXPECT_EQ(o->event_namespace, "");
  EXPECT_EQ(o->listen, "127.0.0.1:7700");
  EXPECT_TRUE(o->forward_destinations.empty());
}

TEST_F(OptionsTest, OldDispatcherVariablesAreHonoured) {
  env_["DISPATCHER_LABEL_NAMESPACE"] = "sub";
  env_["DISPATCHER_EVENT_NAMESPACE"] = "ns";
  env_["DISPATCHER_FORWARD_DESTINATION"] = "log:x; file:/tmp/y";
  env_["DISPATCHER_FORWARD_DELIMITER"] = ";";
  env_["DOCKER_HOST"] = "unix:///run/other.sock";
  auto o = Parse({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->label_namespace, "sub");
  EXPECT_EQ(o->event_namespace, "ns");
  EXPECT_EQ(o->docker_host, "unix:///run/other.sock");
  EXPECT_EQ(o->forward_destinations, (std::vector<std::string>{"log:x", "file:/tmp/y"}));
}

TEST_F(OptionsTest, EveryFlagHasADispatchdVariableBelowTheFlag) {
  EXPECT_EQ(EnvironmentVariable("events-dir"), "DISPATCHD_EVENTS_DIR");
  env_["DISPATCHD_EVENTS_DIR"] = "/app/events";
  env_["DISPATCHD_METRICS_LISTEN"] = "0.0.0.0:9477";
  env_["DISPATCHD_HEARTBEAT"] = "2s";
  env_["DISPATCHD_INSECURE"] = "true";
  env_["DISPATCHD_TOKEN"] = "secret";
  // DISPATCHD_* wins over the old and the Docker variables...
  env_["DISPATCHER_LABEL_NAMESPACE"] = "old";
  env_["DISPATCHD_LABEL_NAMESPACE"] = "new";
  env_["DOCKER_HOST"] = "unix:///docker-host.sock";
  env_["DISPATCHD_DOCKER_HOST"] = "unix:///dispatchd.sock";
  auto o = Parse({"agent"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->events_dir, "/app/events");
  EXPECT_EQ(o->metrics_listen, "0.0.0.0:9477");
  EXPECT_EQ(o->heartbeat, absl::Seconds(2));
  EXPECT_TRUE(o->insecure);
  EXPECT_EQ(o->token, "secret");
  EXPECT_EQ(o->label_namespace, "new");
  EXPECT_EQ(o->docker_host, "unix:///dispatchd.sock");
  // ...and a flag wins over it.
  o = Parse({"agent", "--events-dir=/flag", "--insecure=false", "--docker-host",
             "unix:///flag.sock"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->events_dir, "/flag");
  EXPECT_FALSE(o->insecure);
  EXPECT_EQ(o->docker_host, "unix:///flag.sock");
  // An empty variable is unset.
  env_["DISPATCHD_EVENTS_DIR"] = "";
  EXPECT_EQ(Parse({})->events_dir, "./events");
  // A bad value names the variable.
  env_["DISPATCHD_HEARTBEAT"] = "soon";
  EXPECT_THAT(Parse({}).status().message(), HasSubstr("DISPATCHD_HEARTBEAT"));
}

TEST_F(OptionsTest, TokenFromAFile) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/token";
  FILE* f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("from-file\n", f);
  fclose(f);
  auto o = Parse({"controller", "--token-file", path});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->token, "from-file");
  env_["DISPATCHD_TOKEN_FILE"] = path;
  EXPECT_EQ(Parse({"agent"})->token, "from-file");
  EXPECT_THAT(Parse({"agent", "--token", "x"}).status().message(), HasSubstr("not both"));
  env_["DISPATCHD_TOKEN_FILE"] = "/nonexistent/token";
  EXPECT_THAT(Parse({"agent"}).status().message(), HasSubstr("/nonexistent/token"));
}

TEST_F(OptionsTest, ForwardingFlags) {
  env_["DISPATCHER_FORWARD_DESTINATION"] = "log:env";
  auto o = Parse({"--forward-destination", "http://a/|file:b", "--forward-delimiter=|",
                  "--forward-queue-size", "5"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->forward_destinations, (std::vector<std::string>{"http://a/", "file:b"}));
  EXPECT_EQ(o->forward_queue_size, 5);
  EXPECT_EQ(Parse({})->forward_queue_size, 10000);
  EXPECT_EQ(Parse({})->forward_hold_events, 1000);
  EXPECT_EQ(Parse({"--forward-hold-events=0"})->forward_hold_events, 0);
  EXPECT_THAT(Parse({"--forward-hold-events=-1"}).status().message(),
              HasSubstr("--forward-hold-events"));
  EXPECT_THAT(Parse({"--forward-queue-size=0"}).status().message(),
              HasSubstr("--forward-queue-size"));
  EXPECT_EQ(Parse({})->forward_max_attempts, 5);
  EXPECT_EQ(Parse({"--forward-max-attempts", "2"})->forward_max_attempts, 2);
  EXPECT_THAT(Parse({"--forward-max-attempts=0"}).status().message(),
              HasSubstr("--forward-max-attempts"));
  // Dead letters of forwarding: hidden in the events directory unless told.
  EXPECT_EQ(Parse({})->forward_dead_letter_dir, "./events/.forward-dead-letter");
  EXPECT_EQ(Parse({"--events-dir", "/srv/events/"})->forward_dead_letter_dir,
            "/srv/events/.forward-dead-letter");
  EXPECT_EQ(Parse({"--events-dir", "/srv/events", "--forward-dead-letter-dir", "/var/lib/x"})
                ->forward_dead_letter_dir,
            "/var/lib/x");
}

TEST_F(OptionsTest, FlagsWinOverEnvironmentInBothSpellings) {
  env_["DISPATCHER_LABEL_NAMESPACE"] = "sub";
  auto o = Parse({"agent", "--label-namespace=flag", "--events-dir", "/data/events",
                  "--docker-host=unix:///x.sock", "--log-level", "debug", "--heartbeat=2s"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->mode, Mode::kAgent);
  EXPECT_EQ(o->label_namespace, "flag");
  EXPECT_EQ(o->events_dir, "/data/events");
  EXPECT_EQ(o->docker_host, "unix:///x.sock");
  EXPECT_EQ(o->log_level, LogLevel::kDebug);
  EXPECT_EQ(o->heartbeat, absl::Seconds(2));
}

TEST_F(OptionsTest, AnAgentTakesOneControllerOrAList) {
  auto o = Parse({"agent"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->controller, ElementsAre("127.0.0.1:7700"));
  o = Parse({"agent", "--controller", "ctl:7700"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->controller, ElementsAre("ctl:7700"));
  // In order, trimmed, each once.
  o = Parse({"agent", "--controller=a:7700, b:7700,,c:7700,a:7700"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->controller, ElementsAre("a:7700", "b:7700", "c:7700"));
  env_["DISPATCHD_CONTROLLER"] = "x:1,y:2";
  o = Parse({"agent"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->controller, ElementsAre("x:1", "y:2"));
  EXPECT_THAT(Parse({"agent", "--controller", " , "}).status().message(),
              HasSubstr("--controller"));
  EXPECT_THAT(DispatchdUsage(), HasSubstr("--controller ADDR[,ADDR]"));
  EXPECT_THAT(DispatchdUsage(), HasSubstr("follows the leader"));
}

TEST_F(OptionsTest, ControllerListensOnLoopbackByDefault) {
  auto o = Parse({"controller"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->listen, "127.0.0.1:7700");
}

TEST_F(OptionsTest, ListenCanBeMovedOrTurnedOffInAllInOne) {
  auto moved = Parse({"--listen", "127.0.0.1:0"});
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->listen, "127.0.0.1:0");
  auto off = Parse({"all-in-one", "--listen="});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(off->listen, "");
  EXPECT_THAT(Parse({"controller", "--listen="}).status().message(),
              HasSubstr("controller mode needs --listen"));
  EXPECT_THAT(DispatchdUsage(), HasSubstr("--listen= turns it off"));
}

TEST_F(OptionsTest, ControllerReplicasTakeEtcdAndTheirTimings) {
  auto o = Parse({"controller", "--listen", "10.0.0.1:7700", "--token", "t", "--etcd-endpoints",
                  "http://127.0.0.1:2379, http://127.0.0.1:22379", "--leader-lease-duration",
                  "4s", "--replica-id", "ctl-a"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->etcd_endpoints,
            (std::vector<std::string>{"http://127.0.0.1:2379", "http://127.0.0.1:22379"}));
  EXPECT_EQ(o->etcd_prefix, "/dispatchd");
  EXPECT_EQ(o->advertise_address, "10.0.0.1:7700");  // --listen names a host
  EXPECT_EQ(o->replica_id, "ctl-a");
  EXPECT_EQ(o->leader_lease_duration, absl::Seconds(4));
  EXPECT_EQ(o->leader_renew_deadline, absl::Seconds(2));
  EXPECT_EQ(o->leader_retry_period, absl::Milliseconds(500));
}

TEST_F(OptionsTest, AReplicaListeningEverywhereMustSayWhereItIsReached) {
  auto o = Parse({"controller", "--listen", "0.0.0.0:7700", "--token", "t", "--etcd-endpoints",
                  "http://127.0.0.1:2379"});
  ASSERT_FALSE(o.ok());
  EXPECT_THAT(o.status().message(), HasSubstr("--advertise-address"));
  o = Parse({"controller", "--listen", "0.0.0.0:7700", "--token", "t", "--etcd-endpoints",
             "http://127.0.0.1:2379", "--advertise-address", "ctl-a.example:7700"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->advertise_address, "ctl-a.example:7700");
}

TEST_F(OptionsTest, AControllerTakesAStateDirectory) {
  auto o = Parse({"controller"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->state_dir, "") << "none by default: the fixed start-up grace";
  env_["DISPATCHD_STATE_DIR"] = "/var/lib/dispatchd-controller";
  o = Parse({"controller"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->state_dir, "/var/lib/dispatchd-controller");
  o = Parse({"controller", "--state-dir", "/srv/state"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->state_dir, "/srv/state");
  EXPECT_THAT(DispatchdUsage(), HasSubstr("--state-dir DIR"));
}

TEST_F(OptionsTest, EtcdIsForControllerReplicasOnly) {
  auto o = Parse({"--etcd-endpoints", "http://127.0.0.1:2379"});
  ASSERT_FALSE(o.ok());
  EXPECT_THAT(o.status().message(), HasSubstr("controller replicas"));
}

TEST(IsLoopbackAddressTest, OnlyAddressesOfThisHost) {
  for (const char* local : {"127.0.0.1:7700", "127.0.0.1:0", "127.1.2.3:7700", "localhost:7700",
                            "LocalHost:7700", "[::1]:7700", "[::ffff:127.0.0.1]:7700",
                            "unix:/run/dispatchd.sock", "unix-abstract:dispatchd"}) {
    EXPECT_TRUE(IsLoopbackAddress(local)) << local;
  }
  for (const char* remote :
       {"0.0.0.0:7700", "[::]:7700", ":7700", "10.0.0.1:7700", "192.0.2.1:7700", "[::2]:7700",
        "[::ffff:10.0.0.1]:7700", "128.0.0.1:7700", "controller-host:7700",
        // Names that only look like loopback addresses resolve anywhere.
        "127.0.0.1.example.com:7700", "127.evil:7700", "localhost.example.com:7700",
        "[::1:7700", ""}) {
    EXPECT_FALSE(IsLoopbackAddress(remote)) << remote;
  }
}

TEST_F(OptionsTest, OffLoopbackEveryCallerMustAuthenticate) {
  auto check = [&](std::vector<std::string> args) {
    auto o = Parse(args);
    EXPECT_TRUE(o.ok()) << o.status();
    return o.ok() ? CheckListenIsAuthenticated(*o) : o.status();
  };
  // Refused: nobody, or only one side, must authenticate.
  absl::Status open = check({"controller", "--listen", "0.0.0.0:7700"});
  EXPECT_EQ(open.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(open.message(), HasSubstr("refusing to listen on 0.0.0.0:7700"));
  EXPECT_THAT(open.message(), HasSubstr("a token for agents"));
  EXPECT_THAT(open.message(), HasSubstr("--insecure"));
  absl::Status api_open = check({"controller", "--listen", "0.0.0.0:7700", "--agent-token", "a"});
  EXPECT_THAT(api_open.message(), HasSubstr("a token for the API"));
  EXPECT_FALSE(check({"controller", "--listen", "0.0.0.0:7700", "--api-token", "x"}).ok());
  // A TLS server certificate alone authenticates the controller, not its callers.
  EXPECT_FALSE(check({"controller", "--listen", "[::]:7700", "--tls-cert", "c.pem", "--tls-key",
                      "k.pem"})
                   .ok());
  EXPECT_FALSE(check({"all-in-one", "--listen", "0.0.0.0:7700"}).ok());
  EXPECT_FALSE(check({"controller", "--listen", "127.0.0.1.example.com:7700"}).ok());

  // Allowed: loopback, a token for both sides, client certificates, --insecure,
  // or no controller listening at all.
  EXPECT_TRUE(check({"controller", "--listen", "127.0.0.1:7700"}).ok());
  EXPECT_TRUE(check({"controller", "--listen", "0.0.0.0:7700", "--token", "t"}).ok());
  EXPECT_TRUE(check({"controller", "--listen", "0.0.0.0:7700", "--agent-token", "a",
                     "--api-token", "x"})
                  .ok());
  // Only a read token for the API: reads need it and writes are refused to all.
  EXPECT_TRUE(check({"controller", "--listen", "0.0.0.0:7700", "--agent-token", "a",
                     "--api-read-token", "r"})
                  .ok());
  EXPECT_TRUE(check({"controller", "--listen", "0.0.0.0:7700", "--tls-ca", "ca.pem",
                     "--tls-cert", "c.pem", "--tls-key", "k.pem"})
                  .ok());
  EXPECT_TRUE(check({"controller", "--listen", "0.0.0.0:7700", "--insecure"}).ok());
  EXPECT_TRUE(check({"agent", "--listen", "0.0.0.0:7700"}).ok()) << "an agent listens nowhere";
  EXPECT_TRUE(check({"all-in-one", "--listen="}).ok());
}

TEST(BoundAddressTest, ReplacesThePortWithTheBoundOne) {
  EXPECT_EQ(BoundAddress("127.0.0.1:0", 43210), "127.0.0.1:43210");
  EXPECT_EQ(BoundAddress("0.0.0.0:7700", 7700), "0.0.0.0:7700");
  EXPECT_EQ(BoundAddress("[::1]:0", 5000), "[::1]:5000");
  EXPECT_EQ(BoundAddress("localhost:0", 5001), "localhost:5001");
  EXPECT_EQ(BoundAddress("unix:/run/dispatchd.sock", 1), "unix:/run/dispatchd.sock");
}

TEST_F(OptionsTest, HelpAndVersion) {
  EXPECT_TRUE(Parse({"--help"})->help);
  EXPECT_TRUE(Parse({"-h"})->help);
  EXPECT_TRUE(Parse({"--version"})->version);
  EXPECT_THAT(DispatchdUsage(), HasSubstr("--events-dir"));
  EXPECT_THAT(DispatchdUsage(), HasSubstr("container.command"));
}

TEST_F(OptionsTest, MetricsListenDefaultsToLoopbackAndCanBeTurnedOff) {
  auto o = Parse({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->metrics_listen, "127.0.0.1:9477");
  auto moved = Parse({"agent", "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->metrics_listen, "127.0.0.1:0");
  auto off = Parse({"--metrics-listen="});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(off->metrics_listen, "");
  EXPECT_THAT(DispatchdUsage(), HasSubstr("--metrics-listen ADDR"));
}

TEST_F(OptionsTest, BadInputNamesTheProblem) {
  EXPECT_THAT(Parse({"--nope"}).status().message(), HasSubstr("unknown flag --nope"));
  EXPECT_THAT(Parse({"sideways"}).status().message(), HasSubstr("unknown mode 'sideways'"));
  EXPECT_THAT(Parse({"--events-dir"}).status().message(), HasSubstr("needs a value"));
  EXPECT_THAT(Parse({"--log-level=loud"}).status().message(), HasSubstr("log-level"));
  EXPECT_THAT(Parse({"--heartbeat=soon"}).status().message(), HasSubstr("heartbeat"));
  EXPECT_THAT(Parse({"--max-attempts=0"}).status().message(), HasSubstr("positive"));
  EXPECT_THAT(Parse({"--docker-host=tcp://1.2.3.4:2375"}).status().message(),
              HasSubstr("unix://"));
}

TEST_F(OptionsTest, TlsFiles) {
  auto o = Parse({"agent", "--tls-ca", "ca.pem", "--tls-cert=agent.pem", "--tls-key", "agent.key"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->tls_ca, "ca.pem");
  EXPECT_EQ(o->tls_cert, "agent.pem");
  EXPECT_EQ(o->tls_key, "agent.key");
  EXPECT_THAT(DispatchdUsage(), HasSubstr("--tls-ca"));
}

}  // namespace
}  // namespace dispatchd
