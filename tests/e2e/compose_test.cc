// The compose files of deploy/compose, run with docker-compose as a user
// would, against private dockerds: a controller and two agents from
// controller.yml and agent.yml, each agent on "its own host" (agent A holds
// daemon A's socket, agent B daemon B's), all sharing one token file.
// Every container uses the host's network (as the files say) on loopback
// ports chosen here; nothing talks to a bridge network.
#include <sys/stat.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "common/testing/status_matchers.h"

namespace dispatchd {
namespace testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kImage[] = "dispatchd:under-test";

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/",
                      workspace != nullptr ? workspace : "dispatchd", "/", path);
}

class ComposeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto a = PrivateDockerd::Start();
    ASSERT_TRUE(a.ok()) << a.status();
    host_a_ = *std::move(a);
    auto b = PrivateDockerd::Start();
    ASSERT_TRUE(b.ok()) << b.status();
    host_b_ = *std::move(b);
    ASSERT_TRUE(host_b_->EnsureBusyboxImage().ok());
    auto built = RunCommand({"sh", "-c",
                             absl::StrCat("docker -H ", host_a_->host(), " build -q -t ", kImage,
                                          " - < ", Runfile("deploy/image/context.tar"))},
                            {"DOCKER_BUILDKIT=0"});
    ASSERT_TRUE(built.ok()) << built.status();

    dir_ = MakeTempDir("dispatchd-compose");
    WriteFile(dir_ + "/token", "compose-test-token\n");
    WriteFile(dir_ + "/wrong-token", "not-the-token\n");
    controller_ = absl::StrCat("127.0.0.1:", FreePort());
  }

  void TearDown() override {
    for (const std::string& project : projects_) {
      auto down = Compose(project, project == "ctl" ? "controller.yml" : "agent.yml", {"down"}, {});
      if (!down.ok()) std::cerr << "docker-compose down " << project << ": " << down.status() << "\n";
    }
    if (HasFailure() && host_a_ != nullptr) {
      auto ps = host_a_->Docker({"ps", "-a", "--format", "{{.Names}}"});
      for (absl::string_view name : absl::StrSplit(ps.ok() ? *ps : "", '\n', absl::SkipEmpty())) {
        std::cerr << "---- docker logs " << name << " ----\n" << Logs(std::string(name)) << "----\n";
      }
    }
    host_a_.reset();
    host_b_.reset();
    if (!dir_.empty()) RemoveTree(dir_);
  }

  // `docker-compose -p project -f deploy/compose/file args...` on daemon A,
  // with the variables the compose files read.
  absl::StatusOr<std::string> Compose(const std::string& project, const std::string& file,
                                      const std::vector<std::string>& args,
                                      const std::vector<std::string>& env) {
    std::vector<std::string> argv = {"docker-compose", "--no-ansi", "-p", project, "-f",
                                     Runfile("deploy/compose/" + file)};
    argv.insert(argv.end(), args.begin(), args.end());
    std::map<std::string, std::string> vars = {
        {"DOCKER_HOST", host_a_->host()}, {"DISPATCHD_IMAGE", kImage},
        {"TOKEN_FILE", dir_ + "/token"},
        // agent.yml insists on it; `down` needs it set too.
        {"DISPATCHD_CONTROLLER", controller_}};
    for (const std::string& assignment : env) {  // later ones win
      std::vector<std::string> kv = absl::StrSplit(assignment, absl::MaxSplits('=', 1));
      vars[kv[0]] = kv.size() > 1 ? kv[1] : "";
    }
    std::vector<std::string> all_env;
    for (const auto& [k, v] : vars) all_env.push_back(absl::StrCat(k, "=", v));
    return RunCommand(argv, all_env);
  }

  void Up(const std::string& project, const std::string& file,
          const std::vector<std::string>& env) {
    projects_.push_back(project);
    auto up = Compose(project, file, {"up", "-d"}, env);
    ASSERT_TRUE(up.ok()) << up.status();
  }

  // An agent project: its own events directory, socket, metrics port and name.
  void UpAgent(const std::string& name, PrivateDockerd* host, const std::string& token_file) {
    const std::string events = dir_ + "/events-" + name;
    ASSERT_EQ(mkdir(events.c_str(), 0755), 0);
    Up(name, "agent.yml",
       {absl::StrCat("DISPATCHD_AGENT_ID=", name), absl::StrCat("EVENTS_DIR=", events),
        absl::StrCat("DOCKER_SOCKET=", host->socket_path()),
        absl::StrCat("DISPATCHD_METRICS_LISTEN=127.0.0.1:", FreePort()),
        absl::StrCat("TOKEN_FILE=", token_file)});
  }

  std::string Logs(const std::string& container) {
    auto out = RunCommand(
        {"sh", "-c", absl::StrCat("docker -H ", host_a_->host(), " logs ", container, " 2>&1")});
    return out.ok() ? *out : out.status().ToString();
  }

  // dispatchctl inside the controller's container (it reads the token file
  // named by the container's DISPATCHD_TOKEN_FILE, like dispatchd).
  std::string Dispatchctl(const std::string& command) {
    auto out = host_a_->Docker({"exec", "ctl_controller_1", "/usr/local/bin/dispatchctl",
                                "--controller", controller_, command});
    return out.ok() ? *out : out.status().ToString();
  }

  std::unique_ptr<PrivateDockerd> host_a_;
  std::unique_ptr<PrivateDockerd> host_b_;
  std::string dir_;
  std::string controller_;
  std::vector<std::string> projects_;
};

