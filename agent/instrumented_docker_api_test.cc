#include "agent/instrumented_docker_api.h"

#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/agent_metrics.h"
#include "agent/testing/fake_docker_api.h"
#include "common/metrics.h"
#include "common/testing/fake_clock.h"
#include "common/testing/exposition.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace agent {
namespace {

using ::dispatchd::testing::Sample;

// Takes `latency` of fake time per Version() call.
class SlowVersion final : public DockerApi {
 public:
  SlowVersion(DockerApi* inner, FakeClock* clock, absl::Duration latency)
      : inner_(inner), clock_(clock), latency_(latency) {}
  absl::StatusOr<std::string> Version() override {
    clock_->Advance(latency_);
    return inner_->Version();
  }
  absl::StatusOr<std::vector<ContainerInfo>> ListContainers() override {
    return inner_->ListContainers();
  }
  absl::StatusOr<ContainerInfo> InspectContainer(absl::string_view id) override {
    return inner_->InspectContainer(id);
  }
  absl::StatusOr<std::string> CreateExec(absl::string_view c, const std::vector<std::string>& a,
                                         const std::vector<std::string>& e) override {
    return inner_->CreateExec(c, a, e);
  }
  absl::Status StartExec(absl::string_view id) override { return inner_->StartExec(id); }
  absl::StatusOr<ExecInfo> InspectExec(absl::string_view id) override {
    return inner_->InspectExec(id);
  }
  absl::Status StartContainer(absl::string_view id) override { return inner_->StartContainer(id); }
  absl::StatusOr<std::unique_ptr<DockerEventStream>> OpenEventStream() override {
    return inner_->OpenEventStream();
  }

 private:
  DockerApi* inner_;
  FakeClock* clock_;
  absl::Duration latency_;
};

class InstrumentedDockerApiTest : public ::testing::Test {
 protected:
  InstrumentedDockerApiTest()
      : slow_(&fake_, &clock_, absl::Milliseconds(3)),
        docker_(NewInstrumentedDockerApi(&slow_, registry_, "host-a", &clock_)) {}

  std::string Text() { return SerializeText(registry_); }

  FakeClock clock_;
  FakeDockerApi fake_;
  SlowVersion slow_;
  Registry registry_;
  std::unique_ptr<DockerApi> docker_;
};

TEST_F(InstrumentedDockerApiTest, EveryOperationAndOutcomeStartsAtZero) {
  const std::string text = Text();
  for (const char* op : {"version", "list_containers", "inspect_container", "create_exec",
                         "start_exec", "inspect_exec", "start_container", "open_event_stream"}) {
    for (const char* outcome :
         {"ok", "not_found", "conflict", "client_error", "unavailable", "timeout", "error"}) {
      const std::string series =
          std::string("dispatchd_docker_requests_total{agent=\"host-a\",operation=\"") + op +
          "\",outcome=\"" + outcome + "\"}";
      EXPECT_EQ(Sample(text, series), 0) << series;
    }
  }
}

TEST_F(InstrumentedDockerApiTest, CountsOutcomesAndPassesResultsThrough) {
  fake_.AddContainer(ContainerInfo{"c1", "one", {}, ContainerState::kRunning});
  absl::StatusOr<ContainerInfo> found = docker_->InspectContainer("c1");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->name, "one");
  absl::StatusOr<ContainerInfo> missing = docker_->InspectContainer("nope");
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  fake_.FailNext(FakeDockerApi::Op::kStartContainer, absl::UnavailableError("daemon down"));
  EXPECT_TRUE(absl::IsUnavailable(docker_->StartContainer("c1")));
  fake_.FailNext(FakeDockerApi::Op::kListContainers, absl::DeadlineExceededError("slow"));
  EXPECT_TRUE(absl::IsDeadlineExceeded(docker_->ListContainers().status()));
  fake_.SetState("c1", ContainerState::kExited);
  EXPECT_TRUE(absl::IsFailedPrecondition(docker_->CreateExec("c1", {"true"}, {}).status()));

  const std::string text = Text();
  auto requests = [&](const std::string& op, const std::string& outcome) {
    return Sample(text, "dispatchd_docker_requests_total{agent=\"host-a\",operation=\"" + op +
                            "\",outcome=\"" + outcome + "\"}");
  };
  EXPECT_EQ(requests("inspect_container", "ok"), 1) << text;
  EXPECT_EQ(requests("inspect_container", "not_found"), 1);
  EXPECT_EQ(requests("start_container", "unavailable"), 1);
  EXPECT_EQ(requests("list_containers", "timeout"), 1);
  EXPECT_EQ(requests("create_exec", "conflict"), 1);
  EXPECT_EQ(requests("start_exec", "ok"), 0);
}

TEST_F(InstrumentedDockerApiTest, RecordsLatencyOnTheClock) {
  ASSERT_TRUE(docker_->Version().ok());
  ASSERT_TRUE(docker_->Version().ok());
  const std::string text = Text();
  const std::string labels = "{agent=\"host-a\",operation=\"version\"";
  EXPECT_EQ(Sample(text, "dispatchd_docker_request_duration_seconds_count" + labels + "}"), 2)
      << text;
  EXPECT_DOUBLE_EQ(Sample(text, "dispatchd_docker_request_duration_seconds_sum" + labels + "}"),
                   0.006);
  // 3 ms is above the 2 ms bound and within the 4 ms one.
  EXPECT_EQ(Sample(text, "dispatchd_docker_request_duration_seconds_bucket" + labels +
                             ",le=\"0.002\"}"),
            0);
  EXPECT_EQ(Sample(text, "dispatchd_docker_request_duration_seconds_bucket" + labels +
                             ",le=\"0.004\"}"),
            2);
}

TEST(AgentMetricsTest, StartAtZeroAndMove) {
  Registry registry;
  AgentMetrics metrics(registry, "host-b");
  std::string text = SerializeText(registry);
  EXPECT_EQ(Sample(text, "dispatchd_agent_session_up{agent=\"host-b\"}"), 0) << text;
  EXPECT_EQ(Sample(text, "dispatchd_agent_files_settled_total{agent=\"host-b\",disposition=\"dead_lettered\"}"), 0);
  EXPECT_EQ(Sample(text, "dispatchd_agent_commands_total{agent=\"host-b\",outcome=\"rejected\"}"), 0);
  metrics.SetSessionUp(true);
  metrics.RecordFileObserved();
  metrics.RecordFileError(AgentMetrics::FileOperation::kDelete);
  metrics.SetUnsettled(4);
  text = SerializeText(registry);
  EXPECT_EQ(Sample(text, "dispatchd_agent_session_up{agent=\"host-b\"}"), 1);
  EXPECT_EQ(Sample(text, "dispatchd_agent_files_observed_total{agent=\"host-b\"}"), 1);
  EXPECT_EQ(Sample(text, "dispatchd_agent_file_errors_total{agent=\"host-b\",operation=\"delete\"}"), 1);
  EXPECT_EQ(Sample(text, "dispatchd_agent_unsettled_events{agent=\"host-b\"}"), 4);
}

}  // namespace
}  // namespace agent
}  // namespace dispatchd
