// Several hosts on one machine: two private dockerds, one agent each, and a
// controller they reach over real gRPC on loopback.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "common/testing/status_matchers.h"

namespace dispatchd {
namespace testing {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

struct Host {
  std::string name;
  std::unique_ptr<PrivateDockerd> docker;
  std::string events;
  std::unique_ptr<DispatchdProcess> agent;
};

class MultiHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("dispatchd-multi");
    ASSERT_FALSE(dir_.empty());
    address_ = absl::StrCat("127.0.0.1:", FreePort());
    for (const char* name : {"host-a", "host-b"}) {
      Host host;
      host.name = name;
      auto docker = PrivateDockerd::Start();
      ASSERT_TRUE(docker.ok()) << docker.status();
      host.docker = *std::move(docker);
      ASSERT_TRUE(host.docker->EnsureBusyboxImage().ok());
      host.events = absl::StrCat(dir_, "/", name, "-events");
      ASSERT_EQ(mkdir(host.events.c_str(), 0755), 0);
      hosts_.push_back(std::move(host));
    }
  }

  void TearDown() override {
    if (HasFailure()) {
      if (controller_ != nullptr) std::cerr << "---- controller ----\n" << controller_->Log();
      for (Host& h : hosts_) {
        if (h.agent != nullptr) std::cerr << "---- agent " << h.name << " ----\n" << h.agent->Log();
      }
    }
    for (Host& h : hosts_) {
      if (h.agent != nullptr && h.agent->Running()) h.agent->Terminate().IgnoreError();
    }
    if (controller_ != nullptr && controller_->Running()) controller_->Terminate().IgnoreError();
    hosts_.clear();
    RemoveTree(dir_);
  }

