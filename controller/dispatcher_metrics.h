// DispatcherMetrics: the controller's Prometheus metrics. The Dispatcher
// calls the Record*/Observe* methods as things happen; SetGauges copies a
// DispatcherStats snapshot into the gauges (run it from a collect hook, see
// ExportDispatcherGauges).
//
// Every label value these metrics can take is created at 0 by the
// constructor, so a dashboard shows 0 rather than "No data". Labels are
// small enums only (outcome, status, name); never event or container ids.
//
// Families (see README.md "Metrics and dashboards"):
//   dispatchd_events_observed_total, dispatchd_events_duplicate_total,
//   dispatchd_events_settled_total{outcome}, dispatchd_deliveries_total{outcome},
//   dispatchd_delivery_retries_total, dispatchd_commands_sent_total,
//   dispatchd_delivery_latency_seconds, dispatchd_exec_duration_seconds,
//   dispatchd_exec_exits_total{status}, dispatchd_events_in_flight,
//   dispatchd_events_held, dispatchd_debounce_pending, dispatchd_agents_connected,
//   dispatchd_agents_fresh, dispatchd_subscriptions{state},
//   workqueue_{depth,adds_total,retries_total,queue_duration_seconds,
//   work_duration_seconds}{name="dispatchd_deliveries"}.
//
// Thread-safety: every method is safe for concurrent use and lock-free
// (atomics), so the Dispatcher may call them with its mutex held.
// Ownership: the metrics live in the Registry passed to the constructor,
// which must outlive this object.
#ifndef DISPATCHD_CONTROLLER_DISPATCHER_METRICS_H_
#define DISPATCHD_CONTROLLER_DISPATCHER_METRICS_H_

#include <map>

#include "absl/time/time.h"
#include "common/metrics.h"

namespace dispatchd {
namespace controller {

class Dispatcher;
enum class DeliveryOutcome;
struct DispatcherStats;

// How an event was settled.
enum class SettleOutcome { kDelivered, kNoSubscribers, kDeadLettered };

// The work queue's name label, as controller-runtime names its queues.
inline constexpr char kDeliveriesWorkQueue[] = "dispatchd_deliveries";

class DispatcherMetrics {
 public:
  explicit DispatcherMetrics(Registry& registry);
  DispatcherMetrics(const DispatcherMetrics&) = delete;
  DispatcherMetrics& operator=(const DispatcherMetrics&) = delete;

  void RecordEventObserved() { events_observed_.Increment(); }
  void RecordEventDuplicate() { events_duplicate_.Increment(); }
  void RecordEventSettled(SettleOutcome outcome);
  void RecordDelivery(DeliveryOutcome outcome);
  // A failed attempt scheduled for another try (also workqueue_retries_total).
  void RecordRetry();
  void RecordCommandSent() { commands_sent_.Increment(); }
  // From the file being closed (observed by the agent) to the exec's start
  // being sent to Docker. Negative values (clock skew between hosts) count as 0.
  void ObserveDeliveryLatency(absl::Duration latency);
  // A finished exec: its duration and whether it exited with 0. `known` is
  // false when the agent could not learn the exit (then duration is ignored).
  void RecordExecExit(bool known, int exit_code, absl::Duration duration);
  // Work queue: a delivery became ready to send (first enqueue or retry due).
  void RecordWorkQueueAdd() { workqueue_adds_.Increment(); }
  // Work queue: ready -> command sent.
  void ObserveQueueDuration(absl::Duration d);
  // Work queue: command sent -> the agent's result.
  void ObserveWorkDuration(absl::Duration d);

  // Copies the gauges of `stats` (in flight, held, debounce pending, agents,
  // subscriptions, queued deliveries).
  void SetGauges(const DispatcherStats& stats);

 private:
  Counter& events_observed_;
  Counter& events_duplicate_;
  std::map<SettleOutcome, Counter*> events_settled_;
  std::map<DeliveryOutcome, Counter*> deliveries_;
  Counter& retries_;
  Counter& commands_sent_;
  Histogram& delivery_latency_;
  Histogram& exec_duration_;
  Counter& exec_success_;
  Counter& exec_failure_;
  Counter& exec_unknown_;
  Gauge& events_in_flight_;
  Gauge& events_held_;
  Gauge& debounce_pending_;
  Gauge& agents_connected_;
  Gauge& agents_fresh_;
  Gauge& subscriptions_valid_;
  Gauge& subscriptions_invalid_;
  Gauge& workqueue_depth_;
  Counter& workqueue_adds_;
  Counter& workqueue_retries_;
  Histogram& workqueue_queue_duration_;
  Histogram& workqueue_work_duration_;
};

// Installs a collect hook on `registry` that copies dispatcher.stats() into
// `metrics`' gauges at every scrape. REQUIRES: `dispatcher` and `metrics`
// outlive every later Collect of `registry` (stop the metrics server first).
void ExportDispatcherGauges(Registry& registry, const Dispatcher* dispatcher,
                            DispatcherMetrics* metrics);

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_DISPATCHER_METRICS_H_
