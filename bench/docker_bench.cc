#include "bench/docker_bench.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <regex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/docker_client.h"
#include "bench/bench_util.h"
#include "bench/floor_client.h"
#include "common/status_macros.h"
#include "tests/testing/dispatchd_process.h"

namespace dispatchd {
namespace bench {
namespace {

using testing::DispatchdProcess;
using testing::PrivateDockerd;

constexpr absl::Duration kSignalTimeout = absl::Seconds(30);

absl::Status MakeDir(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", path, ": ", ec.message()));
  return absl::OkStatus();
}

bool WaitGone(const std::string& path, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  struct stat st;
  while (stat(path.c_str(), &st) == 0) {
    if (absl::Now() > deadline) return false;
    usleep(500);
  }
  return true;
}

// Waits until no event file is left under `dir`; returns when that was seen.
std::optional<absl::Time> WaitAllGone(const std::string& dir, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (CountFiles(dir) != 0) {
    if (absl::Now() > deadline) return std::nullopt;
    usleep(2000);
  }
  return absl::Now();
}

void ClearDir(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::filesystem::remove_all(entry.path(), ec);
  }
}

std::string BurstName(int container, int file) {
  return absl::StrFormat("c%d-f%04d", container, file);
}

// The shell pipeline of the issue, as a user would write it.
std::string ShellLatencyScript(const std::string& events_dir, const std::string& docker_host) {
  return absl::StrCat("inotifywait -m -r -e close_write,moved_to '", events_dir,
                      "' | while read dir ev file; do docker -H '", docker_host,
                      "' exec bench-lat touch /signal/done; rm -f \"$dir$file\"; done");
}

// The same for the burst: the container is the file's directory name.
std::string ShellBurstScript(const std::string& events_dir, const std::string& docker_host) {
  return absl::StrCat(
      "inotifywait -m -r -e close_write,moved_to '", events_dir,
      "' | while read dir ev file; do c=${dir%/}; c=${c##*/}; docker -H '", docker_host,
      "' exec bench-burst-$c touch /signal/$c-$file; rm -f \"$dir$file\"; done");
}

absl::StatusOr<std::unique_ptr<ShellProcess>> StartShell(const std::string& script,
                                                         const std::string& log_path) {
  ASSIGN_OR_RETURN(std::unique_ptr<ShellProcess> shell, ShellProcess::Start(script, log_path));
  if (!testing::WaitFor(
          [&] { return shell->Log().find("Watches established") != std::string::npos; },
          absl::Seconds(30))) {
    return absl::DeadlineExceededError(
        absl::StrCat("the shell pipeline did not start: ", shell->Log()));
  }
  return shell;
}

// "file observed -> exec create sent X ms, -> exec start sent Y ms" of every
// delivery of `event_id` in dispatchd's log, in order.
void ParseInternal(const std::string& log, const std::string& event_id, int skip,
                   std::vector<double>* create_ms, std::vector<double>* start_ms) {
  const std::string marker = absl::StrCat("delivered ", event_id, " to ");
  int seen = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (line.find(marker) == absl::string_view::npos) continue;
    const size_t c = line.find("exec create sent ");
    const size_t s = line.find("exec start sent ");
    if (c == absl::string_view::npos || s == absl::string_view::npos) continue;
    if (seen++ < skip) continue;
    double create = 0, start = 0;
    absl::string_view cv = line.substr(c + 17);
    absl::string_view sv = line.substr(s + 16);
    cv = cv.substr(0, cv.find(' '));
    sv = sv.substr(0, sv.find(' '));
    if (absl::SimpleAtod(cv, &create) && absl::SimpleAtod(sv, &start)) {
      create_ms->push_back(create);
      start_ms->push_back(start);
    }
  }
}

std::vector<std::string> HandlerEnv(const std::string& event_id, const std::string& path) {
  return {absl::StrCat("DISPATCH_EVENT_ID=", event_id), "DISPATCH_EVENT_HOST=bench",
          absl::StrCat("DISPATCH_EVENT_PATH=", path), "DISPATCH_EVENT_PAYLOAD=x"};
}

}  // namespace

