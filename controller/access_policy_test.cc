#include "controller/access_policy.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using ::testing::HasSubstr;

constexpr Permission kSession = Permission::kAgentSession;
constexpr Permission kRead = Permission::kApiRead;
constexpr Permission kWrite = Permission::kApiWrite;

absl::StatusCode Code(const AccessPolicy& policy, Permission p, absl::string_view token) {
  return policy.Check(p, token).code();
}

TEST(AccessPolicyTest, NoTokensMeansOpen) {
  AccessPolicy policy({});
  EXPECT_TRUE(policy.agent_sessions_open());
  EXPECT_TRUE(policy.api_open());
  for (Permission p : {kSession, kRead, kWrite}) {
    EXPECT_TRUE(policy.Check(p, "").ok());
    EXPECT_TRUE(policy.Check(p, "anything").ok());
  }
}

TEST(AccessPolicyTest, TheSharedTokenGrantsEverythingAsBefore) {
  AccessPolicy policy({.shared = "s"});
  for (Permission p : {kSession, kRead, kWrite}) {
    EXPECT_TRUE(policy.Check(p, "s").ok());
    EXPECT_EQ(Code(policy, p, "x"), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(Code(policy, p, ""), absl::StatusCode::kUnauthenticated);
  }
  EXPECT_THAT(std::string(policy.Check(kRead, "").message()), HasSubstr("Bearer"));
}

TEST(AccessPolicyTest, EveryCrossUseIsRefused) {
  AccessPolicy policy({.agent = "agent", .api = "api", .api_read = "reader"});
  EXPECT_TRUE(policy.Check(kSession, "agent").ok());
  EXPECT_TRUE(policy.Check(kRead, "api").ok());
  EXPECT_TRUE(policy.Check(kWrite, "api").ok());
  EXPECT_TRUE(policy.Check(kRead, "reader").ok());
  // An agent's token cannot use the API, read or write.
  EXPECT_EQ(Code(policy, kRead, "agent"), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Code(policy, kWrite, "agent"), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(policy.Check(kWrite, "agent").message()), HasSubstr("agent token"));
  // API tokens cannot open an agent session.
  EXPECT_EQ(Code(policy, kSession, "api"), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Code(policy, kSession, "reader"), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(policy.Check(kSession, "api").message()), HasSubstr("API token"));
  // The read-only token cannot write.
  EXPECT_EQ(Code(policy, kWrite, "reader"), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(policy.Check(kWrite, "reader").message()), HasSubstr("read-only"));
  // Unknown tokens, and prefixes of known ones, are unauthenticated.
  for (Permission p : {kSession, kRead, kWrite}) {
    EXPECT_EQ(Code(policy, p, "ap"), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(Code(policy, p, "apix"), absl::StatusCode::kUnauthenticated);
  }
}

TEST(AccessPolicyTest, OnlyAReadTokenLeavesWritesClosed) {
  AccessPolicy policy({.api_read = "reader"});
  EXPECT_TRUE(policy.agent_sessions_open());
  EXPECT_FALSE(policy.api_open());
  EXPECT_TRUE(policy.Check(kRead, "reader").ok());
  EXPECT_EQ(Code(policy, kWrite, "reader"), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Code(policy, kWrite, ""), absl::StatusCode::kUnauthenticated);
}

TEST(AccessPolicyTest, SharedTokenWithASeparateAgentToken) {
  AccessPolicy policy({.shared = "s", .agent = "a"});
  EXPECT_TRUE(policy.Check(kSession, "a").ok());
  EXPECT_TRUE(policy.Check(kSession, "s").ok());
  EXPECT_EQ(Code(policy, kRead, "a"), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(policy.Check(kWrite, "s").ok());
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
