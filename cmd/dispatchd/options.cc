#include "cmd/dispatchd/options.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <iterator>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/docker_client.h"
#include "common/flags.h"
#include "common/secret_file.h"
#include "common/status_macros.h"
#include "controller/access_policy.h"

namespace dispatchd {
namespace {

constexpr char kEnvPrefix[] = "DISPATCHD_";

// What the flags write besides DispatchdOptions itself: values checked or
// combined once every flag is in.
struct Pending {
  std::string docker_host;
  std::string forward;
  std::string delimiter = ",";
  std::string log_level;
  std::map<std::string, std::string> token_files;  // "api-token-file" -> path
  std::string etcd_endpoints;
  std::string etcd_password_file;
};

// The addresses of a comma-separated list, trimmed, each once, in order.
std::vector<std::string> SplitAddresses(absl::string_view value) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty() && std::find(out.begin(), out.end(), part) == out.end()) {
      out.emplace_back(part);
    }
  }
  return out;
}

// Every flag of dispatchd, once: parsing, the environment and --help.
void DeclareFlags(FlagSet& flags, DispatchdOptions& o, Pending& p) {
  flags.Section("Agent flags");
  flags.String("events-dir", &o.events_dir, "DIR", "directory watched for event files (default ./events)");
  flags.String("docker-host", &p.docker_host, "URL",
               "Docker engine (default $DOCKER_HOST, else unix:///run/docker.sock,\n"
               "or /var/run/docker.sock when only that one exists)");
  flags.String("agent-id", &o.agent_id, "ID", "name of this agent (default: host name)");
  flags.Custom(
      "controller",
      [&o](const std::string& value) {
        std::vector<std::string> addresses = SplitAddresses(value);
        if (addresses.empty()) return absl::InvalidArgumentError("expected ADDR[,ADDR...]");
        o.controller = std::move(addresses);
        return absl::OkStatus();
      },
      "ADDR[,ADDR]",
      "controller to connect to (agent mode; default 127.0.0.1:7700); with\n"
      "several replicas, all of them: the agent follows the leader");
  flags.Positive("max-payload-bytes", &o.max_payload_bytes, "N",
                 "bytes of an event file sent as its payload (default 1048576);\n"
                 "larger files are dispatched with a truncated payload");
  flags.Positive("exec-workers", &o.exec_workers, "N", "concurrent Docker execs (default 8)");

  flags.Section("Controller flags");
  flags.String("listen", &o.listen, "ADDR",
               "gRPC address for agents and the API (default 127.0.0.1:7700;\n"
               "port 0 picks a free port; --listen= turns it off in all-in-one mode)");
  flags.Bool("insecure", &o.insecure,
             "allow --listen on a non-loopback address without tokens or --tls-ca");
  flags.Duration("heartbeat", &o.heartbeat, "D",
                 "agent heartbeat period (default 5s; 3 missed end a session)");
  flags.String("state-dir", &o.state_dir, "DIR",
               "where a lone controller records the agents it knows (created if\n"
               "missing), so that after a restart it routes as soon as they are back\n"
               "instead of after a start-up grace of 3 heartbeats (default: none)");
  flags.Positive("max-attempts", &o.max_attempts, "N",
                 "delivery attempts before an event is dead-lettered (default 8)");
  flags.Duration("retry-min-backoff", &o.retry_min_backoff, "D",
                 "first retry delay ceiling (default 200ms)");
  flags.Duration("retry-max-backoff", &o.retry_max_backoff, "D", "largest retry delay (default 30s)");
  flags.String("forward-destination", &p.forward, "D",
               "forwarding destinations ($DISPATCHER_FORWARD_DESTINATION)");
  flags.String("forward-delimiter", &p.delimiter, "C",
               "separator of destinations (default ,; $DISPATCHER_FORWARD_DELIMITER)");
  flags.Positive("forward-queue-size", &o.forward_queue_size, "N",
                 "events kept per destination while it is slow or down (default\n"
                 "10000); beyond that the oldest are dropped and logged");
  flags.Custom(
      "forward-hold-events",
      [&o](const std::string& value) {
        int64_t n = 0;
        if (!absl::SimpleAtoi(value, &n) || n < 0) {
          return absl::InvalidArgumentError("expected a number, 0 or more");
        }
        o.forward_hold_events = n;
        return absl::OkStatus();
      },
      "N",
      "events whose files are kept until every destination took them, so a\n"
      "controller restart loses none (default 1000, and at most 16 MiB of\n"
      "payload); beyond that files settle once queued; 0: never kept");
  flags.Positive("forward-max-attempts", &o.forward_max_attempts, "N",
                 "attempts of an event a destination rejects with a 4xx answer (not\n"
                 "408, 425, 429) before it goes to the dead-letter file (default 5);\n"
                 "5xx answers and connection errors are retried without limit");
  flags.String("forward-dead-letter-dir", &o.forward_dead_letter_dir, "DIR",
               "where events rejected for good go, one forward-<destination>.jsonl\n"
               "per destination (default EVENTS_DIR/.forward-dead-letter; a\n"
               "controller without an events directory should set it)");

  flags.Section("Controller flags: several replicas, one leader (docs/ha.md)");
  flags.String("etcd-endpoints", &p.etcd_endpoints, "URLS",
               "etcd members (http://host:2379,...): run as one of several controller\n"
               "replicas; the one holding the leader lease leads, the others stand by\n"
               "and send agents and API callers to it");
  flags.String("etcd-prefix", &o.etcd_prefix, "PREFIX",
               "etcd key prefix of the leader key and the agents' list (default /dispatchd)");
  flags.String("etcd-ca", &o.etcd_ca, "FILE", "PEM CA that verifies https:// etcd members");
  flags.String("etcd-cert", &o.etcd_cert, "FILE", "PEM client certificate for etcd");
  flags.String("etcd-key", &o.etcd_key, "FILE", "PEM private key of --etcd-cert");
  flags.String("etcd-username", &o.etcd_username, "NAME", "etcd user (etcd auth)");
  flags.String("etcd-password-file", &p.etcd_password_file, "FILE",
               "read the etcd user's password from FILE");
  flags.String("replica-id", &o.replica_id, "ID",
               "name of this controller replica (default: host name)");
  flags.String("advertise-address", &o.advertise_address, "ADDR",
               "where agents and API callers reach this replica, given to them by\n"
               "the others (default: --listen, when it names a host)");
  flags.Duration("leader-lease-duration", &o.leader_lease_duration, "D",
                 "lease of the leader in etcd (default 3s)");
  flags.Duration("leader-renew-deadline", &o.leader_renew_deadline, "D",
                 "a leader that could not renew for this long stops leading\n"
                 "(default 2s; shorter than the lease)");
  flags.Duration("leader-retry-period", &o.leader_retry_period, "D",
                 "how often the lease is renewed, and a standby looks (default 500ms)");

  flags.Section("Common flags");
  flags.String("label-namespace", &o.label_namespace, "NS",
               "label prefix (default subscription; $DISPATCHER_LABEL_NAMESPACE)");
  flags.String("event-namespace", &o.event_namespace, "NS",
               "prefix added to every event id ($DISPATCHER_EVENT_NAMESPACE)");
  flags.String("token", &o.token, "TOKEN",
               "bearer token of agents and API callers (a controller's; what an agent presents)");
  flags.String("agent-token", &o.agent_token, "TOKEN",
               "a token for agent sessions only (an agent presents it instead of --token)");
  flags.String("api-token", &o.api_token, "TOKEN", "a token for the API only (reads and writes)");
  flags.String("api-read-token", &o.api_read_token, "TOKEN",
               "a token for the API's read calls only");
  for (const char* token : {"token", "agent-token", "api-token", "api-read-token"}) {
    const std::string flag = absl::StrCat(token, "-file");
    flags.Custom(
        flag,
        [&p, flag](const std::string& path) {
          p.token_files[flag] = path;
          return absl::OkStatus();
        },
        "FILE", absl::StrCat("read --", token, " from FILE (a container secret, a 0600 file)"));
  }
  flags.String("tls-cert", &o.tls_cert, "FILE",
               "PEM certificate: the controller's, or the agent's client certificate");
  flags.String("tls-key", &o.tls_key, "FILE", "PEM private key of --tls-cert");
  flags.String("tls-ca", &o.tls_ca, "FILE",
               "PEM CA: on the controller, agents must present a certificate it\n"
               "signed; on an agent, it verifies the controller");
  flags.String("log-level", &p.log_level, "LEVEL", "debug, info, warning or error (default info)");
  flags.String("metrics-listen", &o.metrics_listen, "ADDR",
               "HTTP address of /metrics, /healthz and /readyz (default\n"
               "127.0.0.1:9477; port 0 picks a free port; --metrics-listen= turns it off)");
  flags.Bool("help", &o.help, "this text");
  flags.Bool("version", &o.version, "the version");
}

