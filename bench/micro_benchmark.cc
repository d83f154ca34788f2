// Microbenchmarks of the per-event and per-container work: label parsing,
// event-id mapping, debouncer operations and subscription index lookups.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "contract/event_id.h"
#include "benchmark/benchmark.h"
#include "controller/debouncer.h"
#include "contract/labels.h"
#include "controller/subscription_index.h"
#include "controller/dispatcher.h"
#include "common/clock.h"

namespace dispatchd {
namespace {

std::map<std::string, std::string> Labels(int subscriptions) {
  std::map<std::string, std::string> labels;
  for (int i = 0; i < subscriptions; ++i) {
    const std::string prefix = absl::StrCat("subscription.app.event", i, ".");
    labels[prefix + "container.command"] = "sh -c 'echo \"$DISPATCH_EVENT_PAYLOAD\" >> /log'";
    labels[prefix + "dispatching.debounce"] = "500";
  }
  labels["com.docker.compose.project"] = "demo";
  labels["org.opencontainers.image.version"] = "1.2.3";
  return labels;
}

void BM_ParseSubscriptionLabels(benchmark::State& state) {
  const auto labels = Labels(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(contract::ParseSubscriptionLabels(labels, "subscription"));
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_ParseSubscriptionLabels)->Arg(1)->Arg(10)->Arg(100);

void BM_SplitCommand(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        contract::SplitCommand("sh -c 'echo \"$DISPATCH_EVENT_PAYLOAD\" >> /log' a\\ b"));
  }
}
BENCHMARK(BM_SplitCommand);

void BM_EventIdFromRelativePath(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        contract::EventIdFromRelativePath("some-dir/some-sub-dir/the-event-file.txt", "ns"));
  }
}
BENCHMARK(BM_EventIdFromRelativePath);

void BM_ValidateAndIgnoreRelativePath(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        contract::ValidateRelativePath("some-dir/some-sub-dir/the-event-file.txt"));
    benchmark::DoNotOptimize(contract::IsIgnoredRelativePath("some-dir/some-sub-dir/the-event-file.txt"));
  }
}
BENCHMARK(BM_ValidateAndIgnoreRelativePath);

// 1,000 debounce keys shaped like the dispatcher's lane keys.
std::vector<std::string> DebounceKeys() {
  std::vector<std::string> keys;
  for (int i = 0; i < 1000; ++i) keys.push_back(absl::StrCat("event", i, "|agent|container", i));
  return keys;
}

// Offer with D = 0 (every event delivered now) over 1,000 keys.
void BM_DebouncerOfferNoDebounce(benchmark::State& state) {
  controller::Debouncer debouncer;
  const std::vector<std::string> keys = DebounceKeys();
  absl::Time now = absl::UnixEpoch();
  uint64_t item = 0;
  for (auto _ : state) {
    now += absl::Microseconds(1);
    benchmark::DoNotOptimize(
        debouncer.Offer(keys[item % keys.size()], absl::ZeroDuration(), item, now));
    ++item;
  }
}
BENCHMARK(BM_DebouncerOfferNoDebounce);

// Offer with D = 1 s: after each key's first event, every event becomes (or
// replaces) the pending one; TakeDue runs every 1,000 offers.
void BM_DebouncerOfferCoalesce(benchmark::State& state) {
  controller::Debouncer debouncer;
  const std::vector<std::string> keys = DebounceKeys();
  absl::Time now = absl::UnixEpoch();
  uint64_t item = 0;
  for (auto _ : state) {
    now += absl::Microseconds(100);
    benchmark::DoNotOptimize(
        debouncer.Offer(keys[item % keys.size()], absl::Seconds(1), item, now));
    if (++item % 1000 == 0) benchmark::DoNotOptimize(debouncer.TakeDue(now));
  }
}
BENCHMARK(BM_DebouncerOfferCoalesce);

dispatch::v1::Container MakeContainer(int index, int event_ids) {
  dispatch::v1::Container c;
  c.set_id(absl::StrCat("container", index));
  c.set_name(absl::StrCat("name", index));
  c.set_state(dispatch::v1::Container::RUNNING);
  for (int e = 0; e < event_ids; ++e) {
    (*c.mutable_labels())[absl::StrCat("subscription.route.e", e, ".container.command")] = "true";
  }
  return c;
}

// 10,000 subscriptions: range(0) containers, each subscribed to
// 10,000 / range(0) event ids, so every lookup returns range(0) targets.
void BM_IndexLookup(benchmark::State& state) {
  const int per_event = static_cast<int>(state.range(0));
  const int event_ids = 10000 / per_event;
  controller::SubscriptionIndex index("subscription");
  std::vector<dispatch::v1::Container> containers;
  for (int c = 0; c < per_event; ++c) containers.push_back(MakeContainer(c, event_ids));
  index.ReplaceAgentInventory("agent", containers);
  std::vector<std::string> ids;
  for (int e = 0; e < event_ids; ++e) ids.push_back(absl::StrCat("route.e", e));
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(index.Lookup(ids[i++ % ids.size()], "agent"));
  }
  state.counters["subscriptions"] = static_cast<double>(index.subscription_count());
}
BENCHMARK(BM_IndexLookup)->Arg(1)->Arg(10)->Arg(100);

void BM_IndexLookupMiss(benchmark::State& state) {
  controller::SubscriptionIndex index("subscription");
  std::vector<dispatch::v1::Container> containers;
  for (int c = 0; c < 100; ++c) containers.push_back(MakeContainer(c, 100));
  index.ReplaceAgentInventory("agent", containers);
  for (auto _ : state) benchmark::DoNotOptimize(index.Lookup("nobody.subscribes", "agent"));
}
BENCHMARK(BM_IndexLookupMiss);

