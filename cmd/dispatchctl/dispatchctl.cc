#include "cmd/dispatchctl/dispatchctl.h"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <iterator>
#include <cctype>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"
#include "common/flags.h"
#include "common/leader_redirect.h"
#include "common/secret_file.h"
#include "common/status_macros.h"

namespace dispatchd {
namespace ctl {
namespace {

using dispatch::v1::ContainerState;
using dispatch::v1::SubscriptionInfo;

// The proto3 JSON mapping of `message`, with proto field names and every
// field present (zeros too), as an nlohmann value.
nlohmann::json ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string text;
  // Printing a message generated from our own .proto cannot fail.
  (void)google::protobuf::util::MessageToJsonString(message, &text, options);
  return nlohmann::json::parse(text);
}

std::string Dump(const nlohmann::json& value) { return value.dump(2) + "\n"; }

std::string StateName(ContainerState state) {
  std::string name(absl::StripPrefix(dispatch::v1::ContainerState_Name(state), "CONTAINER_STATE_"));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name == "unspecified" ? "-" : name;
}

std::string ShortId(const std::string& id) { return id.substr(0, 12); }

std::string ContainerCell(const std::string& name, const std::string& id) {
  return name.empty() ? ShortId(id) : name;
}

std::string Ago(int64_t unix_nanos, absl::Time now) {
  if (unix_nanos == 0) return "-";
  absl::Duration age = now - absl::FromUnixNanos(unix_nanos);
  if (age < absl::ZeroDuration()) age = absl::ZeroDuration();
  return absl::StrCat(absl::FormatDuration(absl::Trunc(age, absl::Seconds(1))), " ago");
}

// The controller a command talks to: the replicas of options.controller,
// in order, and the leader one of them names.
class Controllers {
 public:
  using Stub = dispatch::v1::Dispatch::Stub;
  // One attempt of a call, with its own context.
  using Attempt = std::function<grpc::Status(Stub& stub, grpc::ClientContext* context)>;

  Controllers(const DispatchctlOptions& options, const ChannelFactory& channels)
      : options_(options), channels_(channels) {}

  // Runs `attempt` at each address in turn while none can be reached, and
  // once more at the leader's address when a replica names it. Returns the
  // last attempt's status. `deadline`: each attempt has options.timeout.
  // `answered`, if given, is set by an attempt that got an answer from a
  // controller that then failed: that status is returned as it is.
  grpc::Status Call(const Attempt& attempt, bool deadline = true,
                    const bool* answered = nullptr) {
    std::vector<std::string> unreachable;
    grpc::Status status;
    for (const std::string& address : options_.controller) {
      where_ = address;
      std::unique_ptr<grpc::ClientContext> context = MakeContext(deadline);
      status = AttemptAt(address, *context, attempt);
      if (answered != nullptr && *answered) return status;
      if (const std::string leader = RedirectedTo(*context, status); !leader.empty()) {
        where_ = absl::StrCat(leader, " (the leader, as ", address, " said)");
        context = MakeContext(deadline);
        return AttemptAt(leader, *context, attempt);
      }
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return status;
      unreachable.push_back(address);
    }
    where_ = absl::StrJoin(unreachable, ", ");
    return status;
  }

  // A failed call's status, in words for a user, naming the controller.
  absl::Status Error(const grpc::Status& status) const {
    switch (status.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
        return absl::UnavailableError(absl::StrCat(
            "cannot reach the controller at ", where_, ": ", status.error_message(),
            " (is dispatchd running? pass its address with --controller ADDR)"));
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        return absl::DeadlineExceededError(
            absl::StrCat("no answer from the controller at ", where_, " within ",
                         absl::FormatDuration(options_.timeout),
                         " (is dispatchd running? pass its address with --controller ADDR)"));
      case grpc::StatusCode::UNAUTHENTICATED:
        return absl::UnauthenticatedError(absl::StrCat(
            "the controller at ", where_, " refused the call: ", status.error_message(),
            " (pass its token with --token or DISPATCHD_TOKEN)"));
      default:
        return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                            absl::StrCat("the controller at ", where_,
                                         " answered: ", status.error_message()));
    }
  }

 private:
  grpc::Status AttemptAt(const std::string& address, grpc::ClientContext& context,
                         const Attempt& attempt) const {
    std::shared_ptr<grpc::ChannelInterface> channel = channels_(address);
    if (channel == nullptr) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no channel to this address");
    }
    std::unique_ptr<Stub> stub = dispatch::v1::Dispatch::NewStub(channel);
    return attempt(*stub, &context);
  }

