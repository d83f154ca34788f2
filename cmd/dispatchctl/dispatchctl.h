// dispatchctl: asks a running dispatchd controller, over its public gRPC API
// (proto/dispatch/v1/api.proto), what it knows.
//
//   dispatchctl [--controller ADDR[,ADDR...]] [--token T] [--json] [--timeout D]
//               subscriptions|invalid|agents|status
//   dispatchctl [--metrics ADDR] [--timeout D] health
//
// Everything but flag parsing and printing lives here so it can be tested;
// cmd/dispatchctl/main.cc only wires it to argv, the environment and stdout.
// All functions are thread-compatible and keep no state.
#ifndef DISPATCHD_CMD_DISPATCHCTL_DISPATCHCTL_H_
#define DISPATCHD_CMD_DISPATCHCTL_DISPATCHCTL_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "proto/dispatch/v1/api.grpc.pb.h"

namespace dispatchd {
namespace ctl {

enum class Command {
  kSubscriptions,
  kInvalid,
  kAgents,
  kStatus,
  kHealth,
  kEmit,         // emit [ID] [PAYLOAD]
  kWatch,        // watch [ID]
  kEvents,       // events
  kEvent,        // event ID
  kExplain,      // explain ID
  kDeadLetters,  // dead-letters
  kReplay,       // replay HOST PATH
  kPurge,        // purge HOST PATH
};
enum class OutputFormat { kTable, kJson };

// The channel to the controller at `address` (host:port).
using ChannelFactory =
    std::function<std::shared_ptr<grpc::ChannelInterface>(const std::string& address)>;

struct DispatchctlOptions {
  bool help = false;
  Command command = Command::kStatus;
  // The controller replicas, tried in order (see RunDispatchctl).
  std::vector<std::string> controller = {"127.0.0.1:7700"};
  // Sent as `authorization: Bearer <token>` when non-empty.
  std::string token;
  // TLS, when the controller's --listen port uses it (PEM files).
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  OutputFormat format = OutputFormat::kTable;
  // Deadline of the call, connecting included, at each controller tried.
  absl::Duration timeout = absl::Seconds(5);
  // `health`: dispatchd's --metrics-listen address, whose /readyz it asks.
  // A wildcard host (0.0.0.0, [::] or none) is asked on loopback.
  std::string metrics = "127.0.0.1:9477";
  // The command's words after its name (event id, payload, host, path).
  std::vector<std::string> args;
  // emit / explain / dead-letters: the agent (host) concerned.
  std::string host;
  // emit: a path instead of an event id; the key that makes retries safe;
  // the payload from a file ("-": standard input) instead of the argument.
  std::string path;
  std::string idempotency_key;
  std::string payload_file;
  // watch: the id is a prefix; only these kinds (names as in the proto,
  // e.g. "delivery,settled"); the server-side buffer.
  bool prefix = false;
  std::vector<std::string> kinds;
  int buffer = 0;
};

// Parses argv[1..] and the environment (DISPATCHD_TOKEN, DISPATCHD_CONTROLLER,
// DISPATCHD_METRICS_LISTEN: the same variables dispatchd reads; flags win).
// InvalidArgument names the bad flag, value or command; exactly one command
// is required unless --help is given.
absl::StatusOr<DispatchctlOptions> ParseDispatchctlOptions(const std::vector<std::string>& args,
                                                           const EnvLookup& env);

// The text of --help.
std::string DispatchctlUsage();

// Runs the command against the controller and returns what to print. The
// call goes to the addresses of options.controller in order, through
// `channels`, until one answers (one that cannot be reached, UNAVAILABLE,
// sends it to the next); when a replica that does not lead answers with the
// leader's address (common/leader_redirect.h), the call is made once more
// there. Each attempt has options.timeout. `now` is used for "last heard
// ... ago". Errors say what went wrong in words for a user, naming the
// controller concerned: Unavailable or DeadlineExceeded when the controller
// cannot be reached, Unauthenticated for a missing or wrong token,
// otherwise the controller's own code and message.
absl::StatusOr<std::string> RunDispatchctl(const DispatchctlOptions& options,
                                           const ChannelFactory& channels, absl::Time now);

// `watch`: calls `print` with one line per update (a JSON object per line
// with --json) until the stream ends or `print` returns false. The
// controller is found as by RunDispatchctl, before the first update. The end
// of the stream is an error: RESOURCE_EXHAUSTED (fell behind, with the count
// missed) or whatever ended it.
absl::Status RunWatch(const DispatchctlOptions& options, const ChannelFactory& channels,
                      const std::function<bool(const std::string&)>& print);

// One watch update as a line (no newline): time, kind, event id, and what
// the kind carries.
std::string FormatWatchUpdate(const dispatch::v1::WatchUpdate& update, OutputFormat format);

// `health`: GET /readyz on options.metrics (plain HTTP) within
// options.timeout. Returns the answer's body on 200; Unavailable with the
// body (dispatchd's reason) on any other status, or with what failed when
// nothing answered. Needs no shell, so it serves as a container HEALTHCHECK.
absl::StatusOr<std::string> CheckHealth(const DispatchctlOptions& options);

// Output of each command; aligned columns (kTable) or the proto3 JSON
// mapping of the response with proto field names (kJson). Both end in a
// newline.
std::string FormatSubscriptions(const dispatch::v1::ListSubscriptionsResponse& response,
                                OutputFormat format);
std::string FormatInvalid(const dispatch::v1::ListSubscriptionsResponse& response,
                          OutputFormat format);
std::string FormatAgents(const dispatch::v1::ListAgentsResponse& response, absl::Time now,
                         OutputFormat format);
std::string FormatStatus(const dispatch::v1::GetStatusResponse& response, OutputFormat format);
std::string FormatEvents(const dispatch::v1::ListEventsResponse& response, absl::Time now,
                         OutputFormat format);
std::string FormatExplain(const dispatch::v1::ExplainResponse& response, absl::Time now,
                          OutputFormat format);
std::string FormatDeadLetters(const dispatch::v1::ListDeadLettersResponse& response,
                              absl::Time now, OutputFormat format);

// Rows as columns separated by two spaces, each column as wide as its
// widest cell; the last column is not padded. `rows[0]` is the header.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

// argv as a container.command label value that splits back into the same
// words (plain words as they are, others quoted).
std::string JoinCommand(const std::vector<std::string>& argv);

}  // namespace ctl
}  // namespace dispatchd

#endif  // DISPATCHD_CMD_DISPATCHCTL_DISPATCHCTL_H_
