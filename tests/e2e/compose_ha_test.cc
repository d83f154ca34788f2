// deploy/compose/ha.yml, run with docker-compose as a user would: its three
// controller replicas on a private dockerd, all on this one "host"
// (loopback, ports chosen here), elect one leader on an etcd cluster, the
// other two name it, and stopping the leader's service hands the lead to
// another. The file's etcd services use the upstream etcd image, which the
// test cannot pull: the replicas run with --no-deps against a three-member
// cluster of Debian's etcd instead, and a second test runs the command lines
// of the file's etcd services with Debian's etcd to see that they form a
// cluster.
//
// Every container uses the host's network, as the file says; all traffic
// goes to 127.0.0.1.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/dispatch/v1/api.grpc.pb.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "tests/testing/etcd_cluster.h"

namespace dispatchd {
namespace testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

constexpr char kImage[] = "dispatchd:under-test";
constexpr char kToken[] = "compose-ha-test-token";
constexpr char kProject[] = "ha";
constexpr int kReplicas = 3;

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/",
                      workspace != nullptr ? workspace : "dispatchd", "/", path);
}

// The port of "http://127.0.0.1:PORT", or 0.
int PortOf(const std::string& url) {
  int port = 0;
  const size_t colon = url.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(url.substr(colon + 1), &port)) return 0;
  return port;
}

// `docker-compose --no-ansi -p ha -f deploy/compose/ha.yml args...` with
// `vars` added to its environment.
absl::StatusOr<std::string> Compose(const std::map<std::string, std::string>& vars,
                                    const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"docker-compose", "--no-ansi", "-p", kProject, "-f",
                                   Runfile("deploy/compose/ha.yml")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> env;
  for (const auto& [k, v] : vars) env.push_back(absl::StrCat(k, "=", v));
  return RunCommand(argv, env);
}


// What one replica's GetStatus says about the election.
struct ReplicaView {
  bool answered = false;
  grpc::StatusCode code = grpc::StatusCode::OK;  // when it did not: why
  std::string error;
  bool leader_election = false;
  std::string replica_id;
  bool leading = false;
  std::string leader_id;
  std::string leader_address;
};

std::ostream& operator<<(std::ostream& os, const ReplicaView& v) {
  if (!v.answered) return os << "{no answer: " << v.error << "}";
  return os << "{replica " << v.replica_id << (v.leading ? " leading" : " standing by")
            << ", leader " << v.leader_id << " at " << v.leader_address
            << (v.leader_election ? "" : ", no leader election") << "}";
}

class ComposeHaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EtcdClusterOptions etcd_options;
    etcd_options.members = 3;
    auto etcd = EtcdCluster::Create(etcd_options);
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = *std::move(etcd);
    auto dockerd = PrivateDockerd::Start();
    ASSERT_TRUE(dockerd.ok()) << dockerd.status();
    dockerd_ = *std::move(dockerd);
    auto built = RunCommand({"sh", "-c",
                             absl::StrCat("docker -H ", dockerd_->host(), " build -q -t ", kImage,
                                          " - < ", Runfile("deploy/image/context.tar"))},
                            {"DOCKER_BUILDKIT=0"});
    ASSERT_TRUE(built.ok()) << built.status();

    dir_ = MakeTempDir("dispatchd-compose-ha");
    WriteFile(dir_ + "/token", absl::StrCat(kToken, "\n"));
    vars_ = {{"DOCKER_HOST", dockerd_->host()},
             {"DISPATCHD_IMAGE", kImage},
             {"TOKEN_FILE", dir_ + "/token"},
             {"BIND_ADDRESS", "127.0.0.1"}};
    for (int i = 0; i < kReplicas; ++i) {
      const std::string n = std::to_string(i + 1);
      vars_["HOST_" + n] = "127.0.0.1";
      const int etcd_port = PortOf(etcd_->endpoint(i));
      ASSERT_NE(etcd_port, 0) << etcd_->endpoint(i);
      vars_["ETCD_" + n + "_CLIENT_PORT"] = std::to_string(etcd_port);
      ports_[i] = FreePort();
      metrics_ports_[i] = FreePort();
      vars_["CONTROLLER_" + n + "_PORT"] = std::to_string(ports_[i]);
      vars_["CONTROLLER_" + n + "_METRICS_PORT"] = std::to_string(metrics_ports_[i]);
      stubs_[i] = dispatch::v1::Dispatch::NewStub(
          grpc::CreateChannel(Address(i), grpc::InsecureChannelCredentials()));
    }
  }

  void TearDown() override {
    if (HasFailure() && dockerd_ != nullptr) {
      auto ps = dockerd_->Docker({"ps", "-a", "--format", "{{.Names}}"});
      for (absl::string_view name : absl::StrSplit(ps.ok() ? *ps : "", '\n', absl::SkipEmpty())) {
        std::cerr << "---- docker logs " << name << " ----\n" << Logs(std::string(name)) << "----\n";
      }
      if (etcd_ != nullptr) std::cerr << etcd_->LogTails();
    }
    if (up_) {
      auto down = Compose(vars_, {"down", "-v"});
      if (!down.ok()) std::cerr << "docker-compose down -v: " << down.status() << "\n";
    }
    dockerd_.reset();
    etcd_.reset();
    if (!dir_.empty()) RemoveTree(dir_);
  }

  static std::string Service(int i) { return absl::StrCat("controller-", i + 1); }
  // docker-compose 1.x names containers <project>_<service>_<index>.
  static std::string Container(int i) { return absl::StrCat(kProject, "_", Service(i), "_1"); }
  std::string Address(int i) const { return absl::StrCat("127.0.0.1:", ports_[i]); }

  std::string Logs(const std::string& container) {
    auto out = RunCommand(
        {"sh", "-c", absl::StrCat("docker -H ", dockerd_->host(), " logs ", container, " 2>&1")});
    return out.ok() ? *out : out.status().ToString();
  }

  ReplicaView Status(int i, const std::string& token = kToken) {
    ReplicaView view;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!token.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    dispatch::v1::GetStatusResponse status;
    const grpc::Status s = stubs_[i]->GetStatus(&context, {}, &status);
    if (!s.ok()) {
      view.code = s.error_code();
      view.error = absl::StrCat(static_cast<int>(s.error_code()), " ", s.error_message());
      return view;
    }
    view.answered = true;
    view.leader_election = status.leader_election();
    view.replica_id = status.replica_id();
    view.leading = status.leading();
    view.leader_id = status.leader_id();
    view.leader_address = status.leader_address();
    return view;
  }

  std::string Views(const std::set<int>& replicas) {
    std::string out;
    for (int i : replicas) {
      absl::StrAppend(&out, Service(i), ": ", ::testing::PrintToString(Status(i)), "\n");
    }
    return out;
  }

  // The one replica of `replicas` that leads while the others name it as
  // leader, or -1 if that is not what they say (yet).
  int AgreedLeader(const std::set<int>& replicas) {
    int leader = -1;
    std::vector<ReplicaView> views;
    for (int i : replicas) {
      views.push_back(Status(i));
      if (!views.back().answered) return -1;
      if (views.back().leading) {
        if (leader != -1) return -1;  // two at once
        leader = i;
      }
    }
    if (leader == -1) return -1;
    for (const ReplicaView& v : views) {
      if (v.leader_id != Service(leader) || v.leader_address != Address(leader)) return -1;
    }
    return leader;
  }

  // Waits (bounded) until `replicas` agree on a leader, and checks what each
  // says, its /readyz included. Returns the leader, or -1 (with a failure).
  int ExpectOneLeader(const std::set<int>& replicas, absl::Duration timeout) {
    int leader = -1;
    if (!WaitFor([&] { return (leader = AgreedLeader(replicas)) != -1; }, timeout)) {
      ADD_FAILURE() << "no agreed leader among\n" << Views(replicas);
      return -1;
    }
    const std::string leader_line =
        absl::StrCat("leader: ", Service(leader), " ", Address(leader), "\n");
    for (int i : replicas) {
      const ReplicaView v = Status(i);
      EXPECT_TRUE(v.leader_election) << v;
      // The compose file names each replica after its service.
      EXPECT_EQ(v.replica_id, Service(i)) << v;
      EXPECT_EQ(v.leading, i == leader) << v;
      const HttpResult ready = HttpGet(metrics_ports_[i], "/readyz");
      EXPECT_EQ(ready.status, 200) << Service(i) << ": " << ready.body;
      EXPECT_EQ(ready.body, absl::StrCat(i == leader ? "ok\n" : "standby\n", leader_line))
          << Service(i);
    }
    return leader;
  }

  std::unique_ptr<EtcdCluster> etcd_;
  std::unique_ptr<PrivateDockerd> dockerd_;
  std::string dir_;
  std::map<std::string, std::string> vars_;
  int ports_[kReplicas] = {};
  int metrics_ports_[kReplicas] = {};
  std::unique_ptr<dispatch::v1::Dispatch::Stub> stubs_[kReplicas];
  bool up_ = false;
};

