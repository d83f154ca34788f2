#include "bench/unsettled_bench.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "common/clock.h"
#include "common/logging.h"
#include "controller/dispatcher.h"

namespace dispatchd {
namespace bench {
namespace {

using dispatch::v1::AgentMessage;

// Drops what the Dispatcher sends: nothing it sends is kept here.
class DroppingLink final : public controller::AgentLink {
 public:
  void Send(dispatch::v1::ControllerMessage) override {}
  void Close(const std::string&) override {}
};

constexpr int kEventIds = 100;

AgentMessage Snapshot(int subscribers) {
  AgentMessage m;
  m.mutable_inventory_snapshot()->set_seq(1);
  for (int c = 0; c < subscribers; ++c) {
    dispatch::v1::Container* container = m.mutable_inventory_snapshot()->add_containers();
    container->set_id(absl::StrFormat("%064x", c + 1));
    container->set_name(absl::StrFormat("handler-%02d", c));
    container->set_state(dispatch::v1::Container::RUNNING);
    for (int e = 0; e < kEventIds; ++e) {
      (*container
            ->mutable_labels())[absl::StrFormat("subscription.bench.e%03d.container.command", e)] =
          "true";
    }
  }
  return m;
}

UnsettledResult Measure(const std::string& state, int subscribers, bool fresh, int64_t events,
                        int64_t payload_bytes) {
  UnsettledResult r;
  r.state = state;
  r.payload_bytes = payload_bytes;
  r.events = events;
  DroppingLink link;
  controller::Dispatcher dispatcher(controller::DispatcherOptions(), Clock::Real());
  dispatcher.AgentConnected("bench", "bench", &link);
  if (fresh) dispatcher.OnAgentMessage("bench", Snapshot(subscribers));
  const std::string payload(static_cast<size_t>(payload_bytes), 'x');
  const int64_t before = HeapAllocatedBytes();
  for (int64_t i = 0; i < events; ++i) {
    AgentMessage m;
    dispatch::v1::ObservedEvent* event = m.mutable_event();
    // What an agent sends for events/bench/<id>/fNNNNNNN: distinct files, a
    // hundred distinct event ids.
    event->set_key(absl::StrFormat("bench/e%03d/f%07d", i % kEventIds, i));
    event->set_event_id(absl::StrFormat("bench.e%03d", i % kEventIds));
    event->set_payload(payload);
    event->set_size(payload_bytes);
    event->set_observed_unix_nanos(absl::ToUnixNanos(absl::Now()));
    event->set_generation(static_cast<uint64_t>(i) + 1);
    dispatcher.OnAgentMessage("bench", m);
  }
  const int64_t after = HeapAllocatedBytes();
  r.unsettled = static_cast<int64_t>(dispatcher.stats().events_in_flight);
  if (before >= 0 && after >= 0 && events > 0) {
    r.bytes_per_event = static_cast<double>(after - before) / static_cast<double>(events);
  }
  dispatcher.AgentDisconnected("bench", &link);
  return r;
}

}  // namespace

std::vector<UnsettledResult> RunUnsettledBenchmark(const UnsettledBenchOptions& options) {
  // Per-event log lines ("holding event ...") would cost time, not memory.
  SetMinLogLevel(LogLevel::kError);
  std::vector<UnsettledResult> out;
  for (int64_t payload : options.payload_bytes) {
    out.push_back(Measure("held (inventory not fresh)", 0, false, options.events, payload));
  }
  for (int64_t payload : options.payload_bytes) {
    out.push_back(Measure("queued for 1 subscriber", 1, true, options.events, payload));
  }
  out.push_back(Measure("queued for 10 subscribers", 10, true, options.events, 1024));
  SetMinLogLevel(LogLevel::kInfo);
  return out;
}

std::string UnsettledResultsMarkdown(const std::vector<UnsettledResult>& results) {
  if (results.empty()) return "";
  std::string out =
      "### 8. Controller memory per unsettled event (in-process Dispatcher, jemalloc's "
      "allocated bytes)\n\n"
      "| state | payload | events | unsettled at the end | bytes per event |\n"
      "|---|---|---|---|---|\n";
  for (const UnsettledResult& r : results) {
    absl::StrAppend(&out,
                    absl::StrFormat("| %s | %d B | %d | %d | %.0f |\n", r.state, r.payload_bytes,
                                    r.events, r.unsettled, r.bytes_per_event));
  }
  absl::StrAppend(&out, "\n");
  return out;
}

}  // namespace bench
}  // namespace dispatchd
