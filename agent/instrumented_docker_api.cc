#include "agent/instrumented_docker_api.h"

#include <array>
#include <string>
#include <utility>
#include <vector>

namespace dispatchd {
namespace agent {
namespace {

enum Operation {
  kVersion,
  kListContainers,
  kInspectContainer,
  kCreateExec,
  kStartExec,
  kInspectExec,
  kStartContainer,
  kOpenEventStream,
  kOperationCount,
};

constexpr std::array<const char*, kOperationCount> kOperationNames = {
    "version",    "list_containers", "inspect_container", "create_exec",
    "start_exec", "inspect_exec",    "start_container",   "open_event_stream",
};

constexpr std::array<const char*, 7> kOutcomeNames = {
    "ok", "not_found", "conflict", "client_error", "unavailable", "timeout", "error",
};

size_t OutcomeIndex(absl::string_view name) {
  for (size_t i = 0; i < kOutcomeNames.size(); ++i) {
    if (name == kOutcomeNames[i]) return i;
  }
  return kOutcomeNames.size() - 1;
}

class InstrumentedDockerApi final : public DockerApi {
 public:
  InstrumentedDockerApi(DockerApi* inner, Registry& registry, absl::string_view agent_id,
                        const Clock* clock)
      : inner_(inner), clock_(clock) {
    Family<Counter>& requests = registry.AddCounter(
        "dispatchd_docker_requests_total", "Docker Engine API requests, by operation and outcome.");
    Family<Histogram>& duration = registry.AddHistogram(
        "dispatchd_docker_request_duration_seconds", "Latency of Docker Engine API requests.");
    for (int op = 0; op < kOperationCount; ++op) {
      for (size_t outcome = 0; outcome < kOutcomeNames.size(); ++outcome) {
        requests_[op][outcome] = &requests.Add({{"agent", std::string(agent_id)},
                                                {"operation", kOperationNames[op]},
                                                {"outcome", kOutcomeNames[outcome]}});
      }
      durations_[op] = &duration.Add(
          {{"agent", std::string(agent_id)}, {"operation", kOperationNames[op]}},
          ExponentialBuckets(0.0005, 2, 16));
    }
  }

  absl::StatusOr<std::string> Version() override {
    return Measure(kVersion, [&] { return inner_->Version(); });
  }
  absl::StatusOr<std::vector<ContainerInfo>> ListContainers() override {
    return Measure(kListContainers, [&] { return inner_->ListContainers(); });
  }
  absl::StatusOr<ContainerInfo> InspectContainer(absl::string_view id) override {
    return Measure(kInspectContainer, [&] { return inner_->InspectContainer(id); });
  }
  absl::StatusOr<std::string> CreateExec(absl::string_view container_id,
                                         const std::vector<std::string>& argv,
                                         const std::vector<std::string>& env) override {
    return Measure(kCreateExec, [&] { return inner_->CreateExec(container_id, argv, env); });
  }
  absl::Status StartExec(absl::string_view exec_id) override {
    return Measure(kStartExec, [&] { return inner_->StartExec(exec_id); });
  }
  absl::StatusOr<ExecInfo> InspectExec(absl::string_view exec_id) override {
    return Measure(kInspectExec, [&] { return inner_->InspectExec(exec_id); });
  }
  absl::Status StartContainer(absl::string_view id) override {
    return Measure(kStartContainer, [&] { return inner_->StartContainer(id); });
  }
  absl::StatusOr<std::unique_ptr<DockerEventStream>> OpenEventStream() override {
    return Measure(kOpenEventStream, [&] { return inner_->OpenEventStream(); });
  }

 private:
  static const absl::Status& StatusOf(const absl::Status& s) { return s; }
  template <typename T>
  static const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
    return s.status();
  }

  template <typename F>
  auto Measure(Operation op, F&& call) -> decltype(call()) {
    const absl::Time start = clock_->Now();
    auto result = call();
    durations_[op]->Observe(absl::ToDoubleSeconds(clock_->Now() - start));
    requests_[op][OutcomeIndex(DockerOutcomeName(StatusOf(result)))]->Increment();
    return result;
  }

  DockerApi* const inner_;
  const Clock* const clock_;
  std::array<std::array<Counter*, kOutcomeNames.size()>, kOperationCount> requests_{};
  std::array<Histogram*, kOperationCount> durations_{};
};

}  // namespace

absl::string_view DockerOutcomeName(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk: return "ok";
    case absl::StatusCode::kNotFound: return "not_found";
    case absl::StatusCode::kFailedPrecondition: return "conflict";
    case absl::StatusCode::kInvalidArgument: return "client_error";
    case absl::StatusCode::kUnavailable: return "unavailable";
    case absl::StatusCode::kDeadlineExceeded: return "timeout";
    default: return "error";
  }
}

std::unique_ptr<DockerApi> NewInstrumentedDockerApi(DockerApi* inner, Registry& registry,
                                                    absl::string_view agent_id,
                                                    const Clock* clock) {
  return std::make_unique<InstrumentedDockerApi>(inner, registry, agent_id, clock);
}

}  // namespace agent
}  // namespace dispatchd
