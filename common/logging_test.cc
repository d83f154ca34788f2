#include "common/logging.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <iomanip>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace {

std::string Reference(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

std::string Formatted(absl::Time t) {
  char out[kLogTimeSize];
  FormatLogTime(t, out);
  return out;
}

TEST(FormatLogTimeTest, MatchesTheGeneralFormatterAcrossSecondsAndDays) {
  const absl::Time base = absl::FromUnixSeconds(1795316645);  // 2026-11-22T03:04:05Z
  // Within one second (the cached date), across second, minute and day
  // boundaries, and back in time (the cache is per second, not monotonic).
  const absl::Duration steps[] = {
      absl::ZeroDuration(),       absl::Microseconds(1),   absl::Microseconds(999999),
      absl::Seconds(1),           absl::Seconds(55),       absl::Hours(21) - absl::Seconds(5),
      absl::Hours(20) + absl::Minutes(55) + absl::Seconds(54) + absl::Microseconds(999999),
      -absl::Seconds(1),          -absl::Hours(24 * 400),  absl::Microseconds(500),
  };
  for (absl::Duration d : steps) {
    const absl::Time t = base + d;
    EXPECT_EQ(Formatted(t), Reference(t)) << absl::FormatDuration(d);
  }
  EXPECT_EQ(Formatted(base + absl::Microseconds(42)), "2026-11-22T03:04:05.000042Z");
}

TEST(FormatLogTimeTest, BeforeTheEpochAndOutsideFourDigitYears) {
  for (absl::Time t : {absl::FromUnixMicros(-1), absl::FromUnixMicros(-1500001),
                       absl::FromCivil(absl::CivilSecond(999, 12, 31, 23, 59, 59),
                                       absl::UTCTimeZone()),
                       absl::FromCivil(absl::CivilSecond(12345, 1, 1, 0, 0, 0),
                                       absl::UTCTimeZone())}) {
    const std::string want = Reference(t);
    if (want.size() < static_cast<size_t>(kLogTimeSize)) {
      EXPECT_EQ(Formatted(t), want);
    } else {
      EXPECT_EQ(Formatted(t), want.substr(0, kLogTimeSize - 1));
    }
  }
}

TEST(FormatLogTimeTest, EachThreadKeepsItsOwnCache) {
  const absl::Time a = absl::FromUnixSeconds(1795316645) + absl::Microseconds(7);
  const absl::Time b = absl::FromUnixSeconds(1000000000) + absl::Microseconds(8);
  EXPECT_EQ(Formatted(a), Reference(a));
  std::string other;
  std::thread([&] { other = Formatted(b); }).join();
  EXPECT_EQ(other, Reference(b));
  EXPECT_EQ(Formatted(a), Reference(a));
}

// Sends stderr to a file for the test's life: what has been written so
// far is what the file holds.
class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat(::testing::TempDir(), "/log-XXXXXX");
    const int fd = mkstemp(path_.data());
    ASSERT_GE(fd, 0);
    saved_ = dup(STDERR_FILENO);
    ASSERT_GE(saved_, 0);
    ASSERT_EQ(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
    SetMinLogLevel(LogLevel::kInfo);
  }
  void TearDown() override {
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    unlink(path_.c_str());
    SetMinLogLevel(LogLevel::kInfo);
  }

  // The text of every line written so far, without the time stamp, level
  // and source location.
  std::vector<std::string> Written() const {
    std::ifstream in(path_);
    std::stringstream text;
    text << in.rdbuf();
    const std::string all = text.str();
    EXPECT_TRUE(all.empty() || all.back() == '\n') << "a line was cut: " << all;
    std::vector<std::string> lines;
    for (absl::string_view line : absl::StrSplit(all, '\n', absl::SkipEmpty())) {
      const size_t text_at = line.find("] ");
      EXPECT_NE(text_at, absl::string_view::npos) << line;
      lines.emplace_back(line.substr(text_at + 2));
    }
    return lines;
  }
  std::string Raw() const {
    std::ifstream in(path_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  std::string path_;
  int saved_ = -1;
};

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;

TEST_F(LogTest, EachLineIsWrittenAsItEndsOutsideABatch) {
  LOG(INFO) << "one " << 1;
  EXPECT_THAT(Written(), ElementsAre("one 1"));
  LOG(WARNING) << "two";
  EXPECT_THAT(Written(), ElementsAre("one 1", "two"));
  LOG(DEBUG) << "not at info";
  EXPECT_THAT(Written(), ElementsAre("one 1", "two"));
}

TEST_F(LogTest, TheLineFormatIsUnchanged) {
  const int line = __LINE__ + 1;
  LOG(ERROR) << "text";
  EXPECT_THAT(Raw(), MatchesRegex(absl::StrCat(
                         "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z E "
                         ".*common/logging_test\\.cc:",
                         line, "\\] text\n")));
}

TEST_F(LogTest, AppendedPiecesMakeTheSameLineAsTheStream) {
  LOG(INFO) << "delivered " << "demo.event" << " to " << "handler" << " (" << "exec 0123" << ")";
  LogMessage(LogLevel::kInfo, __FILE__, __LINE__)
      .Append({"delivered ", "demo.event", " to ", "handler", " (", "exec 0123", ")"});
  LogMessage(LogLevel::kInfo, __FILE__, __LINE__).Append({});
  EXPECT_THAT(Written(), ElementsAre("delivered demo.event to handler (exec 0123)",
                                     "delivered demo.event to handler (exec 0123)", ""));
}

TEST_F(LogTest, ABatchWritesItsLinesInOrderWhenItCloses) {
  {
    LogBatch batch;
    LOG(INFO) << "a";
    LOG(INFO) << "b";
    EXPECT_THAT(Written(), IsEmpty());
    {
      LogBatch inner;  // nested: only the outermost one writes
      LOG(INFO) << "c";
    }
    EXPECT_THAT(Written(), IsEmpty());
  }
  EXPECT_THAT(Written(), ElementsAre("a", "b", "c"));
  LOG(INFO) << "after";
  EXPECT_THAT(Written(), ElementsAre("a", "b", "c", "after"));
}

TEST_F(LogTest, AWarningInABatchIsWrittenAtOnceWithTheLinesBeforeIt) {
  LogBatch batch;
  LOG(INFO) << "a";
  LOG(WARNING) << "w";
  EXPECT_THAT(Written(), ElementsAre("a", "w"));
  LOG(INFO) << "b";
  LOG(ERROR) << "e";
  EXPECT_THAT(Written(), ElementsAre("a", "w", "b", "e"));
}

TEST_F(LogTest, ABatchIsWrittenWholeLinesWhenItOutgrowsItsBound) {
  const std::string text(100, 'x');
  LogBatch batch;
  int lines = 0;
  while (Written().empty()) {
    LOG(INFO) << lines++ << " " << text;
    ASSERT_LT(lines, 10000);
  }
  // Written at the line that passed the bound, and not before.
  EXPECT_GT(static_cast<size_t>(lines) * text.size(), kLogBatchBytes / 2);
  EXPECT_EQ(Written().size(), static_cast<size_t>(lines));
  EXPECT_EQ(Written().back(), absl::StrCat(lines - 1, " ", text));
}

TEST_F(LogTest, ALogInTheArgumentsOfAnotherIsALineOfItsOwn) {
  auto inner = [] {
    LOG(INFO) << "inner";
    return "value";
  };
  LOG(INFO) << "outer " << inner();
  EXPECT_THAT(Written(), ElementsAre("inner", "outer value"));
}

TEST_F(LogTest, FormatFlagsDoNotCarryToTheNextLine) {
  LOG(INFO) << std::hex << 255 << " " << std::setprecision(2) << 3.14159;
  LOG(INFO) << 255 << " " << 3.14159;
  EXPECT_THAT(Written(), ElementsAre("ff 3.1", "255 3.14159"));
}

TEST_F(LogTest, ThreadsWriteWholeLinesAndEachItsOwnInOrder) {
  constexpr int kThreads = 4;
  constexpr int kLines = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kLines; i += 100) {
        LogBatch batch;  // some batched, some not
        for (int j = i; j < i + 100; ++j) {
          if (j % 3 == 0) {
            LOG(INFO) << "t" << t << " " << j << " " << std::string(j % 200, 'y');
          } else {
            LogBatch nested;
            LOG(INFO) << "t" << t << " " << j << " " << std::string(j % 200, 'y');
          }
        }
      }
      LOG(INFO) << "t" << t << " " << kLines << " ";  // outside any batch
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<int> next(kThreads, 0);
  for (const std::string& line : Written()) {
    std::vector<std::string> parts = absl::StrSplit(line, ' ');
    ASSERT_EQ(parts.size(), 3u) << line;
    const int t = parts[0][1] - '0';
    ASSERT_TRUE(t >= 0 && t < kThreads) << line;
    ASSERT_EQ(parts[1], absl::StrCat(next[t])) << line;
    if (next[t] < kLines) {
      ASSERT_EQ(parts[2], std::string(next[t] % 200, 'y')) << line;
    }
    ++next[t];
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[t], kLines + 1) << t;
}

TEST(LogDeathTest, ACheckWritesTheBatchAndItsOwnLineBeforeAborting) {
  EXPECT_DEATH(
      {
        LogBatch batch;
        LOG(INFO) << "before the check";
        CHECK(1 + 1 == 3) << "arithmetic";
      },
      "before the check\n.*Check failed: 1 \\+ 1 == 3 arithmetic");
}

}  // namespace
}  // namespace dispatchd
