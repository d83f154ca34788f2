// dispatchd: parses flags, wires the agent and/or the controller, runs until
// SIGTERM or SIGINT, and shuts down without losing an event file.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "agent/agent.h"
#include "agent/agent_metrics.h"
#include "agent/docker_client.h"
#include "agent/instrumented_docker_api.h"
#include "cmd/dispatchd/metrics_server.h"
#include "cmd/dispatchd/options.h"
#include "common/clock.h"
#include "common/http_server.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/open_file_limit.h"
#include "common/process_metrics.h"
#include "common/tls.h"
#include "controller/access_policy.h"
#include "controller/api_service.h"
#include "controller/dispatcher.h"
#include "controller/dispatcher_metrics.h"
#include "controller/forwarder.h"
#include "controller/etcd_client.h"
#include "controller/forwarding_metrics.h"
#include "controller/known_agents.h"
#include "controller/replica.h"
#include "controller/session_service.h"

namespace dispatchd {
namespace {

constexpr char kVersion[] = "0.1.0";
// How long a shutdown waits for forwarding destinations to take what is queued.
constexpr absl::Duration kForwardDrainTimeout = absl::Seconds(5);

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

void IgnoreSignal(int) {}

// Ready as /readyz and grpc.health.v1.Health report it: every connected
// agent's inventory fresh (controller), the session up and the inventory
// fresh (agent). Under leader election a standby is ready ("standby"), and
// who leads is said either way. Any may be null (not run here).
Readiness CurrentReadiness(const controller::Replica* r, const controller::Dispatcher* d,
                           const agent::Agent* a) {
  Readiness controller_ready{true, ""};
  std::shared_ptr<controller::Dispatcher> term;
  if (r != nullptr) {
    const controller::LeaderInfo leader = r->leader();
    controller_ready.leader =
        leader.identity.empty() ? "none" : absl::StrCat(leader.identity, " ", leader.address);
    if (!r->Leading()) {
      controller_ready.state = "standby";
      return controller_ready;
    }
    term = r->dispatcher();
    d = term.get();
  }
  if (d != nullptr) {
    const controller::DispatcherStats stats = d->stats();
    if (stats.agents_fresh < stats.agents_connected) {
      controller_ready = {false, absl::StrCat(stats.agents_connected - stats.agents_fresh, " of ",
                                              stats.agents_connected,
                                              " agents' inventories are not fresh")};
    }
  }
  Readiness agent_ready{true, ""};
  if (a != nullptr) {
    if (std::string reason = a->NotReadyReason(); !reason.empty()) {
      agent_ready = {false, std::move(reason)};
    }
  }
  return Both(controller_ready, agent_ready);
}

// Keeps grpc.health.v1.Health (service "" and the API's name) in step with
// CurrentReadiness, checked every `period` until destroyed.
class HealthUpdater {
 public:
  HealthUpdater(grpc::HealthCheckServiceInterface* health, std::function<Readiness()> readiness,
                absl::Duration period)
      : thread_([this, health, readiness = std::move(readiness), period] {
          do {
            const bool ready = readiness().ready;
            health->SetServingStatus("", ready);
            health->SetServingStatus("dispatch.v1.Dispatch", ready);
          } while (!done_.WaitForNotificationWithTimeout(period));
        }) {}
  ~HealthUpdater() {
    done_.Notify();
    thread_.join();
  }

