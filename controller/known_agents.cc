#include "controller/known_agents.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace dispatchd {
namespace controller {
namespace {

using Json = nlohmann::json;

constexpr int kVersion = 1;

absl::Status ErrnoError(absl::string_view what) {
  const int error = errno;
  const std::string message = absl::StrCat(what, ": ", std::strerror(error));
  return error == ENOENT ? absl::NotFoundError(message) : absl::InternalError(message);
}

// Closes its descriptor when it goes.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status WriteAll(int fd, absl::string_view data, absl::string_view what) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(what);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

std::string KnownAgentsPath(const std::string& state_dir) {
  std::string dir = state_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return absl::StrCat(dir, "/known-agents.json");
}

absl::StatusOr<AgentHosts> ReadKnownAgents(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError(absl::StrCat("cannot open ", path));
  std::string data;
  char buf[65536];
  while (true) {
    const ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(absl::StrCat("cannot read ", path));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  auto corrupt = [&path](absl::string_view why) {
    return absl::DataLossError(absl::StrCat(path, " is not a list of known agents: ", why));
  };
  const Json json = Json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return corrupt("not JSON (truncated or overwritten?)");
  if (!json.is_object()) return corrupt("not a JSON object");
  auto version = json.find("version");
  if (version == json.end() || !version->is_number_integer() || *version != kVersion) {
    return corrupt(absl::StrCat("no \"version\": ", kVersion));
  }
  auto agents = json.find("agents");
  if (agents == json.end() || !agents->is_object()) return corrupt("no \"agents\" object");
  AgentHosts out;
  for (const auto& [id, host] : agents->items()) {
    if (id.empty() || !host.is_string()) {
      return corrupt(absl::StrCat("agent \"", id, "\" has no host name"));
    }
    out[id] = host.get<std::string>();
  }
  return out;
}

absl::Status WriteKnownAgents(const std::string& path, const AgentHosts& agents) {
  Json list = Json::object();
  for (const auto& [id, host] : agents) list[id] = host;
  // Ids and hosts come from the agents' Hellos, protobuf strings and so
  // valid UTF-8; should one not be, it is replaced rather than refused.
  const Json file = {{"version", kVersion}, {"agents", std::move(list)}};
  const std::string data =
      file.dump(1, '\t', /*ensure_ascii=*/false, Json::error_handler_t::replace) + "\n";
  const std::string temporary = absl::StrCat(path, ".tmp");
  {
    Fd fd(open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) return ErrnoError(absl::StrCat("cannot create ", temporary));
    if (absl::Status written = WriteAll(fd.get(), data, absl::StrCat("cannot write ", temporary));
        !written.ok()) {
      unlink(temporary.c_str());
      return written;
    }
    if (fsync(fd.get()) != 0) {
      absl::Status synced = ErrnoError(absl::StrCat("cannot fsync ", temporary));
      unlink(temporary.c_str());
      return synced;
    }
  }
  if (rename(temporary.c_str(), path.c_str()) != 0) {
    absl::Status renamed = ErrnoError(absl::StrCat("cannot rename ", temporary, " to ", path));
    unlink(temporary.c_str());
    return renamed;
  }
  // The rename itself is durable once the directory is.
  const std::string dir = DirectoryOf(path);
  Fd dir_fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0 || fsync(dir_fd.get()) != 0) {
    return ErrnoError(absl::StrCat("cannot fsync ", dir));
  }
  return absl::OkStatus();
}

absl::StatusOr<AgentHosts> LoadKnownAgents(const std::string& state_dir,
                                           DispatcherOptions* options) {
  std::error_code error;
  std::filesystem::create_directories(state_dir, error);  // no error if it exists
  if (error && error != std::errc::file_exists && error != std::errc::not_a_directory) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the state directory ", state_dir, ": ", error.message()));
  }
  struct stat st;
  if (stat(state_dir.c_str(), &st) != 0) {
    return ErrnoError(absl::StrCat("cannot use the state directory ", state_dir));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the state directory ", state_dir, " is not a directory"));
  }
  const std::string path = KnownAgentsPath(state_dir);
  absl::StatusOr<AgentHosts> known = ReadKnownAgents(path);
  if (!known.ok()) {
    const std::string grace = absl::FormatDuration(options->startup_grace);
    if (absl::IsNotFound(known.status())) {
      LOG(INFO) << "no list of known agents yet (" << path
                << "): routing waits the full start-up grace of " << grace
                << " for agents of an earlier run";
    } else {
      LOG(WARNING) << "cannot use the list of known agents (" << known.status().message()
                   << "): routing waits the full start-up grace of " << grace
                   << "; the list is written again as agents connect";
    }
    return AgentHosts();
  }
  if (known->empty()) {
    LOG(INFO) << "no agent known from " << path
              << ": routing starts once the first agent's inventory is fresh";
  } else {
    LOG(INFO) << "routing waits for the " << known->size() << " agent"
              << (known->size() == 1 ? "" : "s") << " known from " << path
              << " to be back with a fresh inventory (one that is not is waited for "
              << absl::FormatDuration(options->heartbeat_period * options->missed_heartbeats)
              << "), not for a start-up grace";
  }
  options->expected_agents = *known;
  options->startup_grace = absl::ZeroDuration();
  return known;
}

KnownAgentsWriter::KnownAgentsWriter(KnownAgentsWriterOptions options,
                                     std::function<AgentHosts()> known, Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      written_(options_.written),
      known_(std::move(known)) {}

KnownAgentsWriter::~KnownAgentsWriter() { Stop(); }

void KnownAgentsWriter::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_ != nullptr || stopping_) return;
  thread_ = std::make_unique<std::thread>([this] { Loop(); });
}

