// The chaos run: event files written continuously into many directories of
// a ChaosCluster while faults strike at random (seeded) moments, then a
// drain and an audit of what the handlers ran. `make chaos` runs it for
// minutes; `make test` runs a short version (tests/chaos/chaos_test.cc).
//
// The audit (ChaosReport):
//   - every file is settled: deleted, or in .dead-letter/ with its
//     .error.json;
//   - every event reached every handler that lasted the whole run and
//     subscribes to it, at least once (a debounced handler: for each id,
//     one of the payloads written in its last debounce window or later);
//   - no handler ran a payload that was never written whole (a file read
//     while its writer still held it);
//   - runs beyond the first (duplicates) are at most the bound: for each
//     kill or daemon restart, the execs that could be running then
//     (exec workers per agent whose work was cut);
//   - the forwarding receiver got every event.
#ifndef DISPATCHD_TESTS_CHAOS_CHAOS_H_
#define DISPATCHD_TESTS_CHAOS_CHAOS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/chaos/cluster.h"

namespace dispatchd::chaos {

enum class Fault {
  kKillController,
  kKillAgent,
  kKillAllInOne,
  kRestartDockerd,
  kRecreateHandler,
  kStopStarter,
  kReceiverDown,
};
const char* FaultName(Fault fault);

struct ChaosOptions {
  ClusterOptions cluster;
  uint64_t seed = 1;
  // How long events are written and faults strike; then the drain.
  absl::Duration duration = absl::Seconds(60);
  double events_per_second = 10;
  // Mean time between faults (each between half and one and a half times).
  absl::Duration fault_interval = absl::Seconds(6);
  // The faults drawn from; empty: every fault the mode has.
  std::vector<Fault> faults;
  absl::Duration drain_timeout = absl::Seconds(240);
  // Where the cluster works; empty: a new temporary directory, removed
  // after a clean run.
  std::string dir;
};

struct FaultRecord {
  absl::Duration at;  // since the run began
  Fault fault;
  std::string detail;
  int duplicate_allowance = 0;  // execs that may have been running
  // The host whose handler containers it stopped (a dockerd restart, the
  // container.start subscriber stopped), or -1.
  int stopped_host = -1;
  bool stopped_all_handlers = false;  // dockerd restart: every handler there
};

inline constexpr absl::Duration kStopWindow = absl::Seconds(60);

struct ChaosReport {
  std::string mode;
  uint64_t seed = 0;
  absl::Duration duration;
  int64_t events_written = 0;
  int64_t slow_writes = 0;  // files held open across a pause
  std::vector<FaultRecord> faults;
  int64_t runs = 0;             // handler runs counted
  int64_t missing = 0;          // (event, lasting handler) never run
  std::vector<std::string> missing_examples;
  // Never run on a handler whose container a fault stopped while the event
  // was on its way (written at most kStopWindow before the fault): the exec
  // may have started (DELIVERED) and been killed with the container before
  // its first line. Reported, not failed.
  int64_t missing_at_stop = 0;
  int64_t partial = 0;          // runs of a payload never written whole
  int64_t duplicates = 0;       // runs beyond the first
  int64_t duplicate_bound = 0;  // sum of the faults' allowances
  int64_t dead_lettered = 0;
  int64_t dead_letters_without_note = 0;
  std::vector<std::string> dead_letter_notes;  // the first few
  std::vector<std::string> unsettled;  // files left in place
  int64_t forwarded_missing = 0;
  int64_t forwarded_repeats = 0;
  absl::Duration drain;  // from the last write to every file settled
  std::string dir;

  bool ok() const {
    return missing == 0 && partial == 0 && duplicates <= duplicate_bound &&
           dead_letters_without_note == 0 && unsettled.empty() && forwarded_missing == 0;
  }
  // One row of docs/reliability.md's table, and the details below it.
  std::string Summary() const;
};

absl::StatusOr<ChaosReport> RunChaos(ChaosOptions options);

}  // namespace dispatchd::chaos

#endif  // DISPATCHD_TESTS_CHAOS_CHAOS_H_
