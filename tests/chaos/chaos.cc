#include "tests/chaos/chaos.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "tests/testing/dispatchd_process.h"

namespace dispatchd::chaos {
namespace {

namespace fs = std::filesystem;

struct Written {
  int host = 0;
  std::string id;
  std::string payload;
  absl::Time at;
};

// Writes event files at a steady rate, three ways: renamed into place
// (most), written in place, and held open across a pause (some of them in
// a directory created just before), like the writers users have.
class Writer {
 public:
  Writer(ChaosCluster* cluster, uint64_t seed, double per_second)
      : cluster_(cluster), rng_(seed), interval_(absl::Seconds(1) / per_second) {}

  void Run(absl::Time until) {
    absl::Time next = absl::Now();
    while (absl::Now() < until) {
      WriteOne();
      next += interval_;
      if (const absl::Duration wait = next - absl::Now(); wait > absl::ZeroDuration()) {
        absl::SleepFor(wait);
      }
    }
    for (std::thread& t : slow_) t.join();
    slow_.clear();
  }

  std::vector<Written> written() {
    std::lock_guard<std::mutex> lock(mu_);
    return written_;
  }
  int64_t slow_writes() const { return slow_writes_; }

 private:
  void WriteOne() {
    std::uniform_int_distribution<int> host_dist(0, cluster_->hosts() - 1);
    std::uniform_int_distribution<int> dir_dist(0, kDirs - 1);
    std::uniform_int_distribution<int> name_dist(0, kNames - 1);
    std::uniform_real_distribution<double> unit(0, 1);
    const int host = host_dist(rng_);
    const std::string root = cluster_->events_dir(host);
    for (int attempt = 0; attempt < 20; ++attempt) {
      const int d = dir_dist(rng_);
      const int n = name_dist(rng_);
      const std::string dir = absl::StrCat(root, "/d", d);
      const std::string path = absl::StrCat(root, "/", EventPath(d, n));
      if (access(path.c_str(), F_OK) == 0) continue;  // still pending: another slot
      const std::string payload = absl::StrCat("p", ++seq_, "-end");
      const double how = unit(rng_);
      if (how < 0.1) {
        // A writer that pauses with its file open, often in a directory
        // created right before (the new directory's scan meets it).
        rmdir(dir.c_str());
        mkdir(dir.c_str(), 0755);
        const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) return;
        const std::string head = payload.substr(0, payload.size() - 3);
        (void)!write(fd, head.data(), head.size());
        Record(host, EventId(d, n), payload);
        ++slow_writes_;
        slow_.emplace_back([fd] {
          absl::SleepFor(absl::Milliseconds(300));
          (void)!write(fd, "end", 3);
          close(fd);
        });
      } else if (how < 0.4) {
        mkdir(dir.c_str(), 0755);
        Record(host, EventId(d, n), payload);
        testing::WriteFile(path, payload);
      } else {
        mkdir(dir.c_str(), 0755);
        const std::string scratch = root + "/.chaos-tmp";
        mkdir(scratch.c_str(), 0755);
        Record(host, EventId(d, n), payload);
        testing::WriteFileAtomically(path, payload, scratch);
      }
      return;
    }
  }

  void Record(int host, std::string id, std::string payload) {
    std::lock_guard<std::mutex> lock(mu_);
    written_.push_back(Written{host, std::move(id), std::move(payload), absl::Now()});
  }