std::vector<std::string> SplitDestinations(absl::string_view value, absl::string_view delimiter) {
  std::vector<std::string> out;
  if (delimiter.empty()) delimiter = ",";
  for (absl::string_view part : absl::StrSplit(value, delimiter)) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  return out;
}

}  // namespace

std::string DispatchdUsage() {
  DispatchdOptions o;
  Pending p;
  FlagSet flags(kEnvPrefix);
  DeclareFlags(flags, o, p);
  return absl::StrCat(R"(dispatchd: containers trigger actions in other containers by creating files.

Usage:
  dispatchd [MODE] [FLAGS]

Modes:
  all-in-one   agent and controller in one process (default; one Docker host)
  controller   the controller alone: agents connect to --listen
  agent        the agent alone: connects to --controller (to the leader,
               when it lists several controller replicas)

)",
                      flags.Usage(), R"(
Every flag can also be set in the environment as DISPATCHD_<FLAG>, upper case
with '_' for '-' (DISPATCHD_EVENTS_DIR, DISPATCHD_METRICS_LISTEN, ...); a flag
wins over its variable, which wins over the DISPATCHER_* and DOCKER_HOST ones.

Labels on handler containers (NS = label namespace, ID = event id):
  NS.ID.container.command=CMD       run CMD in the container (exec, no shell)
  NS.ID.container.start=true        start the container first if it is stopped
  NS.ID.dispatching.debounce=MS     at most one delivery per MS milliseconds
  NS.ID.dispatching.scope=host      only events seen on this container's host

A file events/a/b/c is event a.b.c; it is deleted once every subscriber has
been served. Stop with SIGTERM or Ctrl-C: unsettled files stay and are
dispatched on the next start.
)");
}

