// dispatchd: parses flags, wires the agent and/or the controller, runs until
// SIGTERM or SIGINT, and shuts down without losing an event file.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/agent.h"
#include "agent/docker_client.h"
#include "cmd/dispatchd/options.h"
#include "common/clock.h"
#include "common/logging.h"
#include "controller/dispatcher.h"
#include "controller/forwarder.h"
#include "controller/session_service.h"

namespace dispatchd {
namespace {

constexpr char kVersion[] = "0.1.0";
// How long a shutdown waits for forwarding destinations to take what is queued.
constexpr absl::Duration kForwardDrainTimeout = absl::Seconds(5);

bool IsLoopback(const std::string& address) {
  return absl::StartsWith(address, "127.") || absl::StartsWith(address, "localhost:") ||
         absl::StartsWith(address, "[::1]:") || absl::StartsWith(address, "unix:");
}

int WaitForSignal(const sigset_t& signals) {
  int signal = 0;
  sigwait(&signals, &signal);
  return signal;
}

int Run(const DispatchdOptions& options) {
  SetMinLogLevel(options.log_level);
  // Every thread inherits this mask; only the main thread takes the signals.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

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
    absl::StatusOr<std::unique_ptr<controller::Forwarder>> created =
        controller::Forwarder::Create(options.forward_destinations, forwarder_options);
    if (!created.ok()) {
      LOG(ERROR) << "cannot forward events: " << created.status().message();
      return 2;
    }
    forwarder = *std::move(created);
  }

  std::unique_ptr<controller::Dispatcher> dispatcher;
  std::unique_ptr<controller::SessionService> service;
  std::unique_ptr<grpc::Server> server;
  if (run_controller) {
    if (!options.listen.empty() && !IsLoopback(options.listen) && options.token.empty() &&
        !options.insecure) {
      LOG(ERROR) << "refusing to listen on " << options.listen
                 << " without --token; pass --insecure to do it anyway";
      return 2;
    }
    controller::DispatcherOptions dispatcher_options;
    dispatcher_options.label_namespace = options.label_namespace;
    dispatcher_options.heartbeat_period = options.heartbeat;
    dispatcher_options.max_attempts = options.max_attempts;
    dispatcher_options.retry_min_backoff = options.retry_min_backoff;
    dispatcher_options.retry_max_backoff = options.retry_max_backoff;
    if (forwarder != nullptr) dispatcher_options.forward = forwarder->sink();
    dispatcher = std::make_unique<controller::Dispatcher>(dispatcher_options, Clock::Real());
    dispatcher->Start();
    service = std::make_unique<controller::SessionService>(
        dispatcher.get(), controller::SessionServiceOptions{options.token});
    grpc::ServerBuilder builder;
    builder.RegisterService(service.get());
    int port = 0;
    if (!options.listen.empty()) {
      builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &port);
    }
    server = builder.BuildAndStart();
    if (server == nullptr || (!options.listen.empty() && port == 0)) {
      LOG(ERROR) << "cannot listen on " << options.listen;
      return 1;
    }
    if (!options.listen.empty()) LOG(INFO) << "controller listening on " << options.listen;
  }

  std::unique_ptr<agent::DockerApi> docker;
  std::unique_ptr<agent::Agent> agent;
  if (run_agent) {
    absl::StatusOr<std::unique_ptr<agent::DockerApi>> client =
        agent::NewDockerClient(agent::DockerClientOptions{options.docker_host});
    if (!client.ok()) {
      LOG(ERROR) << "cannot use Docker at " << options.docker_host << ": " << client.status();
      return 1;
    }
    docker = *std::move(client);
    std::shared_ptr<grpc::Channel> channel =
        run_controller ? server->InProcessChannel(grpc::ChannelArguments())
                       : grpc::CreateChannel(options.controller, grpc::InsecureChannelCredentials());
    agent::AgentOptions agent_options;
    agent_options.agent_id = options.agent_id;
    agent_options.events_dir = options.events_dir;
    agent_options.event_namespace = options.event_namespace;
    agent_options.label_namespace = options.label_namespace;
    agent_options.max_payload_bytes = options.max_payload_bytes;
    agent_options.token = options.token;
    agent_options.exec_workers = options.exec_workers;
    agent = std::make_unique<agent::Agent>(agent_options, docker.get(), Clock::Real(), channel);
    if (absl::Status status = agent->Start(); !status.ok()) {
      LOG(ERROR) << "cannot start the agent: " << status;
      return 1;
    }
    LOG(INFO) << "dispatchd " << kVersion << " running: events " << options.events_dir
              << ", Docker " << options.docker_host << ", labels " << options.label_namespace
              << ".*";
  }

  const int signal = WaitForSignal(signals);
  LOG(INFO) << "received " << (signal == SIGTERM ? "SIGTERM" : "SIGINT") << ": shutting down";
  if (agent != nullptr) agent->Stop();
  if (server != nullptr) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (dispatcher != nullptr) dispatcher->Stop();
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
