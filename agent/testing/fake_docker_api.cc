#include "agent/testing/fake_docker_api.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace dispatchd {
namespace agent {

// A stream reads its StreamState under the fake's mutex.
class FakeDockerApi::Stream final : public DockerEventStream {
 public:
  Stream(FakeDockerApi* fake, std::shared_ptr<StreamState> state)
      : fake_(fake), state_(std::move(state)) {}

  ~Stream() override {
    absl::MutexLock lock(&fake_->mu_);
    state_->closed = true;
  }

  absl::StatusOr<std::optional<DockerEvent>> Next(absl::Duration timeout) override {
    absl::MutexLock lock(&fake_->mu_);
    StreamState* state = state_.get();
    auto ready = [state] { return !state->queue.empty() || !state->broken.ok(); };
    fake_->mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (!state->queue.empty()) {
      DockerEvent event = std::move(state->queue.front());
      state->queue.pop_front();
      return std::optional<DockerEvent>(std::move(event));
    }
    if (!state->broken.ok()) return state->broken;
    return std::optional<DockerEvent>();
  }

 private:
  FakeDockerApi* const fake_;
  const std::shared_ptr<StreamState> state_;
};

FakeDockerApi::FakeDockerApi() = default;
FakeDockerApi::~FakeDockerApi() = default;

void FakeDockerApi::AddContainer(ContainerInfo container) {
  absl::MutexLock lock(&mu_);
  std::string id = container.id;
  containers_[id] = std::move(container);
}

bool FakeDockerApi::RemoveContainer(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return containers_.erase(id) > 0;
}

bool FakeDockerApi::SetState(const std::string& id, ContainerState state) {
  absl::MutexLock lock(&mu_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return false;
  it->second.state = state;
  return true;
}

bool FakeDockerApi::SetLabels(const std::string& id, std::map<std::string, std::string> labels) {
  absl::MutexLock lock(&mu_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return false;
  it->second.labels = std::move(labels);
  return true;
}

bool FakeDockerApi::Rename(const std::string& id, const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return false;
  it->second.name = name;
  return true;
}

bool FakeDockerApi::SetStateAfterStart(const std::string& id, ContainerState state) {
  absl::MutexLock lock(&mu_);
  if (containers_.count(id) == 0) return false;
  state_after_start_[id] = state;
  return true;
}

std::optional<ContainerInfo> FakeDockerApi::container(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return std::nullopt;
  return it->second;
}

void FakeDockerApi::FailNext(Op op, absl::Status status, int times) {
  absl::MutexLock lock(&mu_);
  failures_[op] = Failure{std::move(status), times};
}

int FakeDockerApi::calls(Op op) const {
  absl::MutexLock lock(&mu_);
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

std::vector<FakeDockerApi::RecordedExec> FakeDockerApi::execs() const {
  absl::MutexLock lock(&mu_);
  return execs_;
}

void FakeDockerApi::SetExecResult(const std::string& exec_id, ExecInfo info) {
  absl::MutexLock lock(&mu_);
  exec_results_[exec_id] = info;
}

void FakeDockerApi::PushEvent(DockerEvent event) {
  absl::MutexLock lock(&mu_);
  for (const auto& stream : streams_) {
    if (!stream->closed && stream->broken.ok()) stream->queue.push_back(event);
  }
}

void FakeDockerApi::BreakStreams(absl::Status status) {
  absl::MutexLock lock(&mu_);
  for (const auto& stream : streams_) {
    if (stream->broken.ok()) stream->broken = status;
  }
  streams_.clear();
}

int FakeDockerApi::streams_opened() const {
  absl::MutexLock lock(&mu_);
  return streams_opened_;
}

int FakeDockerApi::open_streams() const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& stream : streams_) {
    if (!stream->closed && stream->broken.ok()) ++n;
  }
  return n;
}

bool FakeDockerApi::AwaitOpenStreams(int n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int open = 0;
    for (const auto& stream : streams_) {
      if (!stream->closed && stream->broken.ok()) ++open;
    }
    return open >= n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

absl::Status FakeDockerApi::Enter(Op op) {
  ++calls_[op];
  auto it = failures_.find(op);
  if (it == failures_.end() || it->second.remaining <= 0) return absl::OkStatus();
  absl::Status status = it->second.status;
  if (--it->second.remaining == 0) failures_.erase(it);
  return status;
}

absl::StatusOr<std::string> FakeDockerApi::Resolve(absl::string_view op,
                                                   absl::string_view id) const {
  if (!id.empty()) {
    if (containers_.count(std::string(id)) > 0) return std::string(id);
    for (const auto& [full_id, info] : containers_) {
      if (info.name == id) return full_id;
    }
    std::string found;
    int matches = 0;
    for (const auto& [full_id, info] : containers_) {
      if (absl::StartsWith(full_id, id)) {
        found = full_id;
        ++matches;
      }
    }
    if (matches == 1) return found;
  }
  return absl::NotFoundError(absl::StrCat(op, ": HTTP 404: No such container: ", id));
}

absl::StatusOr<std::string> FakeDockerApi::Version() {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(Op::kVersion); !s.ok()) return s;
  return std::string("1.41");
}

absl::StatusOr<std::vector<ContainerInfo>> FakeDockerApi::ListContainers() {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(Op::kListContainers); !s.ok()) return s;
  std::vector<ContainerInfo> all;
  for (const auto& [id, info] : containers_) all.push_back(info);
  return all;
}

absl::StatusOr<ContainerInfo> FakeDockerApi::InspectContainer(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(Op::kInspectContainer); !s.ok()) return s;
  absl::StatusOr<std::string> full_id = Resolve(absl::StrCat("inspect container ", id), id);
  if (!full_id.ok()) return full_id.status();
  return containers_.at(*full_id);
}