  // A fresh context with the token, and the deadline if asked for.
  std::unique_ptr<grpc::ClientContext> MakeContext(bool deadline) const {
    auto context = std::make_unique<grpc::ClientContext>();
    if (deadline) context->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
    if (!options_.token.empty()) {
      context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
    }
    return context;
  }

  const DispatchctlOptions& options_;
  const ChannelFactory& channels_;
  std::string where_;  // the controller(s) the last status came from
};

absl::StatusOr<std::string> ReadPayloadFile(const std::string& path) {
  std::string data;
  if (path == "-") {
    data.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    return data;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read payload file ", path));
  data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return data;
}

std::string TimeCell(int64_t unix_nanos) {
  if (unix_nanos == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixNanos(unix_nanos),
                          absl::UTCTimeZone());
}

std::string Lower(absl::string_view prefix, const std::string& name) {
  std::string out(absl::StripPrefix(name, prefix));
  for (char& c : out) c = c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string OutcomeName(dispatch::v1::DeliveryOutcome outcome) {
  return Lower("DELIVERY_OUTCOME_", dispatch::v1::DeliveryOutcome_Name(outcome));
}

std::string RecipientCell(const dispatch::v1::Recipient& r) {
  return absl::StrCat(ContainerCell(r.container_name(), r.container_id()), "@", r.agent_id());
}

bool IsPlainWord(const std::string& word) {
  if (word.empty()) return false;
  for (char c : word) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\'' || c == '"' || c == '\\') {
      return false;
    }
  }
  return true;
}

struct CommandSpec {
  const char* name;
  Command command;
  size_t min_args;
  size_t max_args;
  const char* usage;
};

constexpr CommandSpec kCommands[] = {
    {"subscriptions", Command::kSubscriptions, 0, 0, ""},
    {"invalid", Command::kInvalid, 0, 0, ""},
    {"agents", Command::kAgents, 0, 0, ""},
    {"status", Command::kStatus, 0, 0, ""},
    {"health", Command::kHealth, 0, 0, ""},
    {"emit", Command::kEmit, 0, 2, "[ID] [PAYLOAD]"},
    {"watch", Command::kWatch, 0, 1, "[ID]"},
    {"events", Command::kEvents, 0, 0, ""},
    {"event", Command::kEvent, 1, 1, "ID"},
    {"explain", Command::kExplain, 1, 1, "ID"},
    {"dead-letters", Command::kDeadLetters, 0, 0, ""},
    {"replay", Command::kReplay, 2, 2, "HOST PATH"},
    {"purge", Command::kPurge, 2, 2, "HOST PATH"},
};

