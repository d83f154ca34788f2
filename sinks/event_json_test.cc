#include "sinks/event_json.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace dispatchd {
namespace sinks {
namespace {

Event MakeEvent(std::string payload) {
  Event event;
  event.id = "demo.some-event";
  event.payload = std::move(payload);
  event.source_host = "host-a";
  event.path = "demo/some-event";
  event.time = absl::FromUnixMillis(1714557600123);  // 2024-05-01T10:00:00.123Z
  return event;
}

TEST(EventJsonTest, ExactShapeAndKeyOrder) {
  EXPECT_EQ(EventToJson(MakeEvent("hello")),
            R"({"id":"demo.some-event","payload":"hello","payload_truncated":false,)"
            R"("host":"host-a","path":"demo/some-event","time":"2024-05-01T10:00:00.123Z"})");
}

TEST(EventJsonTest, EscapesQuotesBackslashesAndControlCharacters) {
  Event event = MakeEvent("say \"hi\"\\\n\t\x01 end");
  event.id = "a\"b";
  const std::string json = EventToJson(event);
  EXPECT_NE(json.find(R"("payload":"say \"hi\"\\\n\t\u0001 end")"), std::string::npos) << json;
  EXPECT_EQ(json.find('\n'), std::string::npos) << "one object per line";
  const nlohmann::json parsed = nlohmann::json::parse(json);
  EXPECT_EQ(parsed["payload"], "say \"hi\"\\\n\t\x01 end");
  EXPECT_EQ(parsed["id"], "a\"b");
  EXPECT_FALSE(parsed.contains("payload_encoding"));
}

TEST(EventJsonTest, Utf8PayloadStaysText) {
  const nlohmann::json parsed = nlohmann::json::parse(EventToJson(MakeEvent("h\xC3\xA9llo \xF0\x9F\x98\x80")));
  EXPECT_EQ(parsed["payload"], "h\xC3\xA9llo \xF0\x9F\x98\x80");
  EXPECT_FALSE(parsed.contains("payload_encoding"));
}

TEST(EventJsonTest, NonUtf8PayloadIsBase64) {
  const std::string binary("\xFF\x00\xFE" "abc", 6);
  const std::string json = EventToJson(MakeEvent(binary));
  const nlohmann::json parsed = nlohmann::json::parse(json);
  EXPECT_EQ(parsed["payload"], "/wD+YWJj");
  EXPECT_EQ(parsed["payload_encoding"], "base64");
  EXPECT_NE(json.find(R"("payload":"/wD+YWJj","payload_encoding":"base64","payload_truncated")"),
            std::string::npos)
      << json;
}

TEST(EventJsonTest, TruncatedFlagAndWholeSecondTime) {
  Event event = MakeEvent("x");
  event.payload_truncated = true;
  event.time = absl::FromUnixSeconds(0);
  const nlohmann::json parsed = nlohmann::json::parse(EventToJson(event));
  EXPECT_EQ(parsed["payload_truncated"], true);
  EXPECT_EQ(parsed["time"], "1970-01-01T00:00:00Z");
}

TEST(EventJsonTest, NonUtf8FileNamesDoNotThrow) {
  Event event = MakeEvent("x");
  event.id = "bad\xFFname";
  event.path = "bad\xFFname";
  const nlohmann::json parsed = nlohmann::json::parse(EventToJson(event));
  EXPECT_EQ(parsed["id"], "bad\xEF\xBF\xBDname");  // U+FFFD replaces the bad byte
}

TEST(IsValidUtf8Test, AcceptsWellFormedRejectsTheRest) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8(std::string("nul\0inside", 10)));
  EXPECT_TRUE(IsValidUtf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));  // é € 😀
  EXPECT_TRUE(IsValidUtf8("\xF4\x8F\xBF\xBF"));                       // U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xFF"));
  EXPECT_FALSE(IsValidUtf8("\x80"));                  // lone continuation
  EXPECT_FALSE(IsValidUtf8("\xC3"));                  // cut short
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));              // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));          // surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));      // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));              // cut short
  EXPECT_FALSE(IsValidUtf8("\xE2\x28\xA1"));          // bad continuation
}

}  // namespace
}  // namespace sinks
}  // namespace dispatchd
