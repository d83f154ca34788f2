// The operator's HTTP endpoints of a dispatchd process:
//   GET /metrics  Prometheus text format 0.0.4 of `registry`
//   GET /healthz  200 "ok" while the process serves HTTP at all (alive)
//   GET /readyz   200 "ok" when `readiness` says ready, else 503 with the reason;
//                 a standby controller replica is ready: 200 "standby". Under
//                 leader election a second line says who leads:
//                 "leader: ID ADDR" ("leader: none" while nobody does).
// Anything else gets the HttpServer's codes (404 unknown path, 405 other
// method, 400 malformed).
//
// The handlers only read atomics and take short-held locks (the collect
// hooks' snapshots), so scrapes never hold up dispatch; they run on the
// server's own I/O thread.
//
// Ownership: `registry` and whatever `readiness` captures must outlive the
// returned server (stop it first).
#ifndef DISPATCHD_CMD_DISPATCHD_METRICS_SERVER_H_
#define DISPATCHD_CMD_DISPATCHD_METRICS_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/http_server.h"
#include "common/metrics.h"

namespace dispatchd {

struct Readiness {
  bool ready = false;
  std::string reason;  // why not ready (shown in the 503 body)
  // The first line of a 200 body: "ok", or "standby".
  std::string state = "ok";
  // Under leader election, who leads ("ID ADDR", or "none"); empty without.
  std::string leader;
};

// Both must be ready; the reasons of those that are not are joined.
Readiness Both(const Readiness& a, const Readiness& b);

absl::StatusOr<std::unique_ptr<HttpServer>> StartMetricsServer(
    absl::string_view listen, const Registry* registry, std::function<Readiness()> readiness);

}  // namespace dispatchd

#endif  // DISPATCHD_CMD_DISPATCHD_METRICS_SERVER_H_
