// Recipient: who one delivery of an event goes to, i.e. one subscribing
// container. The subscription itself is not kept here: it is looked up
// again in the SubscriptionIndex when the delivery is sent
// (level-triggered), so a queued delivery holds no copy of it.
//
// A plain value; no thread-safety of its own.
#ifndef DISPATCHD_CONTROLLER_RECIPIENT_H_
#define DISPATCHD_CONTROLLER_RECIPIENT_H_

#include <string>

namespace dispatchd {
namespace controller {

struct Recipient {
  std::string agent_id;  // the agent that holds the container
  std::string container_id;
  std::string container_name;  // as last seen: for logs and dead-letter notes
  std::string event_id;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_RECIPIENT_H_