  ChaosCluster* const cluster_;
  std::mt19937_64 rng_;
  const absl::Duration interval_;
  int64_t seq_ = 0;
  int64_t slow_writes_ = 0;
  std::vector<std::thread> slow_;
  std::mutex mu_;
  std::vector<Written> written_;
};

std::vector<Fault> FaultsOf(const ChaosOptions& options) {
  if (!options.faults.empty()) return options.faults;
  std::vector<Fault> faults = {Fault::kRestartDockerd};
  if (options.cluster.all_in_one) {
    faults.push_back(Fault::kKillAllInOne);
    faults.push_back(Fault::kKillAllInOne);
  } else {
    faults.push_back(Fault::kKillController);
    faults.push_back(Fault::kKillAgent);
  }
  if (options.cluster.churn) faults.push_back(Fault::kRecreateHandler);
  if (options.cluster.starter) faults.push_back(Fault::kStopStarter);
  if (options.cluster.forward) faults.push_back(Fault::kReceiverDown);
  return faults;
}

// Strikes one fault; returns how many execs it may have cut short.
absl::StatusOr<FaultRecord> Strike(ChaosCluster& cluster, Fault fault, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> host_dist(0, cluster.hosts() - 1);
  std::uniform_int_distribution<int> pause_ms(200, 1000);
  const int workers = cluster.options().exec_workers;
  FaultRecord record;
  record.fault = fault;
  absl::Status status;
  switch (fault) {
    case Fault::kKillController: {
      const absl::Duration pause = absl::Milliseconds(pause_ms(rng));
      status = cluster.KillController(pause);
      record.detail = absl::StrCat("restarted after ", absl::FormatDuration(pause));
      record.duplicate_allowance = workers * cluster.hosts();
      break;
    }
    case Fault::kKillAgent:
    case Fault::kKillAllInOne: {
      const int host = fault == Fault::kKillAgent ? host_dist(rng) : 0;
      const absl::Duration pause = absl::Milliseconds(pause_ms(rng));
      status = cluster.KillAgent(host, pause);
      record.detail = absl::StrCat("host-", host, ", restarted after ", absl::FormatDuration(pause));
      record.duplicate_allowance = workers;
      break;
    }
    case Fault::kRestartDockerd: {
      const int host = host_dist(rng);
      status = cluster.RestartDockerd(host);
      record.detail = absl::StrCat("host-", host);
      record.stopped_host = host;
      record.stopped_all_handlers = true;
      record.duplicate_allowance = workers;
      break;
    }
    case Fault::kRecreateHandler: {
      std::vector<std::string> ids;
      std::uniform_int_distribution<int> dir_dist(0, kDirs - 1);
      std::uniform_int_distribution<int> name_dist(0, kNames - 1);
      for (int i = 0; i < 3; ++i) ids.push_back(EventId(dir_dist(rng), name_dist(rng)));
      status = cluster.RecreateChurn(ids);
      record.detail = absl::StrCat("churn-0 now on ", absl::StrJoin(ids, " "));
      break;
    }
    case Fault::kStopStarter: {
      const int host = host_dist(rng);
      status = cluster.StopStarter(host);
      record.detail = absl::StrCat("starter-", host);
      record.stopped_host = host;
      break;
    }
    case Fault::kReceiverDown: {
      std::uniform_int_distribution<int> down_ms(500, 4000);
      const absl::Duration down = absl::Milliseconds(down_ms(rng));
      cluster.ReceiverDown();
      absl::SleepFor(down);
      status = cluster.ReceiverUp();
      record.detail = absl::StrCat("down for ", absl::FormatDuration(down));
      break;
    }
  }
  if (!status.ok()) return status;
  return record;
}

}  // namespace

const char* FaultName(Fault fault) {
  switch (fault) {
    case Fault::kKillController: return "kill -9 controller";
    case Fault::kKillAgent: return "kill -9 agent";
    case Fault::kKillAllInOne: return "kill -9 dispatchd (all-in-one)";
    case Fault::kRestartDockerd: return "dockerd restart";
    case Fault::kRecreateHandler: return "handler recreated with other labels";
    case Fault::kStopStarter: return "container.start subscriber stopped";
    case Fault::kReceiverDown: return "forwarding receiver down";
  }
  return "?";
}

