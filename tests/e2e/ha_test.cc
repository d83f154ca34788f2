// A controller that survives its host: three etcd members (Debian's etcd,
// loopback ports), three controller replicas and two agents on private
// dockerds, all real processes talking over real gRPC (docs/ha.md).
//
// Times are measured and printed, never asserted: the kill test prints how
// long after the kill a new replica led and deliveries resumed (and
// DISPATCHD_HA_KILLS=20 makes it the failover run of docs/ha.md).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/dispatch/v1/api.grpc.pb.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "tests/testing/etcd_cluster.h"

namespace dispatchd {
namespace testing {
namespace {

constexpr char kToken[] = "s3cret";
constexpr int kReplicas = 3;
// Events of one burst: half written before the kill, half after.
constexpr int kBurst = 20;

struct Host {
  std::string name;
  std::unique_ptr<PrivateDockerd> docker;
  std::string events;
  std::unique_ptr<DispatchdProcess> agent;
};

struct Replica {
  std::string id;
  std::string address;
  std::string endpoints;  // its --etcd-endpoints
  std::unique_ptr<DispatchdProcess> process;
  std::unique_ptr<dispatch::v1::Dispatch::Stub> stub;
  int starts = 0;
};

class HaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("dispatchd-ha");
    ASSERT_FALSE(dir_.empty());
    ASSERT_EQ(mkdir((dir_ + "/out").c_str(), 0777), 0);
    auto cluster = EtcdCluster::Create(EtcdClusterOptions{.members = 3});
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    etcd_ = *std::move(cluster);
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
    for (int i = 0; i < kReplicas; ++i) {
      Replica r;
      r.id = absl::StrCat("ctl-", i);
      r.address = absl::StrCat("127.0.0.1:", FreePort());
      r.stub = dispatch::v1::Dispatch::NewStub(
          grpc::CreateChannel(r.address, grpc::InsecureChannelCredentials()));
      replicas_.push_back(std::move(r));
    }
  }

  void TearDown() override {
    if (HasFailure()) {
      for (Replica& r : replicas_) {
        if (r.process != nullptr) std::cerr << "---- " << r.id << " ----\n" << Tail(r.process->Log());
      }
      for (Host& h : hosts_) {
        if (h.agent != nullptr) std::cerr << "---- agent " << h.name << " ----\n" << Tail(h.agent->Log());
      }
      if (etcd_ != nullptr) std::cerr << etcd_->LogTails(20);
    }
    for (Host& h : hosts_) {
      if (h.agent != nullptr && h.agent->Running()) h.agent->Terminate().IgnoreError();
    }
    for (Replica& r : replicas_) {
      if (r.process != nullptr && r.process->Running()) r.process->Terminate().IgnoreError();
    }
    hosts_.clear();
    etcd_.reset();
    RemoveTree(dir_);
  }

  static std::string Tail(const std::string& log, size_t lines = 80) {
    std::vector<std::string> all = absl::StrSplit(log, '\n');
    if (all.size() > lines) all.erase(all.begin(), all.end() - lines);
    return absl::StrJoin(all, "\n") + "\n";
  }

  // Each replica on every member, or (own_member) on member i only, so that
  // stopping that member cuts it off from etcd.
  void StartReplicas(bool own_member) {
    for (int i = 0; i < kReplicas; ++i) {
      replicas_[i].endpoints =
          own_member ? etcd_->endpoint(i) : absl::StrJoin(etcd_->endpoints(), ",");
      StartReplica(i);
    }
  }

  void StartReplica(int i) {
    Replica& r = replicas_[i];
    std::vector<std::string> args = {"controller",      "--listen",     r.address,
                                     "--token",         kToken,         "--heartbeat",
                                     "1s",              "--log-level",  "debug",
                                     "--etcd-endpoints", r.endpoints,   "--replica-id",
                                     r.id};
    auto process = DispatchdProcess::Start(
        args, absl::StrCat(dir_, "/", r.id, "-", r.starts++, ".log"));
    ASSERT_TRUE(process.ok()) << process.status();
    r.process = *std::move(process);
  }

  void StartAgent(Host& host) {
    std::vector<std::string> addresses;
    for (const Replica& r : replicas_) addresses.push_back(r.address);
    std::vector<std::string> args = {"agent",        "--controller", absl::StrJoin(addresses, ","),
                                     "--token",      kToken,         "--agent-id",
                                     host.name,      "--events-dir", host.events,
                                     "--docker-host", host.docker->host(), "--log-level",
                                     "debug"};
    auto process = DispatchdProcess::Start(args, absl::StrCat(dir_, "/", host.name, ".log"));
    ASSERT_TRUE(process.ok()) << process.status();
    host.agent = *std::move(process);
  }