absl::StatusOr<std::string> FakeDockerApi::CreateExec(absl::string_view container_id,
                                                      const std::vector<std::string>& argv,
                                                      const std::vector<std::string>& env) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(Op::kCreateExec); !s.ok()) return s;
  const std::string op = absl::StrCat("create exec in ", container_id);
  absl::StatusOr<std::string> full_id = Resolve(op, container_id);
  if (!full_id.ok()) return full_id.status();
  const ContainerInfo& info = containers_.at(*full_id);
  if (info.state == ContainerState::kPaused) {
    return absl::FailedPreconditionError(absl::StrCat(
        op, ": HTTP 409: Container ", container_id, " is paused, unpause the container before exec"));
  }
  if (info.state != ContainerState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat(op, ": HTTP 409: Container ", *full_id, " is not running"));
  }
  RecordedExec exec;
  exec.exec_id = absl::StrCat("exec-", execs_.size() + 1);
  exec.container_id = *full_id;
  exec.argv = argv;
  exec.env = env;
  execs_.push_back(exec);
  return exec.exec_id;
}

absl::Status FakeDockerApi::StartExec(absl::string_view exec_id) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(Op::kStartExec); !s.ok()) return s;
  for (RecordedExec& exec : execs_) {
    if (exec.exec_id == exec_id) {
      exec.started = true;
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(
      absl::StrCat("start exec ", exec_id, ": HTTP 404: No such exec instance: ", exec_id));
}

absl::StatusOr<ExecInfo> FakeDockerApi::InspectExec(absl::string_view exec_id) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(Op::kInspectExec); !s.ok()) return s;
  auto result = exec_results_.find(std::string(exec_id));
  if (result != exec_results_.end()) return result->second;
  for (const RecordedExec& exec : execs_) {
    if (exec.exec_id == exec_id) return ExecInfo{};
  }
  return absl::NotFoundError(
      absl::StrCat("inspect exec ", exec_id, ": HTTP 404: No such exec instance: ", exec_id));
}

absl::Status FakeDockerApi::StartContainer(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(Op::kStartContainer); !s.ok()) return s;
  absl::StatusOr<std::string> full_id = Resolve(absl::StrCat("start container ", id), id);
  if (!full_id.ok()) return full_id.status();
  auto after = state_after_start_.find(*full_id);
  containers_.at(*full_id).state =
      after == state_after_start_.end() ? ContainerState::kRunning : after->second;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DockerEventStream>> FakeDockerApi::OpenEventStream() {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(Op::kOpenEventStream); !s.ok()) return s;
  auto state = std::make_shared<StreamState>();
  // Forget streams that are gone.
  std::vector<std::shared_ptr<StreamState>> live;
  for (auto& stream : streams_) {
    if (!stream->closed) live.push_back(std::move(stream));
  }
  streams_ = std::move(live);
  streams_.push_back(state);
  ++streams_opened_;
  return std::unique_ptr<DockerEventStream>(new Stream(this, std::move(state)));
}

}  // namespace agent
}  // namespace dispatchd
