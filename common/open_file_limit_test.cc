#include "common/open_file_limit.h"

#include <sys/resource.h>

#include <algorithm>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace {

using ::testing::HasSubstr;

TEST(OpenFileLimitTest, TheSoftLimitIsRaisedToTheHardLimit) {
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  // Lower the soft limit first (any process may), as a shell's 1024 would be.
  const rlim_t low = std::min<rlim_t>(limit.rlim_max, 256);
  limit.rlim_cur = low;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
  absl::StatusOr<OpenFileLimit> raised = RaiseOpenFileLimit();
  ASSERT_TRUE(raised.ok()) << raised.status();
  EXPECT_EQ(raised->soft_before, low);
  EXPECT_EQ(raised->soft, limit.rlim_max);
  EXPECT_EQ(raised->hard, limit.rlim_max);
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  EXPECT_EQ(limit.rlim_cur, limit.rlim_max) << "the process's own limit";
  // Once raised, nothing changes.
  raised = RaiseOpenFileLimit();
  ASSERT_TRUE(raised.ok()) << raised.status();
  EXPECT_EQ(raised->soft_before, raised->soft);
}

TEST(OpenFileLimitTest, TheLogLineSaysWhatChanged) {
  EXPECT_EQ(DescribeOpenFileLimit({.soft_before = 1024, .soft = 65536, .hard = 65536}),
            "open files: soft limit raised from 1024 to 65536 (the hard limit)");
  EXPECT_EQ(DescribeOpenFileLimit({.soft_before = 65536, .soft = 65536, .hard = 65536}),
            "open files: limit 65536 (the hard limit)");
  EXPECT_EQ(DescribeOpenFileLimit(
                {.soft_before = RLIM_INFINITY, .soft = RLIM_INFINITY, .hard = RLIM_INFINITY}),
            "open files: limit unlimited (the hard limit)");
}

TEST(OpenFileLimitTest, AControllerWarnsBelowWhatAFleetNeeds) {
  EXPECT_EQ(
      OpenFileLimitWarning({.soft_before = 1024, .soft = 4096, .hard = 4096}, kControllerOpenFiles),
      "");
  const std::string warning =
      OpenFileLimitWarning({.soft_before = 1024, .soft = 1024, .hard = 1024}, kControllerOpenFiles);
  EXPECT_THAT(warning, HasSubstr("the limit is 1024, below 4096"));
  EXPECT_THAT(warning, HasSubstr("LimitNOFILE="));
}

}  // namespace
}  // namespace dispatchd