  std::optional<dispatch::v1::GetStatusResponse> Status(int i) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    dispatch::v1::GetStatusResponse status;
    if (!replicas_[i].stub->GetStatus(&context, {}, &status).ok()) return std::nullopt;
    return status;
  }

  // The replicas that say they lead, among those running.
  std::vector<int> Leaders() {
    std::vector<int> leaders;
    for (int i = 0; i < kReplicas; ++i) {
      if (replicas_[i].process == nullptr || !replicas_[i].process->Running()) continue;
      std::optional<dispatch::v1::GetStatusResponse> s = Status(i);
      if (s.has_value() && s->leading()) leaders.push_back(i);
    }
    return leaders;
  }

  // Waits until exactly one replica leads; returns it (or -1).
  int AwaitLeader(absl::Duration timeout = absl::Seconds(30)) {
    int leader = -1;
    WaitFor(
        [&] {
          std::vector<int> leaders = Leaders();
          leader = leaders.size() == 1 ? leaders[0] : -1;
          return leader >= 0;
        },
        timeout);
    return leader;
  }

  // Both agents in a session with replica `leader`, their inventories in.
  bool AgentsWith(int leader) {
    std::optional<dispatch::v1::GetStatusResponse> s = Status(leader);
    return s.has_value() && s->leading() && s->agents_connected() == hosts_.size() &&
           s->events_held() == 0;
  }

  // A handler on host-b subscribed to ha.e0 .. ha.e<kBurst-1> and ha.one,
  // appending "<event id> <payload>" to out/ran (a directory of this test).
  void RunHandler() {
    std::vector<std::string> args = {"run", "-d", "--network", "none", "--name", "handler",
                                     "-v", absl::StrCat(dir_, "/out:/out")};
    std::vector<std::string> ids = {"ha.one"};
    for (int j = 0; j < kBurst; ++j) ids.push_back(absl::StrCat("ha.e", j));
    for (const std::string& id : ids) {
      args.push_back("--label");
      args.push_back(absl::StrCat(
          "subscription.", id,
          ".container.command=sh -c 'echo \"$DISPATCH_EVENT_ID $DISPATCH_EVENT_PAYLOAD\" >> "
          "/out/ran'"));
    }
    args.push_back(PrivateDockerd::kBusyboxImage);
    args.push_back("sleep");
    args.push_back("86400");
    auto out = hosts_[1].docker->Docker(args);
    ASSERT_TRUE(out.ok()) << out.status();
  }

  // How many times "<id> <payload>" was run.
  int Runs(const std::string& id, const std::string& payload) {
    std::ifstream in(dir_ + "/out/ran");
    std::string line;
    int n = 0;
    while (std::getline(in, line)) n += line == absl::StrCat(id, " ", payload) ? 1 : 0;
    return n;
  }

  // events/ha/<name> on host-a.
  void Emit(const std::string& name, const std::string& payload) {
    WriteFileAtomically(absl::StrCat(hosts_[0].events, "/ha/", name), payload, dir_);
  }

  bool EventsDirEmpty(const Host& host) {
    auto listing = RunCommand({"find", host.events, "-type", "f", "-not", "-path", "*/.*"});
    return listing.ok() && listing->empty();
  }

  absl::StatusOr<std::string> RunCommand(const std::vector<std::string>& argv) {
    std::string command;
    for (const std::string& a : argv) absl::StrAppend(&command, "'", a, "' ");
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) return absl::InternalError("popen");
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
    if (pclose(pipe) != 0) return absl::InternalError(absl::StrCat(command, " failed"));
    return out;
  }

  // When the log line containing `needle` was written (its RFC 3339 time),
  // the last such line; InfinitePast if none.
  static absl::Time LoggedAt(const std::string& log, const std::string& needle) {
    absl::Time at = absl::InfinitePast();
    for (absl::string_view line : absl::StrSplit(log, '\n')) {
      if (line.find(needle) == absl::string_view::npos) continue;
      const std::string stamp(line.substr(0, line.find(' ')));
      absl::Time t;
      std::string err;
      if (absl::ParseTime(absl::RFC3339_full, stamp, &t, &err)) at = t;
    }
    return at;
  }

  std::string dir_;
  std::unique_ptr<EtcdCluster> etcd_;
  std::vector<Host> hosts_;
  std::vector<Replica> replicas_;
};