const CommandSpec* FindCommand(absl::string_view name) {
  for (const CommandSpec& c : kCommands) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

std::string CommandNames() {
  std::vector<std::string> names;
  for (const CommandSpec& c : kCommands) names.push_back(c.name);
  return absl::StrJoin(names, ", ");
}

// Every flag of dispatchctl, once: parsing, the environment and --help. The
// same table type and environment variables as dispatchd (common/flags.h).
void DeclareFlags(FlagSet& flags, DispatchctlOptions& o, std::string& token_file, bool& json) {
  flags.Custom("controller", [&o](const std::string& v) {
    std::vector<std::string> addresses;
    for (absl::string_view a : absl::StrSplit(v, ',')) {
      a = absl::StripAsciiWhitespace(a);
      if (!a.empty() && std::find(addresses.begin(), addresses.end(), a) == addresses.end()) {
        addresses.emplace_back(a);
      }
    }
    if (addresses.empty()) return absl::InvalidArgumentError("--controller needs an address");
    o.controller = std::move(addresses);
    return absl::OkStatus();
  }, "ADDR[,ADDR]", "the controller's --listen address (default 127.0.0.1:7700); with\n"
                    "several replicas, all of them, tried in order: the call follows\n"
                    "the leader");
  flags.Custom("token", [&o, &token_file](const std::string& v) {
    o.token = v;
    token_file.clear();
    return absl::OkStatus();
  }, "TOKEN", "the controller's bearer token, or its API token\n"
              "($DISPATCHD_API_TOKEN, else $DISPATCHD_TOKEN)");
  // A controller with tokens per role gives API callers their own.
  flags.Environment("token", {"DISPATCHD_API_TOKEN", "DISPATCHD_TOKEN"});
  flags.String("token-file", &token_file, "FILE", "read the token from FILE ($DISPATCHD_TOKEN_FILE)");
  flags.Bool("json", &json, "print the API's response as JSON (proto3 JSON mapping)");
  flags.Environment("json", {});
  flags.Duration("timeout", &o.timeout, "D",
                 "give up after D (default 5s), at each controller tried");
  flags.Environment("timeout", {});
  flags.String("tls-ca", &o.tls_ca, "FILE", "verify a controller that serves TLS against this CA (PEM)");
  flags.String("tls-cert", &o.tls_cert, "FILE",
               "client certificate, when the controller requires one (PEM)");
  flags.String("tls-key", &o.tls_key, "FILE", "private key of --tls-cert");
  flags.Custom("metrics", [&o](const std::string& v) {
    if (v.empty()) return absl::InvalidArgumentError("--metrics needs an address");
    o.metrics = v;
    return absl::OkStatus();
  }, "ADDR", "dispatchd's --metrics-listen address, for health\n"
             "(default 127.0.0.1:9477; $DISPATCHD_METRICS_LISTEN)");
  flags.Environment("metrics", {"DISPATCHD_METRICS_LISTEN"});
  flags.String("host", &o.host, "AGENT",
               "emit, explain, dead-letters: the agent (host) concerned");
  flags.Environment("host", {});
  flags.String("path", &o.path, "PATH", "emit: write this path (a/b/c) instead of an id");
  flags.Environment("path", {});
  flags.String("idempotency-key", &o.idempotency_key, "KEY",
               "emit: a retry with the same key writes nothing new");
  flags.Environment("idempotency-key", {});
  flags.String("payload-file", &o.payload_file, "FILE",
               "emit: the payload from FILE ('-': standard input)");
  flags.Environment("payload-file", {});
  flags.Bool("prefix", &o.prefix, "watch: ID is a prefix of the event ids to watch");
  flags.Environment("prefix", {});
  flags.Custom("kind", [&o](const std::string& v) {
    for (absl::string_view k : absl::StrSplit(v, ',', absl::SkipEmpty())) {
      std::string name = absl::AsciiStrToUpper(k);
      std::replace(name.begin(), name.end(), '-', '_');
      dispatch::v1::WatchUpdate::Kind kind;
      if (!dispatch::v1::WatchUpdate::Kind_Parse(name, &kind) ||
          kind == dispatch::v1::WatchUpdate::KIND_UNSPECIFIED) {
        return absl::InvalidArgumentError(
            "expected observed, held, routed, delivery, retry, exec-exit, settled or "
            "dead-lettered");
      }
      o.kinds.push_back(name);
    }
    return absl::OkStatus();
  }, "K[,K]", "watch: only these kinds (observed, held, routed, delivery, retry,\n"
              "exec-exit, settled, dead-lettered)");
  flags.Environment("kind", {});
  flags.Positive("buffer", &o.buffer, "N",
                 "watch: updates the controller keeps while this watcher lags (default 1024)");
  flags.Environment("buffer", {});
  flags.Bool("help", &o.help, "this text");
}

std::string FlagsUsage() {
  DispatchctlOptions o;
  std::string token_file;
  bool json = false;
  FlagSet flags("DISPATCHD_");
  DeclareFlags(flags, o, token_file, json);
  return flags.Usage();
}

}  // namespace

std::string DispatchctlUsage() {
  return std::string(R"(dispatchctl: asks a running dispatchd controller what it knows.

Usage:
  dispatchctl [FLAGS] COMMAND

Commands:
  subscriptions   every valid subscription: event id, container, agent, state,
                  command, start, debounce, scope
  invalid         every subscription that is not used, with the reason
  agents          connected agents, whether their inventory is fresh, last heard
  status          counters: events observed and settled, deliveries by outcome,
                  retries, events in flight and held, agents, subscriptions
  health          asks dispatchd's /readyz (--metrics): exit 0 when ready,
                  1 with the reason when not (a container health check)
  emit [ID] [PAYLOAD]
                  emits an event: an agent writes the file (--path, --host,
                  --idempotency-key, --payload-file); answers once it is on disk
  watch [ID]      what happens to events, as it happens (--prefix, --kind);
                  one line each, or JSON lines with --json; Ctrl-C stops it
  events          events not settled yet, and their recipients
  event ID        one of them in detail
  explain ID      why each container would or would not get event ID (--host)
  dead-letters    events that exhausted their attempts, per agent (--host)
  replay HOST PATH
                  moves a dead letter back into the events directory (a new event)
  purge HOST PATH deletes a dead letter

Flags:
)" + FlagsUsage() + R"(
The controller's address and token can also come from $DISPATCHD_CONTROLLER
and $DISPATCHD_TOKEN, as for dispatchd; flags win.

With several controller replicas (--controller a:7700,b:7700,c:7700), a call
goes to the first that can be reached; a replica that does not lead names
the leader, and the call follows the leader there.

Exit status: 0 on success, 1 when the controller cannot be reached or
refuses the call (health: not ready), 2 for bad usage.
)");
}

