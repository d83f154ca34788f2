// Nothing that names an event file can reach outside the events directory or
// its .dead-letter/ directory: not an event id or a path given to Emit, not a
// dead letter's path given to replay or purge, not a settled event's key.
// Every case runs on real files in a temporary directory: the events
// directory sits beside an "outside" directory holding files that must stay
// untouched, and symlinks to the outside are planted where an escape would
// go through them (inside the events directory, as .dead-letter/ itself,
// inside .dead-letter/, as a dead letter's note, as the Emit scratch
// directory).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/emit_memory.h"
#include "agent/file_requests.h"
#include "agent/spool.h"
#include "common/testing/fake_clock.h"
#include "agent/testing/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd::agent {
namespace {

using ::dispatchd::agent::testing::WriteFile;
using ::dispatchd::agent::testing::ReadFile;
using ::dispatchd::agent::testing::Exists;
using ::dispatchd::agent::testing::MakeDir;

using dispatch::v1::DeadLetterRequest;

void Symlink(const std::string& target, const std::string& link) {
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0) << link << ": " << std::strerror(errno);
}

// Every entry below `dir` (relative paths, not following symlinks) with the
// content of each regular file: a snapshot to compare before and after.
std::set<std::pair<std::string, std::string>> Tree(const std::string& dir,
                                                   const std::string& prefix = "") {
  std::set<std::pair<std::string, std::string>> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = dir + "/" + name;
    const std::string rel = prefix + name;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      out.insert({rel + "/", ""});
      auto sub = Tree(path, rel + "/");
      out.insert(sub.begin(), sub.end());
    } else if (S_ISREG(st.st_mode)) {
      out.insert({rel, ReadFile(path)});
    } else {
      out.insert({rel, "<not a regular file>"});
    }
  }
  closedir(d);
  return out;
}

class ConfinementTest : public ::testing::Test {
 protected:
  static std::string MakeBase() {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string base = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/confine_XXXXXX");
    return mkdtemp(base.data()) != nullptr ? base : "";
  }

  void SetUp() override {
    ASSERT_FALSE(base_.empty());
    MakeDir(root_);
    MakeDir(outside_);
    // What an escape would read, overwrite, delete or move.
    WriteFile(outside_ + "/secret", "outside the events directory");
    WriteFile(base_ + "/beside", "next to the events directory");
    MakeDir(outside_ + "/sub");
    WriteFile(outside_ + "/sub/victim", "keep me");
    outside_before_ = Tree(outside_);
  }

  // The outside is exactly as it was, and nothing was written next to the
  // events directory.
  void ExpectOutsideUntouched() {
    EXPECT_EQ(Tree(outside_), outside_before_);
    EXPECT_EQ(ReadFile(base_ + "/beside"), "next to the events directory");
    std::set<std::string> top;
    for (const auto& [rel, content] : Tree(base_)) {
      if (rel.find('/') == std::string::npos || rel.find('/') == rel.size() - 1) top.insert(rel);
    }
    EXPECT_EQ(top, (std::set<std::string>{"events/", "outside/", "beside"}));
  }

  std::string InRoot(absl::string_view rel) const { return absl::StrCat(root_, "/", rel); }

  dispatch::v1::WriteEventResult Emit(const std::string& id, const std::string& path,
                                      const std::string& event_namespace = "") {
    FileRequests requests(&spool_, &memory_, &clock_,
                          {.event_namespace = event_namespace, .max_payload_bytes = 1024});
    dispatch::v1::WriteEvent request;
    request.set_request_id(1);
    request.set_event_id(id);
    request.set_path(path);
    request.set_payload("forged");
    return requests.Handle(request).write_event_result();
  }

  dispatch::v1::DeadLetterResult DeadLetterCall(DeadLetterRequest::Op op,
                                                const std::string& path = "") {
    FileRequests requests(&spool_, &memory_, &clock_, {});
    DeadLetterRequest request;
    request.set_request_id(2);
    request.set_op(op);
    request.set_path(path);
    return requests.Handle(request).dead_letter_result();
  }

  const std::string base_ = MakeBase();
  const std::string root_ = base_ + "/events";
  const std::string outside_ = base_ + "/outside";
  std::set<std::pair<std::string, std::string>> outside_before_;
  Spool spool_{root_};
  FakeClock clock_;
  EmitMemory memory_{&clock_};
};

// The relative paths an attacker would try, and the absolute paths of what
// they aim at.
std::vector<std::string> EscapingPaths(const std::string& base, const std::string& outside) {
  return {"..",
          "../beside",
          "../outside/secret",
          "a/../../beside",
          "a/b/../../../outside/secret",
          "./../beside",
          base + "/beside",
          outside + "/secret",
          "/etc/passwd",
          "//etc/passwd",
          std::string("a\0/../../beside", 15),
          ".dead-letter/x",
          ".dead-letter/../../beside",
          "a/.dead-letter/x",
          ".dispatchd-emit/x",
          ""};
}

