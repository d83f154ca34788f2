// ConstantTimeEquals gives the right answers. That it takes constant time is
// a property of CRYPTO_memcmp and of the code's shape (no early exit), not
// something a timing test on a shared machine could show.
#include "common/constant_time.h"

#include <string>

#include "gtest/gtest.h"

namespace dispatchd {
namespace {

TEST(ConstantTimeEqualsTest, EqualStringsAreEqual) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  const std::string token(64, 'k');
  EXPECT_TRUE(ConstantTimeEquals(token, std::string(64, 'k')));
}

TEST(ConstantTimeEqualsTest, ADifferenceAnywhereIsADifference) {
  const std::string secret = "0123456789abcdef";
  for (size_t i = 0; i < secret.size(); ++i) {
    std::string guess = secret;
    guess[i] ^= 0x01;
    EXPECT_FALSE(ConstantTimeEquals(guess, secret)) << "byte " << i;
  }
}

TEST(ConstantTimeEqualsTest, PrefixesAndExtensionsAreNotEqual) {
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("ab", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", ""));
  // A guess that is the secret followed by anything, or a guess compared
  // with itself because the lengths differ, is still refused.
  EXPECT_FALSE(ConstantTimeEquals("secretsecret", "secret"));
}

TEST(ConstantTimeEqualsTest, BytesAreComparedAsBytes) {
  using namespace std::string_literals;
  EXPECT_TRUE(ConstantTimeEquals("a\0b"s, "a\0b"s));
  EXPECT_FALSE(ConstantTimeEquals("a\0b"s, "a\0c"s));
  EXPECT_FALSE(ConstantTimeEquals("a\0"s, "a"s));
  EXPECT_FALSE(ConstantTimeEquals("\xff"s, "\x7f"s));
}

}  // namespace
}  // namespace dispatchd
