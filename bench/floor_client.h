// FloorClient: the exec floor of docs/benchmarks.md, "Latency", i.e. the
// best any program can do to run a command in a container: one persistent
// connection to the engine's unix socket, exec create then exec start
// (detached), with the smallest bodies the API takes. It keeps nothing
// between calls but the connection; no timeouts (a benchmark against a
// private daemon).
#ifndef DISPATCHD_BENCH_FLOOR_CLIENT_H_
#define DISPATCHD_BENCH_FLOOR_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace dispatchd {
namespace bench {

class FloorClient {
 public:
  // Connects to `docker_host` (unix:///path) and asks its API version.
  static absl::StatusOr<std::unique_ptr<FloorClient>> Connect(const std::string& docker_host);
  ~FloorClient();

  // POST /containers/ID/exec {"Cmd": argv}, then POST /exec/EXEC/start
  // {"Detach": true}, on the one connection. `start_sent`, if not null, is
  // set to when the start request went out.
  absl::Status Exec(const std::string& container_id, const std::vector<std::string>& argv,
                    absl::Time* start_sent = nullptr);

  struct Impl;

 private:
  explicit FloorClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bench
}  // namespace dispatchd

#endif  // DISPATCHD_BENCH_FLOOR_CLIENT_H_
