#include "common/testing/status_matchers.h"

#include "gtest/gtest-spi.h"

namespace dispatchd {
namespace testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(StatusMatchersTest, OkPassesAndFailuresPrintTheStatus) {
  EXPECT_OK(absl::OkStatus());
  EXPECT_OK(absl::StatusOr<int>(3));
  EXPECT_NONFATAL_FAILURE(EXPECT_OK(absl::NotFoundError("no such container")),
                          "NOT_FOUND: no such container");
  EXPECT_NONFATAL_FAILURE(EXPECT_OK(absl::StatusOr<int>(absl::UnavailableError("daemon gone"))),
                          "UNAVAILABLE: daemon gone");
  EXPECT_FATAL_FAILURE(ASSERT_OK(absl::InternalError("boom")), "INTERNAL: boom");
}

TEST(StatusMatchersTest, MatchersDescribeTheStatus) {
  EXPECT_THAT(absl::OkStatus(), IsOk());
  EXPECT_THAT(absl::InvalidArgumentError("x"), Not(IsOk()));
  EXPECT_THAT(absl::InvalidArgumentError("bad --flag"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--flag")));
  EXPECT_THAT(absl::StatusOr<int>(absl::NotFoundError("gone")),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(absl::NotFoundError("gone"), Not(StatusIs(absl::StatusCode::kInternal)));
  EXPECT_NONFATAL_FAILURE(EXPECT_THAT(absl::StatusOr<int>(absl::NotFoundError("gone")), IsOk()),
                          "NOT_FOUND: gone");
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