absl::StatusOr<DockerBenchResults> RunDockerBenchmarks(PrivateDockerd& daemon,
                                                       const DockerBenchOptions& options) {
  DockerBenchResults results;
  results.burst_files = options.burst_files;
  results.burst_containers = options.burst_containers;
  results.floor_parallelism = options.floor_parallelism;
  RETURN_IF_ERROR(daemon.EnsureBusyboxImage());
  ASSIGN_OR_RETURN(results.docker_version,
                   daemon.Docker({"version", "--format", "{{.Server.Version}}"}));

  const std::string& work = options.work_dir;
  const std::string sig_lat = work + "/signal-latency";
  const std::string sig_burst = work + "/signal-burst";
  const std::string events_d = work + "/events-dispatchd";
  const std::string events_s = work + "/events-shell";
  const std::string events_sb = work + "/events-shell-burst";
  for (const std::string& d : {sig_lat, sig_burst, events_d + "/bench", events_s + "/bench",
                               events_sb}) {
    RETURN_IF_ERROR(MakeDir(d));
  }
  const int per_container = options.burst_files / options.burst_containers;
  for (int c = 0; c < options.burst_containers; ++c) {
    RETURN_IF_ERROR(MakeDir(absl::StrCat(events_d, "/burst/c", c)));
    RETURN_IF_ERROR(MakeDir(absl::StrCat(events_sb, "/c", c)));
  }

  // Handler containers: the same for every contender.
  std::vector<std::string> containers;
  auto cleanup_containers = [&] {
    for (const std::string& name : containers) daemon.Docker({"rm", "-f", name}).IgnoreError();
  };
  struct Cleanup {
    std::function<void()> f;
    ~Cleanup() { f(); }
  } cleanup{cleanup_containers};
  auto run = [&](const std::string& name, const std::string& sig,
                 const std::vector<std::pair<std::string, std::string>>& labels)
      -> absl::StatusOr<std::string> {
    std::vector<std::string> args = {"run", "-d", "--network", "none", "--name", name,
                                     "-v", sig + ":/signal"};
    for (const auto& [k, v] : labels) {
      args.push_back("--label");
      args.push_back(absl::StrCat(k, "=", v));
    }
    args.insert(args.end(), {PrivateDockerd::kBusyboxImage, "sleep", "86400"});
    containers.push_back(name);
    return daemon.Docker(args);
  };
  ASSIGN_OR_RETURN(const std::string lat_id,
                   run("bench-lat", sig_lat,
                       {{"subscription.bench.lat.container.command", "touch /signal/done"}}));
  std::vector<std::string> burst_ids;
  for (int c = 0; c < options.burst_containers; ++c) {
    std::vector<std::pair<std::string, std::string>> labels;
    for (int f = 0; f < per_container; ++f) {
      labels.push_back({absl::StrFormat("subscription.burst.c%d.f%04d.container.command", c, f),
                        absl::StrCat("touch /signal/", BurstName(c, f))});
    }
    ASSIGN_OR_RETURN(std::string id, run(absl::StrCat("bench-burst-c", c), sig_burst, labels));
    burst_ids.push_back(id);
  }

  ASSIGN_OR_RETURN(std::unique_ptr<agent::DockerApi> docker,
                   agent::NewDockerClient(agent::DockerClientOptions{daemon.host()}));
  RETURN_IF_ERROR(docker->Version().status());
  ASSIGN_OR_RETURN(std::unique_ptr<CreatedFiles> lat_signals, CreatedFiles::Watch(sig_lat));
  ASSIGN_OR_RETURN(std::unique_ptr<CreatedFiles> burst_signals, CreatedFiles::Watch(sig_burst));

  ASSIGN_OR_RETURN(
      std::unique_ptr<DispatchdProcess> dispatchd,
      DispatchdProcess::Start({"all-in-one", "--events-dir", events_d, "--docker-host",
                               daemon.host(), "--exec-workers",
                               absl::StrCat(options.exec_workers), "--log-level", "info"},
                              work + "/dispatchd.log"));
  if (!testing::WaitFor([&] { return dispatchd->Log().find("inventory:") != std::string::npos; })) {
    return absl::DeadlineExceededError(
        absl::StrCat("dispatchd did not report its inventory: ", dispatchd->Log()));
  }

  // ---- Latency: floor, dispatchd, shell, alternating. ----
  {
    ASSIGN_OR_RETURN(std::unique_ptr<ShellProcess> shell,
                     StartShell(ShellLatencyScript(events_s, daemon.host()),
                                work + "/shell-latency.log"));
    const std::string done = sig_lat + "/done";
    auto settle_signal = [&] {
      unlink(done.c_str());
      lat_signals->Reset();
      absl::SleepFor(absl::Milliseconds(20));
    };
    // The floor: one persistent connection, exec create then start, the
    // smallest bodies (bench/floor_client.h).
    ASSIGN_OR_RETURN(std::unique_ptr<FloorClient> floor, FloorClient::Connect(daemon.host()));
    std::vector<double> floor_create;
    auto floor_once = [&]() -> absl::StatusOr<double> {
      const absl::Time t0 = absl::Now();
      absl::Time start_sent;
      RETURN_IF_ERROR(floor->Exec(lat_id, {"touch", "/signal/done"}, &start_sent));
      floor_create.push_back(absl::ToDoubleMilliseconds(start_sent - t0));
      std::optional<absl::Time> t1 = lat_signals->WaitFor("done", kSignalTimeout);
      if (!t1.has_value()) return absl::DeadlineExceededError("floor: no signal");
      settle_signal();
      return absl::ToDoubleMilliseconds(*t1 - t0);
    };
    auto file_once = [&](const std::string& events, const char* who) -> absl::StatusOr<double> {
      const std::string file = events + "/bench/lat";
      ASSIGN_OR_RETURN(absl::Time t0, WriteAndClose(file, "x"));
      std::optional<absl::Time> t1 = lat_signals->WaitFor("done", kSignalTimeout);
      if (!t1.has_value()) return absl::DeadlineExceededError(absl::StrCat(who, ": no signal"));
      if (!WaitGone(file, kSignalTimeout)) {
        return absl::DeadlineExceededError(absl::StrCat(who, ": file not settled"));
      }
      settle_signal();
      return absl::ToDoubleMilliseconds(*t1 - t0);
    };
    for (int i = 0; i < options.latency_warmup + options.latency_events; ++i) {
      ASSIGN_OR_RETURN(double f, floor_once());
      ASSIGN_OR_RETURN(double d, file_once(events_d, "dispatchd"));
      ASSIGN_OR_RETURN(double s, file_once(events_s, "shell"));
      if (i < options.latency_warmup) continue;
      results.floor_create_ms.push_back(floor_create.back());
      results.floor_ms.push_back(f);
      results.dispatchd_ms.push_back(d);
      results.shell_ms.push_back(s);
    }
    absl::SleepFor(absl::Milliseconds(200));  // the last delivery's log line
    ParseInternal(dispatchd->Log(), "bench.lat", options.latency_warmup,
                  &results.internal_create_ms, &results.internal_start_ms);
  }
  results.dispatchd_idle_rss_kib = ResidentKib(dispatchd->pid());

  // ---- Burst: floor, dispatchd, shell per round. ----
  {
    ASSIGN_OR_RETURN(std::unique_ptr<ShellProcess> shell,
                     StartShell(ShellBurstScript(events_sb, daemon.host()),
                                work + "/shell-burst.log"));
    const size_t total = static_cast<size_t>(per_container) * options.burst_containers;
    auto between_rounds = [&] {
      absl::SleepFor(absl::Seconds(1));  // let the last execs finish
      ClearDir(sig_burst);
      burst_signals->Reset();
    };
    auto write_files = [&](const std::string& root) -> absl::Status {
      for (int f = 0; f < per_container; ++f) {
        for (int c = 0; c < options.burst_containers; ++c) {
          RETURN_IF_ERROR(
              WriteAndClose(absl::StrFormat("%s/c%d/f%04d", root, c, f), "x").status());
        }
      }
      return absl::OkStatus();
    };
    auto files_run = [&](const std::string& root, const std::string& tree,
                         const char* who) -> absl::StatusOr<double> {
      const absl::Time t0 = absl::Now();
      RETURN_IF_ERROR(write_files(root));
      std::optional<absl::Time> ran = burst_signals->WaitCount(total, absl::Minutes(10));
      if (!ran.has_value()) {
        return absl::DeadlineExceededError(absl::StrCat(
            who, ": only ", burst_signals->count(), " of ", total, " handlers ran"));
      }
      std::optional<absl::Time> settled = WaitAllGone(tree, absl::Minutes(5));
      if (!settled.has_value()) {
        return absl::DeadlineExceededError(absl::StrCat(who, ": files not settled"));
      }
      return absl::ToDoubleSeconds(std::max(*ran, *settled) - t0);
    };
    auto floor_run = [&]() -> absl::StatusOr<double> {
      std::atomic<int> next{0};
      std::atomic<int> failures{0};
      const absl::Time t0 = absl::Now();
      std::vector<std::thread> threads;
      for (int t = 0; t < options.floor_parallelism; ++t) {
        threads.emplace_back([&] {
          for (int i = next++; i < static_cast<int>(total); i = next++) {
            const int c = i % options.burst_containers;
            const int f = i / options.burst_containers;
            const std::string name = BurstName(c, f);
            for (int attempt = 0; attempt < 5; ++attempt) {
              absl::StatusOr<std::string> exec = docker->CreateExec(
                  burst_ids[c], {"touch", "/signal/" + name},
                  HandlerEnv(absl::StrFormat("burst.c%d.f%04d", c, f), name));
              if (exec.ok() && docker->StartExec(*exec).ok()) break;
              ++failures;
            }
          }
        });
      }
      for (std::thread& t : threads) t.join();
      std::optional<absl::Time> ran = burst_signals->WaitCount(total, absl::Minutes(5));
      if (!ran.has_value()) {
        return absl::DeadlineExceededError(absl::StrCat("floor: only ", burst_signals->count(),
                                                        " of ", total, " handlers ran (",
                                                        failures.load(), " failed calls)"));
      }
      return absl::ToDoubleSeconds(*ran - t0);
    };
    for (int round = 0; round < options.burst_rounds; ++round) {
      BurstRound r;
      between_rounds();
      ASSIGN_OR_RETURN(r.floor_s, floor_run());
      between_rounds();
      ASSIGN_OR_RETURN(r.dispatchd_s, files_run(events_d + "/burst", events_d, "dispatchd"));
      between_rounds();
      ASSIGN_OR_RETURN(r.shell_s, files_run(events_sb, events_sb, "shell"));
      std::cerr << absl::StrFormat("burst round %d: floor %.2f s, dispatchd %.2f s, shell %.2f s\n",
                                   round + 1, r.floor_s, r.dispatchd_s, r.shell_s);
      results.burst.push_back(r);
    }
  }
  results.dispatchd_peak_rss_kib = PeakResidentKib(dispatchd->pid());
  if (!dispatchd->Terminate().ok()) std::cerr << "dispatchd did not stop cleanly\n";
  return results;
}