absl::StatusOr<ChaosReport> RunChaos(ChaosOptions options) {
  const bool own_dir = options.dir.empty();
  if (own_dir) options.dir = testing::MakeTempDir("dispatchd-chaos");
  absl::StatusOr<std::unique_ptr<ChaosCluster>> started =
      ChaosCluster::Start(options.dir, options.cluster);
  if (!started.ok()) return started.status();
  ChaosCluster& cluster = **started;

  ChaosReport report;
  report.mode = options.cluster.all_in_one
                    ? "all-in-one"
                    : absl::StrCat("controller + ", cluster.hosts(), " agents");
  report.seed = options.seed;
  report.duration = options.duration;
  report.dir = options.dir;

  // Every agent connected and listed before the clock starts.
  absl::SleepFor(absl::Seconds(2));
  const absl::Time begin = absl::Now();
  const absl::Time until = begin + options.duration;
  Writer writer(&cluster, options.seed, options.events_per_second);
  std::thread writing([&] { writer.Run(until); });

  std::mt19937_64 rng(options.seed ^ 0x9e3779b97f4a7c15ULL);
  const std::vector<Fault> faults = FaultsOf(options);
  std::uniform_int_distribution<size_t> pick(0, faults.size() - 1);
  std::uniform_real_distribution<double> spread(0.5, 1.5);
  absl::Status fault_error;
  while (true) {
    const absl::Time at = absl::Now() + options.fault_interval * spread(rng);
    if (at >= until) break;
    absl::SleepFor(at - absl::Now());
    const Fault fault = faults[pick(rng)];
    absl::StatusOr<FaultRecord> record = Strike(cluster, fault, rng);
    if (!record.ok()) {
      fault_error = record.status();
      break;
    }
    record->at = at - begin;
    report.duplicate_bound += record->duplicate_allowance;
    report.faults.push_back(*std::move(record));
  }
  writing.join();
  if (!fault_error.ok()) return fault_error;
  const std::vector<Written> written = writer.written();
  report.events_written = static_cast<int64_t>(written.size());
  report.slow_writes = writer.slow_writes();

  // Drain: every file settled, then the handlers' last lines written.
  const absl::Time last_write = absl::Now();
  testing::WaitFor([&] { return cluster.Unsettled().empty(); }, options.drain_timeout);
  report.drain = absl::Now() - last_write;
  report.unsettled = cluster.Unsettled();
  std::set<std::string> whole;
  for (const Written& w : written) whole.insert(w.payload);
  auto all_forwarded = [&] {
    if (!options.cluster.forward) return true;
    const std::vector<std::string> got = cluster.Forwarded();
    const std::set<std::string> seen(got.begin(), got.end());
    return std::includes(seen.begin(), seen.end(), whole.begin(), whole.end());
  };
  testing::WaitFor(all_forwarded, absl::Seconds(30));
  absl::SleepFor(absl::Seconds(2));  // execs started last finish their echo

  // The audit.
  const std::set<std::string> dead = cluster.DeadLetteredPayloads();
  for (const auto& [where, note] : cluster.DeadLetters()) {
    ++report.dead_lettered;
    if (note.empty()) ++report.dead_letters_without_note;
    if (report.dead_letter_notes.size() < 3) {
      report.dead_letter_notes.push_back(absl::StrCat(where.second, ": ", note));
    }
  }
  std::map<std::string, std::vector<const Written*>> by_id;
  for (const Written& w : written) by_id[w.id].push_back(&w);
  const std::map<std::string, std::vector<std::string>> runs = cluster.Runs();
  // A fault stopped `handler`'s container at most kStopWindow after an
  // event written at `written` (since the run began).
  auto StoppedWhileOnItsWay = [&](const std::string& handler, absl::Duration written) {
    const int host = std::atoi(handler.substr(handler.rfind('-') + 1).c_str());
    const bool starter = handler.rfind("starter-", 0) == 0;
    for (const FaultRecord& f : report.faults) {
      if (f.stopped_host != host || (!f.stopped_all_handlers && !starter)) continue;
      if (written <= f.at && f.at - written <= kStopWindow) return true;
    }
    return false;
  };
  const absl::Duration debounce_slack =
      absl::Milliseconds(options.cluster.debounce_ms) + absl::Seconds(2);
  auto missing = [&](const std::string& handler, const std::string& what) {
    ++report.missing;
    if (report.missing_examples.size() < 10) {
      report.missing_examples.push_back(absl::StrCat(handler, ": ", what));
    }
  };
  for (const auto& [handler, payloads] : runs) {
    std::map<std::string, int> count;
    for (const std::string& p : payloads) {
      ++report.runs;
      if (whole.count(p) == 0) {
        ++report.partial;
        continue;
      }
      ++count[p];
    }
    for (const auto& [p, n] : count) report.duplicates += n - 1;
  }
  for (const std::string& handler : cluster.LastingHandlers()) {
    auto it = runs.find(handler);
    std::set<std::string> ran;
    if (it != runs.end()) ran.insert(it->second.begin(), it->second.end());
    for (const std::string& id : cluster.IdsOf(handler)) {
      auto writes = by_id.find(id);
      if (writes == by_id.end()) continue;
      if (!cluster.IsDebounced(handler)) {
        for (const Written* w : writes->second) {
          if (ran.count(w->payload) == 0 && dead.count(w->payload) == 0) {
            if (StoppedWhileOnItsWay(handler, w->at - begin)) {
              ++report.missing_at_stop;
              continue;
            }
            missing(handler, absl::StrCat(w->payload, " (", id, " on host-", w->host, ")"));
          }
        }
        continue;
      }
      const absl::Time last = writes->second.back()->at;
      bool reached = false, all_dead = true;
      for (const Written* w : writes->second) {
        if (w->at < last - debounce_slack) continue;
        reached |= ran.count(w->payload) != 0;
        all_dead &= dead.count(w->payload) != 0;
      }
      if (!reached && !all_dead) {
        if (StoppedWhileOnItsWay(handler, last - begin)) {
          ++report.missing_at_stop;
        } else {
          missing(handler, absl::StrCat("the last writes of ", id));
        }
      }
    }
  }
  if (options.cluster.forward) {
    const std::vector<std::string> got = cluster.Forwarded();
    const std::set<std::string> seen(got.begin(), got.end());
    for (const std::string& p : whole) report.forwarded_missing += seen.count(p) == 0 ? 1 : 0;
    report.forwarded_repeats = static_cast<int64_t>(got.size() - seen.size());
  }
  if (!report.ok()) {
    std::cerr << cluster.Logs();
  } else if (own_dir) {
    started->reset();
    testing::RemoveTree(options.dir);
    report.dir.clear();
  }
  return report;
}

