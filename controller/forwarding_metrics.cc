#include "controller/forwarding_metrics.h"

#include <map>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"

namespace dispatchd {
namespace controller {
namespace {

// The counters of one destination and the totals last exported to them.
struct Exported {
  Counter* sent = nullptr;
  Counter* dropped = nullptr;
  Counter* dead_lettered = nullptr;
  Counter* failed = nullptr;
  Gauge* depth = nullptr;
  ForwardDestinationStats last;
};

void Advance(Counter* counter, uint64_t now, uint64_t last) {
  if (now > last) counter->Increment(static_cast<double>(now - last));
}

}  // namespace

void ExportForwardingMetrics(Registry& registry,
                             std::function<std::vector<ForwardDestinationStats>()> stats) {
  Family<Counter>& events = registry.AddCounter(
      "dispatchd_forward_events_total",
      "Events forwarded per destination: sent, dropped, or dead_lettered (rejected for good and "
      "written to the destination's dead-letter file).");
  Family<Counter>& failures = registry.AddCounter(
      "dispatchd_forward_failures_total", "Failed forwarding attempts per destination (retried).");
  Family<Gauge>& depth = registry.AddGauge("dispatchd_forward_queue_depth",
                                           "Events waiting to be forwarded per destination.");
  auto exported = std::make_shared<std::map<std::string, Exported>>();
  auto refresh = [&events, &failures, &depth, exported, stats = std::move(stats)] {
    for (const ForwardDestinationStats& s : stats()) {
      const std::string label = ForwardDestinationLabel(s.destination);
      auto [it, added] = exported->try_emplace(label);
      Exported& e = it->second;
      if (added) {
        e.sent = &events.Add({{"destination", label}, {"result", "sent"}});
        e.dropped = &events.Add({{"destination", label}, {"result", "dropped"}});
        e.dead_lettered = &events.Add({{"destination", label}, {"result", "dead_lettered"}});
        e.failed = &failures.Add({{"destination", label}});
        e.depth = &depth.Add({{"destination", label}});
      }
      Advance(e.sent, s.sent, e.last.sent);
      Advance(e.dropped, s.dropped, e.last.dropped);
      Advance(e.dead_lettered, s.dead_lettered, e.last.dead_lettered);
      Advance(e.failed, s.failed, e.last.failed);
      e.depth->Set(static_cast<double>(s.queue_depth));
      e.last = s;
    }
  };
  refresh();  // every destination at its current value (0) from the start
  registry.AddCollectHook(std::move(refresh));
}

}  // namespace controller
}  // namespace dispatchd