// One container's labels change (a delta) with 10,000 subscriptions indexed.
void BM_IndexUpsertChangedContainer(benchmark::State& state) {
  controller::SubscriptionIndex index("subscription");
  std::vector<dispatch::v1::Container> containers;
  for (int c = 0; c < 100; ++c) containers.push_back(MakeContainer(c, 100));
  index.ReplaceAgentInventory("agent", containers);
  dispatch::v1::Container changed = containers[0];
  int n = 0;
  for (auto _ : state) {
    dispatch::v1::Container c = changed;
    (*c.mutable_labels())["subscription.probe.container.command"] = absl::StrCat("touch ", n++);
    index.UpsertContainer("agent", c);
  }
}
BENCHMARK(BM_IndexUpsertChangedContainer);

// A full relist of 10,000 subscriptions with nothing changed.
void BM_IndexReplaceInventoryUnchanged(benchmark::State& state) {
  controller::SubscriptionIndex index("subscription");
  std::vector<dispatch::v1::Container> containers;
  for (int c = 0; c < 100; ++c) containers.push_back(MakeContainer(c, 100));
  index.ReplaceAgentInventory("agent", containers);
  for (auto _ : state) index.ReplaceAgentInventory("agent", containers);
}
BENCHMARK(BM_IndexReplaceInventoryUnchanged);

// The Dispatcher's own work per delivered command, without gRPC: an agent
// with 100 containers sends batches of 100 events (`fanout` containers
// subscribe to each event id), and answers every Command it is sent as
// delivered, in one batch, as the real agent does. What a delivery costs
// the controller besides the session's reads and writes: admission,
// routing, the delivery queue, building the Command and the Delivered and
// Settled notices, the "delivered" line (written to /dev/null here) and
// settling. Items are delivered commands.
class CollectingLink : public controller::AgentLink {
 public:
  void Send(dispatch::v1::ControllerMessage message) override {
    sent.push_back(std::move(message));
  }
  void Close(const std::string&) override {}
  std::vector<dispatch::v1::ControllerMessage> sent;
};

void BM_DispatcherDeliveredCommand(benchmark::State& state) {
  const int fanout = static_cast<int>(state.range(0));
  const int event_ids = 100;  // per container
  const int containers = fanout;
  controller::DispatcherOptions options;
  controller::Dispatcher dispatcher(options, Clock::Real());
  CollectingLink link;
  dispatcher.AgentConnected("bench-agent", "bench-agent", &link);
  dispatch::v1::AgentMessage snapshot;
  snapshot.mutable_inventory_snapshot()->set_seq(1);
  // Not MakeContainer's short ids: Docker's are 64 characters, and lane
  // keys hold them.
  for (int c = 0; c < containers; ++c) {
    dispatch::v1::Container* container = snapshot.mutable_inventory_snapshot()->add_containers();
    container->set_id(absl::StrFormat("%064x", c + 1));
    container->set_name(absl::StrCat("bench-", c));
    container->set_state(dispatch::v1::Container::RUNNING);
    for (int e = 0; e < event_ids; ++e) {
      (*container->mutable_labels())[absl::StrCat("subscription.route.e", e,
                                                  ".container.command")] = "true";
    }
  }
  dispatcher.OnAgentMessage("bench-agent", snapshot);
  link.sent.clear();
  // The "delivered" lines go to /dev/null while it runs.
  const int saved_stderr = dup(STDERR_FILENO);
  const int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  dup2(null_fd, STDERR_FILENO);
  close(null_fd);

  const int events_per_batch = std::max(1, 100 / fanout);
  uint64_t generation = 0;
  int64_t commands = 0;
  dispatch::v1::AgentMessage events;
  dispatch::v1::AgentMessage answers;
  for (auto _ : state) {
    events.Clear();
    for (int i = 0; i < events_per_batch; ++i) {
      dispatch::v1::ObservedEvent* e = events.mutable_batch()->add_messages()->mutable_event();
      const int id = static_cast<int>(generation % event_ids);
      e->set_key(absl::StrCat("route/e", id));
      e->set_event_id(absl::StrCat("route.e", id));
      e->set_generation(++generation);
      e->set_payload("payload");
      e->set_observed_unix_nanos(absl::ToUnixNanos(absl::Now()));
    }
    dispatcher.OnAgentMessage("bench-agent", events);
    answers.Clear();
    for (dispatch::v1::ControllerMessage& m : link.sent) {
      if (!m.has_command()) continue;
      dispatch::v1::CommandResult* r =
          answers.mutable_batch()->add_messages()->mutable_command_result();
      r->set_command_id(m.command().command_id());
      r->set_outcome(dispatch::v1::CommandResult::DELIVERED);
      r->set_exec_id("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
      r->set_exec_create_sent_unix_nanos(absl::ToUnixNanos(absl::Now()));
      r->set_exec_start_sent_unix_nanos(absl::ToUnixNanos(absl::Now()));
      ++commands;
    }
    link.sent.clear();
    dispatcher.OnAgentMessage("bench-agent", answers);
    link.sent.clear();
  }
  dup2(saved_stderr, STDERR_FILENO);
  close(saved_stderr);
  if (dispatcher.stats().events_in_flight != 0) state.SkipWithError("events left unsettled");
  state.SetItemsProcessed(commands);
}
BENCHMARK(BM_DispatcherDeliveredCommand)->Arg(1)->Arg(10)->Arg(100);

}  // namespace
}  // namespace dispatchd

BENCHMARK_MAIN();
