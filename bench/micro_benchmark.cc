// Microbenchmarks of the per-event and per-container work: label parsing,
// event-id mapping, debouncer operations and subscription index lookups.
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "contract/event_id.h"
#include "benchmark/benchmark.h"
#include "controller/debouncer.h"
#include "contract/labels.h"
#include "controller/subscription_index.h"

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

}  // namespace
}  // namespace dispatchd

BENCHMARK_MAIN();
