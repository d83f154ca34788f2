#include "cmd/dispatchd/options.h"

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
#include "common/secret_file.h"
#include "common/status_macros.h"

namespace dispatchd {
namespace {

absl::Status BadValue(absl::string_view flag, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid value '", value, "' for --", flag, ": ", why));
}

absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view v) {
  absl::Duration d;
  if (absl::ParseDuration(v, &d) && d > absl::ZeroDuration()) return d;
  return BadValue(flag, v, "expected a positive duration such as 500ms, 5s or 1m");
}

absl::StatusOr<int64_t> ParsePositive(absl::string_view flag, absl::string_view v) {
  int64_t n = 0;
  if (absl::SimpleAtoi(v, &n) && n > 0) return n;
  return BadValue(flag, v, "expected a positive integer");
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

// Flags that take a value, and --insecure (true or false): each can also be
// set through DISPATCHD_<FLAG>.
constexpr const char* kValueFlags[] = {
    "events-dir", "docker-host", "agent-id", "controller", "max-payload-bytes",
    "exec-workers", "listen", "heartbeat", "max-attempts", "retry-min-backoff",
    "retry-max-backoff", "label-namespace", "event-namespace", "token", "token-file",
    "agent-token", "agent-token-file", "api-token", "api-token-file", "api-read-token",
    "api-read-token-file",
    "tls-cert", "tls-key", "tls-ca", "forward-destination", "forward-delimiter",
    "forward-queue-size", "log-level", "metrics-listen", "insecure"};

}  // namespace

std::string DispatchdUsage() {
  return R"(dispatchd: containers trigger actions in other containers by creating files.

Usage:
  dispatchd [MODE] [FLAGS]

Modes:
  all-in-one   agent and controller in one process (default; one Docker host)
  controller   the controller alone: agents connect to --listen
  agent        the agent alone: connects to --controller

Agent flags:
  --events-dir DIR          directory watched for event files (default ./events)
  --docker-host URL         Docker engine (default $DOCKER_HOST, else
                            unix:///run/docker.sock, or /var/run/docker.sock
                            when only that one exists)
  --agent-id ID             name of this agent (default: host name)
  --controller ADDR         controller to connect to (agent mode; default 127.0.0.1:7700)
  --max-payload-bytes N     bytes of an event file sent as its payload (default 1048576);
                            larger files are dispatched with a truncated payload
  --exec-workers N          concurrent Docker execs (default 8)

Controller flags:
  --listen ADDR             gRPC address for agents and the API (default 127.0.0.1:7700;
                            port 0 picks a free port; --listen= turns it off in
                            all-in-one mode)
  --insecure                allow --listen on a non-loopback address without --token
  --heartbeat DURATION      agent heartbeat period (default 5s; 3 missed end a session)
  --max-attempts N          delivery attempts before an event is dead-lettered (default 8)
  --retry-min-backoff D     first retry delay ceiling (default 200ms)
  --retry-max-backoff D     largest retry delay (default 30s)

Common flags:
  --label-namespace NS      label prefix (default subscription; $DISPATCHER_LABEL_NAMESPACE)
  --event-namespace NS      prefix added to every event id ($DISPATCHER_EVENT_NAMESPACE)
  --token TOKEN             bearer token agents present to the controller ($DISPATCHD_TOKEN)
  --token-file FILE         read the token from FILE (a container secret, a 0600 file)
  --agent-token TOKEN       a token for agent sessions only (an agent presents it
                            instead of --token)
  --api-token TOKEN         a token for the API only (reads and writes)
  --api-read-token TOKEN    a token for the API's read calls only
                            (each also as --...-token-file FILE)
  --tls-cert FILE           PEM certificate: the controller's, or the agent's client certificate
  --tls-key FILE            PEM private key of --tls-cert
  --tls-ca FILE             PEM CA: on the controller, agents must present a certificate it
                            signed; on an agent, it verifies the controller
  --forward-destination D   forwarding destinations ($DISPATCHER_FORWARD_DESTINATION)
  --forward-delimiter C     separator of destinations (default ,; $DISPATCHER_FORWARD_DELIMITER)
  --forward-queue-size N    events kept per destination while it is slow or down (default
                            10000); beyond that the oldest are dropped and logged
  --log-level LEVEL         debug, info, warning or error (default info; $DISPATCHD_LOG_LEVEL)
  --metrics-listen ADDR     HTTP address of /metrics, /healthz and /readyz
                            (default 127.0.0.1:9477; port 0 picks a free port;
                            --metrics-listen= turns it off)
  --help                    this text
  --version                 the version

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
)";
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
  auto getenv = [&env](const std::string& name) -> std::string {
    const char* v = env(name.c_str());
    return v == nullptr ? std::string() : std::string(v);
  };
  // The old dispatcher's variables first: DISPATCHD_* and flags override them.
  if (std::string v = getenv("DISPATCHER_LABEL_NAMESPACE"); !v.empty()) o.label_namespace = v;
  o.event_namespace = getenv("DISPATCHER_EVENT_NAMESPACE");
  std::string forward = getenv("DISPATCHER_FORWARD_DESTINATION");
  std::string delimiter = getenv("DISPATCHER_FORWARD_DELIMITER");
  if (delimiter.empty()) delimiter = ",";
  std::string docker_host = getenv("DOCKER_HOST");
  std::string log_level;
  std::map<std::string, std::string> token_files;  // "api-token-file" -> path

