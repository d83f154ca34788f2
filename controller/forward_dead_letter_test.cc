#include "controller/forward_dead_letter.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/cord.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace dispatchd {
namespace controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ForwardDeadLetterFileNamesTest, OneSafeDistinctNamePerDestination) {
  EXPECT_THAT(
      ForwardDeadLetterFileNames({"https://user:pw@hooks.example:8443/in?token=x#f",
                                  "http://hooks.example:8443/in", "file:/var/log/events.jsonl",
                                  "log:", "log:audit", "http://[::1]:9000/a b/../c",
                                  "HTTP://hooks.example:8443/in"}),
      ElementsAre("forward-hooks.example-8443-in.jsonl", "forward-hooks.example-8443-in-2.jsonl",
                  "forward-var-log-events.jsonl.jsonl", "forward-log.jsonl", "forward-audit.jsonl",
                  "forward-1-9000-a-b-..-c.jsonl", "forward-hooks.example-8443-in-3.jsonl"));
  const std::string long_path(500, 'p');
  const std::vector<std::string> names =
      ForwardDeadLetterFileNames({"http://h/" + long_path, "http://h/" + long_path + "x"});
  EXPECT_EQ(names[0], "forward-h-" + std::string(98, 'p') + ".jsonl");
  EXPECT_EQ(names[1], "forward-h-" + std::string(98, 'p') + "-2.jsonl");
}

TEST(ForwardDeadLetterLineTest, RecordsTheAnswerAndTheEventAsForwarded) {
  sinks::Event event;
  event.id = "demo.ping";
  event.payload = "hello\n";
  event.source_host = "host-a";
  event.path = "demo/ping";
  event.time = absl::FromUnixSeconds(1767225600);
  // An error as HttpSink returns it (the answer's body is not valid UTF-8).
  absl::Status rejected = absl::NotFoundError("POST http://h/in?token=secret: HTTP 404 Not Found");
  rejected.SetPayload("type.dispatchd.dev/dispatchd.sinks.HttpAnswer",
                      absl::Cord("404\nNot Found\nfno such hook \xff"));
  const std::string line = ForwardDeadLetterLine(event, "http://user:pw@h/in?token=secret", 5,
                                                 rejected, absl::FromUnixSeconds(1767225603));
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line.find("secret"), std::string::npos) << line;
  const nlohmann::json json = nlohmann::json::parse(line);
  EXPECT_EQ(json["dead_lettered_at"], "2026-01-01T00:00:03Z");
  EXPECT_EQ(json["destination"], "http://h/in");
  EXPECT_EQ(json["attempts"], 5);
  EXPECT_EQ(json["status"], 404);
  EXPECT_EQ(json["reason"], "Not Found");
  EXPECT_EQ(json["answer"], "no such hook \xef\xbf\xbd");
  EXPECT_EQ(json["answer_truncated"], false);
  EXPECT_EQ(json["event"]["id"], "demo.ping");
  EXPECT_EQ(json["event"]["payload"], "hello\n");
  EXPECT_EQ(json["event"]["path"], "demo/ping");
  EXPECT_EQ(json["event"]["host"], "host-a");
  EXPECT_THAT(line, HasSubstr("\"dead_lettered_at\":\"2026-01-01T00:00:03Z\",\"destination\""))
      << "keys in a fixed order";

  // Without an answer the error's message stands in for it.
  const nlohmann::json other = nlohmann::json::parse(ForwardDeadLetterLine(
      event, "file:/x", 1, absl::PermissionDeniedError("denied"), absl::UnixEpoch()));
  EXPECT_EQ(other["error"], "denied");
  EXPECT_FALSE(other.contains("status"));
}

TEST(AppendForwardDeadLetterTest, CreatesTheDirectoryAndAppendsLines) {
  std::string root = ::testing::TempDir() + "/dead_letter_XXXXXX";
  ASSERT_NE(mkdtemp(root.data()), nullptr);
  const std::string dir = root + "/events/.forward-dead-letter";
  ASSERT_TRUE(AppendForwardDeadLetter(dir, "forward-h.jsonl", "{\"a\":1}").ok());
  ASSERT_TRUE(AppendForwardDeadLetter(dir, "forward-h.jsonl", "{\"a\":2}").ok());
  std::ifstream in(dir + "/forward-h.jsonl");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "{\"a\":1}\n{\"a\":2}\n");

  // A directory that cannot be made (a file is in the way) is an error naming it.
  const absl::Status status =
      AppendForwardDeadLetter(dir + "/forward-h.jsonl/sub", "x.jsonl", "{}");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("forward-h.jsonl/sub"));
  unlink((dir + "/forward-h.jsonl").c_str());
  rmdir(dir.c_str());
  rmdir((root + "/events").c_str());
  rmdir(root.c_str());
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
