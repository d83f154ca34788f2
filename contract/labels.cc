#include "contract/labels.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_join.h"

namespace dispatchd {
namespace contract {
namespace {

bool IsSeparator(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

constexpr absl::string_view kSuffixes[] = {kCommandSuffix, kStartSuffix, kDebounceSuffix,
                                           kScopeSuffix};

// The labels of one event id, by suffix.
struct EventLabels {
  std::map<std::string, std::string> labels;  // full key -> value
  const std::string* command_key = nullptr;
  const std::string* start_key = nullptr;
  const std::string* debounce_key = nullptr;
  const std::string* scope_key = nullptr;
};

// Builds the subscription of one event id, or explains why it is invalid.
// Returns false (and fills nothing) when the labels declare no subscription
// and nothing is wrong with them.
bool BuildSubscription(const std::string& event_id, const EventLabels& ev,
                       const std::map<std::string, std::string>& all, Subscription* sub,
                       InvalidSubscription* invalid) {
  std::vector<std::string> problems;
  std::string first_bad;
  auto fail = [&](const std::string& key, const absl::Status& status) {
    if (first_bad.empty()) first_bad = key;
    problems.push_back(absl::StrCat(key, ": ", status.message()));
  };

  sub->event_id = event_id;
  if (ev.command_key != nullptr) {
    auto argv = SplitCommand(all.at(*ev.command_key));
    if (argv.ok()) {
      sub->argv = *std::move(argv);
    } else {
      fail(*ev.command_key, argv.status());
    }
  }
  if (ev.start_key != nullptr) {
    auto start = ParseStart(all.at(*ev.start_key));
    if (start.ok()) {
      sub->start = *start;
    } else {
      fail(*ev.start_key, start.status());
    }
  }
  if (ev.debounce_key != nullptr) {
    auto debounce = ParseDebounce(all.at(*ev.debounce_key));
    if (debounce.ok()) {
      sub->debounce = *debounce;
    } else {
      fail(*ev.debounce_key, debounce.status());
    }
  }
  if (ev.scope_key != nullptr) {
    auto scope = ParseScope(all.at(*ev.scope_key));
    if (scope.ok()) {
      sub->scope = *scope;
    } else {
      fail(*ev.scope_key, scope.status());
    }
  }

  if (problems.empty() && ev.command_key == nullptr &&
      sub->start != StartPolicy::kStartIfStopped) {
    // container.start=false alone is an explicit "nothing"; any other label
    // without a command or start=true is a subscription that cannot fire.
    if (ev.debounce_key == nullptr && ev.scope_key == nullptr) return false;
    const std::string& key = ev.debounce_key != nullptr ? *ev.debounce_key : *ev.scope_key;
    first_bad = key;
    problems.push_back(
        absl::StrCat(key, ": no ", kCommandSuffix, " and ", kStartSuffix, " is not true"));
  }

  if (!problems.empty()) {
    invalid->event_id = event_id;
    invalid->label = first_bad;
    invalid->reason = absl::StrJoin(problems, "; ");
    return true;
  }
  sub->labels = ev.labels;
  return true;
}

}  // namespace

std::optional<std::string> LabelEventId(absl::string_view key,
                                        absl::string_view label_namespace) {
  const std::string prefix = absl::StrCat(label_namespace, ".");
  if (!absl::ConsumePrefix(&key, prefix)) return std::nullopt;
  for (absl::string_view suffix : kSuffixes) {
    if (key.size() > suffix.size() + 1 && absl::EndsWith(key, suffix) &&
        key[key.size() - suffix.size() - 1] == '.') {
      return std::string(key.substr(0, key.size() - suffix.size() - 1));
    }
  }
  return std::nullopt;
}

std::optional<std::string> NearMiss(absl::string_view label_event_id, absl::string_view event_id) {
  if (label_event_id == event_id) return std::nullopt;
  if (absl::EqualsIgnoreCase(label_event_id, event_id)) {
    return absl::StrCat("subscribes to '", label_event_id, "', which differs from '", event_id,
                        "' only in case (event ids are case-sensitive)");
  }
  if (absl::StartsWith(event_id, label_event_id) &&
      event_id[label_event_id.size()] == '.') {
    return absl::StrCat("subscribes to '", label_event_id, "', a prefix of '", event_id,
                        "' (keys match exactly; the old dispatcher's prefix match does not apply)");
  }
  if (absl::StartsWith(label_event_id, event_id) && label_event_id[event_id.size()] == '.') {
    return absl::StrCat("subscribes to '", label_event_id, "', which only starts with '",
                        event_id, "'");
  }
  return std::nullopt;
}

ParsedLabels ParseSubscriptionLabels(const std::map<std::string, std::string>& labels,
                                     absl::string_view label_namespace) {
  const std::string prefix = absl::StrCat(label_namespace, ".");
  std::map<std::string, EventLabels> by_event;  // ordered: deterministic output
  std::vector<InvalidSubscription> stray;

  for (auto it = labels.lower_bound(prefix);
       it != labels.end() && absl::StartsWith(it->first, prefix); ++it) {
    const std::string& key = it->first;
    absl::string_view rest = absl::string_view(key).substr(prefix.size());
    absl::string_view suffix;
    for (absl::string_view candidate : kSuffixes) {
      if (rest == candidate ||
          (absl::EndsWith(rest, candidate) && rest[rest.size() - candidate.size() - 1] == '.')) {
        suffix = candidate;
        break;
      }
    }
    if (suffix.empty()) {
      stray.push_back({"", key,
                       absl::StrCat(key, ": no known suffix (expected ", prefix,
                                    "<event id>.{", absl::StrJoin(kSuffixes, ","), "})")});
      continue;
    }
    if (rest.size() <= suffix.size() + 1) {
      stray.push_back({"", key, absl::StrCat(key, ": empty event id")});
      continue;
    }
    std::string event_id(rest.substr(0, rest.size() - suffix.size() - 1));
    EventLabels& ev = by_event[event_id];
    ev.labels.emplace(key, it->second);
    if (suffix == kCommandSuffix) {
      ev.command_key = &key;
    } else if (suffix == kStartSuffix) {
      ev.start_key = &key;
    } else if (suffix == kDebounceSuffix) {
      ev.debounce_key = &key;
    } else {
      ev.scope_key = &key;
    }
  }

  ParsedLabels out;
  for (const auto& [event_id, ev] : by_event) {
    Subscription sub;
    InvalidSubscription invalid;
    if (!BuildSubscription(event_id, ev, labels, &sub, &invalid)) continue;
    if (!invalid.reason.empty()) {
      out.invalid.push_back(std::move(invalid));
    } else {
      out.subscriptions.push_back(std::move(sub));
    }
  }
  // `stray` is already in key order (labels is a sorted map).
  for (auto& s : stray) out.invalid.push_back(std::move(s));
  return out;
}

absl::StatusOr<std::vector<std::string>> SplitCommand(absl::string_view command) {
  std::vector<std::string> argv;
  std::string word;
  bool in_word = false;  // true once a word has started, even if still empty ('')
  size_t i = 0;
  const size_t n = command.size();
  while (i < n) {
    const char c = command[i];
    if (IsSeparator(c)) {
      if (in_word) {
        argv.push_back(std::move(word));
        word.clear();
        in_word = false;
      }
      ++i;
    } else if (c == '\\') {
      if (i + 1 >= n) {
        return absl::InvalidArgumentError(
            absl::StrCat("trailing lone backslash at offset ", i, " in command"));
      }
      word.push_back(command[i + 1]);
      in_word = true;
      i += 2;
    } else if (c == '\'') {
      const size_t close = command.find('\'', i + 1);
      if (close == absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("unterminated single quote at offset ", i, " in command"));
      }
      word.append(command.data() + i + 1, close - i - 1);
      in_word = true;
      i = close + 1;
    } else if (c == '"') {
      const size_t open = i;
      ++i;
      bool closed = false;
      while (i < n) {
        const char d = command[i];
        if (d == '"') {
          closed = true;
          ++i;
          break;
        }
        if (d == '\\' && i + 1 < n && (command[i + 1] == '"' || command[i + 1] == '\\')) {
          word.push_back(command[i + 1]);
          i += 2;
        } else {
          word.push_back(d);
          ++i;
        }
      }
      if (!closed) {
        return absl::InvalidArgumentError(
            absl::StrCat("unterminated double quote at offset ", open, " in command"));
      }
      in_word = true;
    } else {
      word.push_back(c);
      in_word = true;
      ++i;
    }
  }
  if (in_word) argv.push_back(std::move(word));
  if (argv.empty()) return absl::InvalidArgumentError("empty command");
  return argv;
}

absl::StatusOr<StartPolicy> ParseStart(absl::string_view value) {
  if (value == "1" || absl::EqualsIgnoreCase(value, "true")) return StartPolicy::kStartIfStopped;
  if (value == "0" || absl::EqualsIgnoreCase(value, "false")) return StartPolicy::kDoNotStart;
  return absl::InvalidArgumentError(
      absl::StrCat("\"", value, "\" is not a boolean (expected true, false, 1 or 0)"));
}

absl::StatusOr<absl::Duration> ParseDebounce(absl::string_view value) {
  const bool digits =
      !value.empty() && std::all_of(value.begin(), value.end(),
                                    [](char c) { return absl::ascii_isdigit(c); });
  if (!digits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", value, "\" is not a non-negative integer number of milliseconds"));
  }
  int64_t ms = 0;
  if (!absl::SimpleAtoi(value, &ms)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", value, "\" milliseconds is too large"));
  }
  return absl::Milliseconds(ms);
}

absl::StatusOr<Scope> ParseScope(absl::string_view value) {
  if (value == "cluster") return Scope::kCluster;
  if (value == "host") return Scope::kHost;
  return absl::InvalidArgumentError(
      absl::StrCat("\"", value, "\" is not a scope (expected cluster or host)"));
}

}  // namespace contract
}  // namespace dispatchd
