#include "bench/fleet_bench.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "bench/fleet.h"
#include "common/status_macros.h"
#include "tests/testing/dispatchd_process.h"

extern char** environ;

namespace dispatchd {
namespace bench {
namespace {

using testing::DispatchdProcess;

double Since(absl::Time from, absl::Time t) { return absl::ToDoubleSeconds(t - from); }

// Soft RLIMIT_NOFILE raised to the hard limit; returns the soft limit now.
int64_t RaiseNoFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return -1;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  return static_cast<int64_t>(limit.rlim_cur);
}

int64_t NoFileLimitOf(pid_t pid) {
  rlimit limit{};
  if (prlimit(pid, RLIMIT_NOFILE, nullptr, &limit) != 0) return -1;
  return static_cast<int64_t>(limit.rlim_cur);
}

int ThreadsOf(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    int n = 0;
    if (absl::ConsumePrefix(&rest, "Threads:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &n)) {
      return n;
    }
  }
  return -1;
}

// The value of an unlabelled gauge (or of `name{labels}`) in a Prometheus
// text exposition; -1 if absent.
double MetricValue(const std::string& body, absl::string_view name) {
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || line.empty() || line[0] != ' ') continue;
    double v = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(line), &v)) return v;
  }
  return -1;
}

// The time of the last line of the log holding `needle` ("2026-01-02T03:04:05.123456Z I ...");
// InfinitePast() if none.
absl::Time LastLogTime(const std::string& log, absl::string_view needle) {
  absl::Time last = absl::InfinitePast();
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (!absl::StrContains(line, needle)) continue;
    const size_t space = line.find(' ');
    if (space == absl::string_view::npos) continue;
    absl::Time t;
    std::string err;
    if (absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", std::string(line.substr(0, space)), &t, &err)) {
      last = t;
    }
  }
  return last;
}

// A TcpExt counter of /proc/net/netstat (this network namespace, every
// process); -1 if absent.
int64_t TcpExtCounter(absl::string_view name) {
  std::ifstream in("/proc/net/netstat");
  std::string names, values;
  while (std::getline(in, names) && std::getline(in, values)) {
    if (!absl::StartsWith(names, "TcpExt:")) continue;
    std::vector<absl::string_view> n = absl::StrSplit(names, ' ', absl::SkipEmpty());
    std::vector<absl::string_view> v = absl::StrSplit(values, ' ', absl::SkipEmpty());
    for (size_t i = 1; i < n.size() && i < v.size(); ++i) {
      int64_t value = 0;
      if (n[i] == name && absl::SimpleAtoi(v[i], &value)) return value;
    }
  }
  return -1;
}