// Exactly one replica leads, the others say which; both agents end up in a
// session with it, whichever replica they tried first; events cross hosts.
TEST_F(HaTest, OneLeaderTheAgentsFollowItAndEventsAreDelivered) {
  RunHandler();
  StartReplicas(/*own_member=*/false);
  const int leader = AwaitLeader();
  ASSERT_GE(leader, 0);
  for (int i = 0; i < kReplicas; ++i) {
    std::optional<dispatch::v1::GetStatusResponse> s = Status(i);
    ASSERT_TRUE(s.has_value());
    EXPECT_TRUE(s->leader_election());
    EXPECT_EQ(s->replica_id(), replicas_[i].id);
    EXPECT_EQ(s->leading(), i == leader);
    EXPECT_EQ(s->leader_id(), replicas_[leader].id);
    EXPECT_EQ(s->leader_address(), replicas_[leader].address);
  }
  for (Host& h : hosts_) StartAgent(h);
  ASSERT_TRUE(WaitFor([&] { return AgentsWith(leader); }));
  // A standby sends API callers to the leader.
  const int standby = (leader + 1) % kReplicas;
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
    dispatch::v1::ListAgentsResponse agents;
    grpc::Status status = replicas_[standby].stub->ListAgents(&context, {}, &agents);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    const auto& trailers = context.GetServerTrailingMetadata();
    auto it = trailers.find("dispatchd-leader");
    ASSERT_NE(it, trailers.end());
    EXPECT_EQ(std::string(it->second.data(), it->second.size()), replicas_[leader].address);
  }
  Emit("one", "first");
  ASSERT_TRUE(WaitFor([&] { return Runs("ha.one", "first") == 1; }));
  ASSERT_TRUE(WaitFor([&] { return EventsDirEmpty(hosts_[0]); }));
  EXPECT_EQ(Leaders(), std::vector<int>{leader});
}

// kill -9 of the leader in the middle of a burst: a new leader, deliveries
// again, every event delivered at least once and every file settled. Runs
// DISPATCHD_HA_KILLS rounds (default 2), restarting the killed replica
// after each, and prints the times.
TEST_F(HaTest, KillingTheLeaderDuringABurstLosesNothing) {
  int kills = 2;
  if (const char* env = std::getenv("DISPATCHD_HA_KILLS"); env != nullptr) {
    ASSERT_TRUE(absl::SimpleAtoi(env, &kills)) << env;
  }
  RunHandler();
  StartReplicas(/*own_member=*/false);
  int leader = AwaitLeader();
  ASSERT_GE(leader, 0);
  for (Host& h : hosts_) StartAgent(h);
  ASSERT_TRUE(WaitFor([&] { return AgentsWith(leader); }));
  std::vector<double> to_leader_ms, to_delivery_ms;
  int repeats = 0;
  for (int round = 0; round < kills; ++round) {
    const std::string payload = absl::StrCat("r", round);
    for (int j = 0; j < kBurst / 2; ++j) Emit(absl::StrCat("e", j), payload);
    ASSERT_EQ(kill(replicas_[leader].process->pid(), SIGKILL), 0);
    const absl::Time killed = absl::Now();
    for (int j = kBurst / 2; j < kBurst; ++j) Emit(absl::StrCat("e", j), payload);
    // A new leader, and the first event written after the kill run.
    absl::Time led = absl::InfiniteFuture(), flowing = absl::InfiniteFuture();
    int next = -1;
    ASSERT_TRUE(WaitFor(
        [&] {
          if (next < 0) {
            std::vector<int> leaders = Leaders();
            if (leaders.size() == 1 && leaders[0] != leader) {
              next = leaders[0];
              led = absl::Now();
            }
          }
          for (int j = kBurst / 2; j < kBurst && flowing == absl::InfiniteFuture(); ++j) {
            if (Runs(absl::StrCat("ha.e", j), payload) > 0) flowing = absl::Now();
          }
          return next >= 0 && flowing != absl::InfiniteFuture();
        },
        absl::Seconds(60)))
        << "round " << round << ": new leader " << next;
    // Every event at least once, every file settled.
    ASSERT_TRUE(WaitFor(
        [&] {
          for (int j = 0; j < kBurst; ++j) {
            if (Runs(absl::StrCat("ha.e", j), payload) == 0) return false;
          }
          return EventsDirEmpty(hosts_[0]);
        },
        absl::Seconds(60)))
        << "round " << round;
    int runs = 0;
    for (int j = 0; j < kBurst; ++j) runs += Runs(absl::StrCat("ha.e", j), payload);
    repeats += runs - kBurst;
    to_leader_ms.push_back(absl::ToDoubleMilliseconds(led - killed));
    to_delivery_ms.push_back(absl::ToDoubleMilliseconds(flowing - killed));
    std::cout << "kill " << round + 1 << ": " << replicas_[leader].id << " killed; "
              << replicas_[next].id << " led after " << to_leader_ms.back()
              << " ms, deliveries resumed after " << to_delivery_ms.back() << " ms, "
              << runs - kBurst << " repeats of " << kBurst << " events" << std::endl;
    // The killed replica comes back as a standby.
    StartReplica(leader);
    const int back = leader;
    ASSERT_TRUE(WaitFor([&] {
      std::optional<dispatch::v1::GetStatusResponse> s = Status(back);
      return s.has_value() && !s->leading() && s->leader_id() == replicas_[next].id;
    }));
    leader = next;
    ASSERT_TRUE(WaitFor([&] { return AgentsWith(leader); }));
  }
  auto summary = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    auto at = [&v](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))]; };
    return absl::StrCat("p50 ", at(0.5), " ms, p99 ", at(0.99), " ms, max ", v.back(), " ms");
  };
  std::cout << kills << " kills: new leader " << summary(to_leader_ms) << "; deliveries resumed "
            << summary(to_delivery_ms) << "; " << repeats << " repeats of " << kills * kBurst
            << " events" << std::endl;
}