absl::StatusOr<DispatchctlOptions> ParseDispatchctlOptions(const std::vector<std::string>& args,
                                                           const EnvLookup& env) {
  DispatchctlOptions o;
  std::string token_file;
  bool json = false;
  FlagSet flags("DISPATCHD_");
  DeclareFlags(flags, o, token_file, json);
  ASSIGN_OR_RETURN(std::vector<std::string> commands, flags.Parse(args, env));
  if (json) o.format = OutputFormat::kJson;
  commands.erase(std::remove_if(commands.begin(), commands.end(),
                                [&o](const std::string& c) {
                                  if (c != "help") return false;
                                  o.help = true;
                                  return true;
                                }),
                 commands.end());
  if (o.help) return o;
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = ReadSecretFile(token_file);
    if (!token.ok()) return token.status();
    o.token = *std::move(token);
  }
  if (commands.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no command given: expected ", CommandNames(), " (see --help)"));
  }
  const CommandSpec* spec = FindCommand(commands[0]);
  if (spec == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown command '", commands[0],
                                                   "' (expected ", CommandNames(),
                                                   "; see --help)"));
  }
  o.command = spec->command;
  o.args.assign(commands.begin() + 1, commands.end());
  if (o.args.size() < spec->min_args || o.args.size() > spec->max_args) {
    if (spec->max_args == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected one command, got '", absl::StrJoin(commands, " "), "' (see --help)"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("usage: dispatchctl ", spec->name, " ", spec->usage, " (see --help)"));
  }
  if (o.command == Command::kEmit && o.args.empty() && o.path.empty()) {
    return absl::InvalidArgumentError("emit needs an event id, or --path PATH (see --help)");
  }
  return o;
}