TEST_F(ConfinementTest, EmitRefusesEveryEscapingIdAndPathAndWritesNothing) {
  for (const std::string& path : EscapingPaths(base_, outside_)) {
    auto r = Emit("", path);
    EXPECT_EQ(r.code(), static_cast<int>(absl::StatusCode::kInvalidArgument)) << path;
  }
  // An event id is one file name at the top: dots are fine, but no '/',
  // no hidden name, nothing that is "." or "..".
  for (const std::string& id :
       {std::string(".."), std::string("."), std::string("../beside"), std::string("/etc/passwd"),
        std::string("a/../../beside"), std::string(".dead-letter"), std::string(".hidden"),
        std::string("x\0y", 3), std::string(300, 'x')}) {
    auto r = Emit(id, "");
    EXPECT_EQ(r.code(), static_cast<int>(absl::StatusCode::kInvalidArgument)) << id;
  }
  // With an event namespace, what follows it is checked the same way.
  for (const char* id : {"ns..", "ns...", "ns../beside", "ns..hidden", "ns."}) {
    auto r = Emit(id, "", "ns");
    EXPECT_EQ(r.code(), static_cast<int>(absl::StatusCode::kInvalidArgument)) << id;
  }
  EXPECT_EQ(Tree(root_), (std::set<std::pair<std::string, std::string>>{}))
      << "nothing was written in the events directory either";
  ExpectOutsideUntouched();

  // What the rules allow stays inside: dots in an id are not directories.
  auto ok = Emit("x..y", "");
  EXPECT_EQ(ok.code(), 0) << ok.error();
  EXPECT_EQ(ReadFile(InRoot("x..y")), "forged");
  ExpectOutsideUntouched();
}

TEST_F(ConfinementTest, EmitDoesNotFollowASymlinkedDirectoryInTheEventsDirectory) {
  Symlink(outside_, InRoot("link"));
  Symlink(outside_ + "/sub", InRoot("deep"));
  MakeDir(InRoot("real"));
  Symlink(outside_, InRoot("real/link"));
  for (const char* path : {"link/secret", "link/new", "deep/victim", "real/link/new",
                                  "link/sub/new"}) {
    auto r = Emit("", path);
    EXPECT_NE(r.code(), 0) << path << " was written";
  }
  // Replacing the symlink itself is a rename onto its name, not a write
  // through it: the link becomes a regular file, the outside stays.
  auto replaced = Emit("", "link");
  EXPECT_EQ(replaced.code(), 0) << replaced.error();
  EXPECT_EQ(ReadFile(InRoot("link")), "forged");
  ExpectOutsideUntouched();
}

TEST_F(ConfinementTest, EmitDoesNotFollowASymlinkedScratchDirectory) {
  // The temporary file of an Emit goes to .dispatchd-emit/; planted as a
  // symlink, it would have the temporary written outside.
  Symlink(outside_, InRoot(".dispatchd-emit"));
  auto r = Emit("demo.ping", "");
  EXPECT_NE(r.code(), 0);
  EXPECT_FALSE(Exists(InRoot("demo.ping")));
  ExpectOutsideUntouched();
}

TEST_F(ConfinementTest, SettledKeysThatEscapeAreRefused) {
  // Read, Delete and DeadLetter act on the key a controller sends back.
  for (const std::string& rel : EscapingPaths(base_, outside_)) {
    EXPECT_EQ(spool_.Read(rel, 100).status().code(), absl::StatusCode::kInvalidArgument) << rel;
    EXPECT_EQ(spool_.Delete(rel).code(), absl::StatusCode::kInvalidArgument) << rel;
    EXPECT_EQ(spool_.DeadLetter(rel, "{}").code(), absl::StatusCode::kInvalidArgument) << rel;
  }
  Symlink(outside_, InRoot("link"));
  for (const char* rel : {"link/secret", "link/sub/victim"}) {
    EXPECT_FALSE(spool_.Read(rel, 100).ok()) << rel;
    EXPECT_FALSE(spool_.Delete(rel).ok()) << rel;
    EXPECT_FALSE(spool_.DeadLetter(rel, "{}").ok()) << rel;
  }
  ExpectOutsideUntouched();
}

TEST_F(ConfinementTest, ReplayAndPurgeRefuseEveryEscapingPath) {
  MakeDir(InRoot(".dead-letter"));
  WriteFile(InRoot(".dead-letter/kept"), "dead");
  for (const std::string& path : EscapingPaths(base_, outside_)) {
    for (auto op : {DeadLetterRequest::REPLAY, DeadLetterRequest::PURGE}) {
      auto r = DeadLetterCall(op, path);
      EXPECT_EQ(r.code(), static_cast<int>(absl::StatusCode::kInvalidArgument))
          << DeadLetterRequest::Op_Name(op) << " " << path;
    }
  }
  EXPECT_EQ(ReadFile(InRoot(".dead-letter/kept")), "dead");
  ExpectOutsideUntouched();
}