TEST_F(ComposeTest, ControllerAndTwoAgentsWithATokenAndNothingLeftAfterDown) {
  Up("ctl", "controller.yml",
     {absl::StrCat("DISPATCHD_LISTEN=", controller_),
      absl::StrCat("DISPATCHD_METRICS_LISTEN=127.0.0.1:", FreePort())});
  UpAgent("agent-a", host_a_.get(), dir_ + "/token");
  UpAgent("agent-b", host_b_.get(), dir_ + "/token");
  UpAgent("agent-bad", host_a_.get(), dir_ + "/wrong-token");

  // The handler lives on host B; the event is written on host A.
  auto handler = host_b_->Docker({"run", "-d", "--network", "none", "--name", "handler", "--label",
                                  "subscription.compose.ping.container.command=touch /pinged",
                                  PrivateDockerd::kBusyboxImage, "sleep", "1000"});
  ASSERT_TRUE(handler.ok()) << handler.status();
  ASSERT_TRUE(WaitFor([&] {
    const std::string agents = Dispatchctl("agents");
    return agents.find("agent-a") != std::string::npos &&
           agents.find("agent-b") != std::string::npos;
  }, absl::Seconds(60))) << Dispatchctl("agents");
  // Wait until agent B's inventory (with the handler) is in.
  ASSERT_TRUE(WaitFor([&] { return Dispatchctl("subscriptions").find("handler") != std::string::npos; }))
      << Dispatchctl("subscriptions");

  WriteFile(dir_ + "/events-agent-a/compose/ping", "from host A");
  ASSERT_TRUE(WaitFor([&] {
    return host_b_->Docker({"exec", "handler", "ls", "/pinged"}).ok();
  })) << Logs("ctl_controller_1");
  EXPECT_TRUE(WaitFor([&] { return !FileExists(dir_ + "/events-agent-a/compose/ping"); }));

  // The agent with the wrong token is refused, and says so.
  EXPECT_TRUE(WaitFor([&] {
    return Logs("agent-bad_agent_1").find("UNAUTHENTICATED") != std::string::npos;
  })) << Logs("agent-bad_agent_1");
  EXPECT_THAT(Dispatchctl("agents"), Not(HasSubstr("agent-bad")));
  // The token never shows in a container's configuration.
  auto inspect = host_a_->Docker({"inspect", "ctl_controller_1"});
  ASSERT_OK(inspect);
  EXPECT_THAT(*inspect, Not(HasSubstr("compose-test-token")));

  for (const char* project : {"agent-bad", "agent-b", "agent-a", "ctl"}) {
    auto down = Compose(project, project == std::string("ctl") ? "controller.yml" : "agent.yml",
                        {"down"}, {});
    ASSERT_TRUE(down.ok()) << down.status();
  }
  projects_.clear();
  auto left = host_a_->Docker({"ps", "-aq"});
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_EQ(*left, "") << "containers left after docker-compose down";
  auto networks = host_a_->Docker({"network", "ls", "--format", "{{.Name}}"});
  ASSERT_OK(networks);
  for (absl::string_view network : absl::StrSplit(*networks, '\n', absl::SkipEmpty())) {
    EXPECT_THAT(network, ::testing::AnyOf("host", "none", "bridge")) << "network left behind";
  }
}

// Every compose file parses, with the variables a user sets.
TEST_F(ComposeTest, EveryComposeFileIsValid) {
  for (const char* file : {"all-in-one.yml", "controller.yml", "agent.yml"}) {
    auto config = Compose("check", file, {"config", "-q"}, {});
    EXPECT_TRUE(config.ok()) << file << ": " << config.status();
  }
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
