#include "tests/testing/dispatchd_process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace dispatchd {
namespace testing {

std::string DispatchdBinary() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr) {
    std::string path = absl::StrCat(srcdir, "/", workspace != nullptr ? workspace : "dispatchd",
                                     "/cmd/dispatchd/dispatchd");
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return "bazel-bin/cmd/dispatchd/dispatchd";
}

absl::StatusOr<std::unique_ptr<DispatchdProcess>> DispatchdProcess::Start(
    const std::vector<std::string>& args, const std::string& log_path,
    const std::vector<std::string>& extra_env) {
  const std::string binary = DispatchdBinary();
  std::vector<std::string> argv = {binary};
  argv.insert(argv.end(), args.begin(), args.end());
  // Several dispatchds may run at once: metrics on a free port unless the
  // test chose one (the log names the port).
  if (std::none_of(args.begin(), args.end(), [](const std::string& a) {
        return absl::StartsWith(a, "--metrics-listen");
      })) {
    argv.push_back("--metrics-listen=127.0.0.1:0");
  }
  std::vector<char*> c_argv;
  for (std::string& a : argv) c_argv.push_back(a.data());
  c_argv.push_back(nullptr);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> c_env;
  for (std::string& e : env) c_env.push_back(e.data());
  c_env.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, c_argv.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("cannot start ", binary, ": ", std::strerror(rc)));
  }
  return std::unique_ptr<DispatchdProcess>(new DispatchdProcess(pid, log_path));
}

DispatchdProcess::~DispatchdProcess() {
  if (!reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  // A sanitizer's report goes to stderr, the log, which no test reads for it.
  if (std::string report = SanitizerReport(); !report.empty()) {
    ADD_FAILURE() << "dispatchd (" << log_path_ << "): " << report;
  }
}

std::string DispatchdProcess::SanitizerReport() const {
  const std::string log = Log();
  size_t first = std::string::npos;
  for (const char* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"}) {
    first = std::min(first, log.find(marker));
  }
  if (first == std::string::npos) return "";
  // From the start of the line that holds the report's first marker.
  const size_t line = log.rfind('\n', first);
  return log.substr(line == std::string::npos ? 0 : line + 1);
}

bool DispatchdProcess::Running() {
  if (reaped_) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    reaped_ = true;
    exit_status_ = status;
    return false;
  }
  return true;
}

absl::StatusOr<int> DispatchdProcess::Terminate(absl::Duration timeout) {
  if (reaped_) return absl::FailedPreconditionError("already exited");
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      exit_status_ = status;
      return status;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  reaped_ = true;
  return absl::DeadlineExceededError("dispatchd did not exit after SIGTERM");
}

std::string DispatchdProcess::Log() const { return ReadFile(log_path_); }

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void WriteFile(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

void WriteFileAtomically(const std::string& path, const std::string& content,
                         const std::string& scratch_dir) {
  static int counter = 0;
  const std::string tmp = absl::StrCat(scratch_dir, "/write.", getpid(), ".", ++counter, ".tmp");
  WriteFile(tmp, content);
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::filesystem::rename(tmp, path);
}

bool FileExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string MakeTempDir(const std::string& prefix) {
  std::string templ = absl::StrCat("/tmp/", prefix, "-XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) return "";
  return templ;
}

void RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

HttpResult HttpGet(int port, const std::string& target) {
  HttpResult result;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return result;
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return result;
  }
  const std::string request =
      absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return result;
  }
  std::string response;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, static_cast<size_t>(n));
  close(fd);
  // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody"; bodies here are not chunked except
  // possibly Prometheus' JSON, which we de-chunk below.
  const size_t head_end = response.find("\r\n\r\n");
  if (head_end == std::string::npos || response.size() < 12) return result;
  absl::SimpleAtoi(response.substr(9, 3), &result.status);
  const std::string head = response.substr(0, head_end);
  std::string body = response.substr(head_end + 4);
  if (head.find("Transfer-Encoding: chunked") != std::string::npos ||
      head.find("transfer-encoding: chunked") != std::string::npos) {
    std::string plain;
    size_t pos = 0;
    while (pos < body.size()) {
      const size_t eol = body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      const size_t size = std::stoul(body.substr(pos, eol - pos), nullptr, 16);
      if (size == 0) break;
      plain.append(body, eol + 2, size);
      pos = eol + 2 + size + 2;
    }
    body = std::move(plain);
  }
  result.body = std::move(body);
  return result;
}


}  // namespace testing
}  // namespace dispatchd
