#include "sinks/file_sink.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sinks/testing/test_sinks.h"

namespace dispatchd {
namespace sinks {
namespace {

using testing::MakeEvent;

class FileSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = ::testing::TempDir() + "/file_sink_XXXXXX";
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    unlink((dir_ + "/out.jsonl").c_str());
    rmdir(dir_.c_str());
  }

  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
  }

  std::string dir_;
};

TEST_F(FileSinkTest, AppendsOneJsonLinePerEvent) {
  const std::string path = dir_ + "/out.jsonl";
  {
    std::ofstream existing(path);
    existing << "{\"earlier\":true}\n";
  }
  FileSink sink(path);
  ASSERT_TRUE(sink.Write(MakeEvent("a")).ok());
  ASSERT_TRUE(sink.Write(MakeEvent("b\nwith newline")).ok());
  const std::string content = Read(path);
  ASSERT_FALSE(content.empty());
  EXPECT_EQ(content.back(), '\n');
  std::vector<std::string> lines = absl::StrSplit(content, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << content;
  EXPECT_EQ(lines[0], "{\"earlier\":true}") << "existing content is kept";
  EXPECT_EQ(nlohmann::json::parse(lines[1])["id"], "a");
  EXPECT_EQ(nlohmann::json::parse(lines[2])["id"], "b\nwith newline");
  EXPECT_EQ(nlohmann::json::parse(lines[2])["payload"], "payload-b\nwith newline");
}

TEST_F(FileSinkTest, ReCreatesAFileRemovedBetweenWrites) {
  const std::string path = dir_ + "/out.jsonl";
  FileSink sink(path);
  ASSERT_TRUE(sink.Write(MakeEvent("a")).ok());
  ASSERT_EQ(unlink(path.c_str()), 0);  // e.g. rotated away
  ASSERT_TRUE(sink.Write(MakeEvent("b")).ok());
  std::vector<std::string> lines = absl::StrSplit(Read(path), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["id"], "b");
}

TEST_F(FileSinkTest, MissingDirectoryIsAnErrorNamingThePath) {
  FileSink sink(dir_ + "/no-such-dir/out.jsonl");
  absl::Status status = sink.Write(MakeEvent("a"));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_NE(status.message().find("no-such-dir/out.jsonl"), absl::string_view::npos) << status;
}

TEST_F(FileSinkTest, ClosedAndNullFollowTheSinkContract) {
  FileSink sink(dir_ + "/out.jsonl");
  EXPECT_EQ(sink.Write(nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(sink.Close().ok());
  EXPECT_TRUE(IsClosed(sink.Write(MakeEvent("a"))));
  EXPECT_TRUE(sink.Close().ok());
}

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
