#include "common/flags.h"

#include <map>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace {

using ::dispatchd::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FlagSetTest : public ::testing::Test {
 protected:
  FlagSetTest() : flags_("APP_") {
    flags_.Section("Things");
    flags_.String("name", &name_, "NAME", "the name");
    flags_.Positive("count", &count_, "N", "how many\nsecond line");
    flags_.Duration("wait", &wait_, "D", "how long");
    flags_.Bool("loud", &loud_, "shout");
    flags_.Custom("color", [this](const std::string& v) {
      if (v != "red" && v != "blue") return absl::InvalidArgumentError("expected red or blue");
      color_ = v;
      return absl::OkStatus();
    }, "C", "red or blue");
    flags_.Bool("help", &help_, "this text");
  }
  absl::StatusOr<std::vector<std::string>> Parse(std::vector<std::string> args) {
    return flags_.Parse(args, [this](const char* name) -> const char* {
      auto it = env_.find(name);
      return it == env_.end() ? nullptr : it->second.c_str();
    });
  }

  FlagSet flags_;
  std::map<std::string, std::string> env_;
  std::string name_ = "default";
  int64_t count_ = 1;
  absl::Duration wait_ = absl::Seconds(1);
  bool loud_ = false;
  std::string color_;
  bool help_ = false;
};

TEST_F(FlagSetTest, BothSpellingsBooleansAndWords) {
  auto words = Parse({"run", "--name", "a", "--count=3", "--wait", "2s", "--loud", "x",
                      "--color=red"});
  ASSERT_OK(words);
  EXPECT_THAT(*words, ElementsAre("run", "x"));
  EXPECT_EQ(name_, "a");
  EXPECT_EQ(count_, 3);
  EXPECT_EQ(wait_, absl::Seconds(2));
  EXPECT_TRUE(loud_);
  EXPECT_EQ(color_, "red");
  ASSERT_OK(Parse({"--loud=false", "-h"}));
  EXPECT_FALSE(loud_);
  EXPECT_TRUE(help_);
}

TEST_F(FlagSetTest, TheEnvironmentIsBelowTheCommandLine) {
  EXPECT_EQ(flags_.EnvironmentVariable("some-flag"), "APP_SOME_FLAG");
  env_["APP_NAME"] = "from-env";
  env_["APP_COUNT"] = "7";
  env_["APP_WAIT"] = "";  // empty: unset
  ASSERT_OK(Parse({"--count", "9"}));
  EXPECT_EQ(name_, "from-env");
  EXPECT_EQ(count_, 9);
  EXPECT_EQ(wait_, absl::Seconds(1));
  env_["APP_COLOR"] = "green";
  EXPECT_THAT(Parse({}), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("APP_COLOR: invalid value 'green' for --color")));
}

TEST_F(FlagSetTest, ErrorsSayWhatIsWrong) {
  EXPECT_THAT(Parse({"--nope"}), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("unknown flag --nope (see --help)")));
  EXPECT_THAT(Parse({"--name"}), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("flag --name needs a value")));
  EXPECT_THAT(Parse({"--count=0"}), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("invalid value '0' for --count: expected "
                                                       "a positive integer")));
  EXPECT_THAT(Parse({"--wait=soon"}), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("positive duration")));
  EXPECT_THAT(Parse({"--loud=maybe"}), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("expected true or false")));
  EXPECT_THAT(Parse({"-x"}), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("unexpected argument '-x'")));
}

TEST_F(FlagSetTest, UsageListsEveryFlagAlignedBySection) {
  const std::string usage = flags_.Usage();
  EXPECT_THAT(usage, HasSubstr("Things:\n"));
  // Two spaces after the widest flag ("--name NAME").
  EXPECT_THAT(usage, HasSubstr("  --name NAME  the name\n"));
  EXPECT_THAT(usage, HasSubstr("  --count N    how many\n               second line\n"));
  EXPECT_THAT(usage, HasSubstr("  --loud       shout\n"));
}

}  // namespace
}  // namespace dispatchd
