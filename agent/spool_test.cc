#include "agent/spool.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "agent/testing/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd::agent {
namespace {

using ::dispatchd::agent::testing::WriteFile;
using ::dispatchd::agent::testing::ReadFile;
using ::dispatchd::agent::testing::Exists;
using ::dispatchd::agent::testing::MakeDir;

using ::testing::HasSubstr;

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string base_template = absl::StrCat(tmp != nullptr ? tmp : ".", "/spool_XXXXXX");
    ASSERT_NE(mkdtemp(base_template.data()), nullptr);
    base_ = base_template;
    root_ = base_ + "/events";
    MakeDir(root_);
  }

  std::string InRoot(absl::string_view rel) const { return absl::StrCat(root_, "/", rel); }

  std::string base_;
  std::string root_;
};

TEST_F(SpoolTest, ReadsASmallFileWhole) {
  WriteFile(InRoot("rebuild"), "hello world");
  Spool spool(root_);
  auto payload = spool.Read("rebuild", 1024);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->data, "hello world");
  EXPECT_FALSE(payload->truncated);
  EXPECT_EQ(payload->size, 11);
  EXPECT_EQ(spool.root(), root_);
}

// A file still held open for writing is not complete: Read says so rather
// than returning what is there so far, and reads it once it is closed.
TEST_F(SpoolTest, ReadOfAFileStillOpenForWritingIsUnavailable) {
  const int fd = open(InRoot("slow").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "slow-", 5), 5);
  Spool spool(root_);
  auto partial = spool.Read("slow", 1024);
  EXPECT_EQ(partial.status().code(), absl::StatusCode::kUnavailable) << partial.status();
  ASSERT_EQ(write(fd, "1", 1), 1);
  ASSERT_EQ(close(fd), 0);
  auto whole = spool.Read("slow", 1024);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->data, "slow-1");
  EXPECT_TRUE(whole->writers_checked);
}

TEST_F(SpoolTest, ReadsAnEmptyFile) {
  WriteFile(InRoot("empty"), "");
  auto payload = Spool(root_).Read("empty", 1024);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->data, "");
  EXPECT_FALSE(payload->truncated);
  EXPECT_EQ(payload->size, 0);
}

TEST_F(SpoolTest, ReadOfAFileOfExactlyTheLimitIsNotTruncated) {
  WriteFile(InRoot("exact"), "12345");
  auto payload = Spool(root_).Read("exact", 5);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->data, "12345");
  EXPECT_FALSE(payload->truncated);
}

TEST_F(SpoolTest, ReadOfAHugeFileIsBoundedAndMarkedTruncated) {
  const std::string big(3 * 1024 * 1024 + 7, 'x');
  WriteFile(InRoot("big"), big);
  auto payload = Spool(root_).Read("big", 100 * 1024);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->data.size(), 100u * 1024);
  EXPECT_EQ(payload->data, big.substr(0, 100 * 1024));
  EXPECT_TRUE(payload->truncated);
  EXPECT_EQ(payload->size, static_cast<int64_t>(big.size()));

  auto nothing = Spool(root_).Read("big", 0);
  ASSERT_TRUE(nothing.ok()) << nothing.status();
  EXPECT_EQ(nothing->data, "");
  EXPECT_TRUE(nothing->truncated);
}

TEST_F(SpoolTest, AnOpenEventFileIsReadAndMarkedThroughOneDescriptor) {
  MakeDir(InRoot("d"));
  WriteFile(InRoot("d/a"), "payload");
  absl::StatusOr<EventFile> file = Spool(root_).Open("d/a");
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<Payload> payload = file->Read(100);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->data, "payload");
  EXPECT_EQ(payload->mark, "");
  // The descriptor, not the path: the mark follows the file it opened.
  ASSERT_EQ(rename(InRoot("d/a").c_str(), InRoot("d/b").c_str()), 0);
  absl::StatusOr<struct stat> marked = file->WriteMark("m1");
  if (absl::IsUnimplemented(marked.status())) GTEST_SKIP() << marked.status();
  ASSERT_TRUE(marked.ok()) << marked.status();
  EXPECT_EQ(marked->st_size, 7);
  absl::StatusOr<Payload> again = Spool(root_).Read("d/b", 100);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->mark, "m1");
  EXPECT_EQ(Spool(root_).Open("d/a").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SpoolTest, ReadsNestedFilesWithOddNames) {
  MakeDir(InRoot("dir with space"));
  MakeDir(InRoot("dir with space/ünï"));
  const std::string rel = "dir with space/ünï/new\nline ✓";
  WriteFile(InRoot(rel), "odd");
  auto payload = Spool(root_).Read(rel, 10);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->data, "odd");
}