void KnownAgentsWriter::Nudge() {
  absl::MutexLock lock(&mu_);
  nudged_ = true;
}

void KnownAgentsWriter::Stop() {
  std::unique_ptr<std::thread> thread;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    thread = std::move(thread_);
  }
  if (thread != nullptr) thread->join();
  if (absl::Status status = WriteIfChanged(); !status.ok()) {
    LOG(WARNING) << "cannot record the known agents: " << status.message();
  }
}

absl::Status KnownAgentsWriter::WriteIfChanged() {
  // Asked before write_mu_: `known` takes the Dispatcher's lock, and nothing
  // under that lock waits for write_mu_.
  AgentHosts known = known_();
  absl::MutexLock lock(&write_mu_);
  if (known == written_) return absl::OkStatus();
  RETURN_IF_ERROR(WriteKnownAgents(options_.path, known));
  LOG(DEBUG) << "recorded " << known.size() << " known agents in " << options_.path;
  written_ = std::move(known);
  ++writes_;
  return absl::OkStatus();
}

uint64_t KnownAgentsWriter::writes() const {
  absl::MutexLock lock(&write_mu_);
  return writes_;
}

void KnownAgentsWriter::Loop() {
  std::optional<absl::Time> retry_at;  // after a failed write
  absl::Time last_write = absl::InfinitePast();
  absl::MutexLock lock(&mu_);
  while (true) {
    // A change, or the retry of a failed write.
    clock_->AwaitWithDeadline(&mu_,
                              absl::Condition(
                                  +[](KnownAgentsWriter* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                    return w->nudged_ || w->stopping_;
                                  },
                                  this),
                              retry_at.value_or(absl::InfiniteFuture()));
    if (stopping_) return;  // Stop() writes what is left
    // Changes that come meanwhile are written together.
    clock_->AwaitWithDeadline(&mu_, absl::Condition(&stopping_),
                              last_write + options_.min_interval);
    if (stopping_) return;
    nudged_ = false;
    mu_.Unlock();
    const absl::Status status = WriteIfChanged();
    mu_.Lock();
    last_write = clock_->Now();
    if (status.ok()) {
      retry_at.reset();
    } else {
      LOG(WARNING) << "cannot record the known agents (trying again in "
                   << absl::FormatDuration(options_.retry_interval)
                   << " or at the next change): " << status.message();
      retry_at = last_write + options_.retry_interval;
    }
  }
}

}  // namespace controller
}  // namespace dispatchd