 private:
  absl::Notification done_;
  std::thread thread_;
};

int WaitForSignal(const sigset_t& signals) {
  int signal = 0;
  sigwait(&signals, &signal);
  return signal;
}

int Run(const DispatchdOptions& options) {
  SetMinLogLevel(options.log_level);
  // Every thread inherits this mask; only the main thread takes the signals.
  // As PID 1 (a container's first process) the kernel drops signals that
  // have no handler unless they are blocked; both hold here, so `docker
  // stop` is a clean shutdown.
  signal(SIGTERM, IgnoreSignal);
  signal(SIGINT, IgnoreSignal);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // dispatchd starts no processes, but PID 1 inherits every orphan of its
  // container: with SIGCHLD ignored the kernel reaps them, so none stays a
  // zombie.
  if (getpid() == 1) signal(SIGCHLD, SIG_IGN);
  // A descriptor per session and connection (and, on the agent, per file
  // being read): the soft limit a shell gives (often 1,024) is too low for
  // a controller of many agents, and one that runs out stops accepting
  // connections until it is restarted.
  if (absl::StatusOr<OpenFileLimit> limit = RaiseOpenFileLimit(); !limit.ok()) {
    LOG(WARNING) << "open files: cannot raise the limit: " << limit.status().message();
  } else {
    LOG(INFO) << DescribeOpenFileLimit(*limit);
    if (options.mode == Mode::kController) {
      if (std::string warning = OpenFileLimitWarning(*limit, kControllerOpenFiles);
          !warning.empty()) {
        LOG(WARNING) << warning;
      }
    }
  }

  const bool run_controller = options.mode != Mode::kAgent;
  const bool run_agent = options.mode != Mode::kController;

  // Before anything starts: a bad destination is a start-up error (exit 2).
  std::unique_ptr<controller::Forwarder> forwarder;
  if (!options.forward_destinations.empty() && !run_controller) {
    LOG(WARNING) << "the controller forwards events; --forward-destination is ignored by an agent";
  } else if (!options.forward_destinations.empty()) {
    controller::ForwarderOptions forwarder_options;
    forwarder_options.queue_size = static_cast<size_t>(options.forward_queue_size);
    forwarder_options.retry_min_backoff = options.retry_min_backoff;
    forwarder_options.retry_max_backoff = options.retry_max_backoff;
    forwarder_options.max_rejected_attempts = options.forward_max_attempts;
    forwarder_options.dead_letter_dir = options.forward_dead_letter_dir;
    absl::StatusOr<std::unique_ptr<controller::Forwarder>> created =
        controller::Forwarder::Create(options.forward_destinations, forwarder_options);
    if (!created.ok()) {
      LOG(ERROR) << "cannot forward events: " << created.status().message();
      return 2;
    }
    forwarder = *std::move(created);
  }

  // Outlives everything below that records into it (the forwarder above is
  // only read by its collect hook, which cannot run once the registry is gone).
  Registry registry;
  RegisterProcessMetrics(registry);
  RegisterBuildInfo(registry, kVersion);
  if (forwarder != nullptr) {
    controller::ExportForwardingMetrics(registry,
                                        [f = forwarder.get()] { return f->stats(); });
  }
  std::unique_ptr<controller::DispatcherMetrics> dispatcher_metrics;
  std::unique_ptr<agent::AgentMetrics> agent_metrics;

  std::unique_ptr<controller::Dispatcher> dispatcher;  // a lone controller's
  // Records a lone controller's agents in --state-dir.
  std::unique_ptr<controller::KnownAgentsWriter> known_agents;
  std::unique_ptr<controller::EtcdApi> etcd;
  std::unique_ptr<controller::Replica> replica;  // under leader election
  std::unique_ptr<controller::SessionService> service;
  std::unique_ptr<controller::ApiService> api_service;
  std::unique_ptr<grpc::Server> server;
  if (!options.state_dir.empty() &&
      (options.mode != Mode::kController || !options.etcd_endpoints.empty())) {
    LOG(WARNING) << "--state-dir is for a lone controller; ignored "
                 << (options.mode == Mode::kAgent ? "by an agent"
                     : options.mode == Mode::kAllInOne
                         ? "in all-in-one mode (its agent is in-process: nothing waits for it)"
                         : "by a controller replica (the agents' list is kept in etcd)");
  }
  if (run_controller) {
    const controller::AccessTokens access{options.token, options.agent_token, options.api_token,
                                          options.api_read_token};
    // Off loopback, both agents and API callers must authenticate.
    if (absl::Status refused = CheckListenIsAuthenticated(options); !refused.ok()) {
      LOG(ERROR) << refused.message();
      return 2;
    }
    controller::DispatcherOptions dispatcher_options;
    dispatcher_options.label_namespace = options.label_namespace;
    dispatcher_options.heartbeat_period = options.heartbeat;
    dispatcher_options.max_attempts = options.max_attempts;
    dispatcher_options.retry_min_backoff = options.retry_min_backoff;
    dispatcher_options.retry_max_backoff = options.retry_max_backoff;
    if (forwarder != nullptr) dispatcher_options.forward = forwarder->sink();
    dispatcher_options.forward_hold_events = static_cast<size_t>(options.forward_hold_events);
    // A lone controller waits for the agents of an earlier run before it
    // routes anything; all-in-one knows its only agent is in-process.
    if (options.mode == Mode::kController) {
      dispatcher_options.startup_grace = options.heartbeat * dispatcher_options.missed_heartbeats;
    }
    dispatcher_metrics = std::make_unique<controller::DispatcherMetrics>(registry);
    dispatcher_options.metrics = dispatcher_metrics.get();
    if (!options.etcd_endpoints.empty()) {
      // One of several replicas: each leadership term gets its own
      // Dispatcher; the first waits the start-up grace unless etcd lists
      // the agents to wait for.
      dispatcher_options.startup_grace = options.heartbeat * dispatcher_options.missed_heartbeats;
      absl::StatusOr<std::unique_ptr<controller::EtcdApi>> client =
          controller::NewEtcdClient(controller::EtcdClientOptions{
              .endpoints = options.etcd_endpoints,
              .ca_file = options.etcd_ca,
              .cert_file = options.etcd_cert,
              .key_file = options.etcd_key,
              .username = options.etcd_username,
              .password = options.etcd_password,
          });
      if (!client.ok()) {
        LOG(ERROR) << "cannot use etcd: " << client.status().message();
        return 2;
      }
      etcd = *std::move(client);
      controller::ReplicaOptions replica_options;
      replica_options.prefix = std::string(absl::StripSuffix(options.etcd_prefix, "/"));
      replica_options.election.key = absl::StrCat(replica_options.prefix, "/leader");
      replica_options.election.identity =
          options.replica_id.empty() ? HostName() : options.replica_id;
      replica_options.election.address = options.advertise_address;
      replica_options.election.lease_duration = options.leader_lease_duration;
      replica_options.election.renew_deadline = options.leader_renew_deadline;
      replica_options.election.retry_period = options.leader_retry_period;
      if (absl::Status valid =
              controller::ValidateLeaderElectionOptions(replica_options.election);
          !valid.ok()) {
        LOG(ERROR) << "leader election: " << valid.message();
        return 2;
      }
      replica_options.dispatcher = dispatcher_options;
      replica_options.registry = &registry;
      replica = std::make_unique<controller::Replica>(etcd.get(), Clock::Real(), replica_options);
      controller::ExportDispatcherGauges(
          registry, [r = replica.get()] { return r->dispatcher()->stats(); },
          dispatcher_metrics.get());
    } else {
      // A lone controller always leads: the same gauge as a replica's, so
      // one dashboard fits both.
      BuildGauge()
          .Name("dispatchd_leader")
          .Help("1 while this controller replica leads, 0 while it stands by.")
          .Register(registry)
          .Add({})
          .Set(1);
      if (options.mode == Mode::kController && !options.state_dir.empty()) {
        // Wait for the agents of the previous run, as recorded, instead of
        // the fixed grace; record them for the next run as they change.
        absl::StatusOr<controller::AgentHosts> known =
            controller::LoadKnownAgents(options.state_dir, &dispatcher_options);
        if (!known.ok()) {
          LOG(ERROR) << "--state-dir: " << known.status().message();
          return 2;
        }
        known_agents = std::make_unique<controller::KnownAgentsWriter>(
            controller::KnownAgentsWriterOptions{
                .path = controller::KnownAgentsPath(options.state_dir), .written = *known},
            // Asked on the writer's thread only, once the Dispatcher exists.
            [&dispatcher] { return dispatcher->KnownAgents(); }, Clock::Real());
        dispatcher_options.on_agents_changed = [w = known_agents.get()] { w->Nudge(); };
      }
      dispatcher = std::make_unique<controller::Dispatcher>(dispatcher_options, Clock::Real());
      controller::ExportDispatcherGauges(registry, dispatcher.get(), dispatcher_metrics.get());
      dispatcher->Start();
      if (known_agents != nullptr) known_agents->Start();
    }
    service = std::make_unique<controller::SessionService>(
        dispatcher.get(),
        controller::SessionServiceOptions{.access = access, .leadership = replica.get()});
    api_service = std::make_unique<controller::ApiService>(
        dispatcher.get(), controller::ApiServiceOptions{.access = access,
                                                        .backend = dispatcher.get(),
                                                        .leadership = replica.get()});
    // Generic gRPC tools can check health and list and call the API.
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    builder.RegisterService(service.get());
    builder.RegisterService(api_service.get());
    // gRPC sets SO_REUSEPORT by default, which would let a second dispatchd
    // share the port (and its calls) with the first instead of failing.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    int port = 0;
    if (!options.listen.empty()) {
      absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
          ServerCredentialsFromFlags(TlsFiles{options.tls_cert, options.tls_key, options.tls_ca});
      if (!credentials.ok()) {
        LOG(ERROR) << "TLS: " << credentials.status().message();
        return 2;
      }
      builder.AddListeningPort(options.listen, *credentials, &port);
    }
    server = builder.BuildAndStart();
    if (server == nullptr || (!options.listen.empty() && port == 0)) {
      LOG(ERROR) << "cannot listen on " << options.listen
                 << " (is another dispatchd running?); choose another address with --listen ADDR"
                 << (options.mode == Mode::kAllInOne ? ", or turn it off with --listen=" : "");
      return 1;
    }
    if (!options.listen.empty()) {
      LOG(INFO) << "controller listening on " << BoundAddress(options.listen, port)
                << " (agents and the dispatch.v1.Dispatch API)";
    }
    if (replica != nullptr) {
      LOG(INFO) << "controller replica " << replica->identity() << " (reached at "
                << replica->address() << ") campaigning for leadership on etcd "
                << absl::StrJoin(options.etcd_endpoints, ",") << " under "
                << options.etcd_prefix;
      replica->Start();
    }
  }

  std::unique_ptr<agent::DockerApi> docker;
  std::unique_ptr<agent::DockerApi> instrumented_docker;
  std::unique_ptr<agent::Agent> agent;
  if (run_agent) {
    absl::StatusOr<std::unique_ptr<agent::DockerApi>> client =
        agent::NewDockerClient(agent::DockerClientOptions{options.docker_host});
    if (!client.ok()) {
      LOG(ERROR) << "cannot use Docker at " << options.docker_host << ": " << client.status();
      return 1;
    }
    docker = *std::move(client);
    agent::AgentOptions agent_options;
    if (run_controller) {
      // All-in-one: the controller in this process, through its in-process
      // channel.
      agent_options.controllers = {agent::ControllerSession::kChannelAddress};
      agent_options.channels = agent::ControllerSession::OnlyChannel(
          server->InProcessChannel(grpc::ChannelArguments()));
    } else {
      absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
          ChannelCredentialsFromFlags(TlsFiles{options.tls_cert, options.tls_key, options.tls_ca});
      if (!credentials.ok()) {
        LOG(ERROR) << "TLS: " << credentials.status().message();
        return 2;
      }
      // The agent retries its session on its own schedule (AgentOptions'
      // reconnect backoff, 100 ms doubling, at most one heartbeat period);
      // gRPC's channel would otherwise add its own (1 s growing 1.6x per
      // attempt, up to 2 min), during which every attempt fails at once
      // with the last error. After a controller restart that kept agents
      // away past the controller's start-up grace, so events were routed
      // before their subscribers' agents were back. The channel reconnects
      // at least once a second, so it is never the one that waits longer.
      // With several controllers, an attempt waits about as long (the
      // session's connect timeout) for its channel before the next replica.
      const agent::AgentOptions agent_defaults;
      grpc::ChannelArguments channel_args;
      channel_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                          static_cast<int>(absl::ToInt64Milliseconds(
                              agent_defaults.reconnect_min_backoff)));
      channel_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
      // One channel per replica (the session keeps each), the leader's
      // included when a replica names one that is not listed.
      agent_options.controllers = options.controller;
      agent_options.channels = [credentials = *std::move(credentials),
                                channel_args](const std::string& address) {
        return std::shared_ptr<grpc::ChannelInterface>(
            grpc::CreateCustomChannel(address, credentials, channel_args));
      };
    }
    agent_options.agent_id = options.agent_id.empty() ? HostName() : options.agent_id;
    agent_metrics = std::make_unique<agent::AgentMetrics>(registry, agent_options.agent_id);
    agent_options.metrics = agent_metrics.get();
    instrumented_docker =
        agent::NewInstrumentedDockerApi(docker.get(), registry, agent_options.agent_id);
    agent_options.events_dir = options.events_dir;
    agent_options.event_namespace = options.event_namespace;
    agent_options.label_namespace = options.label_namespace;
    agent_options.max_payload_bytes = options.max_payload_bytes;
    agent_options.token = options.agent_token.empty() ? options.token : options.agent_token;
    agent_options.exec_workers = options.exec_workers;
    agent = std::make_unique<agent::Agent>(agent_options, instrumented_docker.get(), Clock::Real());
    if (absl::Status status = agent->Start(); !status.ok()) {
      LOG(ERROR) << "cannot start the agent: " << status;
      return 1;
    }
    LOG(INFO) << "dispatchd " << kVersion << " running: events " << options.events_dir
              << ", Docker " << options.docker_host << ", labels " << options.label_namespace
              << ".*";
  }