std::string EnvironmentVariable(absl::string_view flag) {
  return FlagSet(kEnvPrefix).EnvironmentVariable(flag);
}

bool IsLoopbackAddress(absl::string_view listen) {
  if (absl::StartsWith(listen, "unix:") || absl::StartsWith(listen, "unix-abstract:")) return true;
  // host:port, [v6]:port, or a bare host.
  std::string host;
  if (absl::ConsumePrefix(&listen, "[")) {
    const size_t close = listen.find(']');
    if (close == absl::string_view::npos) return false;
    host = std::string(listen.substr(0, close));
  } else {
    const size_t colon = listen.rfind(':');
    host = std::string(colon == absl::string_view::npos ? listen : listen.substr(0, colon));
  }
  if (absl::AsciiStrToLower(host) == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  }
  return false;
}

absl::Status CheckListenIsAuthenticated(const DispatchdOptions& o) {
  if (o.mode == Mode::kAgent || o.listen.empty() || o.insecure || IsLoopbackAddress(o.listen)) {
    return absl::OkStatus();
  }
  // With --tls-ca every caller, agent or API client, presents a certificate
  // signed by it.
  if (!o.tls_ca.empty()) return absl::OkStatus();
  const controller::AccessPolicy policy(
      controller::AccessTokens{o.token, o.agent_token, o.api_token, o.api_read_token});
  if (!policy.agent_sessions_open() && !policy.api_open()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "refusing to listen on ", o.listen, " without ",
      policy.agent_sessions_open() ? "a token for agents (--token or --agent-token)"
                                   : "a token for the API (--token or --api-token)",
      " or TLS client certificates (--tls-ca): anyone who can reach it could ",
      policy.agent_sessions_open() ? "connect as an agent" : "call the API",
      "; listen on 127.0.0.1, or pass --insecure to do it anyway"));
}

std::string BoundAddress(const std::string& listen, int port) {
  if (absl::StartsWith(listen, "unix:")) return listen;
  const size_t colon = listen.rfind(':');
  const size_t bracket = listen.rfind(']');
  if (colon == std::string::npos || (bracket != std::string::npos && colon < bracket)) {
    return absl::StrCat(listen, ":", port);
  }
  return absl::StrCat(listen.substr(0, colon), ":", port);
}