absl::StatusOr<std::string> RunDispatchctl(const DispatchctlOptions& options,
                                           const ChannelFactory& channels, absl::Time now) {
  Controllers controllers(options, channels);
  switch (options.command) {
    case Command::kSubscriptions:
    case Command::kInvalid: {
      dispatch::v1::ListSubscriptionsResponse response;
      grpc::Status status = controllers.Call([&](auto& stub, auto* context) {
        return stub.ListSubscriptions(context, dispatch::v1::ListSubscriptionsRequest(), &response);
      });
      if (!status.ok()) return controllers.Error(status);
      return options.command == Command::kSubscriptions
                 ? FormatSubscriptions(response, options.format)
                 : FormatInvalid(response, options.format);
    }
    case Command::kAgents: {
      dispatch::v1::ListAgentsResponse response;
      grpc::Status status = controllers.Call([&](auto& stub, auto* context) {
        return stub.ListAgents(context, dispatch::v1::ListAgentsRequest(), &response);
      });
      if (!status.ok()) return controllers.Error(status);
      return FormatAgents(response, now, options.format);
    }
    case Command::kStatus: {
      dispatch::v1::GetStatusResponse response;
      grpc::Status status = controllers.Call([&](auto& stub, auto* context) {
        return stub.GetStatus(context, dispatch::v1::GetStatusRequest(), &response);
      });
      if (!status.ok()) return controllers.Error(status);
      return FormatStatus(response, options.format);
    }
    case Command::kHealth:
      return CheckHealth(options);
    case Command::kEmit: {
      dispatch::v1::EmitRequest request;
      if (!options.path.empty()) {
        request.set_path(options.path);
      } else {
        request.set_event_id(options.args[0]);
      }
      const size_t payload_arg = options.path.empty() ? 1 : 0;
      if (!options.payload_file.empty()) {
        ASSIGN_OR_RETURN(std::string payload, ReadPayloadFile(options.payload_file));
        request.set_payload(std::move(payload));
      } else if (options.args.size() > payload_arg) {
        request.set_payload(options.args[payload_arg]);
      }
      request.set_host(options.host);
      request.set_idempotency_key(options.idempotency_key);
      dispatch::v1::EmitResponse response;
      grpc::Status status = controllers.Call([&](auto& stub, auto* context) {
        return stub.Emit(context, request, &response);
      });
      if (!status.ok()) return controllers.Error(status);
      if (options.format == OutputFormat::kJson) return Dump(ToJson(response));
      return absl::StrCat("emitted ", response.event_id(), " (", response.path(), " on ",
                          response.agent_id(), response.duplicate() ? ", already written" : "",
                          ")\n");
    }
    case Command::kWatch:
      return absl::InternalError("watch streams: use RunWatch");
    case Command::kEvents: {
      dispatch::v1::ListEventsResponse response;
      grpc::Status status = controllers.Call([&](auto& stub, auto* context) {
        return stub.ListEvents(context, dispatch::v1::ListEventsRequest(), &response);
      });
      if (!status.ok()) return controllers.Error(status);
      return FormatEvents(response, now, options.format);
    }
    case Command::kEvent: {
      dispatch::v1::GetEventRequest request;
      request.set_event_id(options.args[0]);
      request.set_agent_id(options.host);
      dispatch::v1::EventInfo response;
      grpc::Status status = controllers.Call([&](auto& stub, auto* context) {
        return stub.GetEvent(context, request, &response);
      });
      if (!status.ok()) return controllers.Error(status);
      if (options.format == OutputFormat::kJson) return Dump(ToJson(response));
      dispatch::v1::ListEventsResponse one;
      *one.add_events() = response;
      return FormatEvents(one, now, options.format);
    }
    case Command::kExplain: {
      dispatch::v1::ExplainRequest request;
      request.set_event_id(options.args[0]);
      request.set_host(options.host);
      dispatch::v1::ExplainResponse response;
      grpc::Status status = controllers.Call([&](auto& stub, auto* context) {
        return stub.Explain(context, request, &response);
      });
      if (!status.ok()) return controllers.Error(status);
      return FormatExplain(response, now, options.format);
    }
    case Command::kDeadLetters: {
      dispatch::v1::ListDeadLettersRequest request;
      request.set_host(options.host);
      dispatch::v1::ListDeadLettersResponse response;
      grpc::Status status = controllers.Call([&](auto& stub, auto* context) {
        return stub.ListDeadLetters(context, request, &response);
      });
      if (!status.ok()) return controllers.Error(status);
      return FormatDeadLetters(response, now, options.format);
    }
    case Command::kReplay: {
      dispatch::v1::ReplayDeadLetterRequest request;
      request.set_host(options.args[0]);
      request.set_path(options.args[1]);
      dispatch::v1::ReplayDeadLetterResponse response;
      grpc::Status status = controllers.Call([&](auto& stub, auto* context) {
        return stub.ReplayDeadLetter(context, request, &response);
      });
      if (!status.ok()) return controllers.Error(status);
      if (options.format == OutputFormat::kJson) return Dump(ToJson(response));
      return absl::StrCat("replayed ", options.args[1], " on ", options.args[0], ": event ",
                          response.event_id(), "\n");
    }
    case Command::kPurge: {
      dispatch::v1::PurgeDeadLetterRequest request;
      request.set_host(options.args[0]);
      request.set_path(options.args[1]);
      dispatch::v1::PurgeDeadLetterResponse response;
      grpc::Status status = controllers.Call([&](auto& stub, auto* context) {
        return stub.PurgeDeadLetter(context, request, &response);
      });
      if (!status.ok()) return controllers.Error(status);
      if (options.format == OutputFormat::kJson) return Dump(ToJson(response));
      return absl::StrCat("purged ", options.args[1], " on ", options.args[0], "\n");
    }
  }
  return absl::InternalError("unknown command");
}

absl::Status RunWatch(const DispatchctlOptions& options, const ChannelFactory& channels,
                      const std::function<bool(const std::string&)>& print) {
  dispatch::v1::WatchRequest request;
  if (!options.args.empty()) {
    if (options.prefix) {
      request.set_event_id_prefix(options.args[0]);
    } else {
      request.set_event_id(options.args[0]);
    }
  }
  for (const std::string& kind : options.kinds) {
    dispatch::v1::WatchUpdate::Kind k;
    if (dispatch::v1::WatchUpdate::Kind_Parse(kind, &k)) request.add_kinds(k);
  }
  request.set_buffer(static_cast<uint32_t>(options.buffer));
  Controllers controllers(options, channels);
  // No deadline: a watch runs until stopped. Another controller is tried
  // only before the first update: after it, the end of the stream is the
  // answer (updates may have been missed meanwhile).
  bool updated = false;
  grpc::Status status = controllers.Call(
      [&](Controllers::Stub& stub, grpc::ClientContext* context) {
        std::unique_ptr<grpc::ClientReader<dispatch::v1::WatchUpdate>> reader =
            stub.Watch(context, request);
        dispatch::v1::WatchUpdate update;
        while (reader->Read(&update)) {
          updated = true;
          if (!print(FormatWatchUpdate(update, options.format))) {
            context->TryCancel();
            break;
          }
        }
        return reader->Finish();
      },
      /*deadline=*/false, &updated);
  if (status.error_code() == grpc::StatusCode::CANCELLED) return absl::OkStatus();
  if (status.ok()) return absl::UnavailableError("the controller ended the watch");
  return controllers.Error(status);
}

