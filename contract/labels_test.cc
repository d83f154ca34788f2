#include "contract/labels.h"

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace contract {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<std::string> Split(absl::string_view command) {
  auto argv = SplitCommand(command);
  EXPECT_TRUE(argv.ok()) << command << ": " << argv.status();
  return argv.ok() ? *argv : std::vector<std::string>{};
}

// ---- SplitCommand ----

TEST(SplitCommandTest, OldDispatcherSingleQuotes) {
  EXPECT_THAT(Split("echo 'some content' > someFile"),
              ElementsAre("echo", "some content", ">", "someFile"));
}

TEST(SplitCommandTest, OldDispatcherDoubleQuotes) {
  EXPECT_THAT(Split("echo \"some content\" > someFile"),
              ElementsAre("echo", "some content", ">", "someFile"));
}

TEST(SplitCommandTest, ValueAsDockerReceivesItFromAShell) {
  // `docker run -l ...command=touch\ handled` in a shell gives the label
  // value `touch handled`.
  EXPECT_THAT(Split("touch handled"), ElementsAre("touch", "handled"));
}

TEST(SplitCommandTest, EscapedSpaceInTheLabelValueIsOneWord) {
  EXPECT_THAT(Split("touch\\ handled"), ElementsAre("touch handled"));
}

TEST(SplitCommandTest, SeparatorsAreSpaceTabNewline) {
  EXPECT_THAT(Split("  a\tb\n c  \r\nd "), ElementsAre("a", "b", "c", "d"));
}

TEST(SplitCommandTest, AdjacentPartsJoin) {
  EXPECT_THAT(Split("a'b c'd"), ElementsAre("ab cd"));
  EXPECT_THAT(Split("x\"y z\"'w'\\ v"), ElementsAre("xy zw v"));
}

TEST(SplitCommandTest, SingleQuotesAreLiteral) {
  EXPECT_THAT(Split(R"('a\b "c"' d)"), ElementsAre(R"(a\b "c")", "d"));
}

TEST(SplitCommandTest, DoubleQuoteEscapes) {
  EXPECT_THAT(Split(R"("say \"hi\"" "back\\slash" "keep\n")"),
              ElementsAre(R"(say "hi")", R"(back\slash)", R"(keep\n)"));
}

TEST(SplitCommandTest, BackslashOutsideQuotesEscapesAnyCharacter) {
  EXPECT_THAT(Split(R"(a\'b \"c \\d \x)"), ElementsAre("a'b", "\"c", "\\d", "x"));
}

TEST(SplitCommandTest, EmptyQuotedWordIsKept) {
  EXPECT_THAT(Split("printf '' \"\" x"), ElementsAre("printf", "", "", "x"));
}

TEST(SplitCommandTest, ShellIsExplicit) {
  EXPECT_THAT(Split("sh -c 'echo $HOME > out.txt; ls'"),
              ElementsAre("sh", "-c", "echo $HOME > out.txt; ls"));
}

TEST(SplitCommandTest, UnterminatedSingleQuote) {
  auto argv = SplitCommand("echo 'oops");
  ASSERT_FALSE(argv.ok());
  EXPECT_EQ(argv.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(argv.status().message()), HasSubstr("unterminated single quote"));
}

TEST(SplitCommandTest, UnterminatedDoubleQuote) {
  auto argv = SplitCommand("echo \"oops \\\"");
  ASSERT_FALSE(argv.ok());
  EXPECT_EQ(argv.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(argv.status().message()), HasSubstr("unterminated double quote"));
}

TEST(SplitCommandTest, TrailingBackslash) {
  auto argv = SplitCommand("echo \\");
  ASSERT_FALSE(argv.ok());
  EXPECT_EQ(argv.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(argv.status().message()), HasSubstr("backslash"));
}

TEST(SplitCommandTest, EmptyOrBlank) {
  for (absl::string_view command : {"", " ", " \t\n "}) {
    auto argv = SplitCommand(command);
    ASSERT_FALSE(argv.ok()) << "[" << command << "]";
    EXPECT_EQ(argv.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(argv.status().message()), HasSubstr("empty command"));
  }
}

// ---- ParseStart / ParseDebounce / ParseScope ----

TEST(ParseStartTest, Values) {
  EXPECT_EQ(*ParseStart("true"), StartPolicy::kStartIfStopped);
  EXPECT_EQ(*ParseStart("TRUE"), StartPolicy::kStartIfStopped);
  EXPECT_EQ(*ParseStart("1"), StartPolicy::kStartIfStopped);
  EXPECT_EQ(*ParseStart("false"), StartPolicy::kDoNotStart);
  EXPECT_EQ(*ParseStart("False"), StartPolicy::kDoNotStart);
  EXPECT_EQ(*ParseStart("0"), StartPolicy::kDoNotStart);
  for (absl::string_view bad : {"", "yes", "no", "2", " true", "on"}) {
    auto start = ParseStart(bad);
    ASSERT_FALSE(start.ok()) << bad;
    EXPECT_EQ(start.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(ParseDebounceTest, Values) {
  EXPECT_EQ(*ParseDebounce("0"), absl::ZeroDuration());
  EXPECT_EQ(*ParseDebounce("1000"), absl::Milliseconds(1000));
  EXPECT_EQ(*ParseDebounce("007"), absl::Milliseconds(7));
  for (absl::string_view bad :
       {"", "-1", "+5", "1.5", "1s", " 10", "10 ", "99999999999999999999999"}) {
    auto debounce = ParseDebounce(bad);
    ASSERT_FALSE(debounce.ok()) << bad;
    EXPECT_EQ(debounce.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(ParseScopeTest, Values) {
  EXPECT_EQ(*ParseScope("cluster"), Scope::kCluster);
  EXPECT_EQ(*ParseScope("host"), Scope::kHost);
  auto scope = ParseScope("node");
  ASSERT_FALSE(scope.ok());
  EXPECT_EQ(scope.status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- ParseSubscriptionLabels ----

TEST(ParseSubscriptionLabelsTest, CommandWithDefaults) {
  std::map<std::string, std::string> labels = {
      {"subscription.demo.some-event.container.command", "touch handled"},
      {"com.docker.compose.project", "x"},
  };
  ParsedLabels parsed = ParseSubscriptionLabels(labels, "subscription");
  EXPECT_THAT(parsed.invalid, IsEmpty());
  ASSERT_EQ(parsed.subscriptions.size(), 1u);
  const Subscription& s = parsed.subscriptions[0];
  EXPECT_EQ(s.event_id, "demo.some-event");
  EXPECT_THAT(s.argv, ElementsAre("touch", "handled"));
  EXPECT_EQ(s.start, StartPolicy::kDoNotStart);
  EXPECT_EQ(s.debounce, absl::ZeroDuration());
  EXPECT_EQ(s.scope, Scope::kCluster);
  EXPECT_EQ(s.labels, (std::map<std::string, std::string>{
                          {"subscription.demo.some-event.container.command", "touch handled"}}));
}

TEST(ParseSubscriptionLabelsTest, AllSuffixes) {
  std::map<std::string, std::string> labels = {
      {"ns.a.b.container.command", "echo hi"},
      {"ns.a.b.container.start", "1"},
      {"ns.a.b.dispatching.debounce", "250"},
      {"ns.a.b.dispatching.scope", "host"},
  };
  ParsedLabels parsed = ParseSubscriptionLabels(labels, "ns");
  EXPECT_THAT(parsed.invalid, IsEmpty());
  ASSERT_EQ(parsed.subscriptions.size(), 1u);
  const Subscription& s = parsed.subscriptions[0];
  EXPECT_EQ(s.event_id, "a.b");
  EXPECT_THAT(s.argv, ElementsAre("echo", "hi"));
  EXPECT_EQ(s.start, StartPolicy::kStartIfStopped);
  EXPECT_EQ(s.debounce, absl::Milliseconds(250));
  EXPECT_EQ(s.scope, Scope::kHost);
  EXPECT_EQ(s.labels, labels);
}

TEST(ParseSubscriptionLabelsTest, ExactMatchNotPrefix) {
  // The old dispatcher's prefix match subscribed `subscription.a...` to
  // `a.b` too; here each label subscribes to exactly its own event id.
  std::map<std::string, std::string> labels = {
      {"subscription.a.container.command", "cmd-a"},
      {"subscription.a.b.container.command", "cmd-ab"},
  };
  ParsedLabels parsed = ParseSubscriptionLabels(labels, "subscription");
  EXPECT_THAT(parsed.invalid, IsEmpty());
  ASSERT_EQ(parsed.subscriptions.size(), 2u);
  EXPECT_EQ(parsed.subscriptions[0].event_id, "a");
  EXPECT_THAT(parsed.subscriptions[0].argv, ElementsAre("cmd-a"));
  EXPECT_EQ(parsed.subscriptions[1].event_id, "a.b");
  EXPECT_THAT(parsed.subscriptions[1].argv, ElementsAre("cmd-ab"));
}

TEST(ParseSubscriptionLabelsTest, EventIdMayLookLikeASuffix) {
  std::map<std::string, std::string> labels = {
      {"subscription.x.container.start.container.command", "run"},
  };
  ParsedLabels parsed = ParseSubscriptionLabels(labels, "subscription");
  ASSERT_EQ(parsed.subscriptions.size(), 1u);
  EXPECT_EQ(parsed.subscriptions[0].event_id, "x.container.start");
  EXPECT_THAT(parsed.invalid, IsEmpty());
}

TEST(ParseSubscriptionLabelsTest, OtherNamespacesIgnored) {
  std::map<std::string, std::string> labels = {
      {"subscriptions.a.container.command", "x"},   // different namespace
      {"other.a.container.command", "x"},
      {"subscription", "x"},
      {"xsubscription.a.container.command", "x"},
  };
  ParsedLabels parsed = ParseSubscriptionLabels(labels, "subscription");
  EXPECT_THAT(parsed.subscriptions, IsEmpty());
  EXPECT_THAT(parsed.invalid, IsEmpty());
}

TEST(ParseSubscriptionLabelsTest, UnknownSuffixAndEmptyEventIdReportedAndSkipped) {
  std::map<std::string, std::string> labels = {
      {"subscription.a.container.command", "ok"},
      {"subscription.a.container.comand", "typo"},
      {"subscription.a", "bare"},
      {"subscription.container.command", "no id"},
      {"subscription..container.start", "true"},
      {"subscription.xcontainer.command", "glued"},
  };
  ParsedLabels parsed = ParseSubscriptionLabels(labels, "subscription");
  ASSERT_EQ(parsed.subscriptions.size(), 1u);
  EXPECT_EQ(parsed.subscriptions[0].event_id, "a");
  ASSERT_EQ(parsed.invalid.size(), 5u);
  std::map<std::string, std::string> reason_by_label;
  for (const auto& inv : parsed.invalid) {
    EXPECT_EQ(inv.event_id, "");
    EXPECT_THAT(inv.reason, HasSubstr(inv.label));
    reason_by_label[inv.label] = inv.reason;
  }
  EXPECT_THAT(reason_by_label["subscription.a.container.comand"], HasSubstr("no known suffix"));
  EXPECT_THAT(reason_by_label["subscription.a"], HasSubstr("no known suffix"));
  EXPECT_THAT(reason_by_label["subscription.xcontainer.command"], HasSubstr("no known suffix"));
  EXPECT_THAT(reason_by_label["subscription.container.command"], HasSubstr("empty event id"));
  EXPECT_THAT(reason_by_label["subscription..container.start"], HasSubstr("empty event id"));
}

TEST(ParseSubscriptionLabelsTest, StartOnlyIsValid) {
  ParsedLabels parsed =
      ParseSubscriptionLabels({{"subscription.wake.container.start", "true"}}, "subscription");
  EXPECT_THAT(parsed.invalid, IsEmpty());
  ASSERT_EQ(parsed.subscriptions.size(), 1u);
  EXPECT_THAT(parsed.subscriptions[0].argv, IsEmpty());
  EXPECT_EQ(parsed.subscriptions[0].start, StartPolicy::kStartIfStopped);
}

TEST(ParseSubscriptionLabelsTest, StartFalseAloneDeclaresNothing) {
  ParsedLabels parsed =
      ParseSubscriptionLabels({{"subscription.wake.container.start", "false"}}, "subscription");
  EXPECT_THAT(parsed.subscriptions, IsEmpty());
  EXPECT_THAT(parsed.invalid, IsEmpty());
}

TEST(ParseSubscriptionLabelsTest, DebounceOrScopeWithoutCommandOrStartIsInvalid) {
  std::map<std::string, std::string> labels = {
      {"subscription.a.dispatching.debounce", "100"},
      {"subscription.b.dispatching.scope", "host"},
      {"subscription.c.dispatching.debounce", "100"},
      {"subscription.c.container.start", "false"},
  };
  ParsedLabels parsed = ParseSubscriptionLabels(labels, "subscription");
  EXPECT_THAT(parsed.subscriptions, IsEmpty());
  ASSERT_EQ(parsed.invalid.size(), 3u);
  EXPECT_EQ(parsed.invalid[0].event_id, "a");
  EXPECT_EQ(parsed.invalid[0].label, "subscription.a.dispatching.debounce");
  EXPECT_THAT(parsed.invalid[0].reason,
              HasSubstr("no container.command and container.start is not true"));
  EXPECT_EQ(parsed.invalid[1].event_id, "b");
  EXPECT_EQ(parsed.invalid[1].label, "subscription.b.dispatching.scope");
  EXPECT_EQ(parsed.invalid[2].event_id, "c");
}

TEST(ParseSubscriptionLabelsTest, OneBadValueInvalidatesOnlyItsEventId) {
  std::map<std::string, std::string> labels = {
      {"subscription.bad-cmd.container.command", "echo 'unterminated"},
      {"subscription.bad-start.container.command", "echo ok"},
      {"subscription.bad-start.container.start", "yes"},
      {"subscription.bad-debounce.container.command", "echo ok"},
      {"subscription.bad-debounce.dispatching.debounce", "-5"},
      {"subscription.bad-scope.container.command", "echo ok"},
      {"subscription.bad-scope.dispatching.scope", "planet"},
      {"subscription.good.container.command", "echo fine"},
      {"subscription.good.dispatching.debounce", "1000"},
  };
  ParsedLabels parsed = ParseSubscriptionLabels(labels, "subscription");
  ASSERT_EQ(parsed.subscriptions.size(), 1u);
  EXPECT_EQ(parsed.subscriptions[0].event_id, "good");
  EXPECT_EQ(parsed.subscriptions[0].debounce, absl::Seconds(1));

  ASSERT_EQ(parsed.invalid.size(), 4u);
  // Sorted by event id.
  EXPECT_EQ(parsed.invalid[0].event_id, "bad-cmd");
  EXPECT_EQ(parsed.invalid[0].label, "subscription.bad-cmd.container.command");
  EXPECT_THAT(parsed.invalid[0].reason, HasSubstr("subscription.bad-cmd.container.command"));
  EXPECT_THAT(parsed.invalid[0].reason, HasSubstr("unterminated single quote"));
  EXPECT_EQ(parsed.invalid[1].event_id, "bad-debounce");
  EXPECT_EQ(parsed.invalid[1].label, "subscription.bad-debounce.dispatching.debounce");
  EXPECT_THAT(parsed.invalid[1].reason, HasSubstr("\"-5\""));
  EXPECT_EQ(parsed.invalid[2].event_id, "bad-scope");
  EXPECT_EQ(parsed.invalid[2].label, "subscription.bad-scope.dispatching.scope");
  EXPECT_THAT(parsed.invalid[2].reason, HasSubstr("planet"));
  EXPECT_EQ(parsed.invalid[3].event_id, "bad-start");
  EXPECT_EQ(parsed.invalid[3].label, "subscription.bad-start.container.start");
  EXPECT_THAT(parsed.invalid[3].reason, HasSubstr("\"yes\""));
}

TEST(ParseSubscriptionLabelsTest, SeveralBadValuesAreAllNamed) {
  std::map<std::string, std::string> labels = {
      {"subscription.e.container.command", ""},
      {"subscription.e.container.start", "maybe"},
  };
  ParsedLabels parsed = ParseSubscriptionLabels(labels, "subscription");
  EXPECT_THAT(parsed.subscriptions, IsEmpty());
  ASSERT_EQ(parsed.invalid.size(), 1u);
  EXPECT_EQ(parsed.invalid[0].label, "subscription.e.container.command");
  EXPECT_THAT(parsed.invalid[0].reason, HasSubstr("subscription.e.container.command: empty"));
  EXPECT_THAT(parsed.invalid[0].reason, HasSubstr("subscription.e.container.start: \"maybe\""));
}

TEST(ParseSubscriptionLabelsTest, SortedByEventIdWhateverTheLabelOrder) {
  std::map<std::string, std::string> labels = {
      {"subscription.zeta.container.command", "z"},
      {"subscription.alpha.container.start", "true"},
      {"subscription.mid.dle.container.command", "m"},
  };
  ParsedLabels parsed = ParseSubscriptionLabels(labels, "subscription");
  ASSERT_EQ(parsed.subscriptions.size(), 3u);
  EXPECT_EQ(parsed.subscriptions[0].event_id, "alpha");
  EXPECT_EQ(parsed.subscriptions[1].event_id, "mid.dle");
  EXPECT_EQ(parsed.subscriptions[2].event_id, "zeta");
}

TEST(ParseSubscriptionLabelsTest, CustomNamespaceWithDots) {
  std::map<std::string, std::string> labels = {
      {"io.example.sub.build.done.container.command", "make deploy"},
      {"subscription.build.done.container.command", "ignored"},
  };
  ParsedLabels parsed = ParseSubscriptionLabels(labels, "io.example.sub");
  ASSERT_EQ(parsed.subscriptions.size(), 1u);
  EXPECT_EQ(parsed.subscriptions[0].event_id, "build.done");
  EXPECT_THAT(parsed.subscriptions[0].argv, ElementsAre("make", "deploy"));
}

TEST(LabelEventIdTest, KnownSuffixAndANonEmptyId) {
  EXPECT_EQ(LabelEventId("subscription.a.b.container.command", "subscription"), "a.b");
  EXPECT_EQ(LabelEventId("subscription.x.dispatching.scope", "subscription"), "x");
  EXPECT_EQ(LabelEventId("subscription.container.command", "subscription"), std::nullopt);
  EXPECT_EQ(LabelEventId("subscription.a.container.comand", "subscription"), std::nullopt);
  EXPECT_EQ(LabelEventId("other.a.container.command", "subscription"), std::nullopt);
}

TEST(NearMissTest, CaseAndPrefixesInBothDirections) {
  EXPECT_EQ(NearMiss("a.b", "a.b"), std::nullopt);
  EXPECT_EQ(NearMiss("x", "a.b"), std::nullopt);
  EXPECT_EQ(NearMiss("a.bc", "a.b"), std::nullopt) << "not at a dot";
  EXPECT_THAT(NearMiss("Demo.Ping", "demo.ping").value_or(""), HasSubstr("only in case"));
  EXPECT_THAT(NearMiss("demo", "demo.ping").value_or(""), HasSubstr("a prefix of 'demo.ping'"));
  EXPECT_THAT(NearMiss("demo.ping.x", "demo.ping").value_or(""),
              HasSubstr("only starts with 'demo.ping'"));
}

}  // namespace
}  // namespace contract
}  // namespace dispatchd