// Open file descriptors of `pid`; -1 if unreadable.
int64_t OpenFds(pid_t pid) {
  std::error_code ec;
  int64_t n = 0;
  for (auto it = std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return ec ? -1 : n;
}

// The most descriptors `pid` held at once, sampled every 100 ms until
// destroyed.
class FdSampler {
 public:
  explicit FdSampler(pid_t pid)
      : thread_([this, pid] {
          while (!stop_) {
            const int64_t n = OpenFds(pid);
            if (n > peak_) peak_ = n;
            absl::SleepFor(absl::Milliseconds(100));
          }
        }) {}
  ~FdSampler() {
    stop_ = true;
    thread_.join();
  }
  int64_t peak() const { return peak_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> peak_{-1};
  std::thread thread_;
};

int64_t CountLines(const std::string& log, absl::string_view needle) {
  int64_t n = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) n += absl::StrContains(line, needle);
  return n;
}

// `perf record -g` of one process until Stop(); nothing if perf is missing.
class Profiler {
 public:
  Profiler(pid_t target, const std::string& out_path) {
    std::vector<std::string> args = {
        "perf", "record", "-F", "499", "-g", "-p", absl::StrCat(target), "-o", out_path, "--quiet"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    if (posix_spawnp(&pid_, "perf", &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    if (pid_ > 0) {
      std::cerr << "fleet: perf record of " << target << " into " << out_path << "\n";
      absl::SleepFor(absl::Milliseconds(300));  // attached before what it is to see
    }
  }
  ~Profiler() { Stop(); }
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGINT);
    for (int i = 0; i < 600; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

std::unique_ptr<Profiler> MaybeProfile(const FleetBenchOptions& options, pid_t target,
                                       const std::string& phase) {
  if (options.profile_dir.empty()) return nullptr;
  return std::make_unique<Profiler>(target, absl::StrCat(options.profile_dir, "/fleet-",
                                                         options.agents, "-", phase, ".perf.data"));
}

}  // namespace

absl::StatusOr<FleetResult> RunFleetBenchmark(const FleetBenchOptions& options) {
  FleetResult r;
  r.agents = options.agents;
  r.containers = options.agents * options.containers;
  r.subscriptions = r.containers * options.subscriptions;
  r.heartbeat_seconds = absl::ToDoubleSeconds(options.heartbeat);
  // One socket per agent here, and as many in the controller, which
  // inherits this limit.
  r.nofile_limit = RaiseNoFileLimit();
  if (r.nofile_limit >= 0 && r.nofile_limit < options.agents + 256) {
    return absl::ResourceExhaustedError(absl::StrCat(
        options.agents, " agents need about ", options.agents + 256,
        " file descriptors; RLIMIT_NOFILE allows ", r.nofile_limit, " (raise it: ulimit -n)"));
  }

  const int port = testing::FreePort();
  const int metrics_port = testing::FreePort();
  const std::string address = absl::StrCat("127.0.0.1:", port);
  std::vector<std::string> args = {"controller",
                                   "--listen",
                                   address,
                                   "--heartbeat",
                                   absl::FormatDuration(options.heartbeat),
                                   "--log-level",
                                   options.log_level,
                                   "--metrics-listen",
                                   absl::StrCat("127.0.0.1:", metrics_port)};
  if (options.state_dir) {
    const std::string state = absl::StrCat(options.work_dir, "/state-", options.agents);
    testing::RemoveTree(state);  // its first start is a first start
    args.insert(args.end(), {"--state-dir", state});
  }
  r.restarted = options.restart;
  r.state_dir = options.state_dir;
  // The metrics server starts after the agents' port listens.
  auto wait_answering = [&](DispatchdProcess& controller) -> absl::Status {
    if (!testing::WaitFor([&] { return testing::HttpGet(metrics_port, "/healthz").status != 0; },
                          absl::Seconds(30))) {
      return absl::DeadlineExceededError(
          absl::StrCat("the controller did not start: ", controller.Log()));
    }
    return absl::OkStatus();
  };
  // Every inventory applied: the controller's own gauges say so.
  auto wait_fresh = [&](const Fleet& fleet, absl::Duration timeout) -> absl::Status {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      const std::string body = testing::HttpGet(metrics_port, "/metrics").body;
      const double fresh = MetricValue(body, "dispatchd_agents_fresh");
      const double subscriptions = MetricValue(body, "dispatchd_subscriptions{state=\"valid\"}");
      if (fresh >= options.agents && subscriptions >= r.subscriptions) return absl::OkStatus();
      if (absl::Now() > deadline || fleet.sessions_ended() > 0) {
        return absl::DeadlineExceededError(absl::StrCat(
            "storm: ", fresh, " of ", options.agents, " inventories fresh, ", subscriptions,
            " subscriptions; sessions ended: ", fleet.sessions_ended()));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  };

  if (options.restart) {
    // The run before the restart: the controller comes to know every agent.
    const std::string first_log =
        absl::StrCat(options.work_dir, "/fleet-controller-", options.agents, "-first.log");
    ASSIGN_OR_RETURN(std::unique_ptr<DispatchdProcess> first,
                     DispatchdProcess::Start(args, first_log));
    RETURN_IF_ERROR(wait_answering(*first));
    std::cerr << "fleet: " << options.agents << " agents connecting to " << address
              << " (before the restart)\n";
    {
      Fleet fleet(FleetOptions{.address = address,
                               .agents = options.agents,
                               .containers = options.containers,
                               .subscriptions = options.subscriptions});
      const absl::Time c0 = fleet.ConnectAll();
      if (!fleet.WaitWelcomed(options.storm_timeout)) {
        return absl::DeadlineExceededError("before the restart: not every agent was welcomed");
      }
      RETURN_IF_ERROR(wait_fresh(fleet, options.storm_timeout));
      r.first_fresh_seen = Since(c0, absl::Now());
      // Restarted under the running fleet: the controller goes first.
      ASSIGN_OR_RETURN(int status, first->Terminate());
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        return absl::InternalError(absl::StrCat("the controller before the restart exited with ",
                                                status, ": ", first->Log()));
      }
    }
    std::cerr << "fleet: controller restarted\n";
  }

  const std::string log_path =
      absl::StrCat(options.work_dir, "/fleet-controller-", options.agents, ".log");
  const absl::Time spawned = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<DispatchdProcess> controller,
                   DispatchdProcess::Start(args, log_path));
  const pid_t pid = controller->pid();
  if (options.controller_nofile > 0) {
    // The hard limit too: dispatchd raises its soft limit to the hard one
    // as it starts, before or after this.
    rlimit limit{};
    limit.rlim_cur = limit.rlim_max = static_cast<rlim_t>(options.controller_nofile);
    if (prlimit(pid, RLIMIT_NOFILE, &limit, nullptr) != 0) {
      return absl::InternalError(absl::StrCat("prlimit: ", std::strerror(errno)));
    }
  }
  RETURN_IF_ERROR(wait_answering(*controller));
  const absl::Time listening = absl::Now();
  absl::SleepFor(absl::Milliseconds(200));
  r.rss_idle_kib = ResidentKib(pid);
  r.controller_nofile = NoFileLimitOf(pid);

  // ---- 1. Connect storm. ----
  std::cerr << "fleet: " << options.agents << " agents connecting to " << address << "\n";
  Fleet fleet(FleetOptions{.address = address,
                           .agents = options.agents,
                           .containers = options.containers,
                           .subscriptions = options.subscriptions});
  std::unique_ptr<Profiler> profiler = MaybeProfile(options, pid, "storm");
  const absl::Duration storm_cpu0 = CpuTime(pid);
  const absl::Duration storm_fleet_cpu0 = CpuTime(getpid());
  const int64_t overflows0 = TcpExtCounter("ListenOverflows");
  const int64_t syn_retrans0 = TcpExtCounter("TCPSynRetrans");
  auto fds = std::make_unique<FdSampler>(pid);  // during the storm only: listing costs
  const absl::Time t0 = fleet.ConnectAll();
  // Sent by the first agent as soon as it is welcomed (queued until then),
  // for a subscription of the last: held until routing resumes.
  const std::string held_id = Fleet::SubscribedEventId(options.agents - 1, 0, 0);
  fleet.ExpectCommand(held_id);
  fleet.SendEvent(0, "probe/held", held_id);
  uint64_t sent = 1;
  r.listen_seconds = Since(spawned, listening);
  const absl::Duration storm_timeout = options.storm_timeout;
  if (!fleet.WaitWelcomed(storm_timeout)) {
    std::vector<absl::Time> times = fleet.welcome_times();
    const auto welcomed = std::count_if(times.begin(), times.end(),
                                        [](absl::Time t) { return t != absl::InfinitePast(); });
    const std::string log = controller->Log();
    const size_t accept_error = log.find("Failed accept4");
    return absl::DeadlineExceededError(absl::StrCat(
        "storm: ", welcomed, " of ", options.agents, " agents welcomed in ",
        absl::FormatDuration(storm_timeout), "; sessions ended: ", fleet.sessions_ended(),
        "; the controller held at most ", fds->peak(), " file descriptors (limit ",
        NoFileLimitOf(pid), ")",
        accept_error == std::string::npos
            ? ""
            : absl::StrCat("; its log: ",
                           log.substr(accept_error, log.find('\n', accept_error) - accept_error))));
  }
  {
    std::vector<double> since;
    for (absl::Time t : fleet.welcome_times()) since.push_back(Since(t0, t));
    const Summary s = Summarize(since);
    r.welcome_p50 = s.p50;
    r.welcome_last = s.max;
    std::sort(since.begin(), since.end());
    std::cerr << "fleet: Welcome received, seconds since the storm began, by decile:";
    for (int d = 1; d <= 10; ++d) {
      std::cerr << absl::StrFormat(" %.3f", since[std::max<size_t>(1, since.size() * d / 10) - 1]);
    }
    std::cerr << "\n";
  }
  RETURN_IF_ERROR(wait_fresh(fleet, storm_timeout));
  const absl::Time fresh_at = absl::Now();
  r.fresh_seen = Since(t0, fresh_at);
  r.storm_controller_cpu = absl::ToDoubleSeconds(CpuTime(pid) - storm_cpu0);
  r.storm_fleet_cpu = absl::ToDoubleSeconds(CpuTime(getpid()) - storm_fleet_cpu0);
  r.storm_listen_overflows = TcpExtCounter("ListenOverflows") - overflows0;
  r.storm_syn_retransmits = TcpExtCounter("TCPSynRetrans") - syn_retrans0;
  profiler.reset();
  std::optional<absl::Time> resumed =
      fleet.WaitCommand(held_id, options.heartbeat * 3 + absl::Minutes(1));
  if (!resumed.has_value()) {
    return absl::DeadlineExceededError(
        absl::StrCat("storm: the event sent as the storm began was not routed; sessions ended: ",
                     fleet.sessions_ended()));
  }
  r.resumed = Since(t0, *resumed);
  // An event right after every snapshot: observed by the first agent, for
  // a subscription of the last one.
  const std::string probe_id =
      Fleet::SubscribedEventId(options.agents - 1, 1 % options.containers, 0);
  fleet.ExpectCommand(probe_id);
  fleet.SendEvent(0, "probe/storm", probe_id);
  ++sent;
  std::optional<absl::Time> routed =
      fleet.WaitCommand(probe_id, options.heartbeat * 3 + absl::Minutes(1));
  if (!routed.has_value()) {
    return absl::DeadlineExceededError(
        absl::StrCat("storm: the event sent after every snapshot was not routed; sessions "
                     "ended: ",
                     fleet.sessions_ended()));
  }
  r.routed = Since(t0, *routed);
  {
    const std::string log = controller->Log();
    // "routing waits for the N agents known from ...", when it has a list.
    const size_t known = log.find("routing waits for the ");
    if (known != std::string::npos) {
      absl::string_view rest = absl::string_view(log).substr(known + 22);
      int64_t n = -1;
      if (absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &n)) r.known_agents = n;
    }
    if (r.known_agents < 0) r.grace_end = Since(t0, spawned + 3 * options.heartbeat);
    const absl::Time last_inventory = LastLogTime(log, " inventory: ");
    const absl::Time resumed = LastLogTime(log, "inventories fresh: routing");
    if (last_inventory != absl::InfinitePast()) r.last_inventory_logged = Since(t0, last_inventory);
    if (resumed != absl::InfinitePast()) r.resumed_logged = Since(t0, resumed);
  }
  std::cerr << absl::StrFormat(
      "fleet: storm of %d agents: every Welcome %.3f s, every snapshot applied %.3f s, "
      "routing resumed %.3f s, routed %.3f s (%s)\n",
      options.agents, r.welcome_last, r.fresh_seen, r.resumed, r.routed,
      r.known_agents >= 0 ? absl::StrCat(r.known_agents, " agents known from the state directory")
                          : absl::StrFormat("grace ends %.3f s", r.grace_end));
  if (!fleet.WaitSettled(sent, absl::Seconds(30))) {
    return absl::DeadlineExceededError("storm: the probe event was not settled");
  }
  absl::SleepFor(absl::Seconds(1));
  r.rss_subscribed_kib = ResidentKib(pid);
  r.controller_fds = OpenFds(pid);
  r.controller_fds_peak = fds->peak();
  fds.reset();
  r.fleet_rss_kib = ResidentKib(getpid());
  r.controller_threads = ThreadsOf(pid);
  r.fleet_threads = ThreadsOf(getpid());

  // ---- 2. Idle: only heartbeats. ----
  {
    const uint64_t sent0 = fleet.heartbeats_sent();
    const uint64_t received0 = fleet.heartbeats_received();
    std::unique_ptr<Profiler> idle_profiler = MaybeProfile(options, pid, "idle");
    const absl::Duration cpu0 = CpuTime(pid);
    const absl::Duration fleet_cpu0 = CpuTime(getpid());
    const absl::Time w0 = absl::Now();
    absl::SleepFor(options.idle_window);
    r.idle_controller_cpu = absl::ToDoubleSeconds(CpuTime(pid) - cpu0);
    r.idle_fleet_cpu = absl::ToDoubleSeconds(CpuTime(getpid()) - fleet_cpu0);
    r.idle_seconds = absl::ToDoubleSeconds(absl::Now() - w0);
    r.idle_heartbeats_sent = fleet.heartbeats_sent() - sent0;
    r.idle_heartbeats_received = fleet.heartbeats_received() - received0;
    idle_profiler.reset();
    std::cerr << absl::StrFormat(
        "fleet: idle %.1f s: controller CPU %.3f s, fleet CPU %.3f s, %d heartbeats sent, %d "
        "received\n",
        r.idle_seconds, r.idle_controller_cpu, r.idle_fleet_cpu, r.idle_heartbeats_sent,
        r.idle_heartbeats_received);
  }

  // ---- 3. Reconcile, while the others heartbeat. ----
  for (int i = 0; i < options.reconcile_changes; ++i) {
    const int agent = static_cast<int>((static_cast<int64_t>(i) * 7919) % options.agents);
    const int container = i % options.containers;
    const std::string changed_id = absl::StrCat("probe.d", i);
    fleet.ExpectCommand(changed_id);
    const absl::Time d0 = absl::Now();
    fleet.SendDelta(agent, container, changed_id);
    fleet.SendEvent(agent, absl::StrCat("probe/d/", i), changed_id);
    ++sent;
    std::optional<absl::Time> d1 = fleet.WaitCommand(changed_id, absl::Seconds(30));
    if (!d1.has_value()) return absl::DeadlineExceededError("reconcile: no command (delta)");
    r.reconcile_ms.push_back(absl::ToDoubleMilliseconds(*d1 - d0));

    const int other = (agent + options.agents / 2) % options.agents;
    const std::string existing_id = Fleet::SubscribedEventId(other, container, 0);
    fleet.ExpectCommand(existing_id);
    const absl::Time b0 = absl::Now();
    fleet.SendEvent(agent, absl::StrCat("probe/b/", i), existing_id);
    ++sent;
    std::optional<absl::Time> b1 = fleet.WaitCommand(existing_id, absl::Seconds(30));
    if (!b1.has_value()) return absl::DeadlineExceededError("reconcile: no command (existing)");
    r.baseline_ms.push_back(absl::ToDoubleMilliseconds(*b1 - b0));
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (!fleet.WaitSettled(sent, absl::Seconds(30))) {
    return absl::DeadlineExceededError("reconcile: events not settled");
  }
  if (!r.reconcile_ms.empty()) {
    const Summary d = Summarize(r.reconcile_ms);
    std::cerr << absl::StrFormat("fleet: reconcile p50 %.3f ms, p99 %.3f ms (%d changes)\n", d.p50,
                                 d.p99, d.n);
  }

  // ---- 4. Routing, events spread over every agent. ----
  {
    const uint64_t commands0 = fleet.commands();
    std::atomic<bool> sampling{true};
    std::atomic<int64_t> peak{ResidentKib(pid)};
    std::thread sampler([&] {
      while (sampling) {
        const int64_t kib = ResidentKib(pid);
        if (kib > peak) peak = kib;
        absl::SleepFor(absl::Milliseconds(20));
      }
    });
    std::unique_ptr<Profiler> routing_profiler = MaybeProfile(options, pid, "routing");
    std::mt19937_64 random(42);
    const absl::Duration cpu0 = CpuTime(pid);
    const absl::Duration fleet_cpu0 = CpuTime(getpid());
    const absl::Time t1 = absl::Now();
    bool ok = true;
    for (int64_t n = 0; n < options.routing_events && ok; ++n) {
      ok = fleet.WaitRoom(options.max_unsettled, absl::Minutes(1));
      if (!ok) break;
      const int origin = static_cast<int>(n % options.agents);
      const int target = static_cast<int>(random() % options.agents);
      const int container = static_cast<int>(random() % options.containers);
      const int subscription = static_cast<int>(random() % options.subscriptions);
      fleet.SendEvent(origin, absl::StrCat("route/", n),
                      Fleet::SubscribedEventId(target, container, subscription));
    }
    sent += options.routing_events;
    ok = ok && fleet.WaitSettled(sent, absl::Minutes(10));
    const absl::Time t2 = absl::Now();
    r.routing_controller_cpu = absl::ToDoubleSeconds(CpuTime(pid) - cpu0);
    r.routing_fleet_cpu = absl::ToDoubleSeconds(CpuTime(getpid()) - fleet_cpu0);
    routing_profiler.reset();
    sampling = false;
    sampler.join();
    if (!ok) {
      return absl::DeadlineExceededError(
          absl::StrCat("routing: ", fleet.settled(), " of ", sent,
                       " events settled; sessions ended: ", fleet.sessions_ended()));
    }
    r.routing_events = options.routing_events;
    r.routing_seconds = absl::ToDoubleSeconds(t2 - t1);
    r.routing_commands = fleet.commands() - commands0;
    r.rss_peak_kib = peak;
    std::cerr << absl::StrFormat(
        "fleet: routing %d events in %.3f s (%.0f/s), controller CPU %.3f s, fleet CPU %.3f s\n",
        r.routing_events, r.routing_seconds, r.routing_events / r.routing_seconds,
        r.routing_controller_cpu, r.routing_fleet_cpu);
  }

  r.rss_hwm_kib = PeakResidentKib(pid);
  r.sessions_ended = fleet.sessions_ended();
  r.end_reasons = fleet.end_reasons();
  r.missed_heartbeat_closes = CountLines(controller->Log(), "heartbeats: ending its session");
  return r;
}

std::string FleetResultsMarkdown(const std::vector<FleetResult>& results,
                                 const FleetBenchOptions& options) {
  std::string out = absl::StrCat(
      "### 9. A fleet on one controller (synthetic agents over loopback, no Docker)\n\n",
      "One `dispatchd controller --heartbeat ", absl::FormatDuration(options.heartbeat),
      options.state_dir ? " --state-dir DIR`" : "`",
      options.restart ? ", restarted under the fleet before the storm" : ", started fresh",
      " (without a list of its agents it waits a start-up grace of 3 heartbeats); agents in one "
      "process, each on a gRPC connection of its own; ",
      options.containers, " containers per agent, ", options.subscriptions,
      " subscription(s) each. Storm times are seconds from the moment every agent opened its "
      "session.\n\n");
  if (results.empty()) return absl::StrCat(out, "No run completed.\n\n");
  absl::StrAppend(&out, "| | ");
  for (const FleetResult& x : results) absl::StrAppend(&out, x.agents, " agents | ");
  absl::StrAppend(&out, "\n|---|");
  for (size_t i = 0; i < results.size(); ++i) absl::StrAppend(&out, "---|");
  absl::StrAppend(&out, "\n");
  auto row = [&](const std::string& name, auto cell) {
    absl::StrAppend(&out, "| ", name, " | ");
    for (const FleetResult& x : results) absl::StrAppend(&out, cell(x), " | ");
    absl::StrAppend(&out, "\n");
  };
  auto secs = [](double s) { return s < 0 ? std::string("n/a") : absl::StrFormat("%.3f", s); };
  auto mib = [](int64_t kib) {
    return kib < 0 ? std::string("n/a") : absl::StrFormat("%.1f", kib / 1024.0);
  };
  row("subscriptions", [](const FleetResult& x) { return absl::StrCat(x.subscriptions); });
  row("RLIMIT_NOFILE: benchmark / controller", [](const FleetResult& x) {
    return absl::StrCat(x.nofile_limit, " / ", x.controller_nofile);
  });
  row("storm after", [](const FleetResult& x) {
    return absl::StrCat(x.restarted ? "a restart" : "a fresh start",
                        x.state_dir ? " with --state-dir" : "",
                        x.known_agents >= 0 ? absl::StrCat(" (", x.known_agents, " agents known)")
                                            : std::string(" (no list: the fixed grace)"));
  });
  row("before the restart: every snapshot applied (s)",
      [&](const FleetResult& x) { return secs(x.first_fresh_seen); });
  row("controller started -> answering (s, before the storm)",
      [&](const FleetResult& x) { return secs(x.listen_seconds); });
  row("storm: Welcome, p50 / last (s)", [&](const FleetResult& x) {
    return absl::StrCat(secs(x.welcome_p50), " / ", secs(x.welcome_last));
  });
  row("storm: every snapshot applied, gauge polled / last logged (s)", [&](const FleetResult& x) {
    return absl::StrCat(secs(x.fresh_seen), " / ", secs(x.last_inventory_logged));
  });
  row("storm: start-up grace ends (s; n/a: none, the agents known are waited for)",
      [&](const FleetResult& x) { return secs(x.grace_end); });
  row("storm: routing resumed: Command of the event held since the storm began / logged (s)",
      [&](const FleetResult& x) {
        return absl::StrCat(secs(x.resumed), " / ", secs(x.resumed_logged));
      });
  row("storm: event sent after the snapshots, Command received (s)",
      [&](const FleetResult& x) { return secs(x.routed); });
  row("storm: CPU until every snapshot applied, controller / fleet (s)", [](const FleetResult& x) {
    return absl::StrFormat("%.2f / %.2f", x.storm_controller_cpu, x.storm_fleet_cpu);
  });
  row("storm: listen queue overflows / SYNs sent again (whole machine)", [](const FleetResult& x) {
    return absl::StrCat(x.storm_listen_overflows, " / ", x.storm_syn_retransmits);
  });
  row("label change -> Command, p50 / p99 / max (ms)", [](const FleetResult& x) {
    const Summary s = Summarize(x.reconcile_ms);
    return absl::StrCat(Ms(s.p50), " / ", Ms(s.p99), " / ", Ms(s.max), " (", s.n, ")");
  });
  row("existing subscription, event -> Command, p50 / p99 (ms)", [](const FleetResult& x) {
    const Summary s = Summarize(x.baseline_ms);
    return absl::StrCat(Ms(s.p50), " / ", Ms(s.p99));
  });
  row("routing: events/s (events)", [](const FleetResult& x) {
    return absl::StrFormat("%.0f (%d)",
                           x.routing_seconds > 0 ? x.routing_events / x.routing_seconds : 0.0,
                           x.routing_events);
  });
  row("routing: controller CPU per delivered Command (us)", [](const FleetResult& x) {
    return absl::StrFormat(
        "%.1f", x.routing_commands > 0 ? 1e6 * x.routing_controller_cpu / x.routing_commands : 0.0);
  });
  row("routing: fleet CPU per event (us)", [](const FleetResult& x) {
    return absl::StrFormat(
        "%.1f", x.routing_events > 0 ? 1e6 * x.routing_fleet_cpu / x.routing_events : 0.0);
  });
  row("controller RSS: fresh / subscribed / peak under routing / VmHWM (MiB)",
      [&](const FleetResult& x) {
        return absl::StrCat(mib(x.rss_idle_kib), " / ", mib(x.rss_subscribed_kib), " / ",
                            mib(x.rss_peak_kib), " / ", mib(x.rss_hwm_kib));
      });
  row("idle CPU, % of one core: controller / fleet", [](const FleetResult& x) {
    return x.idle_seconds > 0
               ? absl::StrFormat("%.2f / %.2f (%.0f s)",
                                 100 * x.idle_controller_cpu / x.idle_seconds,
                                 100 * x.idle_fleet_cpu / x.idle_seconds, x.idle_seconds)
               : std::string("n/a");
  });
  row("idle: heartbeats/s, agents -> controller / back", [](const FleetResult& x) {
    return x.idle_seconds > 0
               ? absl::StrFormat("%.0f / %.0f", x.idle_heartbeats_sent / x.idle_seconds,
                                 x.idle_heartbeats_received / x.idle_seconds)
               : std::string("n/a");
  });
  row("controller file descriptors: subscribed / most during the storm", [](const FleetResult& x) {
    return absl::StrCat(x.controller_fds, " / ", x.controller_fds_peak);
  });
  row("threads: controller / fleet", [](const FleetResult& x) {
    return absl::StrCat(x.controller_threads, " / ", x.fleet_threads);
  });
  row("fleet process RSS (MiB)", [&](const FleetResult& x) { return mib(x.fleet_rss_kib); });
  row("sessions ended during the run / closed for missed heartbeats", [](const FleetResult& x) {
    return absl::StrCat(x.sessions_ended, " / ", x.missed_heartbeat_closes);
  });
  absl::StrAppend(&out, "\n");
  return out;
}

}  // namespace bench
}  // namespace dispatchd
