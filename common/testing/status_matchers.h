// gMock matchers and assertions for absl::Status and absl::StatusOr that
// print the status when they fail (EXPECT_TRUE(s.ok()) prints only "false").
//
//   EXPECT_OK(client.Start());
//   ASSERT_OK(stream);                    // a StatusOr: fails with its status
//   EXPECT_THAT(Parse("x"), StatusIs(absl::StatusCode::kInvalidArgument,
//                                    HasSubstr("--flag")));
//   EXPECT_THAT(Load(), IsOk());
#ifndef DISPATCHD_COMMON_TESTING_STATUS_MATCHERS_H_
#define DISPATCHD_COMMON_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace testing {
namespace internal {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// The status of an expression, for EXPECT_OK / ASSERT_OK.
template <typename T>
::testing::AssertionResult IsOkResult(const char* expression, const T& value) {
  const absl::Status& status = GetStatus(value);
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expression << " is not OK: " << status;
}

}  // namespace internal

MATCHER(IsOk, negation ? "is not OK" : "is OK") {
  const absl::Status& status = internal::GetStatus(arg);
  if (!status.ok()) *result_listener << "which is " << status;
  return status.ok();
}

// The code, and optionally a matcher for the message (a std::string).
MATCHER_P2(StatusIs, code, message_matcher,
           std::string("has code ") + absl::StatusCodeToString(code)) {
  const absl::Status& status = internal::GetStatus(arg);
  *result_listener << "which is " << status;
  return status.code() == code &&
         ::testing::Matches(message_matcher)(std::string(status.message()));
}

MATCHER_P(StatusIs, code, std::string("has code ") + absl::StatusCodeToString(code)) {
  const absl::Status& status = internal::GetStatus(arg);
  *result_listener << "which is " << status;
  return status.code() == code;
}

}  // namespace testing
}  // namespace dispatchd

#define EXPECT_OK(expr) EXPECT_PRED_FORMAT1(::dispatchd::testing::internal::IsOkResult, expr)
#define ASSERT_OK(expr) ASSERT_PRED_FORMAT1(::dispatchd::testing::internal::IsOkResult, expr)

#endif  // DISPATCHD_COMMON_TESTING_STATUS_MATCHERS_H_
