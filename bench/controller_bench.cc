#include "bench/controller_bench.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "bench/synthetic_agent.h"
#include "common/status_macros.h"
#include "tests/testing/dispatchd_process.h"

namespace dispatchd {
namespace bench {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::Container;
using testing::DispatchdProcess;

struct Controller {
  std::unique_ptr<DispatchdProcess> process;
  std::string address;
};

// A port that was free a moment ago (the controller's log names its port
// only at --log-level info and below).
absl::StatusOr<int> FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::InternalError("bind 127.0.0.1:0");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

absl::StatusOr<Controller> StartController(const ControllerBenchOptions& options,
                                           const std::string& name) {
  Controller c;
  ASSIGN_OR_RETURN(const int port, FreePort());
  c.address = absl::StrCat("127.0.0.1:", port);
  // --heartbeat 1s keeps the start-up grace (3 heartbeats) short.
  ASSIGN_OR_RETURN(c.process,
                   DispatchdProcess::Start({"controller", "--listen", c.address, "--heartbeat",
                                            "1s", "--log-level", options.log_level},
                                           absl::StrCat(options.work_dir, "/", name, ".log")));
  return c;
}

// Connects, retrying while the controller starts.
absl::StatusOr<std::unique_ptr<SyntheticAgent>> ConnectAgent(const Controller& controller,
                                                              const std::string& agent_id) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (true) {
    absl::StatusOr<std::unique_ptr<SyntheticAgent>> agent =
        SyntheticAgent::Connect(controller.address, agent_id);
    if (agent.ok() || absl::Now() > deadline) return agent;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

Container MakeContainer(int index, int event_ids) {
  Container c;
  c.set_id(absl::StrFormat("%064x", index + 1));
  c.set_name(absl::StrCat("bench-", index));
  c.set_state(Container::RUNNING);
  for (int e = 0; e < event_ids; ++e) {
    (*c.mutable_labels())[absl::StrCat("subscription.route.e", e, ".container.command")] = "true";
  }
  (*c.mutable_labels())["com.example.unrelated"] = "label";
  return c;
}

// The probe container of the reconcile benchmark.
Container ProbeContainer(const std::string& extra_event_id) {
  Container c;
  c.set_id(std::string(64, 'f'));
  c.set_name("bench-probe");
  c.set_state(Container::RUNNING);
  (*c.mutable_labels())["subscription.reconcile.base.container.command"] = "true";
  if (!extra_event_id.empty()) {
    (*c.mutable_labels())[absl::StrCat("subscription.", extra_event_id, ".container.command")] =
        "true";
  }
  return c;
}

// Records when the first Command for each event id arrived.
class CommandTimes {
 public:
  void Record(const std::string& event_id, absl::Time at) {
    absl::MutexLock lock(&mu_);
    times_.emplace(event_id, at);
  }
  std::optional<absl::Time> Wait(const std::string& event_id, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto has = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return times_.count(event_id) != 0; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&has), timeout)) return std::nullopt;
    return times_[event_id];
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, absl::Time> times_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<ControllerBenchResults> RunControllerBenchmarks(
    const ControllerBenchOptions& options) {
  ControllerBenchResults results;
  for (const auto& [fanout, events] : options.routing) {
    RoutingResult r;
    r.subscriptions_per_event = fanout;
    r.events = events;
    r.subscriptions = fanout * options.event_ids;
    ASSIGN_OR_RETURN(Controller controller,
                     StartController(options, absl::StrCat("controller-", fanout)));
    absl::SleepFor(absl::Milliseconds(500));
    r.rss_idle_kib = ResidentKib(controller.process->pid());
    ASSIGN_OR_RETURN(std::unique_ptr<SyntheticAgent> agent,
                     ConnectAgent(controller, "bench-agent"));
    CommandTimes command_times;
    agent->set_command_observer([&](const dispatch::v1::Command& command, absl::Time at) {
      if (command.event_id().rfind("reconcile.", 0) == 0) command_times.Record(command.event_id(), at);
    });
    uint64_t seq = 1;
    AgentMessage snapshot;
    snapshot.mutable_inventory_snapshot()->set_seq(seq);
    for (int i = 0; i < fanout; ++i) {
      *snapshot.mutable_inventory_snapshot()->add_containers() =
          MakeContainer(i, options.event_ids);
    }
    *snapshot.mutable_inventory_snapshot()->add_containers() = ProbeContainer("");
    const AgentMessage base_snapshot = snapshot;
    agent->Send(std::move(snapshot));
    // Routing starts after the start-up grace: wait for a first event to settle.
    uint64_t sent = 0;
    agent->SendEvent("warmup/0", "route.e0", options.max_unsettled);
    ++sent;
    if (!agent->WaitSettled(sent, absl::Seconds(30))) {
      return absl::DeadlineExceededError(
          absl::StrCat("warm-up event not settled: ", controller.process->Log()));
    }
    absl::SleepFor(absl::Milliseconds(300));
    r.rss_subscribed_kib = ResidentKib(controller.process->pid());

    std::atomic<bool> sampling{true};
    std::atomic<int64_t> peak{r.rss_subscribed_kib};
    std::thread sampler([&] {
      while (sampling) {
        const int64_t kib = ResidentKib(controller.process->pid());
        if (kib > peak) peak = kib;
        absl::SleepFor(absl::Milliseconds(20));
      }
    });
    const absl::Duration cpu0 = CpuTime(controller.process->pid());
    const absl::Duration agent_cpu0 = CpuTime(getpid());
    const absl::Time t0 = absl::Now();
    for (int64_t i = 0; i < events; ++i) {
      agent->SendEvent(absl::StrCat("route/", i), absl::StrCat("route.e", i % options.event_ids),
                       options.max_unsettled);
    }
    sent += events;
    const bool settled = agent->WaitSettled(sent, absl::Minutes(5));
    const absl::Time t1 = absl::Now();
    r.controller_cpu_seconds =
        absl::ToDoubleSeconds(CpuTime(controller.process->pid()) - cpu0);
    r.agent_cpu_seconds = absl::ToDoubleSeconds(CpuTime(getpid()) - agent_cpu0);
    sampling = false;
    sampler.join();
    if (!settled) {
      return absl::DeadlineExceededError(absl::StrCat("routing ", fanout, ": only ",
                                                      agent->settled(), " of ", sent,
                                                      " events settled"));
    }
    r.seconds = absl::ToDoubleSeconds(t1 - t0);
    r.rss_peak_kib = peak;
    std::cerr << absl::StrFormat(
        "routing %d subscription(s) per event: %d events in %.3f s, controller CPU %.3f s, "
        "synthetic agent CPU %.3f s\n",
        fanout, events, r.seconds, r.controller_cpu_seconds, r.agent_cpu_seconds);

    if (fanout * options.event_ids >= 10000) {
      // ---- Reconcile, with this inventory. ----
      results.reconcile_subscriptions = fanout * options.event_ids + 1;
      for (int i = 0; i < options.reconcile_changes; ++i) {
        // Label change by delta: the probe container gains a subscription.
        const std::string delta_id = absl::StrCat("reconcile.d", i);
        AgentMessage delta;
        delta.mutable_inventory_delta()->set_seq(++seq);
        *delta.mutable_inventory_delta()->add_upserted() = ProbeContainer(delta_id);
        const absl::Time d0 = absl::Now();
        agent->Send(std::move(delta));
        agent->SendEvent(absl::StrCat("reconcile/d/", i), delta_id, options.max_unsettled);
        ++sent;
        std::optional<absl::Time> d1 = command_times.Wait(delta_id, absl::Seconds(30));
        if (!d1.has_value()) return absl::DeadlineExceededError("reconcile: no command (delta)");
        results.reconcile_delta_ms.push_back(absl::ToDoubleMilliseconds(*d1 - d0));

        // The same for an event whose subscription already existed (the
        // change just made): the round trip without the inventory change.
        const std::string again_key = absl::StrCat("reconcile/again/", i);
        const std::string again_id = absl::StrCat("reconcile.again", i);
        {
          // Give the probe that subscription first, untimed.
          AgentMessage prepare;
          prepare.mutable_inventory_delta()->set_seq(++seq);
          *prepare.mutable_inventory_delta()->add_upserted() = ProbeContainer(again_id);
          agent->Send(std::move(prepare));
          absl::SleepFor(absl::Milliseconds(20));
          const absl::Time b0 = absl::Now();
          agent->SendEvent(again_key, again_id, options.max_unsettled);
          ++sent;
          std::optional<absl::Time> b1 = command_times.Wait(again_id, absl::Seconds(30));
          if (!b1.has_value()) return absl::DeadlineExceededError("reconcile: no command (base)");
          results.baseline_ms.push_back(absl::ToDoubleMilliseconds(*b1 - b0));
        }

        // A full relist: a snapshot of every container, the probe changed.
        const std::string snap_id = absl::StrCat("reconcile.s", i);
        AgentMessage relist = base_snapshot;
        relist.mutable_inventory_snapshot()->set_seq(++seq);
        auto* containers = relist.mutable_inventory_snapshot()->mutable_containers();
        *containers->Mutable(containers->size() - 1) = ProbeContainer(snap_id);
        const absl::Time s0 = absl::Now();
        agent->Send(std::move(relist));
        agent->SendEvent(absl::StrCat("reconcile/s/", i), snap_id, options.max_unsettled);
        ++sent;
        std::optional<absl::Time> s1 = command_times.Wait(snap_id, absl::Seconds(30));
        if (!s1.has_value()) return absl::DeadlineExceededError("reconcile: no command (snapshot)");
        results.reconcile_snapshot_ms.push_back(absl::ToDoubleMilliseconds(*s1 - s0));
      }
      agent->WaitSettled(sent, absl::Seconds(30));

      if (!options.docker_host.empty()) {
        // ---- A real agent, idle: connected, inventory sent, no events. ----
        const std::string events = options.work_dir + "/agent-events";
        std::filesystem::create_directories(events);
        ASSIGN_OR_RETURN(std::unique_ptr<DispatchdProcess> real_agent,
                         DispatchdProcess::Start(
                             {"agent", "--controller", controller.address, "--docker-host",
                              options.docker_host, "--events-dir", events, "--agent-id",
                              "bench-real-agent", "--log-level", options.log_level},
                             options.work_dir + "/agent.log"));
        // Connected and its inventory sent within a second or two; then idle.
        absl::SleepFor(absl::Seconds(4));
        results.agent_idle_rss_kib = ResidentKib(real_agent->pid());
        real_agent->Terminate().IgnoreError();
      }
    }
    results.routing.push_back(r);
    agent.reset();
    controller.process->Terminate().IgnoreError();
  }
  return results;
}

std::string ControllerResultsMarkdown(const ControllerBenchResults& r) {
  std::string out;
  absl::StrAppend(&out,
                  "### 3. Controller routing (synthetic agent over loopback, no Docker)\n\n",
                  "| subscriptions per event | subscriptions | events | seconds | events/s | "
                  "commands/s | controller CPU per event | events per controller CPU-second | "
                  "synthetic agent CPU per event |\n"
                  "|---|---|---|---|---|---|---|---|---|\n");
  for (const RoutingResult& x : r.routing) {
    absl::StrAppend(
        &out, absl::StrFormat("| %d | %d | %d | %.3f | %.0f | %.0f | %.1f us | %.0f | %.1f us |\n",
                              x.subscriptions_per_event, x.subscriptions, x.events, x.seconds,
                              x.events / x.seconds,
                              x.events * x.subscriptions_per_event / x.seconds,
                              1e6 * x.controller_cpu_seconds / x.events,
                              x.controller_cpu_seconds > 0 ? x.events / x.controller_cpu_seconds
                                                           : 0.0,
                              1e6 * x.agent_cpu_seconds / x.events));
  }
  const Summary d = Summarize(r.reconcile_delta_ms);
  const Summary s = Summarize(r.reconcile_snapshot_ms);
  const Summary b = Summarize(r.baseline_ms);
  absl::StrAppend(&out, "\n### 4. Reconcile: ", r.reconcile_subscriptions,
                  " subscriptions in the inventory\n\n",
                  "Milliseconds from the agent sending the change to it receiving the Command "
                  "that the changed subscription produces (an event sent right behind the "
                  "change), ",
                  d.n, " changes.\n\n| change | p50 | p90 | p99 | max |\n|---|---|---|---|---|\n");
  auto row = [&out](const std::string& name, const Summary& x) {
    absl::StrAppend(&out, "| ", name, " | ", Ms(x.p50), " | ", Ms(x.p90), " | ", Ms(x.p99),
                    " | ", Ms(x.max), " |\n");
  };
  row("label change (InventoryDelta of one container)", d);
  row("full relist (InventorySnapshot of every container)", s);
  row("no change (event of an existing subscription)", b);
  absl::StrAppend(&out, "\n### 5. Memory (resident, VmRSS)\n\n",
                  "| process | state | MiB |\n|---|---|---|\n");
  for (const RoutingResult& x : r.routing) {
    absl::StrAppend(&out,
                    absl::StrFormat("| controller | idle, fresh | %.1f |\n"
                                    "| controller | %d subscriptions, idle | %.1f |\n"
                                    "| controller | %d subscriptions, peak under routing load | "
                                    "%.1f |\n",
                                    x.rss_idle_kib / 1024.0, x.subscriptions,
                                    x.rss_subscribed_kib / 1024.0, x.subscriptions,
                                    x.rss_peak_kib / 1024.0));
  }
  if (r.agent_idle_rss_kib >= 0) {
    absl::StrAppend(&out, absl::StrFormat("| agent | idle, connected | %.1f |\n",
                                          r.agent_idle_rss_kib / 1024.0));
  }
  absl::StrAppend(&out, "\n");
  return out;
}

}  // namespace bench
}  // namespace dispatchd
