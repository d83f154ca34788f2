#include "tests/testing/docker_daemon.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

extern char** environ;

namespace dispatchd {
namespace testing {
namespace {

namespace fs = std::filesystem;

constexpr absl::Duration kStartTimeout = absl::Seconds(60);
constexpr absl::Duration kStopTimeout = absl::Seconds(30);
constexpr absl::Duration kCommandTimeout = absl::Seconds(120);
constexpr char kSystemPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr char kBusybox[] = "/bin/busybox";

std::string ErrnoText(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

// PATH for children: the caller's, then the system directories (dockerd
// lives in /usr/sbin and needs containerd, runc and docker-init from there).
std::string ChildPath() {
  const char* path = std::getenv("PATH");
  if (path == nullptr || *path == '\0') return kSystemPath;
  return absl::StrCat(path, ":", kSystemPath);
}

absl::StatusOr<std::string> FindExecutable(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  for (absl::string_view dir : absl::StrSplit(ChildPath(), ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::NotFoundError(absl::StrCat(name, " is not installed (searched ", ChildPath(), ")"));
}

// The current environment without Docker client settings that would fight
// with -H, plus `extra` ("KEY=value").
std::vector<std::string> ChildEnv(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    absl::string_view entry(*e);
    if (absl::StartsWith(entry, "PATH=") || absl::StartsWith(entry, "DOCKER_HOST=") ||
        absl::StartsWith(entry, "DOCKER_CONTEXT=") || absl::StartsWith(entry, "DOCKER_TLS") ||
        absl::StartsWith(entry, "DOCKER_CERT_PATH=")) {
      continue;
    }
    env.emplace_back(entry);
  }
  env.push_back(absl::StrCat("PATH=", ChildPath()));
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Waits for `pid` until `deadline`; true if it exited (and was reaped).
bool WaitForExit(pid_t pid, absl::Time deadline, int* wait_status) {
  while (true) {
    pid_t r = waitpid(pid, wait_status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno == ECHILD) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

std::string Trimmed(std::string s) {
  absl::StripTrailingAsciiWhitespace(&s);
  return s;
}

// True when the daemon at `socket_path` answers GET /_ping with 200.
bool Pings(const std::string& socket_path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = false;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    static constexpr char kRequest[] = "GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    if (write(fd, kRequest, sizeof(kRequest) - 1) == static_cast<ssize_t>(sizeof(kRequest) - 1)) {
      char buf[64] = {};
      ssize_t n = read(fd, buf, sizeof(buf) - 1);
      ok = n > 0 && absl::StartsWith(buf, "HTTP/1.") && absl::StrContains(buf, " 200 ");
    }
  }
  close(fd);
  return ok;
}

}  // namespace

absl::StatusOr<std::string> RunCommand(const std::vector<std::string>& argv,
                                       const std::vector<std::string>& extra_env) {
  if (argv.empty()) return absl::InvalidArgumentError("RunCommand: empty argv");
  const std::string command = absl::StrJoin(argv, " ");
  auto program = FindExecutable(argv[0]);
  if (!program.ok()) return program.status();

  int out[2];
  int err[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError(ErrnoText("pipe"));
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return absl::InternalError(ErrnoText("pipe"));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  std::vector<std::string> args = argv;
  std::vector<std::string> env = ChildEnv(extra_env);
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(env);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, program->c_str(), &actions, nullptr, c_args.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(out[0]);
    close(err[0]);
    return absl::InternalError(absl::StrCat("spawn ", command, ": ", std::strerror(rc)));
  }

  std::string stdout_text;
  std::string stderr_text;
  const absl::Time deadline = absl::Now() + kCommandTimeout;
  bool timed_out = false;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0) {
      timed_out = true;
      break;
    }
    int n = poll(fds, 2, wait_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[8192];
      ssize_t got = read(fds[i].fd, buf, sizeof(buf));
      if (got > 0) {
        (i == 0 ? stdout_text : stderr_text).append(buf, got);
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) close(p.fd);
  }
  if (timed_out) kill(pid, SIGKILL);
  int wait_status = 0;
  while (waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat(command, ": no exit after ", absl::FormatDuration(kCommandTimeout)));
  }
  if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
    return absl::InternalError(absl::StrCat(
        command, ": ",
        WIFEXITED(wait_status) ? absl::StrCat("exit ", WEXITSTATUS(wait_status))
                               : absl::StrCat("signal ", WTERMSIG(wait_status)),
        ": ", Trimmed(stderr_text)));
  }
  return Trimmed(stdout_text);
}

PrivateDockerd::PrivateDockerd(std::string dir) : dir_(std::move(dir)) {}

absl::StatusOr<std::unique_ptr<PrivateDockerd>> PrivateDockerd::Start() {
  char templ[] = "/tmp/dispatchd-dockerd-XXXXXX";
  if (mkdtemp(templ) == nullptr) return absl::InternalError(ErrnoText("mkdtemp"));
  std::unique_ptr<PrivateDockerd> daemon(new PrivateDockerd(templ));
  absl::Status status = daemon->Launch();
  if (!status.ok()) return status;  // the destructor cleans up
  return daemon;
}

PrivateDockerd::~PrivateDockerd() {
  (void)Stop();
  KillLeftovers();
  Unmount();
  std::error_code ignored;
  fs::remove_all(dir_, ignored);
}

std::string PrivateDockerd::socket_path() const { return absl::StrCat(dir_, "/docker.sock"); }

std::string PrivateDockerd::host() const { return absl::StrCat("unix://", socket_path()); }

absl::Status PrivateDockerd::Launch() {
  if (pid_ > 0) return absl::FailedPreconditionError("dockerd is already running");
  const std::string log_path = absl::StrCat(dir_, "/dockerd.log");
  std::vector<std::string> args = {
      "dockerd",
      "--data-root", absl::StrCat(dir_, "/data"),
      "--exec-root", absl::StrCat(dir_, "/exec"),
      "-H", host(),
      "--pidfile", absl::StrCat(dir_, "/docker.pid"),
      "--bridge=none",
      "--iptables=false",
      // Test containers (sleep as pid 1) ignore SIGTERM; do not wait 15 s.
      "--shutdown-timeout=2",
  };
  auto program = FindExecutable("dockerd");
  if (!program.ok()) return program.status();

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // Its own process group, so a terminal's ^C to the test does not reach it
  // before the test's own cleanup.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<std::string> env = ChildEnv({});
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(env);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, program->c_str(), &actions, &attr, c_args.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return absl::InternalError(absl::StrCat("spawn dockerd: ", std::strerror(rc)));
  pid_ = pid;

  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (true) {
    int wait_status = 0;
    if (waitpid(pid_, &wait_status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("dockerd exited during start-up; log tail:\n", LogTail()));
    }
    if (Pings(socket_path())) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      absl::Status stopped = Stop();
      return absl::DeadlineExceededError(absl::StrCat(
          "dockerd did not answer within ", absl::FormatDuration(kStartTimeout),
          stopped.ok() ? "" : absl::StrCat(" (", stopped.message(), ")"), "; log tail:\n",
          LogTail()));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

absl::Status PrivateDockerd::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  const pid_t pid = pid_;
  pid_ = -1;
  kill(pid, SIGTERM);
  int wait_status = 0;
  if (WaitForExit(pid, absl::Now() + kStopTimeout, &wait_status)) {
    // containerd exits with dockerd; only a hard kill leaves it behind.
    return absl::OkStatus();
  }
  kill(pid, SIGKILL);
  WaitForExit(pid, absl::Now() + absl::Seconds(10), &wait_status);
  KillLeftovers();
  return absl::DeadlineExceededError(
      absl::StrCat("dockerd (pid ", pid, ") ignored SIGTERM for ",
                   absl::FormatDuration(kStopTimeout), " and was killed; log tail:\n", LogTail()));
}

absl::Status PrivateDockerd::Restart() {
  absl::Status stopped = Stop();
  if (!stopped.ok()) return stopped;
  return Launch();
}

// containerd and its shims name this daemon's exec root on their command
// line; after a hard kill of dockerd they would outlive it.
void PrivateDockerd::KillLeftovers() {
  const std::string marker = absl::StrCat(dir_, "/exec/");
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return;
  std::vector<pid_t> pids;
  while (dirent* entry = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid) || pid == getpid()) continue;
    std::ifstream cmdline(absl::StrCat("/proc/", pid, "/cmdline"));
    std::string text((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    std::replace(text.begin(), text.end(), '\0', ' ');
    if (absl::StrContains(text, marker)) pids.push_back(pid);
  }
  closedir(proc);
  for (pid_t pid : pids) kill(pid, SIGKILL);
}

void PrivateDockerd::Unmount() {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::vector<std::string> points;
  std::string line;
  const std::string prefix = absl::StrCat(dir_, "/");
  while (std::getline(mountinfo, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 5) continue;
    if (fields[4] == dir_ || absl::StartsWith(fields[4], prefix)) points.push_back(fields[4]);
  }
  // Deepest first.
  std::sort(points.begin(), points.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const std::string& point : points) umount2(point.c_str(), MNT_DETACH);
}

std::string PrivateDockerd::LogTail() const {
  std::ifstream log(absl::StrCat(dir_, "/dockerd.log"));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(log, line)) lines.push_back(line);
  constexpr size_t kTail = 30;
  size_t from = lines.size() > kTail ? lines.size() - kTail : 0;
  return absl::StrJoin(lines.begin() + from, lines.end(), "\n");
}

absl::StatusOr<std::string> PrivateDockerd::Docker(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"docker", "-H", host()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, {absl::StrCat("DOCKER_CONFIG=", dir_, "/docker-config")});
}

absl::Status PrivateDockerd::EnsureBusyboxImage() {
  absl::MutexLock lock(&image_mu_);
  if (has_image_) return absl::OkStatus();
  if (Docker({"image", "inspect", "--format", "{{.Id}}", kBusyboxImage}).ok()) {
    has_image_ = true;
    return absl::OkStatus();
  }
  const std::string rootfs = absl::StrCat(dir_, "/busybox-rootfs");
  const std::string tarball = absl::StrCat(dir_, "/busybox-rootfs.tar");
  std::error_code ec;
  fs::create_directories(absl::StrCat(rootfs, "/bin"), ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", rootfs, ": ", ec.message()));
  fs::copy_file(kBusybox, absl::StrCat(rootfs, "/bin/busybox"),
                fs::copy_options::overwrite_existing, ec);
  if (ec) return absl::InternalError(absl::StrCat("copy ", kBusybox, ": ", ec.message()));
  auto applets = RunCommand({kBusybox, "--list"});
  if (!applets.ok()) return applets.status();
  for (absl::string_view applet : absl::StrSplit(*applets, '\n', absl::SkipWhitespace())) {
    applet = absl::StripAsciiWhitespace(applet);
    if (applet == "busybox" || applet.find('/') != absl::string_view::npos) continue;
    const std::string link = absl::StrCat(rootfs, "/bin/", applet);
    if (symlink("busybox", link.c_str()) != 0 && errno != EEXIST) {
      return absl::InternalError(ErrnoText(absl::StrCat("symlink ", link)));
    }
  }
  // Containers expect /tmp and /etc to exist.
  fs::create_directories(absl::StrCat(rootfs, "/tmp"), ec);
  fs::create_directories(absl::StrCat(rootfs, "/etc"), ec);
  auto tarred = RunCommand({"tar", "-C", rootfs, "-cf", tarball, "."});
  if (!tarred.ok()) return tarred.status();
  auto imported = Docker({"import", tarball, kBusyboxImage});
  if (!imported.ok()) return imported.status();
  fs::remove_all(rootfs, ec);
  fs::remove(tarball, ec);
  has_image_ = true;
  return absl::OkStatus();
}

}  // namespace testing
}  // namespace dispatchd
