// FakeDockerApi: an in-memory DockerApi for unit tests. The test owns the
// world: it adds, removes and changes containers, scripts failures per
// operation, reads back the execs it was asked for, and feeds the event
// streams (PushEvent, BreakStreams). Nothing happens on its own: changing a
// container emits no event unless the test pushes one.
//
// Behaves like the engine where the agent cares: ids resolve by full id,
// unique prefix or name; CreateExec on a stopped container fails
// FailedPrecondition "... is not running", on a paused one "... is paused";
// missing containers and execs are NotFound; StartContainer sets kRunning
// (unless SetStateAfterStart says otherwise).
//
// Thread-safe. Event streams it returns must not outlive it.
#ifndef DISPATCHD_AGENT_TESTING_FAKE_DOCKER_API_H_
#define DISPATCHD_AGENT_TESTING_FAKE_DOCKER_API_H_

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/docker_api.h"

namespace dispatchd {
namespace agent {

class FakeDockerApi final : public DockerApi {
 public:
  enum class Op {
    kVersion,
    kListContainers,
    kInspectContainer,
    kCreateExec,
    kStartExec,
    kInspectExec,
    kStartContainer,
    kOpenEventStream,
  };

  struct RecordedExec {
    std::string exec_id;
    std::string container_id;
    std::vector<std::string> argv;
    std::vector<std::string> env;
    bool started = false;
  };

  FakeDockerApi();
  ~FakeDockerApi() override;

  // --- The world -----------------------------------------------------------
  // Adds or replaces (by id) a container.
  void AddContainer(ContainerInfo container);
  // Returns false if there was no such container (full id).
  bool RemoveContainer(const std::string& id);
  bool SetState(const std::string& id, ContainerState state);
  bool SetLabels(const std::string& id, std::map<std::string, std::string> labels);
  bool Rename(const std::string& id, const std::string& name);
  std::optional<ContainerInfo> container(const std::string& id) const;
  // Every later StartContainer of `id` succeeds but leaves it in `state`
  // instead of kRunning, as a container whose process exits at once does.
  // Returns false if there is no such container (full id).
  bool SetStateAfterStart(const std::string& id, ContainerState state);

  // --- Failures --------------------------------------------------------------
  // The next `times` calls of `op` return `status` (not OK) instead of working.
  void FailNext(Op op, absl::Status status, int times = 1);
  // Calls made so far, failed ones included.
  int calls(Op op) const;

  // --- Execs -----------------------------------------------------------------
  std::vector<RecordedExec> execs() const;
  // What InspectExec returns for `exec_id` (default: finished, exit code 0).
  void SetExecResult(const std::string& exec_id, ExecInfo info);

  // --- Event streams ---------------------------------------------------------
  // Queues `event` on every stream open now.
  void PushEvent(DockerEvent event);
  // Every stream open now returns `status` from Next() (after its queued
  // events) and is then dead; later streams are unaffected.
  void BreakStreams(absl::Status status = absl::UnavailableError("events stream broken"));
  // Streams opened so far, and those still open (not destroyed or broken).
  int streams_opened() const;
  int open_streams() const;
  // Blocks until open_streams() >= n, at most `timeout` of real time.
  bool AwaitOpenStreams(int n, absl::Duration timeout) const;

  // --- DockerApi --------------------------------------------------------------
  absl::StatusOr<std::string> Version() override;
  absl::StatusOr<std::vector<ContainerInfo>> ListContainers() override;
  absl::StatusOr<ContainerInfo> InspectContainer(absl::string_view id) override;
  absl::StatusOr<std::string> CreateExec(absl::string_view container_id,
                                         const std::vector<std::string>& argv,
                                         const std::vector<std::string>& env) override;
  absl::Status StartExec(absl::string_view exec_id) override;
  absl::StatusOr<ExecInfo> InspectExec(absl::string_view exec_id) override;
  absl::Status StartContainer(absl::string_view id) override;
  absl::StatusOr<std::unique_ptr<DockerEventStream>> OpenEventStream() override;

 private:
  class Stream;
  struct StreamState {
    std::deque<DockerEvent> queue;
    absl::Status broken;  // OK while healthy
    bool closed = false;  // the stream object was destroyed
  };
  struct Failure {
    absl::Status status;
    int remaining = 0;
  };

  // Counts the call and returns the scripted failure, if any.
  absl::Status Enter(Op op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Resolves a full id, unique id prefix or name to the full id.
  absl::StatusOr<std::string> Resolve(absl::string_view op, absl::string_view id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, ContainerInfo> containers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, ContainerState> state_after_start_ ABSL_GUARDED_BY(mu_);
  std::map<Op, Failure> failures_ ABSL_GUARDED_BY(mu_);
  std::map<Op, int> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<RecordedExec> execs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, ExecInfo> exec_results_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<StreamState>> streams_ ABSL_GUARDED_BY(mu_);
  int streams_opened_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace agent
}  // namespace dispatchd

#endif  // DISPATCHD_AGENT_TESTING_FAKE_DOCKER_API_H_
