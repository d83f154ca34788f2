// Subscription labels: turns a container's labels into the subscriptions it
// declares (README.md, "Labels (subscriptions)").
//
// Keys are `${ns}.${eventId}.${suffix}` with suffix one of
//   container.command      argv to exec, split by SplitCommand (no shell)
//   container.start        true/1 or false/0 (default false)
//   dispatching.debounce   non-negative integer milliseconds (default 0)
//   dispatching.scope      `cluster` (default) or `host`
// Event ids contain dots, so the suffix is matched at the end of the key and
// the event id is everything between `${ns}.` and `.${suffix}`; matching is
// exact, never by prefix.
//
// Everything here is a pure function of its arguments: thread-safe.
#ifndef DISPATCHD_CONTRACT_LABELS_H_
#define DISPATCHD_CONTRACT_LABELS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace dispatchd {
namespace contract {

// Label suffixes (after `${ns}.${eventId}.`).
inline constexpr absl::string_view kCommandSuffix = "container.command";
inline constexpr absl::string_view kStartSuffix = "container.start";
inline constexpr absl::string_view kDebounceSuffix = "dispatching.debounce";
inline constexpr absl::string_view kScopeSuffix = "dispatching.scope";

enum class StartPolicy { kDoNotStart, kStartIfStopped };

// Which events reach a subscription: those observed on any host, or only
// those observed on the subscriber's own host.
enum class Scope { kCluster, kHost };

struct Subscription {
  std::string event_id;
  // Command to exec; empty for a start-only subscription.
  std::vector<std::string> argv;
  StartPolicy start = StartPolicy::kDoNotStart;
  absl::Duration debounce = absl::ZeroDuration();
  Scope scope = Scope::kCluster;
  // The labels this subscription was built from (full key -> value), for
  // the agent's re-check before an exec and for the API.
  std::map<std::string, std::string> labels;

  friend bool operator==(const Subscription& a, const Subscription& b) {
    return a.event_id == b.event_id && a.argv == b.argv && a.start == b.start &&
           a.debounce == b.debounce && a.scope == b.scope && a.labels == b.labels;
  }
  friend bool operator!=(const Subscription& a, const Subscription& b) { return !(a == b); }
};

// A subscription (or a stray label) that could not be used, and why.
struct InvalidSubscription {
  // Empty when the label's event id could not be determined (no known
  // suffix, or nothing between the namespace and the suffix).
  std::string event_id;
  // The full key of the (first) offending label.
  std::string label;
  // Names the label(s) and the problem(s).
  std::string reason;

  friend bool operator==(const InvalidSubscription& a, const InvalidSubscription& b) {
    return a.event_id == b.event_id && a.label == b.label && a.reason == b.reason;
  }
  friend bool operator!=(const InvalidSubscription& a, const InvalidSubscription& b) {
    return !(a == b);
  }
};

struct ParsedLabels {
  // Sorted by event id; at most one per event id.
  std::vector<Subscription> subscriptions;
  // Per-event-id problems sorted by event id, then stray labels by key.
  std::vector<InvalidSubscription> invalid;
};

// Parses every label under `${label_namespace}.`; other labels are ignored.
// A subscription for an event id exists when it has a command or
// container.start is true. Any bad value among an event id's labels makes
// that one subscription invalid; the container's other event ids still
// parse. debounce/scope without a command and without start=true is
// invalid; container.start=false alone declares nothing (and is not an
// error). A label under the namespace with no known suffix or an empty
// event id is reported invalid and skipped.
ParsedLabels ParseSubscriptionLabels(const std::map<std::string, std::string>& labels,
                                     absl::string_view label_namespace);

// The event id a label key under `${label_namespace}.` declares, if it
// ends in a known suffix with a non-empty event id before it.
std::optional<std::string> LabelEventId(absl::string_view key, absl::string_view label_namespace);

// Why a label for `label_event_id` almost, but not quite, subscribes to
// `event_id` (for explaining a handler that did not run), or nothing when
// the two are unrelated or equal: the same id in another case; one a
// dot-separated prefix of the other (the old dispatcher matched prefixes,
// keys now match exactly).
std::optional<std::string> NearMiss(absl::string_view label_event_id, absl::string_view event_id);

// Splits a container.command value into argv, without a shell:
// - words are separated by unescaped spaces, tabs, newlines and carriage
//   returns;
// - outside quotes a backslash makes the next character literal (`\ ` is a
//   space inside a word);
// - '...' groups literally; "..." groups, and inside it only \" and \\ are
//   escapes (any other backslash is kept);
// - quoted and unquoted parts next to each other form one word
//   (a'b c'd -> "ab cd"); '' is an empty word.
// InvalidArgument for an unterminated quote, a trailing lone backslash, or
// a command with no words.
absl::StatusOr<std::vector<std::string>> SplitCommand(absl::string_view command);

// `true`/`1` -> kStartIfStopped, `false`/`0` -> kDoNotStart (true/false in
// any letter case, as the old dispatcher's Boolean.parseBoolean did);
// anything else InvalidArgument.
absl::StatusOr<StartPolicy> ParseStart(absl::string_view value);

// A non-negative integer number of milliseconds (digits only);
// anything else InvalidArgument.
absl::StatusOr<absl::Duration> ParseDebounce(absl::string_view value);

// `cluster` or `host`; anything else InvalidArgument.
absl::StatusOr<Scope> ParseScope(absl::string_view value);

}  // namespace contract
}  // namespace dispatchd

#endif  // DISPATCHD_CONTRACT_LABELS_H_
