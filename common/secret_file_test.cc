#include "common/secret_file.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string WriteTemp(const std::string& name, const std::string& content) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  return path;
}

TEST(ReadSecretFileTest, TrailingWhiteSpaceIsNotPartOfTheSecret) {
  auto token = ReadSecretFile(WriteTemp("token", "s3cret \n"));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "s3cret");
}

TEST(ReadSecretFileTest, MissingEmptyOrHugeFilesAreRefusedWithoutTheContent) {
  auto missing = ReadSecretFile("/nonexistent/token");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/token"));

  auto empty = ReadSecretFile(WriteTemp("empty", " \n"));
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("is empty"));

  auto huge = ReadSecretFile(WriteTemp("huge", std::string(70000, 'x')));
  EXPECT_THAT(std::string(huge.status().message()), HasSubstr("larger than"));
  EXPECT_THAT(std::string(huge.status().message()), Not(HasSubstr("xxxx")));
}

}  // namespace
}  // namespace dispatchd
