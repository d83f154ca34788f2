#include "controller/command_builder.h"

#include <string>

#include "controller/event_ledger.h"

namespace dispatchd {
namespace controller {

namespace {

// Appends NAME=value as one more environment string, built in place: one
// allocation for the string, none for a temporary.
void AddEnv(dispatch::v1::Command* command, absl::string_view name, absl::string_view value) {
  std::string* env = command->add_env();
  env->reserve(name.size() + value.size());
  env->append(name.data(), name.size());
  env->append(value.data(), value.size());
}

}  // namespace

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
  command->mutable_argv()->Reserve(static_cast<int>(subscription.argv.size()));
  for (const std::string& arg : subscription.argv) command->add_argv(arg);
  command->set_start_container(subscription.start == contract::StartPolicy::kStartIfStopped);
  const std::string& payload = event.payload();
  const bool with_payload = !PayloadDropped(event) && payload.size() <= max_env_payload_bytes &&
                            payload.find('\0') == std::string::npos;
  command->mutable_env()->Reserve(with_payload ? 4 : 3);
  AddEnv(command, "DISPATCH_EVENT_ID=", event.event_id());
  AddEnv(command, "DISPATCH_EVENT_HOST=", origin_host);
  AddEnv(command, "DISPATCH_EVENT_PATH=", event.key());
  if (with_payload) AddEnv(command, "DISPATCH_EVENT_PAYLOAD=", payload);
}

}  // namespace controller
}  // namespace dispatchd
