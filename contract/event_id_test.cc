#include "contract/event_id.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd::contract {
namespace {

using ::testing::HasSubstr;

TEST(EventIdTest, SlashesBecomeDots) {
  EXPECT_EQ(EventIdFromRelativePath("some-dir/some-sub-dir/the-event-file", ""),
            "some-dir.some-sub-dir.the-event-file");
}

TEST(EventIdTest, TopLevelFileIsItsName) {
  EXPECT_EQ(EventIdFromRelativePath("rebuild", ""), "rebuild");
}

TEST(EventIdTest, DotsAndExtensionsAreKept) {
  EXPECT_EQ(EventIdFromRelativePath("a/b.txt", ""), "a.b.txt");
  EXPECT_EQ(EventIdFromRelativePath("v1.2/release.tar.gz", ""), "v1.2.release.tar.gz");
}

TEST(EventIdTest, NamespaceIsPrefixedWithADot) {
  EXPECT_EQ(EventIdFromRelativePath("a/b.txt", "ns"), "ns.a.b.txt");
  EXPECT_EQ(EventIdFromRelativePath("the-event-file", "host1"), "host1.the-event-file");
}

TEST(EventIdTest, NamespaceItselfIsNotRewritten) {
  // Only the relative path's separators are mapped.
  EXPECT_EQ(EventIdFromRelativePath("x/y", "team/a"), "team/a.x.y");
}

TEST(EventIdTest, OddCharactersPassThrough) {
  EXPECT_EQ(EventIdFromRelativePath("dir with space/ünï\ncode", ""), "dir with space.ünï\ncode");
}

TEST(IsIgnoredRelativePathTest, HiddenComponentsAreIgnored) {
  EXPECT_TRUE(IsIgnoredRelativePath(".hidden"));
  EXPECT_TRUE(IsIgnoredRelativePath(".dead-letter/a/b"));
  EXPECT_TRUE(IsIgnoredRelativePath("a/.tmp/b"));
  EXPECT_TRUE(IsIgnoredRelativePath("a/b/.x.tmp"));
}

TEST(IsIgnoredRelativePathTest, VisiblePathsAreNotIgnored) {
  EXPECT_FALSE(IsIgnoredRelativePath("a"));
  EXPECT_FALSE(IsIgnoredRelativePath("a/b.txt"));
  EXPECT_FALSE(IsIgnoredRelativePath("a./b.c/d."));
}

TEST(ValidateRelativePathTest, AcceptsNormalPaths) {
  EXPECT_TRUE(ValidateRelativePath("a").ok());
  EXPECT_TRUE(ValidateRelativePath("a/b/c.txt").ok());
  EXPECT_TRUE(ValidateRelativePath(".dead-letter/a").ok());
  EXPECT_TRUE(ValidateRelativePath("...").ok());
  EXPECT_TRUE(ValidateRelativePath("with space/new\nline").ok());
}

TEST(ValidateRelativePathTest, RejectsEscapesAndMalformedPaths) {
  for (absl::string_view bad :
       {"", "/", "/etc/passwd", "..", ".", "../x", "a/../b", "a/./b", "a/..", "a//b", "a/", "/a"}) {
    absl::Status status = ValidateRelativePath(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << "path: " << bad;
  }
}

TEST(ValidateRelativePathTest, RejectsNulBytes) {
  EXPECT_EQ(ValidateRelativePath(absl::string_view("a\0b", 3)).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
TEST(EmitRelativePathTest, AnIdIsOneFileAtTheTopAndAPathIsKept) {
  EXPECT_EQ(*EmitRelativePath("a.b.c", "", ""), "a.b.c");
  EXPECT_EQ(EventIdFromRelativePath(*EmitRelativePath("a.b.c", "", ""), ""), "a.b.c");
  EXPECT_EQ(*EmitRelativePath("", "a/b/c.txt", ""), "a/b/c.txt");
  // With the agent's namespace the id starts with it; the file does not.
  EXPECT_EQ(*EmitRelativePath("ns.a.b", "", "ns"), "a.b");
  EXPECT_EQ(EventIdFromRelativePath("a.b", "ns"), "ns.a.b");
}

TEST(EmitRelativePathTest, EveryBadInputNamesItsRule) {
  auto message = [](absl::string_view id, absl::string_view path, absl::string_view ns = "") {
    absl::StatusOr<std::string> r = EmitRelativePath(id, path, ns);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << id << "|" << path;
    return std::string(r.status().message());
  };
  EXPECT_THAT(message("", ""), HasSubstr("give an event id or a path"));
  EXPECT_THAT(message("a", "a"), HasSubstr("not both"));
  EXPECT_THAT(message(std::string(256, 'x'), ""), HasSubstr("longer than 255"));
  EXPECT_THAT(message("", std::string(1025, 'x')), HasSubstr("longer than 1024"));
  EXPECT_THAT(message("", "a/" + std::string(256, 'x')), HasSubstr("longer than 255"));
  EXPECT_THAT(message("", "a/../b"), HasSubstr("'..'"));
  EXPECT_THAT(message("", ".."), HasSubstr("'..'"));
  EXPECT_THAT(message("", "/etc/passwd"), HasSubstr("absolute"));
  EXPECT_THAT(message("", "a/.hidden"), HasSubstr("hidden"));
  EXPECT_THAT(message(".hidden", ""), HasSubstr("hidden"));
  EXPECT_THAT(message("", "a//b"), HasSubstr("empty component"));
  EXPECT_THAT(message(std::string("a\0b", 3), ""), HasSubstr("NUL"));
  EXPECT_THAT(message("", std::string("a\0b", 3)), HasSubstr("NUL"));
  EXPECT_THAT(message("a/b", ""), HasSubstr("no '/'"));
  EXPECT_THAT(message("other.a", "", "ns"), HasSubstr("must start with 'ns.'"));
  EXPECT_THAT(message("ns.", "", "ns"), HasSubstr("must start with 'ns.'"));
}

}  // namespace dispatchd::contract
