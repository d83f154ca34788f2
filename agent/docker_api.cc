#include "agent/docker_api.h"

namespace dispatchd {
namespace agent {

ContainerState ParseContainerState(absl::string_view state) {
  if (state == "created") return ContainerState::kCreated;
  if (state == "running") return ContainerState::kRunning;
  if (state == "paused") return ContainerState::kPaused;
  if (state == "restarting") return ContainerState::kRestarting;
  if (state == "removing") return ContainerState::kRemoving;
  if (state == "exited") return ContainerState::kExited;
  if (state == "dead") return ContainerState::kDead;
  return ContainerState::kUnknown;
}

absl::string_view ContainerStateName(ContainerState state) {
  switch (state) {
    case ContainerState::kCreated: return "created";
    case ContainerState::kRunning: return "running";
    case ContainerState::kPaused: return "paused";
    case ContainerState::kRestarting: return "restarting";
    case ContainerState::kRemoving: return "removing";
    case ContainerState::kExited: return "exited";
    case ContainerState::kDead: return "dead";
    case ContainerState::kUnknown: break;
  }
  return "unknown";
}

}  // namespace agent
}  // namespace dispatchd
