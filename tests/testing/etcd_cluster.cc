#include "tests/testing/etcd_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"

extern char** environ;

namespace dispatchd {
namespace testing {
namespace {

constexpr absl::Duration kAnswerTimeout = absl::Seconds(60);
constexpr absl::Duration kStopTimeout = absl::Seconds(30);
constexpr int kLaunchTries = 3;

// /usr/bin/etcd from Debian's etcd-server, or the first etcd on PATH.
std::string EtcdBinary() {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(
           absl::StrCat(path != nullptr ? path : "", ":/usr/bin"), ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/etcd");
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "/usr/bin/etcd";
}

// Waits for `pid` until `deadline`; true if it exited (and was reaped).
bool Reap(pid_t pid, absl::Time deadline) {
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

std::string Tail(const std::string& text, size_t lines) {
  std::vector<absl::string_view> all = absl::StrSplit(text, '\n');
  while (!all.empty() && all.back().empty()) all.pop_back();
  const size_t from = all.size() > lines ? all.size() - lines : 0;
  return absl::StrJoin(all.begin() + from, all.end(), "\n");
}

}  // namespace

EtcdCluster::EtcdCluster(EtcdClusterOptions options, std::string dir, std::string token)
    : options_(std::move(options)), dir_(std::move(dir)), token_(std::move(token)) {
  members_.resize(options_.members);
  for (int i = 0; i < size(); ++i) members_[i].name = absl::StrCat("m", i);
}

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Create(EtcdClusterOptions options) {
  if (options.members != 1 && options.members != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("an etcd cluster of ", options.members, " members; 1 or 3"));
  }
  const std::string dir = MakeTempDir("dispatchd-etcd");
  if (dir.empty()) return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  static int clusters = 0;
  std::unique_ptr<EtcdCluster> cluster(new EtcdCluster(
      std::move(options), dir, absl::StrCat("dispatchd-test-", getpid(), "-", ++clusters)));

  absl::Status status;
  for (int attempt = 1; attempt <= kLaunchTries; ++attempt) {
    cluster->PickPorts();
    status = absl::OkStatus();
    for (int i = 0; i < cluster->size() && status.ok(); ++i) status = cluster->Launch(i);
    for (int i = 0; i < cluster->size() && status.ok(); ++i) {
      status = cluster->AwaitAnswer(i, kAnswerTimeout);
    }
    if (status.ok()) return cluster;
    // A port taken between FreePort() and etcd's bind shows up as a member
    // that exits at once: try again on new ports, from empty data.
    bool port_taken = false;
    for (int i = 0; i < cluster->size(); ++i) {
      (void)cluster->Kill(i);
      port_taken = port_taken || absl::StrContains(cluster->Log(i), "address already in use");
      RemoveTree(cluster->data_dir(i));
    }
    if (!port_taken) break;
  }
  return absl::Status(status.code(), absl::StrCat(status.message(), "\n", cluster->LogTails()));
}

EtcdCluster::~EtcdCluster() {
  for (int i = 0; i < size(); ++i) (void)Kill(i);
  RemoveTree(dir_);
}

void EtcdCluster::PickPorts() {
  std::set<int> taken;
  for (Member& member : members_) {
    for (int* port : {&member.client_port, &member.peer_port}) {
      do {
        *port = FreePort();
      } while (*port == 0 || !taken.insert(*port).second);
    }
  }
}

std::string EtcdCluster::endpoint(int i) const {
  const bool tls = !options_.cert_file.empty();
  return absl::StrCat(tls ? "https" : "http", "://127.0.0.1:", members_[i].client_port);
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

controller::EtcdClientOptions EtcdCluster::client_options() const {
  controller::EtcdClientOptions options;
  options.endpoints = endpoints();
  options.ca_file = options_.ca_file;
  options.cert_file = options_.client_cert_file;
  options.key_file = options_.client_key_file;
  return options;
}

std::string EtcdCluster::peer_url(int i) const {
  return absl::StrCat("http://127.0.0.1:", members_[i].peer_port);
}

std::string EtcdCluster::data_dir(int i) const {
  return absl::StrCat(dir_, "/member-", i, ".etcd");
}

std::string EtcdCluster::log_path(int i) const { return absl::StrCat(dir_, "/member-", i, ".log"); }

absl::Status EtcdCluster::Launch(int i) {
  Member& member = members_[i];
  if (member.pid > 0) return absl::FailedPreconditionError(absl::StrCat(member.name, " runs"));
  std::vector<std::string> initial_cluster;
  for (int j = 0; j < size(); ++j) {
    initial_cluster.push_back(absl::StrCat(members_[j].name, "=", peer_url(j)));
  }
  // Each flag with its value on a line.
  // clang-format off
  std::vector<std::string> args = {
      EtcdBinary(),
      "--name", member.name,
      "--data-dir", data_dir(i),
      "--listen-client-urls", endpoint(i),
      "--advertise-client-urls", endpoint(i),
      "--listen-peer-urls", peer_url(i),
      "--initial-advertise-peer-urls", peer_url(i),
      "--initial-cluster", absl::StrJoin(initial_cluster, ","),
      // Ignored once the data directory exists (a restart).
      "--initial-cluster-state", "new",
      "--initial-cluster-token", token_,
      "--logger", "zap",
      "--log-outputs", "stderr",
  };
  // clang-format on
  if (!options_.cert_file.empty()) {
    args.insert(args.end(), {"--cert-file", options_.cert_file, "--key-file", options_.key_file});
    if (!options_.ca_file.empty()) {
      args.insert(args.end(), {"--client-cert-auth", "--trusted-ca-file", options_.ca_file});
    }
  }

  args.insert(args.end(), options_.extra_flags.begin(), options_.extra_flags.end());

  // Everything the child needs is built before fork(): between fork and
  // exec a multi-threaded process may only make async-signal-safe calls.
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int log_fd = open(log_path(i).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (null_fd < 0 || log_fd < 0) {
    const std::string why = std::strerror(errno);
    if (null_fd >= 0) close(null_fd);
    if (log_fd >= 0) close(log_fd);
    return absl::InternalError(absl::StrCat("open ", log_path(i), ": ", why));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    // The member dies with the test (the header comment).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execve(argv[0], argv.data(), environ);
    static constexpr char kFailed[] = "exec etcd failed\n";
    (void)!write(2, kFailed, sizeof(kFailed) - 1);
    _exit(127);
  }
  const int fork_errno = errno;
  close(null_fd);
  close(log_fd);
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(fork_errno)));
  member.pid = pid;
  return absl::OkStatus();
}

bool EtcdCluster::Exited(int i) {
  Member& member = members_[i];
  if (member.pid <= 0) return true;
  int status = 0;
  if (waitpid(member.pid, &status, WNOHANG) != member.pid) return false;
  member.pid = -1;
  return true;
}

absl::Status EtcdCluster::AwaitAnswer(int i, absl::Duration timeout) {
  controller::EtcdClientOptions options = client_options();
  options.endpoints = {endpoint(i)};
  auto client = controller::NewEtcdClient(options);
  if (!client.ok()) return client.status();
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  while (true) {
    if (Exited(i)) {
      return absl::InternalError(
          absl::StrCat("etcd ", members_[i].name, " (", endpoint(i), ") exited during start-up"));
    }
    // Any answer but "unreachable" or "no leader" will do (with
    // authentication enabled, "user name is empty" is an answer too).
    auto got = (*client)->Get("dispatchd-test/probe", absl::Now() + absl::Seconds(1));
    last = got.status();
    if (!absl::IsUnavailable(last) && !absl::IsDeadlineExceeded(last)) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("etcd ", members_[i].name, " did not answer within ",
                       absl::FormatDuration(timeout), ": ", last.message()));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

absl::Status EtcdCluster::Stop(int i) {
  Member& member = members_[i];
  if (member.pid <= 0) return absl::OkStatus();
  const pid_t pid = member.pid;
  member.pid = -1;
  kill(pid, SIGTERM);
  kill(pid, SIGCONT);  // a paused member takes the SIGTERM now
  if (Reap(pid, absl::Now() + kStopTimeout)) return absl::OkStatus();
  kill(pid, SIGKILL);
  Reap(pid, absl::InfiniteFuture());
  return absl::DeadlineExceededError(absl::StrCat("etcd ", member.name, " ignored SIGTERM for ",
                                                  absl::FormatDuration(kStopTimeout),
                                                  " and was killed"));
}

absl::Status EtcdCluster::Kill(int i) {
  Member& member = members_[i];
  if (member.pid <= 0) return absl::OkStatus();
  kill(member.pid, SIGKILL);
  Reap(member.pid, absl::InfiniteFuture());
  member.pid = -1;
  return absl::OkStatus();
}

absl::Status EtcdCluster::Pause(int i) {
  if (members_[i].pid <= 0) return absl::FailedPreconditionError("not running");
  if (kill(members_[i].pid, SIGSTOP) != 0) return absl::InternalError(std::strerror(errno));
  return absl::OkStatus();
}

absl::Status EtcdCluster::Resume(int i) {
  if (members_[i].pid <= 0) return absl::FailedPreconditionError("not running");
  if (kill(members_[i].pid, SIGCONT) != 0) return absl::InternalError(std::strerror(errno));
  return absl::OkStatus();
}

absl::Status EtcdCluster::Start(int i) {
  absl::Status status = Launch(i);
  if (status.ok()) status = AwaitAnswer(i, kAnswerTimeout);
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(status.message(), "\n", LogTails()));
}

absl::StatusOr<std::string> EtcdCluster::Etcdctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"etcdctl",
                                   absl::StrCat("--endpoints=", absl::StrJoin(endpoints(), ","))};
  if (!options_.ca_file.empty()) argv.push_back(absl::StrCat("--cacert=", options_.ca_file));
  if (!options_.client_cert_file.empty()) {
    argv.push_back(absl::StrCat("--cert=", options_.client_cert_file));
    argv.push_back(absl::StrCat("--key=", options_.client_key_file));
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, {"ETCDCTL_API=3"});
}

std::string EtcdCluster::Log(int i) const { return ReadFile(log_path(i)); }

std::string EtcdCluster::LogTails(size_t lines) const {
  std::ostringstream out;
  for (int i = 0; i < size(); ++i) {
    out << "---- etcd " << members_[i].name << " (" << endpoint(i) << "), the end of "
        << log_path(i) << " ----\n"
        << Tail(Log(i), lines) << "\n";
  }
  return out.str();
}

}  // namespace testing
}  // namespace dispatchd