  size_t i = 0;
  if (i < args.size() && !absl::StartsWith(args[i], "-")) {
    const std::string& mode = args[i++];
    if (mode == "all-in-one") o.mode = Mode::kAllInOne;
    else if (mode == "controller") o.mode = Mode::kController;
    else if (mode == "agent") o.mode = Mode::kAgent;
    else if (mode == "help") o.help = true;
    else return absl::InvalidArgumentError(absl::StrCat(
        "unknown mode '", mode, "' (expected all-in-one, controller or agent; see --help)"));
  }

  // Sets one flag from its value.
  auto apply = [&](const std::string& name, const std::string& value) -> absl::Status {
    if (name == "events-dir") o.events_dir = value;
    else if (name == "docker-host") docker_host = value;
    else if (name == "agent-id") o.agent_id = value;
    else if (name == "controller") o.controller = value;
    else if (name == "max-payload-bytes") { ASSIGN_OR_RETURN(o.max_payload_bytes, ParsePositive(name, value)); }
    else if (name == "exec-workers") { ASSIGN_OR_RETURN(int64_t n, ParsePositive(name, value)); o.exec_workers = static_cast<int>(n); }
    else if (name == "listen") o.listen = value;
    else if (name == "heartbeat") { ASSIGN_OR_RETURN(o.heartbeat, ParseDurationFlag(name, value)); }
    else if (name == "max-attempts") { ASSIGN_OR_RETURN(int64_t n, ParsePositive(name, value)); o.max_attempts = static_cast<int>(n); }
    else if (name == "retry-min-backoff") { ASSIGN_OR_RETURN(o.retry_min_backoff, ParseDurationFlag(name, value)); }
    else if (name == "retry-max-backoff") { ASSIGN_OR_RETURN(o.retry_max_backoff, ParseDurationFlag(name, value)); }
    else if (name == "label-namespace") o.label_namespace = value;
    else if (name == "event-namespace") o.event_namespace = value;
    else if (name == "token") o.token = value;
    else if (name == "agent-token") o.agent_token = value;
    else if (name == "api-token") o.api_token = value;
    else if (name == "api-read-token") o.api_read_token = value;
    else if (absl::EndsWith(name, "token-file")) token_files[name] = value;
    else if (name == "tls-cert") o.tls_cert = value;
    else if (name == "tls-key") o.tls_key = value;
    else if (name == "tls-ca") o.tls_ca = value;
    else if (name == "forward-destination") forward = value;
    else if (name == "forward-delimiter") delimiter = value;
    else if (name == "forward-queue-size") { ASSIGN_OR_RETURN(o.forward_queue_size, ParsePositive(name, value)); }
    else if (name == "log-level") log_level = value;
    else if (name == "metrics-listen") o.metrics_listen = value;
    else if (name == "insecure") {
      if (value != "true" && value != "false") return BadValue(name, value, "expected true or false");
      o.insecure = value == "true";
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    return absl::OkStatus();
  };

  // Every flag can also come from DISPATCHD_<FLAG> (upper case, '-' as '_'):
  // how a container image, a compose file or a systemd environment file sets
  // them. Empty variables count as unset. Flags win.
  for (const char* flag : kValueFlags) {
    const std::string variable = EnvironmentVariable(flag);
    const std::string value = getenv(variable);
    if (value.empty()) continue;
    if (absl::Status s = apply(flag, value); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(variable, ": ", s.message()));
    }
  }

  for (; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "-h") {
      o.help = true;
      continue;
    }
    if (!absl::ConsumePrefix(&arg, "--")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", args[i], "' (see --help)"));
    }
    std::string name, value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
      has_value = true;
    } else {
      name = std::string(arg);
    }
    if (name == "help" || name == "h") { o.help = true; continue; }
    if (name == "version") { o.version = true; continue; }
    if (name == "insecure") {
      RETURN_IF_ERROR(apply(name, has_value ? value : "true"));
      continue;
    }
    if (std::find(std::begin(kValueFlags), std::end(kValueFlags), name) ==
        std::end(kValueFlags)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
      value = args[++i];
    }
    RETURN_IF_ERROR(apply(name, value));
  }

  if (o.label_namespace.empty()) {
    return absl::InvalidArgumentError("the label namespace must not be empty");
  }
  for (const auto& [flag, path] : token_files) {
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
  if (!log_level.empty() && !ParseLogLevel(log_level, &o.log_level)) {
    return BadValue("log-level", log_level, "expected debug, info, warning or error");
  }
  if (o.retry_max_backoff < o.retry_min_backoff) {
    return absl::InvalidArgumentError("--retry-max-backoff is smaller than --retry-min-backoff");
  }
  if (!docker_host.empty() && !absl::StartsWith(docker_host, "unix://")) {
    return BadValue("docker-host", docker_host, "only unix:// sockets are supported");
  }
  o.docker_host = docker_host.empty() ? agent::DefaultDockerHost() : docker_host;
  if (o.mode == Mode::kController && o.listen.empty()) {
    return absl::InvalidArgumentError(
        "controller mode needs --listen ADDR: agents and API clients connect there");
  }
  o.forward_destinations = SplitDestinations(forward, delimiter);
  return o;
}

std::string EnvironmentVariable(absl::string_view flag) {
  std::string name = absl::StrCat("DISPATCHD_", flag);
  for (char& c : name) c = c == '-' ? '_' : absl::ascii_toupper(static_cast<unsigned char>(c));
  return name;
}

}  // namespace dispatchd