// The leader cut off from etcd (the one member it talks to stopped) stops
// leading before its lease can expire: the next leader's first log line
// of leading comes after the old one's last. The old leader, its member
// back, stays a standby. With quorum lost nobody leads and events wait on
// the agents; quorum back, they are dispatched.
TEST_F(HaTest, ALeaderCutOffFromEtcdStandsDownAndQuorumLossOnlyDelays) {
  RunHandler();
  StartReplicas(/*own_member=*/true);
  const int old = AwaitLeader();
  ASSERT_GE(old, 0);
  for (Host& h : hosts_) StartAgent(h);
  ASSERT_TRUE(WaitFor([&] { return AgentsWith(old); }));
  Emit("one", "before");
  ASSERT_TRUE(WaitFor([&] { return Runs("ha.one", "before") == 1; }));

  ASSERT_TRUE(etcd_->Stop(old).ok());  // replica `old` talks to member `old` only
  int next = -1;
  ASSERT_TRUE(WaitFor([&] {
    std::vector<int> leaders = Leaders();
    next = leaders.size() == 1 && leaders[0] != old ? leaders[0] : -1;
    return next >= 0;
  }));
  const absl::Time old_stopped =
      LoggedAt(replicas_[old].process->Log(), "no longer leads");
  const absl::Time next_started =
      LoggedAt(replicas_[next].process->Log(), ") leads: lease");
  ASSERT_NE(old_stopped, absl::InfinitePast()) << "the old leader never stood down";
  EXPECT_LT(old_stopped, next_started) << "two leaders at once";
  std::cout << replicas_[old].id << " stood down at " << old_stopped << "; "
            << replicas_[next].id << " led from " << next_started << std::endl;
  ASSERT_TRUE(WaitFor([&] { return AgentsWith(next); }));
  Emit("one", "after-cut");
  ASSERT_TRUE(WaitFor([&] { return Runs("ha.one", "after-cut") == 1; }));

  // Its member back: the old leader reads the key, held by the new one.
  ASSERT_TRUE(etcd_->Start(old).ok());
  ASSERT_TRUE(WaitFor([&] {
    std::optional<dispatch::v1::GetStatusResponse> s = Status(old);
    return s.has_value() && s->leader_id() == replicas_[next].id;
  }));
  EXPECT_EQ(Leaders(), std::vector<int>{next});

  // Quorum lost: only the old leader's member runs.
  const int third = 3 - old - next;
  ASSERT_TRUE(etcd_->Stop(next).ok());
  ASSERT_TRUE(etcd_->Stop(third).ok());
  ASSERT_TRUE(WaitFor([&] { return Leaders().empty(); }));
  Emit("one", "no-quorum");
  // Nothing runs it while nobody leads; the file waits on host-a.
  WaitFor([&] { return Runs("ha.one", "no-quorum") > 0; }, absl::Seconds(5));
  EXPECT_EQ(Runs("ha.one", "no-quorum"), 0);
  EXPECT_TRUE(FileExists(hosts_[0].events + "/ha/one"));
  EXPECT_TRUE(Leaders().empty());

  ASSERT_TRUE(etcd_->Start(next).ok());
  ASSERT_TRUE(etcd_->Start(third).ok());
  const int after = AwaitLeader(absl::Seconds(60));
  ASSERT_GE(after, 0);
  ASSERT_TRUE(WaitFor([&] { return Runs("ha.one", "no-quorum") >= 1; }, absl::Seconds(60)));
  ASSERT_TRUE(WaitFor([&] { return EventsDirEmpty(hosts_[0]); }));
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
