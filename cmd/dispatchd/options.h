// Command line and environment of `dispatchd`.
//
//   dispatchd [all-in-one|controller|agent] [--flag=value | --flag value]...
//
// Flags win over environment variables, which win over defaults. Every flag
// --foo-bar can be set as DISPATCHD_FOO_BAR (so a container image, a compose
// file or a systemd environment file configures dispatchd without flags); the
// DISPATCHER_* variables are the old dispatcher's and keep their meaning, below
// the DISPATCHD_* ones; DOCKER_HOST is below DISPATCHD_DOCKER_HOST.
#ifndef DISPATCHD_CMD_DISPATCHD_OPTIONS_H_
#define DISPATCHD_CMD_DISPATCHD_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/logging.h"

namespace dispatchd {

enum class Mode { kAllInOne, kController, kAgent };

struct DispatchdOptions {
  Mode mode = Mode::kAllInOne;
  bool help = false;
  bool version = false;

  // Agent.
  std::string events_dir = "./events";
  std::string docker_host;  // resolved: flag, DOCKER_HOST, local socket
  std::string agent_id;     // default: host name
  // The controller replicas, in the order they are tried: the agent goes to
  // whichever leads. --controller a:7700,b:7700 (one address is a list too).
  std::vector<std::string> controller = {"127.0.0.1:7700"};
  int64_t max_payload_bytes = 1 << 20;
  int exec_workers = 8;

  // Controller.
  // gRPC address of the agent session and the public API; empty: none (all-in-one
  // only, with --listen=). Port 0 picks a free port.
  std::string listen = "127.0.0.1:7700";
  bool insecure = false;
  absl::Duration heartbeat = absl::Seconds(5);
  int max_attempts = 8;
  absl::Duration retry_min_backoff = absl::Milliseconds(200);
  absl::Duration retry_max_backoff = absl::Seconds(30);
  // A lone controller's state directory (controller/known_agents.h): the
  // agents it knows, so that a restart waits for those rather than a fixed
  // start-up grace. Empty: none.
  std::string state_dir;
  // Leader election (docs/ha.md): empty etcd_endpoints means none.
  std::vector<std::string> etcd_endpoints;
  std::string etcd_prefix = "/dispatchd";
  std::string etcd_ca;
  std::string etcd_cert;
  std::string etcd_key;
  std::string etcd_username;
  std::string etcd_password;
  // This replica's name and the address agents and API callers reach it
  // at (default: the host name, and --listen when it names a host).
  std::string replica_id;
  std::string advertise_address;
  absl::Duration leader_lease_duration = absl::Seconds(3);
  absl::Duration leader_renew_deadline = absl::Seconds(2);
  absl::Duration leader_retry_period = absl::Milliseconds(500);

  // Both.
  std::string label_namespace = "subscription";
  std::string event_namespace;
  // Bearer tokens (controller/access_policy.h): `token` is shared by agents
  // and the API, as before; the others are for one role each. An agent
  // presents agent_token when set, else token.
  std::string token;
  std::string agent_token;
  std::string api_token;
  std::string api_read_token;
  // TLS for the agent <-> controller session (PEM files). Controller: its
  // certificate and key, and a CA that agents' certificates must chain to.
  // Agent: a CA that verifies the controller, and optionally its own
  // certificate and key.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  std::vector<std::string> forward_destinations;
  int64_t forward_queue_size = 10000;  // events waiting per destination
  // Events whose files wait for forwarding (DispatcherOptions::forward_hold_events).
  int64_t forward_hold_events = 1000;
  // Attempts of an event a destination rejects for good (HTTP 4xx) before
  // it goes to the destination's dead-letter file.
  int forward_max_attempts = 5;
  // Where those files go; default: <events_dir>/.forward-dead-letter.
  std::string forward_dead_letter_dir;
  LogLevel log_level = LogLevel::kInfo;
  // HTTP address of /metrics, /healthz, /readyz; empty turns the server off.
  std::string metrics_listen = "127.0.0.1:9477";
};

// Parses argv[1..] and the environment. InvalidArgument names the bad flag
// or value.
absl::StatusOr<DispatchdOptions> ParseDispatchdOptions(const std::vector<std::string>& args,
                                                       const EnvLookup& env);

// The environment variable of a flag: "events-dir" -> "DISPATCHD_EVENTS_DIR".
std::string EnvironmentVariable(absl::string_view flag);

// The text of --help.
std::string DispatchdUsage();

// True when the gRPC address `listen` can be reached from this host only: a
// unix: socket, an IPv4 address in 127.0.0.0/8, [::1] (or an IPv4-mapped
// 127.x.y.z), or localhost. Any other host name is not: it may resolve to
// any address (127.0.0.1.example.com is a name, not a loopback address).
bool IsLoopbackAddress(absl::string_view listen);

// OK unless the controller part of `options` would listen off loopback
// (--listen set and not IsLoopbackAddress) while agents or API callers could
// connect without credentials (no token for their role and no --tls-ca)
// and --insecure is not given: then FailedPrecondition saying what is
// missing. Checked before anything listens.
absl::Status CheckListenIsAuthenticated(const DispatchdOptions& options);

// `listen` with its port replaced by `port` (the port the server actually
// bound, e.g. for 127.0.0.1:0); unix: addresses are returned unchanged.
std::string BoundAddress(const std::string& listen, int port);

}  // namespace dispatchd

#endif  // DISPATCHD_CMD_DISPATCHD_OPTIONS_H_
