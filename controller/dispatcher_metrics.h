// DispatcherMetricsRecorder: what the Dispatcher reports as things happen.
// The Dispatcher always calls it; NoDispatcherMetrics() is the instance that
// records nothing, used when no metrics are wanted.
//
// DispatcherMetrics: the controller's Prometheus metrics, a recorder. The
// Dispatcher calls the Record*/Observe* methods as things happen; SetGauges
// copies a DispatcherStats snapshot into the gauges (run it from a collect
// hook, see ExportDispatcherGauges).
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
// Thread-safety: every method of both is safe for concurrent use and
// lock-free (atomics), so the Dispatcher may call them with its mutex held;
// an implementation of the recorder must be so too.
// Ownership: the metrics live in the Registry passed to the constructor,
// which must outlive this object. NoDispatcherMetrics() is never deleted.
#ifndef DISPATCHD_CONTROLLER_DISPATCHER_METRICS_H_
#define DISPATCHD_CONTROLLER_DISPATCHER_METRICS_H_

#include <functional>
#include <map>

#include "absl/time/time.h"
#include "common/metrics.h"
#include "controller/event_ledger.h"  // SettleOutcome

namespace dispatchd {
namespace controller {

class Dispatcher;
enum class DeliveryOutcome;
struct DispatcherStats;

// The work queue's name label, as controller-runtime names its queues.
inline constexpr char kDeliveriesWorkQueue[] = "dispatchd_deliveries";

class DispatcherMetricsRecorder {
 public:
  virtual ~DispatcherMetricsRecorder() = default;

  virtual void RecordEventObserved() = 0;
  virtual void RecordEventDuplicate() = 0;
  virtual void RecordEventSettled(SettleOutcome outcome) = 0;
  virtual void RecordDelivery(DeliveryOutcome outcome) = 0;
  // A failed attempt scheduled for another try (also workqueue_retries_total).
  virtual void RecordRetry() = 0;
  virtual void RecordCommandSent() = 0;
  // From the file being closed (observed by the agent) to the exec's start
  // being sent to Docker. Negative values (clock skew between hosts) count as 0.
  virtual void ObserveDeliveryLatency(absl::Duration latency) = 0;
  // A finished exec: its duration and whether it exited with 0. `known` is
  // false when the agent could not learn the exit (then duration is ignored).
  virtual void RecordExecExit(bool known, int exit_code, absl::Duration duration) = 0;
  // Work queue: a delivery became ready to send (first enqueue or retry
  // scheduled).
  virtual void RecordWorkQueueAdd() = 0;
  // Work queue: ready -> command sent.
  virtual void ObserveQueueDuration(absl::Duration d) = 0;
  // Work queue: command sent -> the agent's result.
  virtual void ObserveWorkDuration(absl::Duration d) = 0;
};

// A recorder that records nothing. Never null; thread-safe.
DispatcherMetricsRecorder* NoDispatcherMetrics();

class DispatcherMetrics final : public DispatcherMetricsRecorder {
 public:
  explicit DispatcherMetrics(Registry& registry);
  DispatcherMetrics(const DispatcherMetrics&) = delete;
  DispatcherMetrics& operator=(const DispatcherMetrics&) = delete;

  void RecordEventObserved() override { events_observed_.Increment(); }
  void RecordEventDuplicate() override { events_duplicate_.Increment(); }
  void RecordEventSettled(SettleOutcome outcome) override;
  void RecordDelivery(DeliveryOutcome outcome) override;
  void RecordRetry() override;
  void RecordCommandSent() override { commands_sent_.Increment(); }
  void ObserveDeliveryLatency(absl::Duration latency) override;
  void RecordExecExit(bool known, int exit_code, absl::Duration duration) override;
  void RecordWorkQueueAdd() override { workqueue_adds_.Increment(); }
  void ObserveQueueDuration(absl::Duration d) override;
  void ObserveWorkDuration(absl::Duration d) override;

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
  Gauge& events_awaiting_forward_;
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
// The same, for a Dispatcher that changes (one per leadership term).
void ExportDispatcherGauges(Registry& registry, std::function<DispatcherStats()> stats,
                            DispatcherMetrics* metrics);

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_DISPATCHER_METRICS_H_