std::string DockerResultsMarkdown(const DockerBenchResults& r) {
  std::string out;
  const Summary fl = Summarize(r.floor_ms);
  const Summary di = Summarize(r.dispatchd_ms);
  const Summary sh = Summarize(r.shell_ms);
  const Summary ic = Summarize(r.internal_create_ms);
  const Summary is = Summarize(r.internal_start_ms);
  absl::StrAppend(&out, "### 1. Latency: file closed -> handler command running\n\n",
                  fl.n, " events per contender, alternating (floor, dispatchd, shell). ",
                  "Milliseconds.\n\n",
                  "| contender | p50 | p90 | p99 | min | max |\n|---|---|---|---|---|---|\n");
  auto row = [&out](const std::string& name, const Summary& s) {
    absl::StrAppend(&out, "| ", name, " | ", Ms(s.p50), " | ", Ms(s.p90), " | ", Ms(s.p99),
                    " | ", Ms(s.min), " | ", Ms(s.max), " |\n");
  };
  row("floor: one kept connection, exec create + start", fl);
  row("dispatchd all-in-one", di);
  row("shell: inotifywait \\| docker exec", sh);
  row("dispatchd's own: file observed -> exec create sent", ic);
  row("dispatchd's own: file observed -> exec start sent", is);
  std::vector<double> create_to_start;
  for (size_t i = 0; i < r.internal_create_ms.size() && i < r.internal_start_ms.size(); ++i) {
    create_to_start.push_back(r.internal_start_ms[i] - r.internal_create_ms[i]);
  }
  row("dispatchd: exec create sent -> exec start sent", Summarize(create_to_start));
  row("floor: exec create sent -> exec start sent", Summarize(r.floor_create_ms));
  absl::StrAppend(&out, "\n| ratio | p50 | p90 | p99 |\n|---|---|---|---|\n");
  absl::StrAppend(&out, "| dispatchd - floor (ms) | ", Ms(di.p50 - fl.p50), " | ",
                  Ms(di.p90 - fl.p90), " | ", Ms(di.p99 - fl.p99), " |\n");
  auto ratio = [](double a, double b) { return b > 0 ? absl::StrFormat("%.3f", a / b) : "n/a"; };
  absl::StrAppend(&out, "| dispatchd / shell | ", ratio(di.p50, sh.p50), " | ",
                  ratio(di.p90, sh.p90), " | ", ratio(di.p99, sh.p99), " |\n");
  absl::StrAppend(&out, "| dispatchd / floor | ", ratio(di.p50, fl.p50), " | ",
                  ratio(di.p90, fl.p90), " | ", ratio(di.p99, fl.p99), " |\n\n");

  absl::StrAppend(&out, "### 2. Burst: ", r.burst_files, " files at once, ", r.burst_containers,
                  " subscribed containers\n\n",
                  "Seconds until every handler ran and every file is settled (floor: every "
                  "handler ran; ", r.floor_parallelism, " parallel API calls).\n\n",
                  "| round | floor | dispatchd | shell | dispatchd / floor rate | "
                  "floor execs/s | dispatchd execs/s | shell execs/s |\n"
                  "|---|---|---|---|---|---|---|---|\n");
  std::vector<double> fraction, fr, dr, sr, fs, ds, ss;
  for (size_t i = 0; i < r.burst.size(); ++i) {
    const BurstRound& b = r.burst[i];
    const double f = r.burst_files / b.floor_s, d = r.burst_files / b.dispatchd_s,
                 s = r.burst_files / b.shell_s;
    fraction.push_back(d / f);
    fr.push_back(f), dr.push_back(d), sr.push_back(s);
    fs.push_back(b.floor_s), ds.push_back(b.dispatchd_s), ss.push_back(b.shell_s);
    absl::StrAppend(&out, absl::StrFormat("| %d | %.2f s | %.2f s | %.2f s | %.1f%% | %.1f | "
                                          "%.1f | %.1f |\n",
                                          i + 1, b.floor_s, b.dispatchd_s, b.shell_s,
                                          100 * d / f, f, d, s));
  }
  absl::StrAppend(&out, absl::StrFormat("| median | %.2f s | %.2f s | %.2f s | %.1f%% | %.1f | "
                                        "%.1f | %.1f |\n\n",
                                        Median(fs), Median(ds), Median(ss),
                                        100 * Median(fraction), Median(fr), Median(dr),
                                        Median(sr)));
  absl::StrAppend(&out, absl::StrFormat(
                            "dispatchd all-in-one resident memory: %.1f MiB after the latency "
                            "run, peak %.1f MiB (VmHWM) after the bursts.\n\n",
                            r.dispatchd_idle_rss_kib / 1024.0, r.dispatchd_peak_rss_kib / 1024.0));
  return out;
}

}  // namespace bench
}  // namespace dispatchd
