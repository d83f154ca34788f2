#include "controller/dispatcher_metrics.h"

#include <algorithm>

#include "controller/dispatcher.h"

namespace dispatchd {
namespace controller {
namespace {

constexpr DeliveryOutcome kAllOutcomes[] = {
    DeliveryOutcome::kDelivered,         DeliveryOutcome::kCoalesced,
    DeliveryOutcome::kSkippedGone,       DeliveryOutcome::kSkippedNotRunning,
    DeliveryOutcome::kSkippedRejected,   DeliveryOutcome::kSkippedUnsubscribed,
    DeliveryOutcome::kFailed,
};

absl::string_view SettleOutcomeName(SettleOutcome outcome) {
  switch (outcome) {
    case SettleOutcome::kDelivered: return "delivered";
    case SettleOutcome::kNoSubscribers: return "no_subscribers";
    case SettleOutcome::kDeadLettered: return "dead_lettered";
  }
  return "unknown";
}

// From 1 ms to about 65 s: file-closed-to-exec latency and exec durations.
BucketBoundaries LatencyBuckets() { return ExponentialBuckets(0.001, 2, 17); }
// controller-runtime's work queue buckets: 1 µs to 1000 s (decades).
BucketBoundaries WorkQueueBuckets() { return ExponentialBuckets(1e-6, 10, 10); }

const Labels& QueueLabel() {
  static const Labels* labels = new Labels{{"name", kDeliveriesWorkQueue}};
  return *labels;
}

double Seconds(absl::Duration d) { return std::max(0.0, absl::ToDoubleSeconds(d)); }

class NoMetrics final : public DispatcherMetricsRecorder {
 public:
  void RecordEventObserved() override {}
  void RecordEventDuplicate() override {}
  void RecordEventSettled(SettleOutcome) override {}
  void RecordDelivery(DeliveryOutcome) override {}
  void RecordRetry() override {}
  void RecordCommandSent() override {}
  void ObserveDeliveryLatency(absl::Duration) override {}
  void RecordExecExit(bool, int, absl::Duration) override {}
  void RecordWorkQueueAdd() override {}
  void ObserveQueueDuration(absl::Duration) override {}
  void ObserveWorkDuration(absl::Duration) override {}
};

}  // namespace

DispatcherMetricsRecorder* NoDispatcherMetrics() {
  static NoMetrics* const metrics = new NoMetrics;
  return metrics;
}

DispatcherMetrics::DispatcherMetrics(Registry& registry)
    : events_observed_(
          registry.AddCounter("dispatchd_events_observed_total",
                              "Event files reported by agents (re-sent duplicates excluded).")
              .Add({})),
      events_duplicate_(registry
                            .AddCounter("dispatchd_events_duplicate_total",
                                        "Events re-sent by a reconnecting agent and ignored.")
                            .Add({})),
      retries_(registry
                   .AddCounter("dispatchd_delivery_retries_total",
                               "Failed delivery attempts scheduled for another try.")
                   .Add({})),
      commands_sent_(registry
                         .AddCounter("dispatchd_commands_sent_total",
                                     "Exec/Start commands sent to agents.")
                         .Add({})),
      delivery_latency_(
          registry
              .AddHistogram("dispatchd_delivery_latency_seconds",
                            "From the event file being closed to the exec's start being sent "
                            "to Docker.")
              .Add({}, LatencyBuckets())),
      exec_duration_(registry
                         .AddHistogram("dispatchd_exec_duration_seconds",
                                       "Run time of delivered execs, from start to exit.")
                         .Add({}, LatencyBuckets())),
      exec_success_(registry
                        .AddCounter("dispatchd_exec_exits_total",
                                    "Delivered execs that finished, by exit status.")
                        .Add({{"status", "success"}})),
      exec_failure_(registry
                        .AddCounter("dispatchd_exec_exits_total",
                                    "Delivered execs that finished, by exit status.")
                        .Add({{"status", "failure"}})),
      exec_unknown_(registry
                        .AddCounter("dispatchd_exec_exits_total",
                                    "Delivered execs that finished, by exit status.")
                        .Add({{"status", "unknown"}})),
      events_in_flight_(registry
                            .AddGauge("dispatchd_events_in_flight",
                                      "Events observed and not settled yet.")
                            .Add({})),
      events_held_(registry
                       .AddGauge("dispatchd_events_held",
                                 "Events held until every agent's inventory is fresh.")
                       .Add({})),
      events_awaiting_forward_(
          registry
              .AddGauge("dispatchd_events_awaiting_forward",
                        "Events whose files are kept until every forwarding destination took them.")
              .Add({})),
      debounce_pending_(registry
                            .AddGauge("dispatchd_debounce_pending",
                                      "Deliveries waiting for their debounce period.")
                            .Add({})),
      agents_connected_(registry
                            .AddGauge("dispatchd_agents_connected",
                                      "Agents with an open session.")
                            .Add({})),
      agents_fresh_(registry
                        .AddGauge("dispatchd_agents_fresh",
                                  "Connected agents whose container inventory is fresh.")
                        .Add({})),
      subscriptions_valid_(registry
                               .AddGauge("dispatchd_subscriptions",
                                         "Subscriptions from container labels, by state.")
                               .Add({{"state", "valid"}})),
      subscriptions_invalid_(registry
                                 .AddGauge("dispatchd_subscriptions",
                                           "Subscriptions from container labels, by state.")
                                 .Add({{"state", "invalid"}})),
      workqueue_depth_(
          registry.AddGauge("workqueue_depth", "Current depth of workqueue").Add(QueueLabel())),
      workqueue_adds_(registry
                          .AddCounter("workqueue_adds_total",
                                      "Total number of adds handled by workqueue")
                          .Add(QueueLabel())),
      workqueue_retries_(registry
                             .AddCounter("workqueue_retries_total",
                                         "Total number of retries handled by workqueue")
                             .Add(QueueLabel())),
      workqueue_queue_duration_(
          registry
              .AddHistogram("workqueue_queue_duration_seconds",
                            "How long in seconds an item stays in workqueue before being "
                            "requested")
              .Add(QueueLabel(), WorkQueueBuckets())),
      workqueue_work_duration_(
          registry
              .AddHistogram("workqueue_work_duration_seconds",
                            "How long in seconds processing an item from workqueue takes.")
              .Add(QueueLabel(), WorkQueueBuckets())) {
  Family<Counter>& settled = registry.AddCounter(
      "dispatchd_events_settled_total", "Events settled (file deleted or dead-lettered), by outcome.");
  for (SettleOutcome outcome :
       {SettleOutcome::kDelivered, SettleOutcome::kNoSubscribers, SettleOutcome::kDeadLettered}) {
    events_settled_[outcome] = &settled.Add({{"outcome", std::string(SettleOutcomeName(outcome))}});
  }
  Family<Counter>& deliveries = registry.AddCounter(
      "dispatchd_deliveries_total",
      "Subscriptions of events served, by outcome (delivered, coalesced, skipped_*, failed).");
  for (DeliveryOutcome outcome : kAllOutcomes) {
    deliveries_[outcome] =
        &deliveries.Add({{"outcome", std::string(DeliveryOutcomeName(outcome))}});
  }
}

void DispatcherMetrics::RecordEventSettled(SettleOutcome outcome) {
  events_settled_.at(outcome)->Increment();
}

void DispatcherMetrics::RecordDelivery(DeliveryOutcome outcome) {
  deliveries_.at(outcome)->Increment();
}

void DispatcherMetrics::RecordRetry() {
  retries_.Increment();
  workqueue_retries_.Increment();
}

void DispatcherMetrics::ObserveDeliveryLatency(absl::Duration latency) {
  delivery_latency_.Observe(Seconds(latency));
}

void DispatcherMetrics::RecordExecExit(bool known, int exit_code, absl::Duration duration) {
  if (!known) {
    exec_unknown_.Increment();
    return;
  }
  (exit_code == 0 ? exec_success_ : exec_failure_).Increment();
  exec_duration_.Observe(Seconds(duration));
}

void DispatcherMetrics::ObserveQueueDuration(absl::Duration d) {
  workqueue_queue_duration_.Observe(Seconds(d));
}

void DispatcherMetrics::ObserveWorkDuration(absl::Duration d) {
  workqueue_work_duration_.Observe(Seconds(d));
}

void DispatcherMetrics::SetGauges(const DispatcherStats& stats) {
  events_in_flight_.Set(static_cast<double>(stats.events_in_flight));
  events_held_.Set(static_cast<double>(stats.events_held));
  events_awaiting_forward_.Set(static_cast<double>(stats.events_awaiting_forward));
  debounce_pending_.Set(static_cast<double>(stats.debounce_pending));
  agents_connected_.Set(static_cast<double>(stats.agents_connected));
  agents_fresh_.Set(static_cast<double>(stats.agents_fresh));
  subscriptions_valid_.Set(static_cast<double>(stats.subscriptions_valid));
  subscriptions_invalid_.Set(static_cast<double>(stats.subscriptions_invalid));
  workqueue_depth_.Set(static_cast<double>(stats.deliveries_queued));
}

void ExportDispatcherGauges(Registry& registry, const Dispatcher* dispatcher,
                            DispatcherMetrics* metrics) {
  registry.AddCollectHook([dispatcher, metrics] { metrics->SetGauges(dispatcher->stats()); });
}

void ExportDispatcherGauges(Registry& registry, std::function<DispatcherStats()> stats,
                            DispatcherMetrics* metrics) {
  registry.AddCollectHook([stats = std::move(stats), metrics] { metrics->SetGauges(stats()); });
}

}  // namespace controller
}  // namespace dispatchd
