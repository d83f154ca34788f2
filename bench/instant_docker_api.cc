#include "bench/instant_docker_api.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"

namespace dispatchd {
namespace bench {

// Events wait here until the inventory's thread takes them.
class InstantDockerApi::Stream final : public agent::DockerEventStream {
 public:
  explicit Stream(InstantDockerApi* api) : api_(api) {
    absl::MutexLock lock(&api_->mu_);
    api_->streams_.insert(this);
  }
  ~Stream() override {
    absl::MutexLock lock(&api_->mu_);
    api_->streams_.erase(this);
  }

  absl::StatusOr<std::optional<agent::DockerEvent>> Next(absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(
        absl::Condition(
            +[](std::deque<agent::DockerEvent>* q) { return !q->empty(); }, &events_),
        timeout);
    if (events_.empty()) return std::optional<agent::DockerEvent>();
    agent::DockerEvent event = std::move(events_.front());
    events_.pop_front();
    return std::optional<agent::DockerEvent>(std::move(event));
  }

  void Push(agent::DockerEvent event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(std::move(event));
  }

 private:
  InstantDockerApi* const api_;
  absl::Mutex mu_;
  std::deque<agent::DockerEvent> events_ ABSL_GUARDED_BY(mu_);
};

InstantDockerApi::InstantDockerApi(std::vector<agent::ContainerInfo> containers) {
  for (agent::ContainerInfo& c : containers) {
    c.state = agent::ContainerState::kRunning;
    containers_[c.id] = c;
  }
}

InstantDockerApi::~InstantDockerApi() = default;

absl::StatusOr<std::vector<agent::ContainerInfo>> InstantDockerApi::ListContainers() {
  std::vector<agent::ContainerInfo> out;
  for (const auto& [id, info] : containers_) out.push_back(info);
  return out;
}

absl::StatusOr<agent::ContainerInfo> InstantDockerApi::InspectContainer(absl::string_view id) {
  auto it = containers_.find(id);
  if (it != containers_.end()) return it->second;
  for (const auto& [full_id, info] : containers_) {
    if (info.name == id) return info;
  }
  return absl::NotFoundError(absl::StrCat("inspect container ", id, ": No such container"));
}

absl::StatusOr<std::string> InstantDockerApi::CreateExec(absl::string_view container_id,
                                                         const std::vector<std::string>&,
                                                         const std::vector<std::string>&) {
  if (containers_.find(container_id) == containers_.end()) {
    return absl::NotFoundError(
        absl::StrCat("create exec in ", container_id, ": No such container"));
  }
  // "<container>/<n>": StartExec knows where the exit is reported.
  return absl::StrCat(container_id, "/", next_exec_.fetch_add(1, std::memory_order_relaxed));
}

absl::Status InstantDockerApi::StartExec(absl::string_view exec_id) {
  execs_started_.fetch_add(1, std::memory_order_relaxed);
  agent::DockerEvent die;
  die.type = "container";
  die.action = "exec_die";
  die.id = std::string(exec_id.substr(0, exec_id.find('/')));
  die.time = absl::Now();
  die.attributes = {{"execID", std::string(exec_id)}, {"exitCode", "0"}};
  absl::MutexLock lock(&mu_);
  for (Stream* stream : streams_) stream->Push(die);
  return absl::OkStatus();
}

absl::StatusOr<agent::ExecInfo> InstantDockerApi::InspectExec(absl::string_view) {
  return agent::ExecInfo{.running = false, .exit_code = 0};
}

absl::Status InstantDockerApi::StartContainer(absl::string_view) { return absl::OkStatus(); }

absl::StatusOr<std::unique_ptr<agent::DockerEventStream>> InstantDockerApi::OpenEventStream() {
  return std::unique_ptr<agent::DockerEventStream>(new Stream(this));
}

}  // namespace bench
}  // namespace dispatchd
