// Fuzzes the subscription label parser and the command splitter
// (contract/labels.h).
//
// Input: text. The first line is the label namespace; every further line is
// one label, `key=value` (split at the first '='; a line without '=' is a
// key with an empty value). The whole input is also split as one command,
// newlines and all.
//
// Invariants:
// - SplitCommand either fails or yields at least one word, and quoting
//   those words back (every byte escaped with '\', '' for an empty word)
//   splits to the same words;
// - ParseSubscriptionLabels returns subscriptions sorted by event id, at
//   most one per id, none of them also reported invalid; each one fires
//   (a command or start=true), holds only its own labels, and its argv,
//   start, debounce and scope are what the per-label parsers make of them;
// - ParseStart/ParseDebounce/ParseScope accept exactly what they document.
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "contract/labels.h"
#include "tests/fuzz/fuzz_check.h"

namespace dispatchd {
namespace contract {
namespace {

std::string Quote(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& word : argv) {
    if (!out.empty()) out.push_back(' ');
    if (word.empty()) {
      out += "''";
      continue;
    }
    for (char c : word) {
      out.push_back('\\');
      out.push_back(c);
    }
  }
  return out;
}

void CheckSplit(const std::string& command) {
  absl::StatusOr<std::vector<std::string>> argv = SplitCommand(command);
  if (!argv.ok()) return;
  FUZZ_CHECK(!argv->empty()) << "SplitCommand accepted a command with no words";
  absl::StatusOr<std::vector<std::string>> again = SplitCommand(Quote(*argv));
  FUZZ_CHECK(again.ok()) << again.status();
  FUZZ_CHECK(*again == *argv) << "quoting the words of '" << command
                              << "' does not split back to them";
}

void CheckValueParsers(const std::string& value) {
  const std::string lower = absl::AsciiStrToLower(value);
  absl::StatusOr<StartPolicy> start = ParseStart(value);
  const bool is_true = lower == "true" || value == "1";
  const bool is_false = lower == "false" || value == "0";
  FUZZ_CHECK(start.ok() == (is_true || is_false)) << "ParseStart(" << value << ")";
  if (start.ok()) {
    FUZZ_CHECK((*start == StartPolicy::kStartIfStopped) == is_true) << value;
  }
  absl::StatusOr<absl::Duration> debounce = ParseDebounce(value);
  if (debounce.ok()) {
    FUZZ_CHECK(!value.empty()) << "empty debounce accepted";
    for (char c : value) FUZZ_CHECK(absl::ascii_isdigit(static_cast<unsigned char>(c))) << value;
    FUZZ_CHECK(*debounce >= absl::ZeroDuration()) << value;
    std::string digits = value.substr(std::min(value.find_first_not_of('0'), value.size()));
    if (digits.empty()) digits = "0";
    FUZZ_CHECK(absl::StrCat(absl::ToInt64Milliseconds(*debounce)) == digits)
        << "debounce " << value << " became " << *debounce;
  }
  absl::StatusOr<Scope> scope = ParseScope(value);
  FUZZ_CHECK(scope.ok() == (value == "cluster" || value == "host")) << value;
}

void CheckParsedLabels(const std::map<std::string, std::string>& labels, const std::string& ns) {
  const ParsedLabels parsed = ParseSubscriptionLabels(labels, ns);
  const std::string prefix = absl::StrCat(ns, ".");
  std::set<std::string> invalid_ids;
  for (const InvalidSubscription& bad : parsed.invalid) {
    FUZZ_CHECK(labels.count(bad.label) == 1) << "invalid entry names unknown label " << bad.label;
    FUZZ_CHECK(!bad.reason.empty()) << bad.label;
    if (!bad.event_id.empty()) {
      FUZZ_CHECK(invalid_ids.insert(bad.event_id).second)
          << "event id " << bad.event_id << " reported invalid twice";
    }
  }
  std::string previous;
  bool first = true;
  for (const Subscription& sub : parsed.subscriptions) {
    FUZZ_CHECK(!sub.event_id.empty()) << "subscription with an empty event id";
    FUZZ_CHECK(first || previous < sub.event_id)
        << "subscriptions not sorted/unique: " << previous << ", " << sub.event_id;
    first = false;
    previous = sub.event_id;
    FUZZ_CHECK(invalid_ids.count(sub.event_id) == 0)
        << sub.event_id << " is both a subscription and invalid";
    FUZZ_CHECK(!sub.argv.empty() || sub.start == StartPolicy::kStartIfStopped)
        << sub.event_id << ": a subscription that cannot fire";
    FUZZ_CHECK(sub.debounce >= absl::ZeroDuration()) << sub.event_id;
    FUZZ_CHECK(!sub.labels.empty()) << sub.event_id;
    const std::string own = absl::StrCat(prefix, sub.event_id, ".");
    for (const auto& [key, value] : sub.labels) {
      auto it = labels.find(key);
      FUZZ_CHECK(it != labels.end() && it->second == value) << "label not in the input: " << key;
      FUZZ_CHECK(absl::StartsWith(key, own)) << key << " is not a label of " << sub.event_id;
      std::optional<std::string> id = LabelEventId(key, ns);
      FUZZ_CHECK(id.has_value() && *id == sub.event_id)
          << "LabelEventId(" << key << ") disagrees with the parser (" << sub.event_id << ")";
    }
    auto command = labels.find(absl::StrCat(own, kCommandSuffix));
    if (command != labels.end()) {
      absl::StatusOr<std::vector<std::string>> argv = SplitCommand(command->second);
      FUZZ_CHECK(argv.ok() && *argv == sub.argv) << "argv of " << sub.event_id;
    } else {
      FUZZ_CHECK(sub.argv.empty()) << "argv without a command label";
    }
    auto start = labels.find(absl::StrCat(own, kStartSuffix));
    const StartPolicy want_start =
        start == labels.end() ? StartPolicy::kDoNotStart : *ParseStart(start->second);
    FUZZ_CHECK(sub.start == want_start) << "start of " << sub.event_id;
    auto debounce = labels.find(absl::StrCat(own, kDebounceSuffix));
    const absl::Duration want_debounce =
        debounce == labels.end() ? absl::ZeroDuration() : *ParseDebounce(debounce->second);
    FUZZ_CHECK(sub.debounce == want_debounce) << "debounce of " << sub.event_id;
    auto scope = labels.find(absl::StrCat(own, kScopeSuffix));
    const Scope want_scope = scope == labels.end() ? Scope::kCluster : *ParseScope(scope->second);
    FUZZ_CHECK(sub.scope == want_scope) << "scope of " << sub.event_id;
    FUZZ_CHECK(!NearMiss(sub.event_id, sub.event_id).has_value()) << sub.event_id;
  }
  // Every label with a usable event id is accounted for: in a subscription,
  // in an invalid entry of its id, or a lone container.start=false.
  for (const auto& [key, value] : labels) {
    std::optional<std::string> id = LabelEventId(key, ns);
    if (!id.has_value()) continue;
    bool found = invalid_ids.count(*id) != 0;
    for (const Subscription& sub : parsed.subscriptions) {
      if (sub.event_id == *id) found = found || sub.labels.count(key) == 1;
    }
    if (!found) {
      FUZZ_CHECK(absl::EndsWith(key, kStartSuffix) || absl::EndsWith(key, kCommandSuffix) ||
                 absl::EndsWith(key, kDebounceSuffix) || absl::EndsWith(key, kScopeSuffix))
          << key;
      // Only a declaration of nothing may go unreported: start=false, with no
      // command, debounce or scope for the same id.
      FUZZ_CHECK(absl::EndsWith(key, absl::StrCat(".", kStartSuffix)) && ParseStart(value).ok() &&
                 *ParseStart(value) == StartPolicy::kDoNotStart)
          << "label " << key << "=" << value << " vanished from the parse";
    }
  }
}

}  // namespace
}  // namespace contract
}  // namespace dispatchd

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dispatchd::contract;
  const std::string input(reinterpret_cast<const char*>(data), size);
  CheckSplit(input);

  std::vector<std::string> lines = absl::StrSplit(input, '\n');
  const std::string ns = lines.empty() ? "" : lines[0];
  std::map<std::string, std::string> labels;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> kv = absl::StrSplit(lines[i], absl::MaxSplits('=', 1));
    const std::string value = kv.size() > 1 ? kv[1] : "";
    labels[kv[0]] = value;
    CheckSplit(value);
    CheckValueParsers(value);
    std::optional<std::string> id = LabelEventId(kv[0], ns);
    if (id.has_value()) {
      FUZZ_CHECK(!id->empty()) << kv[0];
      FUZZ_CHECK(absl::StartsWith(kv[0], absl::StrCat(ns, ".", *id, "."))) << kv[0];
    }
    for (const auto& [other, unused] : labels) {
      (void)NearMiss(kv[0], other);
      (void)NearMiss(other, kv[0]);
    }
  }
  CheckParsedLabels(labels, ns);
  // The default namespace too, so label sets written for it need no header.
  CheckParsedLabels(labels, "subscription");
  return 0;
}
