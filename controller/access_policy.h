// AccessPolicy: which bearer token may do what on the controller's gRPC port.
//
// Four tokens, each optional:
//   shared    (--token)           agent sessions and the whole API, as before
//   agent     (--agent-token)     agent sessions only
//   api       (--api-token)       the whole API (reads, and writes such as Emit)
//   api_read  (--api-read-token)  the API's read calls only
// Agent sessions are open while neither `shared` nor `agent` is set; the API
// is open while none of `shared`, `api`, `api_read` is set (with only
// `api_read` set, write calls are refused). A token that is known but does
// not grant what is asked (an agent token on the API, an API token opening a
// session, the read-only token writing) is PERMISSION_DENIED; a missing or
// unknown token is UNAUTHENTICATED. Tokens are compared in constant time
// (common/constant_time.h), against every configured token, so timing
// reveals neither a token, nor its length, nor which one matched.
//
// Immutable after construction; thread-safe.
#ifndef DISPATCHD_CONTROLLER_ACCESS_POLICY_H_
#define DISPATCHD_CONTROLLER_ACCESS_POLICY_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace dispatchd {
namespace controller {

enum class Permission { kAgentSession, kApiRead, kApiWrite };

struct AccessTokens {
  std::string shared;
  std::string agent;
  std::string api;
  std::string api_read;
};

class AccessPolicy {
 public:
  explicit AccessPolicy(AccessTokens tokens);

  // OK when `presented` (empty: none) grants `needed`; otherwise
  // UNAUTHENTICATED or PERMISSION_DENIED with a message that says what is
  // needed (never the token).
  absl::Status Check(Permission needed, absl::string_view presented) const;

  // No token configured for that side: anyone may connect.
  bool agent_sessions_open() const;
  bool api_open() const;

 private:
  const AccessTokens tokens_;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_ACCESS_POLICY_H_