absl::StatusOr<DispatchdOptions> ParseDispatchdOptions(const std::vector<std::string>& args,
                                                       const EnvLookup& env) {
  DispatchdOptions o;
  Pending p;
  auto getenv = [&env](const char* name) -> std::string {
    const char* v = env(name);
    return v == nullptr ? std::string() : std::string(v);
  };
  // The old dispatcher's variables first: DISPATCHD_* and flags override them.
  if (std::string v = getenv("DISPATCHER_LABEL_NAMESPACE"); !v.empty()) o.label_namespace = v;
  o.event_namespace = getenv("DISPATCHER_EVENT_NAMESPACE");
  p.forward = getenv("DISPATCHER_FORWARD_DESTINATION");
  if (std::string v = getenv("DISPATCHER_FORWARD_DELIMITER"); !v.empty()) p.delimiter = v;
  p.docker_host = getenv("DOCKER_HOST");

  FlagSet flags(kEnvPrefix);
  DeclareFlags(flags, o, p);
  ASSIGN_OR_RETURN(std::vector<std::string> words, flags.Parse(args, env));
  // The mode, if any, comes first.
  if (!words.empty() && !args.empty() && words.front() == args.front()) {
    const std::string mode = words.front();
    words.erase(words.begin());
    if (mode == "all-in-one") o.mode = Mode::kAllInOne;
    else if (mode == "controller") o.mode = Mode::kController;
    else if (mode == "agent") o.mode = Mode::kAgent;
    else if (mode == "help") o.help = true;
    else return absl::InvalidArgumentError(absl::StrCat(
        "unknown mode '", mode, "' (expected all-in-one, controller or agent; see --help)"));
  }
  if (!words.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", words.front(), "' (see --help)"));
  }

  if (o.label_namespace.empty()) {
    return absl::InvalidArgumentError("the label namespace must not be empty");
  }
  for (const auto& [flag, path] : p.token_files) {
    const std::string token_flag(absl::StripSuffix(flag, "-file"));
    std::string* token = token_flag == "token"       ? &o.token
                         : token_flag == "agent-token" ? &o.agent_token
                         : token_flag == "api-token"   ? &o.api_token
                                                       : &o.api_read_token;
    if (!token->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "give the token once: --", token_flag, " or --", flag, ", not both"));
    }
    ASSIGN_OR_RETURN(*token, ReadSecretFile(path));
  }
  if (!p.log_level.empty() && !ParseLogLevel(p.log_level, &o.log_level)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid value '", p.log_level,
                                                   "' for --log-level: expected debug, info, "
                                                   "warning or error"));
  }
  if (o.retry_max_backoff < o.retry_min_backoff) {
    return absl::InvalidArgumentError("--retry-max-backoff is smaller than --retry-min-backoff");
  }
  if (!p.docker_host.empty() && !absl::StartsWith(p.docker_host, "unix://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid value '", p.docker_host, "' for --docker-host: only unix:// sockets are supported"));
  }
  o.docker_host = p.docker_host.empty() ? agent::DefaultDockerHost() : p.docker_host;
  if (o.mode == Mode::kController && o.listen.empty()) {
    return absl::InvalidArgumentError(
        "controller mode needs --listen ADDR: agents and API clients connect there");
  }
  o.forward_destinations = SplitDestinations(p.forward, p.delimiter);
  o.etcd_endpoints = SplitDestinations(p.etcd_endpoints, ",");
  if (!o.etcd_endpoints.empty()) {
    if (o.mode != Mode::kController) {
      return absl::InvalidArgumentError(
          "--etcd-endpoints is for controller replicas: run 'dispatchd controller', with its "
          "agents on each host ('dispatchd agent --controller a,b,c')");
    }
    if (!p.etcd_password_file.empty()) {
      ASSIGN_OR_RETURN(o.etcd_password, ReadSecretFile(p.etcd_password_file));
    }
    if (o.advertise_address.empty()) {
      const size_t colon = o.listen.rfind(':');
      const std::string host = colon == std::string::npos ? o.listen : o.listen.substr(0, colon);
      if (host.empty() || host == "0.0.0.0" || host == "[::]" || absl::StartsWith(o.listen, "unix")) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--listen ", o.listen, " does not say where other hosts reach this replica: give ",
            "--advertise-address HOST:PORT (it is sent to agents and API callers)"));
      }
      o.advertise_address = o.listen;
    }
  }
  if (o.forward_dead_letter_dir.empty()) {
    // Hidden, so the watcher never takes it for events, and beside the
    // agent's .dead-letter/ without being in it (dispatchctl dead-letters
    // lists and replays event files only).
    o.forward_dead_letter_dir =
        absl::StrCat(absl::StripSuffix(o.events_dir, "/"), "/.forward-dead-letter");
  }
  return o;
}

}  // namespace dispatchd