TEST_F(SpoolTest, ReadOfAFifoIsRefusedWithoutBlocking) {
  ASSERT_EQ(mkfifo(InRoot("fifo").c_str(), 0644), 0) << std::strerror(errno);
  // No writer exists: a blocking open would hang this test until its timeout.
  auto payload = Spool(root_).Read("fifo", 1024);
  EXPECT_EQ(payload.status().code(), absl::StatusCode::kFailedPrecondition) << payload.status();
}

TEST_F(SpoolTest, ReadOfASocketIsRefused) {
  int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_EQ(chdir(root_.c_str()), 0);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, "socket", sizeof(addr.sun_path) - 1);
  int bound = bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  close(fd);
  ASSERT_EQ(fchdir(cwd), 0);
  close(cwd);
  ASSERT_EQ(bound, 0);
  auto payload = Spool(root_).Read("socket", 1024);
  EXPECT_EQ(payload.status().code(), absl::StatusCode::kFailedPrecondition) << payload.status();
}

TEST_F(SpoolTest, SymlinksAreRefused) {
  WriteFile(base_ + "/secret", "outside the spool");
  ASSERT_EQ(symlink((base_ + "/secret").c_str(), InRoot("link").c_str()), 0);
  Spool spool(root_);
  auto payload = spool.Read("link", 1024);
  EXPECT_EQ(payload.status().code(), absl::StatusCode::kFailedPrecondition) << payload.status();
  EXPECT_EQ(spool.Delete("link").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(spool.DeadLetter("link", "{}").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Exists(InRoot("link")));
  EXPECT_EQ(ReadFile(base_ + "/secret"), "outside the spool");
}

TEST_F(SpoolTest, SymlinkedDirectoriesAreNotFollowed) {
  MakeDir(base_ + "/elsewhere");
  WriteFile(base_ + "/elsewhere/victim", "keep me");
  ASSERT_EQ(symlink((base_ + "/elsewhere").c_str(), InRoot("linkdir").c_str()), 0);
  Spool spool(root_);
  EXPECT_EQ(spool.Read("linkdir/victim", 1024).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(spool.Delete("linkdir/victim").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(spool.DeadLetter("linkdir/victim", "{}").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadFile(base_ + "/elsewhere/victim"), "keep me");
}

TEST_F(SpoolTest, RootMayBeASymlink) {
  WriteFile(InRoot("via-link"), "ok");
  ASSERT_EQ(symlink(root_.c_str(), (base_ + "/root-link").c_str()), 0);
  Spool spool(base_ + "/root-link");
  auto payload = spool.Read("via-link", 10);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->data, "ok");
  EXPECT_TRUE(spool.Delete("via-link").ok());
  EXPECT_FALSE(Exists(InRoot("via-link")));
}

TEST_F(SpoolTest, DirectoriesAreRefused) {
  MakeDir(InRoot("a-dir"));
  Spool spool(root_);
  EXPECT_EQ(spool.Read("a-dir", 10).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(spool.Delete("a-dir").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Exists(InRoot("a-dir")));
}

TEST_F(SpoolTest, GoneFilesAreNotFound) {
  Spool spool(root_);
  EXPECT_EQ(spool.Read("gone", 10).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(spool.Read("no-dir/gone", 10).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(spool.Delete("gone").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(spool.DeadLetter("gone", "{}").code(), absl::StatusCode::kNotFound);
}

TEST_F(SpoolTest, DeleteRemovesTheFileAndKeepsItsDirectory) {
  MakeDir(InRoot("d"));
  WriteFile(InRoot("d/event"), "x");
  Spool spool(root_);
  ASSERT_TRUE(spool.Delete("d/event").ok());
  EXPECT_FALSE(Exists(InRoot("d/event")));
  EXPECT_TRUE(Exists(InRoot("d")));
  EXPECT_EQ(spool.Delete("d/event").code(), absl::StatusCode::kNotFound);
}

TEST_F(SpoolTest, DeadLetterMovesTheFileAndWritesTheErrorBesideIt) {
  MakeDir(InRoot("some-dir"));
  MakeDir(InRoot("some-dir/sub"));
  WriteFile(InRoot("some-dir/sub/the-event"), "payload");
  const std::string error = R"({"error":"retry budget exhausted","attempts":5})";
  Spool spool(root_);
  ASSERT_TRUE(spool.DeadLetter("some-dir/sub/the-event", error).ok());
  EXPECT_FALSE(Exists(InRoot("some-dir/sub/the-event")));
  EXPECT_EQ(ReadFile(InRoot(".dead-letter/some-dir/sub/the-event")), "payload");
  EXPECT_EQ(ReadFile(InRoot(".dead-letter/some-dir/sub/the-event.error.json")), error);
  EXPECT_TRUE(Exists(InRoot("some-dir/sub")));
}

TEST_F(SpoolTest, DeadLetterNeverOverwritesAnEarlierOne) {
  Spool spool(root_);
  WriteFile(InRoot("rebuild"), "first");
  ASSERT_TRUE(spool.DeadLetter("rebuild", "{\"n\":1}").ok());
  WriteFile(InRoot("rebuild"), "second");
  ASSERT_TRUE(spool.DeadLetter("rebuild", "{\"n\":2}").ok());
  WriteFile(InRoot("rebuild"), "third");
  ASSERT_TRUE(spool.DeadLetter("rebuild", "{\"n\":3}").ok());

  EXPECT_EQ(ReadFile(InRoot(".dead-letter/rebuild")), "first");
  EXPECT_EQ(ReadFile(InRoot(".dead-letter/rebuild.error.json")), "{\"n\":1}");
  EXPECT_EQ(ReadFile(InRoot(".dead-letter/rebuild.1")), "second");
  EXPECT_EQ(ReadFile(InRoot(".dead-letter/rebuild.1.error.json")), "{\"n\":2}");
  EXPECT_EQ(ReadFile(InRoot(".dead-letter/rebuild.2")), "third");
  EXPECT_EQ(ReadFile(InRoot(".dead-letter/rebuild.2.error.json")), "{\"n\":3}");
}

TEST_F(SpoolTest, DeadLetterWorksWithOddNames) {
  MakeDir(InRoot("dir with space"));
  const std::string rel = "dir with space/new\nline ünï";
  WriteFile(InRoot(rel), "odd");
  ASSERT_TRUE(Spool(root_).DeadLetter(rel, "{}").ok());
  EXPECT_EQ(ReadFile(InRoot(".dead-letter/" + rel)), "odd");
  EXPECT_EQ(ReadFile(InRoot(".dead-letter/" + rel + ".error.json")), "{}");
}

TEST_F(SpoolTest, InvalidOrHiddenPathsAreRejected) {
  WriteFile(base_ + "/outside", "not an event");
  MakeDir(InRoot(".dead-letter"));
  WriteFile(InRoot(".dead-letter/kept"), "dead");
  Spool spool(root_);
  for (absl::string_view bad : {"", "/etc/passwd", "../outside", "a/../../outside", "a//b", "./x",
                                ".dead-letter/kept", ".hidden"}) {
    EXPECT_EQ(spool.Read(bad, 10).status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(spool.Delete(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(spool.DeadLetter(bad, "{}").code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(ReadFile(base_ + "/outside"), "not an event");
  EXPECT_EQ(ReadFile(InRoot(".dead-letter/kept")), "dead");
}

TEST_F(SpoolTest, WriteCreatesTheFileAtomicallyAndLeavesNoTemporary) {
  Spool spool(root_);
  ASSERT_TRUE(spool.Write("emit/a/b.txt", "payload").ok());
  EXPECT_EQ(ReadFile(root_ + "/emit/a/b.txt"), "payload");
  // The temporary's directory is hidden (never an event) and left empty.
  EXPECT_TRUE(Exists(root_ + "/.dispatchd-emit"));
  auto read = spool.Read("emit/a/b.txt", 100);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->data, "payload");
  // A second write replaces the file, as a writer would.
  ASSERT_TRUE(spool.Write("emit/a/b.txt", "second").ok());
  EXPECT_EQ(ReadFile(root_ + "/emit/a/b.txt"), "second");
  ASSERT_TRUE(spool.Write("top", "").ok());
  EXPECT_EQ(ReadFile(root_ + "/top"), "");
}

TEST_F(SpoolTest, WriteRefusesBadPathsAndSymlinkedDirectoriesAndWritesNothing) {
  Spool spool(root_);
  for (const char* bad : {"", "/abs", "../up", "a/../b", ".hidden", "a/.h/b", "a//b"}) {
    EXPECT_EQ(spool.Write(bad, "x").code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  const std::string outside = base_ + "/outside";
  MakeDir(outside);
  ASSERT_EQ(symlink(outside.c_str(), (root_ + "/link").c_str()), 0);
  EXPECT_FALSE(spool.Write("link/x", "x").ok());
  EXPECT_FALSE(Exists(outside + "/x"));
}

TEST_F(SpoolTest, DeadLettersAreListedReplayedAndPurged) {
  Spool spool(root_);
  MakeDir(root_ + "/d");
  WriteFile(root_ + "/d/one", "1");
  WriteFile(root_ + "/two", "22");
  ASSERT_TRUE(spool.DeadLetter("d/one", R"({"errors":["x: gave up"]})").ok());
  ASSERT_TRUE(spool.DeadLetter("two", "{}").ok());
  auto listed = spool.ListDeadLetters();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].rel, "d/one");
  EXPECT_EQ((*listed)[0].error_json, R"({"errors":["x: gave up"]})");
  EXPECT_EQ((*listed)[0].size, 1);
  EXPECT_GT((*listed)[0].dead_lettered, absl::UnixEpoch());
  EXPECT_EQ((*listed)[1].rel, "two");

  // A pending event of the same name blocks the replay; nothing moves.
  WriteFile(root_ + "/d/one", "pending");
  EXPECT_EQ(spool.ReplayDeadLetter("d/one").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadFile(root_ + "/d/one"), "pending");
  ASSERT_TRUE(spool.Delete("d/one").ok());
  ASSERT_TRUE(spool.ReplayDeadLetter("d/one").ok());
  EXPECT_EQ(ReadFile(root_ + "/d/one"), "1");
  EXPECT_FALSE(Exists(root_ + "/.dead-letter/d/one"));
  EXPECT_FALSE(Exists(root_ + "/.dead-letter/d/one.error.json"));

  ASSERT_TRUE(spool.PurgeDeadLetter("two").ok());
  EXPECT_FALSE(Exists(root_ + "/.dead-letter/two"));
  EXPECT_FALSE(Exists(root_ + "/.dead-letter/two.error.json"));
  EXPECT_EQ(spool.PurgeDeadLetter("two").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(spool.ReplayDeadLetter("nothing").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(spool.ReplayDeadLetter("../escape").code(), absl::StatusCode::kInvalidArgument);
  listed = spool.ListDeadLetters();
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
}

TEST_F(SpoolTest, NoDeadLetterDirectoryIsAnEmptyList) {
  Spool spool(root_);
  auto listed = spool.ListDeadLetters();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->empty());
}

TEST_F(SpoolTest, NegativeLimitIsRejected) {
  WriteFile(InRoot("x"), "x");
  auto payload = Spool(root_).Read("x", -1);
  EXPECT_EQ(payload.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(payload.status().message()), HasSubstr("max_bytes"));
}

}  // namespace
}  // namespace dispatchd::agent
