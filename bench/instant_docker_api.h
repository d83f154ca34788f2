// InstantDockerApi: a DockerApi with no engine behind it, for benchmarks of
// what dispatchd does around Docker. It has a fixed set of running
// containers; every exec is created and started at once and exits 0 right
// away (an `exec_die` event on every open event stream, as the engine sends
// it), and nothing is kept of it: only counted. So the figures are
// dispatchd's own, and its memory is not mixed with a fake's records.
//
// Thread-safe. Event streams it returns must not outlive it.
#ifndef DISPATCHD_BENCH_INSTANT_DOCKER_API_H_
#define DISPATCHD_BENCH_INSTANT_DOCKER_API_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/docker_api.h"

namespace dispatchd {
namespace bench {

class InstantDockerApi final : public agent::DockerApi {
 public:
  // Every container is reported running.
  explicit InstantDockerApi(std::vector<agent::ContainerInfo> containers);
  ~InstantDockerApi() override;

  uint64_t execs_started() const { return execs_started_.load(std::memory_order_relaxed); }

  absl::StatusOr<std::string> Version() override { return std::string("1.41"); }
  absl::StatusOr<std::vector<agent::ContainerInfo>> ListContainers() override;
  absl::StatusOr<agent::ContainerInfo> InspectContainer(absl::string_view id) override;
  absl::StatusOr<std::string> CreateExec(absl::string_view container_id,
                                         const std::vector<std::string>& argv,
                                         const std::vector<std::string>& env) override;
  absl::Status StartExec(absl::string_view exec_id) override;
  absl::StatusOr<agent::ExecInfo> InspectExec(absl::string_view exec_id) override;
  absl::Status StartContainer(absl::string_view id) override;
  absl::StatusOr<std::unique_ptr<agent::DockerEventStream>> OpenEventStream() override;

  class Stream;  // in instant_docker_api.cc

 private:
  friend class Stream;

  std::map<std::string, agent::ContainerInfo, std::less<>> containers_;  // by id and by name
  std::atomic<uint64_t> next_exec_{1};
  std::atomic<uint64_t> execs_started_{0};

  absl::Mutex mu_;
  std::set<Stream*> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bench
}  // namespace dispatchd

#endif  // DISPATCHD_BENCH_INSTANT_DOCKER_API_H_