  // Flags in `extra` win over the same flags here (--heartbeat).
  void StartController(std::vector<std::string> extra = {},
                       const std::string& log_name = "controller.log") {
    std::vector<std::string> args = {"controller", "--listen", address_, "--token", "s3cret",
                                     "--heartbeat", "1s", "--log-level", "debug"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = DispatchdProcess::Start(args, dir_ + "/" + log_name);
    ASSERT_TRUE(process.ok()) << process.status();
    controller_ = *std::move(process);
  }

  void StartAgent(Host& host, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"agent", "--controller", address_, "--token", "s3cret",
                                     "--agent-id", host.name, "--events-dir", host.events,
                                     "--docker-host", host.docker->host(), "--log-level", "debug"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = DispatchdProcess::Start(args, absl::StrCat(dir_, "/", host.name, ".log"));
    ASSERT_TRUE(process.ok()) << process.status();
    host.agent = *std::move(process);
  }

  // Both agents connected and their inventories listed.
  bool AllInventoriesIn() {
    const std::string log = controller_->Log();
    for (const Host& h : hosts_) {
      if (log.find("agent " + h.name + " inventory:") == std::string::npos) return false;
    }
    return true;
  }

  void Run(Host& host, const std::string& name, const std::vector<std::string>& labels) {
    std::vector<std::string> args = {"run", "-d", "--network", "none", "--name", name};
    for (const std::string& l : labels) {
      args.push_back("--label");
      args.push_back(l);
    }
    args.push_back(PrivateDockerd::kBusyboxImage);
    args.push_back("sleep");
    args.push_back("86400");
    auto out = host.docker->Docker(args);
    ASSERT_TRUE(out.ok()) << out.status();
  }

  bool InContainer(Host& host, const std::string& name, const std::string& path) {
    return host.docker->Docker({"exec", name, "test", "-e", path}).ok();
  }

  std::string dir_;
  std::string address_;
  std::vector<Host> hosts_;
  std::unique_ptr<DispatchdProcess> controller_;
};

TEST_F(MultiHostTest, EventsCrossHostsAndHostScopeStaysHome) {
  Host& a = hosts_[0];
  Host& b = hosts_[1];
  Run(b, "remote", {"subscription.cross.container.command=touch /cross"});
  Run(a, "local", {"subscription.here.container.command=touch /here",
                   "subscription.here.dispatching.scope=host"});
  StartController();
  StartAgent(a);
  StartAgent(b);
  ASSERT_TRUE(WaitFor([&] { return AllInventoriesIn(); })) << controller_->Log();

  // A file on host A reaches the subscriber on host B; A deletes its file.
  WriteFile(a.events + "/cross", "from a");
  ASSERT_TRUE(WaitFor([&] { return InContainer(b, "remote", "/cross"); }));
  ASSERT_TRUE(WaitFor([&] { return !FileExists(a.events + "/cross"); }));

  // scope=host: an event seen on B does not reach A's container...
  WriteFile(b.events + "/here", "from b");
  ASSERT_TRUE(WaitFor([&] { return !FileExists(b.events + "/here"); }));
  EXPECT_FALSE(InContainer(a, "local", "/here"));
  // ...but one seen on A does.
  WriteFile(a.events + "/here", "from a");
  ASSERT_TRUE(WaitFor([&] { return InContainer(a, "local", "/here"); }));
}

TEST_F(MultiHostTest, AgentKeepsEventsWhileTheControllerIsAwayAndResendsThem) {
  Host& a = hosts_[0];
  Host& b = hosts_[1];
  Run(b, "remote", {"subscription.later.container.command=touch /later"});
  StartController();
  StartAgent(a);
  StartAgent(b);
  ASSERT_TRUE(WaitFor([&] { return AllInventoriesIn(); })) << controller_->Log();

  auto stopped = controller_->Terminate();
  ASSERT_OK(stopped);
  WriteFile(a.events + "/later", "kept");
  // Nobody to settle it: the file stays.
  ASSERT_TRUE(WaitFor([&] { return a.agent->Log().find("controller session ended") !=
                                   std::string::npos; }));
  EXPECT_TRUE(FileExists(a.events + "/later"));

  StartController();  // same address: the agents reconnect on their own
  ASSERT_TRUE(WaitFor([&] { return InContainer(b, "remote", "/later"); }, absl::Seconds(60)))
      << controller_->Log();
  ASSERT_TRUE(WaitFor([&] { return !FileExists(a.events + "/later"); }));
  EXPECT_TRUE(a.agent->Running());
  EXPECT_TRUE(b.agent->Running());
}

// A controller with --state-dir records the agents it knows; restarted, it
// waits for exactly those instead of a fixed start-up grace, and routes as
// soon as they are back with fresh inventories. Its heartbeat is a minute,
// so without the list the grace would be three minutes: an event delivered
// within WaitFor's 30 s was routed because of the list, not the grace.
TEST_F(MultiHostTest, ControllerRestartedWithItsStateDirRoutesOnceItsAgentsAreBack) {
  Host& a = hosts_[0];
  Host& b = hosts_[1];
  Run(b, "remote", {"subscription.later.container.command=touch /later"});
  const std::string state = dir_ + "/controller-state";
  const std::vector<std::string> flags = {"--state-dir", state, "--heartbeat", "1m"};
  StartController(flags, "controller-1.log");
  StartAgent(a);
  StartAgent(b);
  ASSERT_TRUE(WaitFor([&] { return AllInventoriesIn(); })) << controller_->Log();
  EXPECT_THAT(controller_->Log(), HasSubstr("no list of known agents yet"));
  const std::string list = state + "/known-agents.json";
  ASSERT_TRUE(WaitFor([&] {
    const std::string known = ReadFile(list);
    return known.find("\"host-a\"") != std::string::npos &&
           known.find("\"host-b\"") != std::string::npos;
  })) << ReadFile(list);

  ASSERT_OK(controller_->Terminate());
  WriteFile(a.events + "/later", "kept");
  ASSERT_TRUE(WaitFor([&] { return a.agent->Log().find("controller session ended") !=
                                   std::string::npos; }));

  StartController(flags, "controller-2.log");
  ASSERT_TRUE(WaitFor([&] { return InContainer(b, "remote", "/later"); })) << controller_->Log();
  ASSERT_TRUE(WaitFor([&] { return !FileExists(a.events + "/later"); }));
  const std::string log = controller_->Log();
  EXPECT_THAT(log, HasSubstr("routing waits for the 2 agents known from " + list));
  EXPECT_THAT(log, Not(HasSubstr("start-up grace of")));
  // Both were expected, so both come back rather than connect anew...
  EXPECT_THAT(log, ContainsRegex("agent host-a \\(host [^)]*\\) reconnected"));
  EXPECT_THAT(log, ContainsRegex("agent host-b \\(host [^)]*\\) reconnected"));
  // ...and the event was routed only once both inventories were in.
  const size_t delivered = log.find("delivered later to ");
  ASSERT_NE(delivered, std::string::npos) << log;
  EXPECT_LT(log.find("agent host-a inventory:"), delivered);
  EXPECT_LT(log.find("agent host-b inventory:"), delivered);
}

TEST_F(MultiHostTest, WrongTokenIsRefused) {
  Host& a = hosts_[0];
  StartController();
  auto process = DispatchdProcess::Start(
      {"agent", "--controller", address_, "--token", "wrong", "--agent-id", a.name,
       "--events-dir", a.events, "--docker-host", a.docker->host()},
      dir_ + "/intruder.log");
  ASSERT_OK(process);
  a.agent = *std::move(process);
  ASSERT_TRUE(WaitFor([&] { return a.agent->Log().find("wrong token") != std::string::npos; }))
      << a.agent->Log();
  EXPECT_EQ(controller_->Log().find("agent host-a (host"), std::string::npos);
}

// Mutual TLS between agents and controller, with certificates made here by
// the openssl command line.
TEST_F(MultiHostTest, AgentsAndControllerSpeakMutualTls) {
  const std::string pki = dir_ + "/pki";
  auto sh = [](const std::string& command) { return std::system(command.c_str()); };
  const std::string q = " >/dev/null 2>&1";
  ASSERT_EQ(sh("mkdir -p " + pki), 0);
  ASSERT_EQ(sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ca -keyout " + pki +
               "/ca.key -out " + pki + "/ca.pem" + q), 0);
  ASSERT_EQ(sh("printf 'subjectAltName=IP:127.0.0.1' > " + pki + "/san.ext"), 0);
  for (const std::string who : {"controller", "agent"}) {
    ASSERT_EQ(sh("openssl req -newkey rsa:2048 -nodes -subj /CN=" + who + " -keyout " + pki +
                 "/" + who + ".key -out " + pki + "/" + who + ".csr" + q), 0);
    ASSERT_EQ(sh("openssl x509 -req -days 2 -in " + pki + "/" + who + ".csr -CA " + pki +
                 "/ca.pem -CAkey " + pki + "/ca.key -CAcreateserial -extfile " + pki +
                 "/san.ext -out " + pki + "/" + who + ".pem" + q), 0);
  }
  Host& a = hosts_[0];
  Host& b = hosts_[1];
  Run(b, "remote", {"subscription.secure.container.command=touch /secure"});
  StartController({"--tls-cert", pki + "/controller.pem", "--tls-key", pki + "/controller.key",
                   "--tls-ca", pki + "/ca.pem"});
  const std::vector<std::string> agent_tls = {"--tls-cert", pki + "/agent.pem", "--tls-key",
                                              pki + "/agent.key", "--tls-ca", pki + "/ca.pem"};
  StartAgent(a, agent_tls);
  StartAgent(b, agent_tls);
  ASSERT_TRUE(WaitFor([&] { return AllInventoriesIn(); })) << controller_->Log();
  WriteFile(a.events + "/secure", "");
  ASSERT_TRUE(WaitFor([&] { return InContainer(b, "remote", "/secure"); }));
  ASSERT_TRUE(WaitFor([&] { return !FileExists(a.events + "/secure"); }));
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