std::string ChaosReport::Summary() const {
  std::map<std::string, int> by_kind;
  for (const FaultRecord& f : faults) ++by_kind[FaultName(f.fault)];
  std::vector<std::string> kinds;
  for (const auto& [name, n] : by_kind) kinds.push_back(absl::StrCat(n, "× ", name));
  std::string out = absl::StrFormat(
      "| %s | %d | %s | %d | %d (%d slow) | %d | %d / %d | %d | %d | %d | %s | %s |\n", mode, seed,
      absl::FormatDuration(duration), faults.size(), events_written, slow_writes, runs,
      duplicates, duplicate_bound, missing, partial, dead_lettered,
      absl::FormatDuration(absl::Trunc(drain, absl::Milliseconds(100))), ok() ? "pass" : "FAIL");
  absl::StrAppend(&out, "\nFaults: ", absl::StrJoin(kinds, ", "), ".\n");
  for (const FaultRecord& f : faults) {
    absl::StrAppend(&out, "- ", absl::FormatDuration(absl::Trunc(f.at, absl::Milliseconds(100))),
                    ": ", FaultName(f.fault), " (", f.detail, ")\n");
  }
  absl::StrAppend(&out, "Runs missing on a handler a fault stopped while the event was on its way "
                  "(the exec may have been killed before its first line): ",
                  missing_at_stop, ".\n");
  absl::StrAppend(&out, "Forwarding: ", forwarded_missing, " events missing, ", forwarded_repeats,
                  " repeats. Dead letters without a note: ", dead_letters_without_note,
                  ". Files left unsettled: ", unsettled.size(), ".\n");
  for (const std::string& m : missing_examples) absl::StrAppend(&out, "- missing: ", m, "\n");
  for (const std::string& d : dead_letter_notes) absl::StrAppend(&out, "- dead letter: ", d, "\n");
  for (size_t i = 0; i < unsettled.size() && i < 10; ++i) {
    absl::StrAppend(&out, "- unsettled: ", unsettled[i], "\n");
  }
  if (!dir.empty()) absl::StrAppend(&out, "Kept in ", dir, "\n");
  return out;
}

}  // namespace dispatchd::chaos
