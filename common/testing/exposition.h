// Reading samples back out of the Prometheus text exposition, for tests.
#ifndef DISPATCHD_COMMON_TESTING_EXPOSITION_H_
#define DISPATCHD_COMMON_TESTING_EXPOSITION_H_

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace dispatchd {
namespace testing {

// The value of one series, written exactly as it is exposed
// (`name{label="v",...}` or a bare `name`), in `text`; -1 if absent.
inline double Sample(absl::string_view text, absl::string_view series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, series) && absl::ConsumePrefix(&line, " ")) {
      double v = 0;
      if (absl::SimpleAtod(line, &v)) return v;
    }
  }
  return -1;
}

}  // namespace testing
}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_TESTING_EXPOSITION_H_