absl::StatusOr<std::string> CheckHealth(const DispatchctlOptions& options) {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace http = beast::http;
  // host:port, [v6]:port or :port; a wildcard host is asked on loopback.
  const std::string& address = options.metrics;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics ", address, ": expected HOST:PORT"));
  }
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  const std::string url = absl::StrCat(
      "http://", host.find(':') == std::string::npos ? host : absl::StrCat("[", host, "]"), ":",
      port, "/readyz");

  asio::io_context ioc;
  asio::ip::tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  const auto timeout = absl::ToChronoNanoseconds(options.timeout);
  beast::error_code ec;
  auto endpoints = resolver.resolve(host, port, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot resolve ", address, ": ", ec.message()));
  http::request<http::empty_body> request{http::verb::get, "/readyz", 11};
  request.set(http::field::host, host);
  request.set(http::field::user_agent, "dispatchctl");
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  // Asynchronous operations so that one deadline bounds each step.
  stream.expires_after(timeout);
  stream.async_connect(endpoints, [&](beast::error_code e, const auto&) {
    if (e) {
      ec = e;
      return;
    }
    stream.expires_after(timeout);
    http::async_write(stream, request, [&](beast::error_code e, std::size_t) {
      if (e) {
        ec = e;
        return;
      }
      stream.expires_after(timeout);
      http::async_read(stream, buffer, response,
                       [&](beast::error_code e, std::size_t) { ec = e; });
    });
  });
  ioc.run();
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "no answer from ", url, ": ", ec.message(),
        " (is dispatchd running with --metrics-listen there? pass it with --metrics ADDR)"));
  }
  std::string body(absl::StripAsciiWhitespace(response.body()));
  if (response.result_int() != 200) {
    return absl::UnavailableError(
        absl::StrCat(url, " answered ", response.result_int(), ": ", body));
  }
  return body + "\n";
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line += "  ";
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size(), ' ');
    }
    absl::StrAppend(&out, absl::StripTrailingAsciiWhitespace(line), "\n");
  }
  return out;
}

std::string JoinCommand(const std::vector<std::string>& argv) {
  std::vector<std::string> words;
  for (const std::string& word : argv) {
    if (IsPlainWord(word)) {
      words.push_back(word);
    } else if (word.find('\'') == std::string::npos) {
      words.push_back(absl::StrCat("'", word, "'"));
    } else {
      std::string quoted = "\"";
      for (char c : word) {
        if (c == '"' || c == '\\') quoted += '\\';
        quoted += c;
      }
      words.push_back(quoted + "\"");
    }
  }
  return absl::StrJoin(words, " ");
}

std::string FormatSubscriptions(const dispatch::v1::ListSubscriptionsResponse& response,
                                OutputFormat format) {
  if (format == OutputFormat::kJson) {
    nlohmann::json json = ToJson(response);
    json.erase("invalid");
    return Dump(json);
  }
  std::vector<std::vector<std::string>> rows = {
      {"EVENT", "CONTAINER", "AGENT", "STATE", "START", "DEBOUNCE", "SCOPE", "COMMAND"}};
  for (const SubscriptionInfo& s : response.subscriptions()) {
    rows.push_back({s.event_id(), ContainerCell(s.container_name(), s.container_id()),
                    s.agent_id(), StateName(s.container_state()),
                    s.start_container() ? "yes" : "no",
                    s.debounce_ms() == 0 ? "-" : absl::StrCat(s.debounce_ms(), "ms"),
                    s.scope() == SubscriptionInfo::SCOPE_HOST ? "host" : "cluster",
                    s.argv().empty() ? "(start only)"
                                     : JoinCommand({s.argv().begin(), s.argv().end()})});
  }
  return FormatTable(rows);
}

