// Microbenchmarks: Broadcaster fan-out and Queue throughput.
//   bazel run -c opt //sinks:sinks_benchmark
// Figures and the machine they came from: docs/benchmarks.md.
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "sinks/broadcaster.h"
#include "sinks/queue.h"

namespace dispatchd {
namespace sinks {
namespace {

// The cheapest possible destination, so the figures measure the sinks.
class CountingSink final : public Sink {
 public:
  absl::Status Write(EventPtr event) override {
    if (event == nullptr) return absl::InvalidArgumentError("null event");
    count_.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }
  absl::Status Close() override { return absl::OkStatus(); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> count_{0};
};

EventPtr BenchEvent() {
  auto event = std::make_shared<Event>();
  event->id = "bench.event";
  event->payload = std::string(256, 'x');
  event->source_host = "host-a";
  event->path = "bench/event";
  return event;
}

// One Write to a Broadcaster with N members.
void BM_BroadcasterFanOut(benchmark::State& state) {
  const int members = static_cast<int>(state.range(0));
  std::vector<std::shared_ptr<Sink>> sinks;
  for (int i = 0; i < members; ++i) sinks.push_back(std::make_shared<CountingSink>());
  Broadcaster broadcaster(sinks);
  const EventPtr event = BenchEvent();
  for (auto _ : state) {
    benchmark::DoNotOptimize(broadcaster.Write(event));
  }
  state.SetItemsProcessed(state.iterations());  // events broadcast
  state.counters["deliveries/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * members,
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_BroadcasterFanOut)->Arg(1)->Arg(10)->Arg(100);

// Single producer, unbounded Queue, end to end: each iteration enqueues a
// batch and waits until the worker has delivered it.
void BM_QueueSingleProducer(benchmark::State& state) {
  constexpr int kBatch = 1000;
  auto dst = std::make_shared<CountingSink>();
  Queue queue(dst);
  const EventPtr event = BenchEvent();
  uint64_t sent = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) benchmark::DoNotOptimize(queue.Write(event));
    sent += kBatch;
    while (dst->count() < sent) std::this_thread::yield();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  queue.Close().IgnoreError();
}
BENCHMARK(BM_QueueSingleProducer)->UseRealTime();

// Several producers into one bounded blocking Queue (capacity 1024): the
// producers are held to what the single worker delivers, so this is the
// sustained multi-producer rate.
std::shared_ptr<CountingSink> g_dst;
std::unique_ptr<Queue> g_queue;

void BM_QueueMultiProducer(benchmark::State& state) {
  if (state.thread_index() == 0) {
    g_dst = std::make_shared<CountingSink>();
    g_queue = std::make_unique<Queue>(
        g_dst, Queue::Options{.capacity = 1024, .policy = OverflowPolicy::kBlock});
  }
  const EventPtr event = BenchEvent();
  for (auto _ : state) {
    benchmark::DoNotOptimize(g_queue->Write(event));
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    g_queue->Close().IgnoreError();
    g_queue.reset();
    g_dst.reset();
  }
}
BENCHMARK(BM_QueueMultiProducer)->Threads(1)->Threads(2)->Threads(4)->Threads(8)->UseRealTime();

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