TEST_F(ComposeHaTest, OneReplicaLeadsAndAnotherTakesOverWhenItsServiceStops) {
  up_ = true;
  ASSERT_OK(Compose(vars_, {"up", "-d", "--no-deps", "controller-1", "controller-2",
                            "controller-3"}));

  // The first election: the replicas come up one after the other, and
  // whichever campaigns first wins.
  const int first = ExpectOneLeader({0, 1, 2}, absl::Seconds(60));
  ASSERT_NE(first, -1);
  std::set<int> others = {0, 1, 2};
  others.erase(first);

  // A standby turns an API call away with the leader's address, the one
  // the file makes it advertise.
  {
    const int standby = *others.begin();
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    context.AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
    dispatch::v1::ListAgentsResponse agents;
    const grpc::Status s = stubs_[standby]->ListAgents(&context, {}, &agents);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    std::vector<std::string> leaders;
    const auto trailers = context.GetServerTrailingMetadata();
    for (auto [it, end] = trailers.equal_range("dispatchd-leader"); it != end; ++it) {
      leaders.emplace_back(it->second.data(), it->second.size());
    }
    EXPECT_THAT(leaders, ::testing::ElementsAre(Address(first)));
  }
  // What the file's header tells users to run: dispatchctl status inside a
  // replica's container (it reads the token file the container names).
  {
    const int standby = *others.rbegin();
    auto status = dockerd_->Docker({"exec", Container(standby), "/usr/local/bin/dispatchctl",
                                    "--controller", Address(standby), "status"});
    ASSERT_OK(status);
    EXPECT_THAT(*status, ::testing::ContainsRegex(
                             absl::StrCat("replica +", Service(standby), " \\(standby\\)")));
    EXPECT_THAT(*status, ::testing::ContainsRegex(
                             absl::StrCat("leader +", Service(first), " at ", Address(first))));
  }
  // Each replica got the token from the secret (and only there): a call
  // without it is refused, and no container's configuration shows it.
  for (int i = 0; i < kReplicas; ++i) {
    const ReplicaView v = Status(i, /*token=*/"");
    EXPECT_FALSE(v.answered) << Service(i) << " answered without the token";
    EXPECT_EQ(v.code, grpc::StatusCode::UNAUTHENTICATED) << v;
    auto inspect = dockerd_->Docker({"inspect", Container(i)});
    ASSERT_OK(inspect);
    EXPECT_THAT(*inspect, Not(HasSubstr(kToken)));
  }

  // Stopping the leader's service: SIGTERM, and the replica gives up its
  // lease on the way out. One of the other two leads soon after (the bound
  // is generous: even a lease that runs out lasts 3 s).
  ASSERT_OK(Compose(vars_, {"stop", Service(first)}));
  const absl::Time stopped = absl::Now();
  auto running = dockerd_->Docker({"inspect", "-f", "{{.State.Running}}", Container(first)});
  ASSERT_OK(running);
  EXPECT_EQ(*running, "false");
  const int second = ExpectOneLeader(others, absl::Seconds(15));
  ASSERT_NE(second, -1);
  EXPECT_NE(second, first);
  // For the record (not asserted: the machine may be busy).
  std::cout << Service(second) << " leads " << absl::Now() - stopped << " after "
            << Service(first) << "'s stop returned\n";

  // Started again, the old leader stands by: the lease is someone else's.
  ASSERT_OK(Compose(vars_, {"start", Service(first)}));
  EXPECT_TRUE(WaitFor([&] {
    const ReplicaView v = Status(first);
    return v.answered && v.leader_id == Service(second);
  }, absl::Seconds(30))) << Views({first});
  EXPECT_EQ(ExpectOneLeader({0, 1, 2}, absl::Seconds(10)), second);

  // docker-compose down leaves no container and no network behind, and no
  // volume but the file's named ones, which it keeps by design (it may
  // create the etcd services' too, unused); the replicas' events volumes are
  // named so that they are not left behind as anonymous ones piling up with
  // every down and up. `down -v` removes them all.
  ASSERT_OK(Compose(vars_, {"down"}));
  up_ = false;
  auto left = dockerd_->Docker({"ps", "-aq"});
  ASSERT_OK(left);
  EXPECT_EQ(*left, "") << "containers left after docker-compose down";
  auto networks = dockerd_->Docker({"network", "ls", "--format", "{{.Name}}"});
  ASSERT_OK(networks);
  for (absl::string_view network : absl::StrSplit(*networks, '\n', absl::SkipEmpty())) {
    EXPECT_THAT(network, ::testing::AnyOf("host", "none", "bridge")) << "network left behind";
  }
  auto volumes = dockerd_->Docker({"volume", "ls", "-q"});
  ASSERT_OK(volumes);
  const std::vector<std::string> kept = absl::StrSplit(*volumes, '\n', absl::SkipEmpty());
  EXPECT_THAT(kept, ::testing::IsSubsetOf({"ha_controller-1-events", "ha_controller-2-events",
                                           "ha_controller-3-events", "ha_etcd-1-data",
                                           "ha_etcd-2-data", "ha_etcd-3-data"}));
  EXPECT_THAT(kept, ::testing::IsSupersetOf({"ha_controller-1-events", "ha_controller-2-events",
                                             "ha_controller-3-events"}));
  ASSERT_OK(Compose(vars_, {"down", "-v"}));
  volumes = dockerd_->Docker({"volume", "ls", "-q"});
  ASSERT_OK(volumes);
  EXPECT_EQ(*volumes, "") << "volumes left after docker-compose down -v";
}