TEST_F(ConfinementTest, ADeadLetterDirectoryThatIsASymlinkIsNeverUsed) {
  Symlink(outside_, InRoot(".dead-letter"));
  WriteFile(InRoot("failed"), "undeliverable");
  // Dead-lettering would move the file (and write its note) outside.
  EXPECT_FALSE(spool_.DeadLetter("failed", R"({"error":"x"})").ok());
  EXPECT_EQ(ReadFile(InRoot("failed")), "undeliverable") << "left in place";
  // Listing would show, replay would move in, purge would delete outside files.
  auto listed = DeadLetterCall(DeadLetterRequest::LIST);
  EXPECT_NE(listed.code(), 0);
  EXPECT_EQ(listed.entries_size(), 0);
  for (const char* path : {"secret", "sub/victim"}) {
    EXPECT_NE(DeadLetterCall(DeadLetterRequest::REPLAY, path).code(), 0) << path;
    EXPECT_NE(DeadLetterCall(DeadLetterRequest::PURGE, path).code(), 0) << path;
  }
  EXPECT_FALSE(Exists(InRoot("secret")));
  EXPECT_FALSE(Exists(InRoot("sub")));
  ExpectOutsideUntouched();
}

TEST_F(ConfinementTest, SymlinksInsideTheDeadLetterDirectoryAreNeverFollowed) {
  MakeDir(InRoot(".dead-letter"));
  Symlink(outside_, InRoot(".dead-letter/linkdir"));         // a directory
  Symlink(outside_ + "/secret", InRoot(".dead-letter/linkfile"));  // a file
  WriteFile(InRoot(".dead-letter/real"), "dead");
  // Its note is a symlink to an outside file: never read as the note.
  Symlink(outside_ + "/secret", InRoot(".dead-letter/real.error.json"));

  auto listed = DeadLetterCall(DeadLetterRequest::LIST);
  ASSERT_EQ(listed.code(), 0) << listed.error();
  ASSERT_EQ(listed.entries_size(), 1);
  EXPECT_EQ(listed.entries(0).path(), "real");
  EXPECT_EQ(listed.entries(0).error_json(), "");

  for (const char* path : {"linkdir/secret", "linkdir/sub/victim", "linkfile"}) {
    EXPECT_NE(DeadLetterCall(DeadLetterRequest::REPLAY, path).code(), 0) << path;
    EXPECT_NE(DeadLetterCall(DeadLetterRequest::PURGE, path).code(), 0) << path;
  }
  EXPECT_FALSE(Exists(InRoot("linkdir")));
  EXPECT_FALSE(Exists(InRoot("linkfile")));

  // Dead-lettering events/linkdir/x would create .dead-letter/linkdir/x,
  // that is outside/x.
  MakeDir(InRoot("linkdir"));
  WriteFile(InRoot("linkdir/x"), "undeliverable");
  EXPECT_FALSE(spool_.DeadLetter("linkdir/x", "{}").ok());
  EXPECT_EQ(ReadFile(InRoot("linkdir/x")), "undeliverable") << "left in place";

  // A note planted as a symlink to an outside file is not written through.
  WriteFile(InRoot("noted"), "undeliverable");
  Symlink(outside_ + "/secret", InRoot(".dead-letter/noted.error.json"));
  EXPECT_FALSE(spool_.DeadLetter("noted", R"({"error":"overwrite?"})").ok());
  EXPECT_EQ(ReadFile(InRoot("noted")), "undeliverable");

  // Replaying a real dead letter removes its note: the symlink, not its target.
  auto replayed = DeadLetterCall(DeadLetterRequest::REPLAY, "real");
  EXPECT_EQ(replayed.code(), 0) << replayed.error();
  EXPECT_EQ(ReadFile(InRoot("real")), "dead");
  EXPECT_FALSE(Exists(InRoot(".dead-letter/real.error.json")));
  ExpectOutsideUntouched();
}

TEST_F(ConfinementTest, ReplayDoesNotFollowASymlinkedDirectoryInTheEventsDirectory) {
  // A real dead letter sub/x, and events/sub planted as a symlink: the
  // replay would move the file outside.
  MakeDir(InRoot("sub"));
  WriteFile(InRoot("sub/x"), "dead");
  ASSERT_TRUE(spool_.DeadLetter("sub/x", "{}").ok());
  ASSERT_EQ(rmdir(InRoot("sub").c_str()), 0);
  Symlink(outside_, InRoot("sub"));
  auto r = DeadLetterCall(DeadLetterRequest::REPLAY, "sub/x");
  EXPECT_NE(r.code(), 0);
  EXPECT_EQ(ReadFile(InRoot(".dead-letter/sub/x")), "dead") << "stays a dead letter";
  ExpectOutsideUntouched();
}

}  // namespace
}  // namespace dispatchd::agent
