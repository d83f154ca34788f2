#include "controller/command_builder.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "controller/event_ledger.h"

namespace dispatchd {
namespace controller {

void BuildCommand(uint64_t command_id, const dispatch::v1::ObservedEvent& event,
                  absl::string_view origin_agent, absl::string_view origin_host, const Recipient& recipient,
                  const contract::Subscription& subscription, size_t max_env_payload_bytes,
                  dispatch::v1::Command* command) {
  command->set_command_id(command_id);
  command->set_event_id(event.event_id());
  command->set_container_id(recipient.container_id);
  command->set_origin_agent(std::string(origin_agent));
  command->set_key(event.key());
  command->set_generation(event.generation());
  for (const std::string& arg : subscription.argv) command->add_argv(arg);
  command->set_start_container(subscription.start == contract::StartPolicy::kStartIfStopped);
  command->add_env(absl::StrCat("DISPATCH_EVENT_ID=", event.event_id()));
  command->add_env(absl::StrCat("DISPATCH_EVENT_HOST=", origin_host));
  command->add_env(absl::StrCat("DISPATCH_EVENT_PATH=", event.key()));
  const std::string& payload = event.payload();
  if (!PayloadDropped(event) && payload.size() <= max_env_payload_bytes &&
      payload.find('\0') == std::string::npos) {
    command->add_env(absl::StrCat("DISPATCH_EVENT_PAYLOAD=", payload));
  }
}

}  // namespace controller
}  // namespace dispatchd