// A temp directory of a test's own, removed however the test ends.
class ScratchDir {
 public:
  ScratchDir() : path_(MakeTempDir("dispatchd-compose-ha")) {}
  ~ScratchDir() { RemoveTree(path_); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  const std::string path_;
};

// The variables every test of the file below sets: all three "hosts" on
// loopback, with ports of their own.
std::map<std::string, std::string> OneHostVariables(const std::string& token_file) {
  std::map<std::string, std::string> vars = {{"TOKEN_FILE", token_file},
                                             {"BIND_ADDRESS", "127.0.0.1"}};
  for (int n = 1; n <= kReplicas; ++n) {
    vars[absl::StrCat("HOST_", n)] = "127.0.0.1";
    vars[absl::StrCat("ETCD_", n, "_CLIENT_PORT")] = std::to_string(FreePort());
    vars[absl::StrCat("ETCD_", n, "_PEER_PORT")] = std::to_string(FreePort());
    vars[absl::StrCat("CONTROLLER_", n, "_PORT")] = std::to_string(FreePort());
    vars[absl::StrCat("CONTROLLER_", n, "_METRICS_PORT")] = std::to_string(FreePort());
  }
  return vars;
}

// The whole file parses, etcd services included, once the hosts are named;
// without them docker-compose refuses it and says which is missing.
TEST(ComposeHaFileTest, IsValidWithTheHostsNamedAndSaysWhichIsMissing) {
  const ScratchDir scratch;
  const std::string& dir = scratch.path();
  WriteFile(dir + "/token", "t\n");
  std::map<std::string, std::string> vars = OneHostVariables(dir + "/token");
  EXPECT_OK(Compose(vars, {"config", "-q"}));
  auto services = Compose(vars, {"config", "--services"});
  ASSERT_OK(services);
  EXPECT_THAT(absl::StrSplit(*services, '\n', absl::SkipEmpty()),
              UnorderedElementsAre("etcd-1", "etcd-2", "etcd-3", "controller-1", "controller-2",
                                   "controller-3"));
  vars.erase("HOST_2");
  auto config = Compose(vars, {"config", "-q"});
  EXPECT_FALSE(config.ok());
  EXPECT_THAT(config.status().ToString(), HasSubstr("set HOST_2"));
}

// The command lines of the services of `config` (docker-compose's
// normalised YAML): "  <service>:", "    command:", "    - <arg>"...
std::map<std::string, std::vector<std::string>> Commands(const std::string& config) {
  std::map<std::string, std::vector<std::string>> commands;
  bool in_services = false;
  std::string service;
  bool in_command = false;
  for (absl::string_view line : absl::StrSplit(config, '\n')) {
    if (!line.empty() && line[0] != ' ') {
      in_services = line == "services:";
      service.clear();
      continue;
    }
    if (!in_services) continue;
    if (absl::StartsWith(line, "  ") && line.size() > 2 && line[2] != ' ' &&
        absl::EndsWith(line, ":")) {
      service = std::string(line.substr(2, line.size() - 3));
      in_command = false;
    } else if (line == "    command:") {
      in_command = !service.empty();
    } else if (in_command && absl::StartsWith(line, "    - ")) {
      std::string arg(line.substr(6));
      if (arg.size() >= 2 && (arg.front() == '\'' || arg.front() == '"') &&
          arg.back() == arg.front()) {
        arg = arg.substr(1, arg.size() - 2);
      }
      commands[service].push_back(arg);
    } else {
      in_command = false;
    }
  }
  return commands;
}

// A child process whose output goes to a file; it dies with the test.
class Child {
 public:
  Child(std::vector<std::string> argv, const std::string& log_path) {
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int null = open("/dev/null", O_RDONLY);
      dup2(null, 0);
      dup2(log, 1);
      dup2(log, 2);
      execv(args[0], args.data());
      _exit(127);
    }
    if (log >= 0) close(log);
  }
  ~Child() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 200; ++i) {  // 10 s
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      usleep(50'000);
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  bool Running() { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }

 private:
  pid_t pid_ = -1;
};

// The command lines of the file's etcd services, run with Debian's etcd
// (only the binary's path and the data directory differ from what the
// image runs), form one cluster of three members named as in the file, and
// the controllers' DISPATCHD_ETCD_ENDPOINTS name exactly their client URLs.
TEST(ComposeHaFileTest, TheEtcdServicesCommandLinesFormACluster) {
  // Destroyed after the members (declared before them): they are stopped
  // before their data directories go.
  const ScratchDir scratch;
  const std::string& dir = scratch.path();
  WriteFile(dir + "/token", "t\n");
  const std::map<std::string, std::string> vars = OneHostVariables(dir + "/token");
  auto config = Compose(vars, {"config"});
  ASSERT_OK(config);
  auto commands = Commands(*config);

  std::vector<std::unique_ptr<Child>> members;
  std::vector<std::string> client_urls;
  for (int n = 1; n <= kReplicas; ++n) {
    const std::string name = absl::StrCat("etcd-", n);
    std::vector<std::string> argv = commands[name];
    ASSERT_GE(argv.size(), 2u) << name << " has no command in\n" << *config;
    EXPECT_EQ(argv[0], "/usr/local/bin/etcd");
    argv[0] = "/usr/bin/etcd";
    bool data_dir = false;
    for (std::string& arg : argv) {
      if (absl::StartsWith(arg, "--data-dir=")) {
        EXPECT_EQ(arg, "--data-dir=/etcd-data") << "not the volume's mount point";
        arg = absl::StrCat("--data-dir=", dir, "/", name);
        data_dir = true;
      }
    }
    EXPECT_TRUE(data_dir) << name;
    EXPECT_THAT(argv, ::testing::Contains(absl::StrCat("--name=", name)));
    client_urls.push_back(
        absl::StrCat("http://127.0.0.1:", vars.at(absl::StrCat("ETCD_", n, "_CLIENT_PORT"))));
    members.push_back(std::make_unique<Child>(argv, absl::StrCat(dir, "/", name, ".log")));
  }
  // What each replica is given: the three members' client URLs.
  const std::string endpoints = absl::StrJoin(client_urls, ",");
  int replicas_with_endpoints = 0;
  for (absl::string_view line : absl::StrSplit(*config, '\n')) {
    if (absl::StripLeadingAsciiWhitespace(line) ==
        absl::StrCat("DISPATCHD_ETCD_ENDPOINTS: ", endpoints)) {
      ++replicas_with_endpoints;
    }
  }
  EXPECT_EQ(replicas_with_endpoints, kReplicas) << *config;

  // A quorum answers on every member once the three found each other.
  const std::vector<std::string> etcdctl = {"etcdctl", "--endpoints", endpoints,
                                            "--dial-timeout=2s", "--command-timeout=3s"};
  auto with = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = etcdctl;
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, {"ETCDCTL_API=3"});
  };
  const bool healthy = WaitFor([&] { return with({"endpoint", "health"}).ok(); },
                               absl::Seconds(60));
  std::string logs;
  for (int n = 1; n <= kReplicas; ++n) {
    absl::StrAppend(&logs, "---- etcd-", n, " ----\n",
                    ReadFile(absl::StrCat(dir, "/etcd-", n, ".log")));
  }
  ASSERT_TRUE(healthy) << with({"endpoint", "health"}).status() << "\n" << logs;
  auto list = with({"member", "list", "--write-out=simple"});
  ASSERT_OK(list);
  std::vector<std::string> names;
  for (absl::string_view line : absl::StrSplit(*list, '\n', absl::SkipEmpty())) {
    // ID, status, name, peer URLs, client URLs, is learner
    std::vector<std::string> fields = absl::StrSplit(line, ", ");
    ASSERT_GE(fields.size(), 5u) << line;
    EXPECT_EQ(fields[1], "started") << line;
    names.push_back(fields[2]);
    const int n = fields[2].back() - '0';
    ASSERT_TRUE(n >= 1 && n <= kReplicas) << line;
    EXPECT_EQ(fields[4], client_urls[n - 1]) << line;
  }
  EXPECT_THAT(names, UnorderedElementsAre("etcd-1", "etcd-2", "etcd-3"));
  // A write through one member is read through another.
  ASSERT_OK(RunCommand({"etcdctl", "--endpoints", client_urls[0], "put", "/try", "out"},
                       {"ETCDCTL_API=3"}));
  auto got = RunCommand({"etcdctl", "--endpoints", client_urls[2], "get", "--print-value-only",
                         "/try"},
                        {"ETCDCTL_API=3"});
  ASSERT_OK(got);
  EXPECT_EQ(*got, "out");
  for (auto& m : members) EXPECT_TRUE(m->Running());
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
