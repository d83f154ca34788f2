// What the controller keeps per unsettled event, measured: a Dispatcher in
// this process (no gRPC, no agent: a link that drops what it is sent) is
// handed N events and none is settled; the bytes it allocated for them
// (jemalloc's stats.allocated, before and after), divided by N, is the
// cost of one unsettled event in each state an event can wait in:
//   - held: the agents' inventories are not fresh yet (start-up);
//   - queued for 1 subscriber, or for 10, whose agent has not answered.
// Payloads over 4 KiB are not kept (controller/event_ledger.h), so the
// largest cost is at 4 KiB whatever the file's size.
// Needs jemalloc (//common:allocator); without it every figure is -1.
#ifndef DISPATCHD_BENCH_UNSETTLED_BENCH_H_
#define DISPATCHD_BENCH_UNSETTLED_BENCH_H_

#include <cstdint>
#include <string>
#include <vector>

namespace dispatchd {
namespace bench {

struct UnsettledBenchOptions {
  int64_t events = 100000;
  std::vector<int64_t> payload_bytes = {0, 1024, 4096, 65536};
};

struct UnsettledResult {
  std::string state;  // "held", "queued, 1 subscriber", ...
  int64_t payload_bytes = 0;
  int64_t events = 0;
  int64_t unsettled = 0;  // events the controller held unsettled at the end (= events)
  double bytes_per_event = -1;
};

std::vector<UnsettledResult> RunUnsettledBenchmark(const UnsettledBenchOptions& options);
std::string UnsettledResultsMarkdown(const std::vector<UnsettledResult>& results);

}  // namespace bench
}  // namespace dispatchd

#endif  // DISPATCHD_BENCH_UNSETTLED_BENCH_H_
