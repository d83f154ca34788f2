// BuildCommand: the Command that delivers one event to one subscribing
// container (README.md, "Exec"), from the event, the host that observed it,
// the recipient and the subscription as its container's labels say now.
//
// The handler's environment:
//   DISPATCH_EVENT_ID=<event id>
//   DISPATCH_EVENT_HOST=<the origin host>
//   DISPATCH_EVENT_PATH=<the event file's path, relative to the events directory>
//   DISPATCH_EVENT_PAYLOAD=<the payload>, only when it is at most
//     `max_env_payload_bytes` long and holds no NUL byte (an environment
//     string cannot carry one), and the event ledger kept it (a larger one
//     is dropped there: PayloadDropped); otherwise omitted.
// argv is the subscription's command (empty for start-only), and the
// container is started first when the subscription says so.
//
// The Command is built in place, normally in the outgoing message's
// mutable_command(): one is built per delivery, and a returned value would
// cost a second message and a swap each time.
//
// A pure function: it writes only `*command`, keeps nothing, and is
// thread-safe.
#ifndef DISPATCHD_CONTROLLER_COMMAND_BUILDER_H_
#define DISPATCHD_CONTROLLER_COMMAND_BUILDER_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "contract/labels.h"
#include "controller/recipient.h"
#include "proto/dispatch/v1/session.pb.h"

namespace dispatchd {
namespace controller {

// REQUIRES: `*command` is empty.
void BuildCommand(uint64_t command_id, const dispatch::v1::ObservedEvent& event,
                  absl::string_view origin_agent, absl::string_view origin_host, const Recipient& recipient,
                  const contract::Subscription& subscription, size_t max_env_payload_bytes,
                  dispatch::v1::Command* command);

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_COMMAND_BUILDER_H_