  std::unique_ptr<HealthUpdater> health;
  if (server != nullptr && server->GetHealthCheckService() != nullptr) {
    const controller::Replica* r = replica.get();
    const controller::Dispatcher* d = dispatcher.get();
    const agent::Agent* a = agent.get();
    health = std::make_unique<HealthUpdater>(
        server->GetHealthCheckService(), [r, d, a] { return CurrentReadiness(r, d, a); },
        absl::Seconds(1));
  }

  std::unique_ptr<HttpServer> metrics_server;
  if (!options.metrics_listen.empty()) {
    const controller::Replica* r = replica.get();
    const controller::Dispatcher* d = dispatcher.get();
    const agent::Agent* a = agent.get();
    absl::StatusOr<std::unique_ptr<HttpServer>> started = StartMetricsServer(
        options.metrics_listen, &registry, [r, d, a] { return CurrentReadiness(r, d, a); });
    if (!started.ok()) {
      LOG(ERROR) << "cannot serve metrics on " << options.metrics_listen << ": "
                 << started.status()
                 << "; choose another address with --metrics-listen ADDR, or turn it off with "
                    "--metrics-listen=";
      return 1;
    }
    metrics_server = *std::move(started);
    LOG(INFO) << "metrics listening on "
              << BoundAddress(options.metrics_listen, metrics_server->port())
              << " (/metrics, /healthz, /readyz)";
  }

