// Comparing secrets (bearer tokens) without telling an attacker, through the
// time an answer takes, how much of a guess was right.
//
// Thread-safe (no state).
#ifndef DISPATCHD_COMMON_CONSTANT_TIME_H_
#define DISPATCHD_COMMON_CONSTANT_TIME_H_

#include "absl/strings/string_view.h"

namespace dispatchd {

// True when `presented` and `secret` are the same bytes. Every byte of
// `presented` is compared (OpenSSL's CRYPTO_memcmp, which has no early
// exit); when the lengths differ, `presented` is compared with itself and
// the answer is false. So the time taken depends on presented.size() only:
// neither where a guess goes wrong nor the secret's length shows.
bool ConstantTimeEquals(absl::string_view presented, absl::string_view secret);

}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_CONSTANT_TIME_H_