std::string FormatInvalid(const dispatch::v1::ListSubscriptionsResponse& response,
                          OutputFormat format) {
  if (format == OutputFormat::kJson) {
    nlohmann::json json = ToJson(response);
    json.erase("subscriptions");
    return Dump(json);
  }
  std::vector<std::vector<std::string>> rows = {{"CONTAINER", "AGENT", "EVENT", "LABEL", "REASON"}};
  for (const dispatch::v1::InvalidSubscriptionInfo& s : response.invalid()) {
    rows.push_back({ContainerCell(s.container_name(), s.container_id()), s.agent_id(),
                    s.event_id().empty() ? "-" : s.event_id(), s.label(), s.reason()});
  }
  return FormatTable(rows);
}

std::string FormatAgents(const dispatch::v1::ListAgentsResponse& response, absl::Time now,
                         OutputFormat format) {
  if (format == OutputFormat::kJson) return Dump(ToJson(response));
  std::vector<std::vector<std::string>> rows = {{"AGENT", "HOST", "INVENTORY", "SEQ", "LAST HEARD"}};
  for (const dispatch::v1::AgentInfo& a : response.agents()) {
    rows.push_back({a.agent_id(), a.host(), a.inventory_fresh() ? "fresh" : "stale",
                    absl::StrCat(a.inventory_seq()), Ago(a.last_heard_unix_nanos(), now)});
  }
  return FormatTable(rows);
}

std::string FormatStatus(const dispatch::v1::GetStatusResponse& r, OutputFormat format) {
  if (format == OutputFormat::kJson) return Dump(ToJson(r));
  const dispatch::v1::DeliveryCounts& d = r.deliveries();
  auto n = [](uint64_t v) { return absl::StrCat(v); };
  std::vector<std::vector<std::string>> rows;
  if (r.leader_election()) {
    // Under leader election any replica answers: say which, and who leads.
    rows.push_back({"replica", absl::StrCat(r.replica_id(), r.leading() ? " (leader)" : " (standby)")});
    rows.push_back({"leader", r.leader_id().empty()
                                  ? "none at the moment"
                                  : absl::StrCat(r.leader_id(), " at ", r.leader_address())});
  }
  std::vector<std::vector<std::string>> counts = {
      {"events observed", n(r.events_observed())},
      {"events duplicate", n(r.events_duplicate())},
      {"events settled, delivered", n(r.events_settled_delivered())},
      {"events settled, no subscribers", n(r.events_settled_no_subscribers())},
      {"events settled, dead-lettered", n(r.events_settled_dead_letter())},
      {"events in flight", n(r.events_in_flight())},
      {"events held", n(r.events_held())},
      {"deliveries delivered", n(d.delivered())},
      {"deliveries coalesced", n(d.coalesced())},
      {"deliveries skipped, container gone", n(d.skipped_gone())},
      {"deliveries skipped, not running", n(d.skipped_not_running())},
      {"deliveries skipped, rejected", n(d.skipped_rejected())},
      {"deliveries skipped, unsubscribed", n(d.skipped_unsubscribed())},
      {"deliveries failed", n(d.failed())},
      {"commands sent", n(r.commands_sent())},
      {"retries", n(r.retries())},
      {"debounce pending", n(r.debounce_pending())},
      {"agents connected", n(r.agents_connected())},
      {"subscriptions valid", n(r.subscriptions_valid())},
      {"subscriptions invalid", n(r.subscriptions_invalid())},
  };
  rows.insert(rows.end(), counts.begin(), counts.end());
  return FormatTable(rows);
}

std::string FormatWatchUpdate(const dispatch::v1::WatchUpdate& u, OutputFormat format) {
  if (format == OutputFormat::kJson) return ToJson(u).dump();
  std::string line = absl::StrCat(TimeCell(u.time_unix_nanos()), "  ",
                                  Lower("", dispatch::v1::WatchUpdate::Kind_Name(u.kind())), "  ",
                                  u.event_id());
  switch (u.kind()) {
    case dispatch::v1::WatchUpdate::OBSERVED:
      absl::StrAppend(&line, "  ", u.path(), " on ", u.agent_id(), ", ", u.size(), " bytes",
                      u.payload_truncated() ? " (payload truncated)" : "");
      break;
    case dispatch::v1::WatchUpdate::ROUTED: {
      std::vector<std::string> to;
      for (const auto& r : u.recipients()) to.push_back(RecipientCell(r));
      absl::StrAppend(&line, "  -> ", to.empty() ? "no subscribers" : absl::StrJoin(to, ", "));
      break;
    }
    case dispatch::v1::WatchUpdate::DELIVERY:
      absl::StrAppend(&line, "  ", RecipientCell(u.recipient()), " ", OutcomeName(u.outcome()));
      if (!u.exec_id().empty()) absl::StrAppend(&line, " exec ", ShortId(u.exec_id()));
      break;
    case dispatch::v1::WatchUpdate::RETRY:
      absl::StrAppend(&line, "  ", RecipientCell(u.recipient()), " attempt ", u.attempt(),
                      ", next at ", TimeCell(u.retry_at_unix_nanos()));
      break;
    case dispatch::v1::WatchUpdate::EXEC_EXIT:
      absl::StrAppend(&line, "  ", RecipientCell(u.recipient()), " exit ", u.exit_code(),
                      " after ", u.duration_ms(), " ms");
      break;
    default:
      break;
  }
  if (!u.detail().empty()) absl::StrAppend(&line, "  (", u.detail(), ")");
  return line;
}

