#include "common/logging.h"

#include <string>
#include <thread>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace {

std::string Reference(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

std::string Formatted(absl::Time t) {
  char out[kLogTimeSize];
  FormatLogTime(t, out);
  return out;
}

TEST(FormatLogTimeTest, MatchesTheGeneralFormatterAcrossSecondsAndDays) {
  const absl::Time base = absl::FromUnixSeconds(1795316645);  // 2026-11-22T03:04:05Z
  // Within one second (the cached date), across second, minute and day
  // boundaries, and back in time (the cache is per second, not monotonic).
  const absl::Duration steps[] = {
      absl::ZeroDuration(),       absl::Microseconds(1),   absl::Microseconds(999999),
      absl::Seconds(1),           absl::Seconds(55),       absl::Hours(21) - absl::Seconds(5),
      absl::Hours(20) + absl::Minutes(55) + absl::Seconds(54) + absl::Microseconds(999999),
      -absl::Seconds(1),          -absl::Hours(24 * 400),  absl::Microseconds(500),
  };
  for (absl::Duration d : steps) {
    const absl::Time t = base + d;
    EXPECT_EQ(Formatted(t), Reference(t)) << absl::FormatDuration(d);
  }
  EXPECT_EQ(Formatted(base + absl::Microseconds(42)), "2026-11-22T03:04:05.000042Z");
}

TEST(FormatLogTimeTest, BeforeTheEpochAndOutsideFourDigitYears) {
  for (absl::Time t : {absl::FromUnixMicros(-1), absl::FromUnixMicros(-1500001),
                       absl::FromCivil(absl::CivilSecond(999, 12, 31, 23, 59, 59),
                                       absl::UTCTimeZone()),
                       absl::FromCivil(absl::CivilSecond(12345, 1, 1, 0, 0, 0),
                                       absl::UTCTimeZone())}) {
    const std::string want = Reference(t);
    if (want.size() < static_cast<size_t>(kLogTimeSize)) {
      EXPECT_EQ(Formatted(t), want);
    } else {
      EXPECT_EQ(Formatted(t), want.substr(0, kLogTimeSize - 1));
    }
  }
}

TEST(FormatLogTimeTest, EachThreadKeepsItsOwnCache) {
  const absl::Time a = absl::FromUnixSeconds(1795316645) + absl::Microseconds(7);
  const absl::Time b = absl::FromUnixSeconds(1000000000) + absl::Microseconds(8);
  EXPECT_EQ(Formatted(a), Reference(a));
  std::string other;
  std::thread([&] { other = Formatted(b); }).join();
  EXPECT_EQ(other, Reference(b));
  EXPECT_EQ(Formatted(a), Reference(a));
}

}  // namespace
}  // namespace dispatchd