  const int signal = WaitForSignal(signals);
  LOG(INFO) << "received " << (signal == SIGTERM ? "SIGTERM" : "SIGINT") << ": shutting down";
  if (metrics_server != nullptr) metrics_server->Stop();
  health.reset();
  // A leader hands over at once (its lease revoked) and sends its agents on.
  if (replica != nullptr) replica->Stop();
  if (dispatcher != nullptr) dispatcher->EndApiCalls();
  if (agent != nullptr) agent->Stop();
  if (server != nullptr) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (dispatcher != nullptr) dispatcher->Stop();
  // The agents as they are now (the ones whose sessions just ended too):
  // the next start waits for them.
  if (known_agents != nullptr) known_agents->Stop();
  if (forwarder != nullptr) {
    // What a destination has not taken by then is logged as dropped.
    if (absl::Status status = forwarder->Close(absl::Now() + kForwardDrainTimeout); !status.ok()) {
      LOG(WARNING) << "forwarding stopped with events undelivered: " << status;
    }
  }
  LOG(INFO) << "stopped";
  return 0;
}

}  // namespace
}  // namespace dispatchd

int main(int argc, char** argv) {
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles (its
  // debug-build default); that bookkeeping costs several percent of the
  // controller's CPU per routed event. The tests keep the checks.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<dispatchd::DispatchdOptions> options =
      dispatchd::ParseDispatchdOptions(args, [](const char* name) { return std::getenv(name); });
  if (!options.ok()) {
    std::cerr << "dispatchd: " << options.status().message() << "\n";
    return 2;
  }
  if (options->help) {
    std::cout << dispatchd::DispatchdUsage();
    return 0;
  }
  if (options->version) {
    std::cout << "dispatchd " << dispatchd::kVersion << "\n";
    return 0;
  }
  return dispatchd::Run(*options);
}
