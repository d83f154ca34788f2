// Prometheus metrics of event forwarding, one series per configured
// destination (a bounded, configured list):
//
//   dispatchd_forward_events_total{destination, result="sent"|"dropped"|"dead_lettered"}
//   dispatchd_forward_failures_total{destination}   failed attempts (retried)
//   dispatchd_forward_queue_depth{destination}      events waiting
//
// The label is the destination URI without credentials, query or fragment
// (ForwardDestinationLabel, in forward_destination.h). Values come from `stats` (e.g.
// Forwarder::stats) at every scrape; every configured destination is
// present at 0 from the start.
//
// Thread-safety: the collect hook is serialized by the Registry.
// Ownership: whatever `stats` captures must outlive every later Collect of
// `registry` (stop the metrics server first).
#ifndef DISPATCHD_CONTROLLER_FORWARDING_METRICS_H_
#define DISPATCHD_CONTROLLER_FORWARDING_METRICS_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/metrics.h"
#include "controller/forwarder.h"

namespace dispatchd {
namespace controller {

void ExportForwardingMetrics(Registry& registry,
                             std::function<std::vector<ForwardDestinationStats>()> stats);

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_FORWARDING_METRICS_H_
