#include "controller/access_policy.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/constant_time.h"

namespace dispatchd {
namespace controller {
namespace {

// What each token grants, as a bit set of Permission.
constexpr unsigned Bit(Permission p) { return 1u << static_cast<unsigned>(p); }
constexpr unsigned kSession = Bit(Permission::kAgentSession);
constexpr unsigned kRead = Bit(Permission::kApiRead);
constexpr unsigned kWrite = Bit(Permission::kApiWrite);

absl::string_view What(Permission p) {
  switch (p) {
    case Permission::kAgentSession: return "open an agent session";
    case Permission::kApiRead: return "call the API";
    case Permission::kApiWrite: return "call the API's write methods";
  }
  return "do that";
}

}  // namespace

AccessPolicy::AccessPolicy(AccessTokens tokens) : tokens_(std::move(tokens)) {}

bool AccessPolicy::agent_sessions_open() const {
  return tokens_.shared.empty() && tokens_.agent.empty();
}

bool AccessPolicy::api_open() const {
  return tokens_.shared.empty() && tokens_.api.empty() && tokens_.api_read.empty();
}

absl::Status AccessPolicy::Check(Permission needed, absl::string_view presented) const {
  const bool open = needed == Permission::kAgentSession ? agent_sessions_open() : api_open();
  if (open) return absl::OkStatus();
  if (presented.empty()) {
    return absl::UnauthenticatedError(
        needed == Permission::kAgentSession
            ? "this controller requires a token: start the agent with --token or --agent-token"
            : "this controller requires a token: send 'authorization: Bearer <token>'");
  }
  // Every configured token is compared, whatever matched before.
  const struct {
    const std::string& token;
    unsigned grants;
  } known[] = {{tokens_.shared, kSession | kRead | kWrite},
               {tokens_.agent, kSession},
               {tokens_.api, kRead | kWrite},
               {tokens_.api_read, kRead}};
  bool matched = false;
  unsigned grants = 0;
  for (const auto& k : known) {
    const bool equal = !k.token.empty() & ConstantTimeEquals(presented, k.token);
    matched |= equal;
    grants |= equal ? k.grants : 0u;
  }
  if (!matched) return absl::UnauthenticatedError("wrong token");
  if ((grants & Bit(needed)) == 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("this token may not ", What(needed),
                     needed == Permission::kAgentSession ? " (it is an API token)"
                     : needed == Permission::kApiWrite && (grants & kRead) != 0
                         ? " (it is the read-only API token)"
                         : " (it is an agent token)"));
  }
  return absl::OkStatus();
}

}  // namespace controller
}  // namespace dispatchd
