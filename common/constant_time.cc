#include "common/constant_time.h"

#include <openssl/crypto.h>

namespace dispatchd {

bool ConstantTimeEquals(absl::string_view presented, absl::string_view secret) {
  const bool same_length = presented.size() == secret.size();
  // Selects the other operand without a branch on the secret's length.
  const char* other = same_length ? secret.data() : presented.data();
  const int differ = CRYPTO_memcmp(presented.data(), other, presented.size());
  return same_length & (differ == 0);
}

}  // namespace dispatchd
