#include "controller/forward_destination.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace controller {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Kind = ForwardDestination::Kind;

ForwardDestination Parse(const std::string& uri) {
  absl::StatusOr<ForwardDestination> d = ParseForwardDestination(uri);
  EXPECT_TRUE(d.ok()) << uri << ": " << d.status();
  return d.ok() ? *d : ForwardDestination{};
}

TEST(ParseForwardDestinationTest, Http) {
  ForwardDestination d = Parse("http://receiver:8080/events");
  EXPECT_EQ(d.kind, Kind::kHttp);
  EXPECT_EQ(d.target, "http://receiver:8080/events");
  EXPECT_EQ(d.uri, "http://receiver:8080/events");
  EXPECT_EQ(Parse("https://example.com/hook?token=x").kind, Kind::kHttp);
  EXPECT_EQ(Parse("HTTPS://example.com").kind, Kind::kHttp);
}

TEST(ParseForwardDestinationTest, File) {
  ForwardDestination d = Parse("file:/var/log/events.jsonl");
  EXPECT_EQ(d.kind, Kind::kFile);
  EXPECT_EQ(d.target, "/var/log/events.jsonl");
  EXPECT_EQ(Parse("file:relative/events.jsonl").target, "relative/events.jsonl");
  EXPECT_EQ(Parse("file:events.jsonl").target, "events.jsonl");
  EXPECT_EQ(Parse("file:///var/log/events.jsonl").target, "/var/log/events.jsonl");
  EXPECT_EQ(Parse("file://localhost/var/log/e.jsonl").target, "/var/log/e.jsonl");
  EXPECT_EQ(Parse("FILE:/x").kind, Kind::kFile);
}

TEST(ParseForwardDestinationTest, Log) {
  ForwardDestination d = Parse("log:");
  EXPECT_EQ(d.kind, Kind::kLog);
  EXPECT_EQ(d.target, "");
  d = Parse("log:audit.events-1_x");
  EXPECT_EQ(d.kind, Kind::kLog);
  EXPECT_EQ(d.target, "audit.events-1_x");
}

TEST(ParseForwardDestinationTest, UnknownSchemeNamesSchemeAndDestination) {
  for (const std::string uri : {"ftp://host/x", "amqp:queue", "kafka:topic?brokers=b"}) {
    absl::StatusOr<ForwardDestination> d = ParseForwardDestination(uri);
    ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << uri;
    EXPECT_THAT(d.status().message(), HasSubstr("unknown scheme")) << uri;
    EXPECT_THAT(d.status().message(), HasSubstr("'" + ForwardDestinationLabel(uri) + "'"));
    EXPECT_THAT(d.status().message(), HasSubstr("http://, https://, file: and log:"));
  }
}

TEST(ParseForwardDestinationTest, MalformedNamesTheDestination) {
  for (const std::string uri :
       {"", "no-scheme", "/var/log/x", ":x", "1http://x", "http:/x", "http://", "http://h:99999/",
        "https://user@h/", "http://h/a b", "file:", "file:dir/", "file://otherhost/x",
        "file://localhost", "file:/x?fileName=y", "log:a b", "log:name?level=DEBUG",
        "log:a/b", "log:a\nb"}) {
    absl::StatusOr<ForwardDestination> d = ParseForwardDestination(uri);
    ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << "'" << uri << "'";
    EXPECT_THAT(d.status().message(),
                HasSubstr("malformed forwarding destination '" + ForwardDestinationLabel(uri) + "'"));
  }
}

// A destination refused at start-up is named in the error (and so the log)
// without the password, query or fragment it was given with.
TEST(ParseForwardDestinationTest, ErrorsShowNoCredentialsOrQuery) {
  for (const std::string uri :
       {"https://user:hunter2@h:99999/hook?token=t0ken", "http://user:hunter2@h/a b?token=t0ken",
        "ftp://user:hunter2@h/x?token=t0ken"}) {
    absl::StatusOr<ForwardDestination> d = ParseForwardDestination(uri);
    ASSERT_FALSE(d.ok()) << uri;
    EXPECT_THAT(d.status().message(), Not(HasSubstr("hunter2"))) << d.status();
    EXPECT_THAT(d.status().message(), Not(HasSubstr("t0ken"))) << d.status();
    EXPECT_THAT(d.status().message(), HasSubstr("://h")) << d.status();  // still named
  }
}

TEST(NewDestinationSinkTest, FileDestinationAppendsToThePath) {
  std::string dir = ::testing::TempDir() + "/forward_destination_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const std::string path = dir + "/out.jsonl";
  absl::StatusOr<std::shared_ptr<sinks::Sink>> sink =
      NewDestinationSink(Parse("file:" + path), DestinationSinkOptions());
  ASSERT_TRUE(sink.ok()) << sink.status();
  auto event = std::make_shared<sinks::Event>();
  event->id = "demo.x";
  ASSERT_TRUE((*sink)->Write(event).ok());
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  EXPECT_THAT(content.str(), HasSubstr("\"id\":\"demo.x\""));
  unlink(path.c_str());
  rmdir(dir.c_str());
}

TEST(NewDestinationSinkTest, LogAndHttpBuild) {
  EXPECT_TRUE(NewDestinationSink(Parse("log:x"), DestinationSinkOptions()).ok());
  EXPECT_TRUE(NewDestinationSink(Parse("https://example.com/"), DestinationSinkOptions()).ok());
  EXPECT_EQ(NewDestinationSink(Parse("https://example.com/"),
                               DestinationSinkOptions{.ca_file = "/nonexistent.pem"})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