std::string FormatEvents(const dispatch::v1::ListEventsResponse& response, absl::Time now,
                         OutputFormat format) {
  if (format == OutputFormat::kJson) return Dump(ToJson(response));
  std::vector<std::vector<std::string>> rows = {
      {"EVENT", "AGENT", "PATH", "STATE", "OBSERVED", "RECIPIENTS"}};
  for (const auto& e : response.events()) {
    std::vector<std::string> recipients;
    for (const auto& r : e.recipients()) {
      std::string cell = absl::StrCat(RecipientCell(r.recipient()), " ",
                                      Lower("", dispatch::v1::RecipientState::State_Name(r.state())));
      if (r.state() == dispatch::v1::RecipientState::DONE) {
        absl::StrAppend(&cell, ":", OutcomeName(r.outcome()));
      }
      if (r.attempts() > 0) absl::StrAppend(&cell, " (", r.attempts(), " attempts)");
      recipients.push_back(cell);
    }
    std::string state = Lower("", dispatch::v1::EventInfo::State_Name(e.state()));
    if (!e.held_reason().empty()) absl::StrAppend(&state, ": ", e.held_reason());
    rows.push_back({e.event_id(), e.agent_id(), e.path(), state,
                    Ago(e.observed_unix_nanos(), now),
                    recipients.empty() ? "-" : absl::StrJoin(recipients, ", ")});
  }
  return FormatTable(rows);
}

std::string FormatExplain(const dispatch::v1::ExplainResponse& response, absl::Time now,
                          OutputFormat format) {
  if (format == OutputFormat::kJson) return Dump(ToJson(response));
  std::string out = absl::StrCat("event ", response.event_id(), ": ",
                                 response.would_route_now()
                                     ? "would be routed now"
                                     : absl::StrCat("would be held: ", response.held_reason()),
                                 "\n");
  if (response.containers().empty()) {
    return absl::StrCat(out, "no container has a label for it\n");
  }
  std::vector<std::vector<std::string>> rows = {
      {"CONTAINER", "AGENT", "STATE", "VERDICT", "WHY"}};
  for (const auto& x : response.containers()) {
    std::string why = x.reason() == dispatch::v1::Explanation::REASON_UNSPECIFIED
                          ? ""
                          : Lower("", dispatch::v1::Explanation::Reason_Name(x.reason()));
    if (!x.detail().empty()) absl::StrAppend(&why, why.empty() ? "" : ": ", x.detail());
    if (x.due_unix_nanos() != 0) absl::StrAppend(&why, " (at ", TimeCell(x.due_unix_nanos()), ")");
    rows.push_back({ContainerCell(x.container().container_name(), x.container().container_id()),
                    x.container().agent_id(), StateName(x.container_state()),
                    Lower("", dispatch::v1::Explanation::Verdict_Name(x.verdict())),
                    why.empty() ? "-" : why});
  }
  (void)now;
  return absl::StrCat(out, FormatTable(rows));
}

std::string FormatDeadLetters(const dispatch::v1::ListDeadLettersResponse& response,
                              absl::Time now, OutputFormat format) {
  if (format == OutputFormat::kJson) return Dump(ToJson(response));
  std::vector<std::vector<std::string>> rows = {{"AGENT", "PATH", "EVENT", "DEAD-LETTERED", "ERROR"}};
  for (const auto& d : response.dead_letters()) {
    rows.push_back({d.agent_id(), d.path(), d.event_id(), Ago(d.dead_lettered_unix_nanos(), now),
                    d.errors().empty() ? "-" : absl::StrJoin(d.errors(), "; ")});
  }
  std::string out = FormatTable(rows);
  for (const std::string& agent : response.unanswered_agents()) {
    absl::StrAppend(&out, "agent ", agent, " did not answer\n");
  }
  return out;
}

}  // namespace ctl
}  // namespace dispatchd
