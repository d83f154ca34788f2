#include "agent/file_requests.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd::agent {
namespace {

using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return in ? s.str() : "<missing>";
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::string MakeRoot() {
  std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/fr_XXXXXX");
  return mkdtemp(dir.data()) != nullptr ? dir : "";
}

class FileRequestsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(root_.empty()); }
  dispatch::v1::WriteEventResult Write(const std::string& id, const std::string& path,
                                       const std::string& payload, const std::string& key = "") {
    dispatch::v1::WriteEvent request;
    request.set_request_id(++next_id_);
    request.set_event_id(id);
    request.set_path(path);
    request.set_payload(payload);
    request.set_idempotency_key(key);
    dispatch::v1::AgentMessage answer = requests_.Handle(request);
    EXPECT_EQ(answer.write_event_result().request_id(), next_id_);
    return answer.write_event_result();
  }

  std::string root_ = MakeRoot();
  Spool spool_{root_};
  FakeClock clock_;
  EmitMemory memory_{&clock_};
  uint64_t next_id_ = 0;
  FileRequests requests_{&spool_, &memory_, &clock_, {.event_namespace = "", .max_payload_bytes = 16}};
};

TEST_F(FileRequestsTest, WritesTheFileAndNamesItsEvent) {
  auto r = Write("demo.ping", "", "hello");
  EXPECT_EQ(r.code(), 0) << r.error();
  EXPECT_EQ(r.path(), "demo.ping");
  EXPECT_EQ(r.event_id(), "demo.ping");
  EXPECT_FALSE(r.duplicate());
  EXPECT_EQ(r.written_unix_nanos(), absl::ToUnixNanos(clock_.Now()));
  EXPECT_EQ(ReadFile(root_ + "/demo.ping"), "hello");
  r = Write("", "jobs/nightly", "x");
  EXPECT_EQ(r.code(), 0) << r.error();
  EXPECT_EQ(r.event_id(), "jobs.nightly");
  EXPECT_EQ(ReadFile(root_ + "/jobs/nightly"), "x");
}

TEST_F(FileRequestsTest, ARetryWithTheSameKeyWritesNothing) {
  auto first = Write("demo.once", "", "1", "key-1");
  ASSERT_EQ(first.code(), 0) << first.error();
  ASSERT_EQ(unlink((root_ + "/demo.once").c_str()), 0);  // dispatched and deleted meanwhile
  clock_.Advance(absl::Minutes(5));
  auto retry = Write("demo.once", "", "1", "key-1");
  EXPECT_EQ(retry.code(), 0);
  EXPECT_TRUE(retry.duplicate());
  EXPECT_EQ(retry.written_unix_nanos(), first.written_unix_nanos());
  EXPECT_FALSE(Exists(root_ + "/demo.once")) << "not written again";
  auto other = Write("demo.other", "", "1", "key-1");
  EXPECT_EQ(other.code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(other.error(), HasSubstr("used for another event"));
  clock_.Advance(absl::Minutes(6));  // forgotten: a new write
  auto later = Write("demo.once", "", "1", "key-1");
  EXPECT_FALSE(later.duplicate());
  EXPECT_TRUE(Exists(root_ + "/demo.once"));
}

TEST_F(FileRequestsTest, BadInputIsRefusedAndWritesNothing) {
  for (const auto& [id, path] : std::vector<std::pair<std::string, std::string>>{
           {"", ""}, {".hidden", ""}, {"", "../escape"}, {"", "/abs"}, {"a/b", ""}}) {
    auto r = Write(id, path, "x");
    EXPECT_EQ(r.code(), static_cast<int>(absl::StatusCode::kInvalidArgument)) << id << path;
  }
  auto big = Write("big", "", std::string(17, 'x'));
  EXPECT_THAT(big.error(), HasSubstr("--max-payload-bytes"));
  EXPECT_FALSE(Exists(root_ + "/big"));
  auto key = Write("k", "", "x", std::string(129, 'k'));
  EXPECT_THAT(key.error(), HasSubstr("idempotency key"));
}

TEST_F(FileRequestsTest, DeadLettersListReplayAndPurge) {
  ASSERT_TRUE(spool_.Write("jobs/x", "payload").ok());
  ASSERT_TRUE(spool_.DeadLetter("jobs/x", R"({"errors":["web: gave up"]})").ok());
  dispatch::v1::DeadLetterRequest list;
  list.set_request_id(7);
  list.set_op(dispatch::v1::DeadLetterRequest::LIST);
  auto listed = requests_.Handle(list).dead_letter_result();
  EXPECT_EQ(listed.request_id(), 7u);
  ASSERT_EQ(listed.entries_size(), 1);
  EXPECT_EQ(listed.entries(0).path(), "jobs/x");
  EXPECT_THAT(listed.entries(0).error_json(), HasSubstr("gave up"));
  dispatch::v1::DeadLetterRequest replay;
  replay.set_op(dispatch::v1::DeadLetterRequest::REPLAY);
  replay.set_path("jobs/x");
  auto replayed = requests_.Handle(replay).dead_letter_result();
  EXPECT_EQ(replayed.code(), 0) << replayed.error();
  EXPECT_EQ(replayed.event_id(), "jobs.x");
  EXPECT_EQ(ReadFile(root_ + "/jobs/x"), "payload");
  dispatch::v1::DeadLetterRequest purge;
  purge.set_op(dispatch::v1::DeadLetterRequest::PURGE);
  purge.set_path("jobs/x");
  EXPECT_EQ(requests_.Handle(purge).dead_letter_result().code(),
            static_cast<int>(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace dispatchd::agent
