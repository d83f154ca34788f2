// SubscriptionIndex: the controller's level-triggered view of who
// subscribes to what, derived from the agents' container inventories
// (README.md, "Labels (subscriptions)": level-triggered).
//
// Agents report containers (snapshots and deltas); each container's labels
// are parsed once when they change, and every subscription is indexed by
// event id, so routing an event is one hash lookup. An upsert re-parses
// only that container and touches only its own entries. Every container
// counts, running or not; the caller decides what to do with a stopped
// one (its state is in the Target). Each invalid subscription is logged
// once, when it first appears.
//
// Not thread-safe: the caller serialises every call. Returned values are
// copies, except the TargetRefs of LookupRefs/FindRef, which point into the
// index until its next change.
#ifndef DISPATCHD_CONTROLLER_SUBSCRIPTION_INDEX_H_
#define DISPATCHD_CONTROLLER_SUBSCRIPTION_INDEX_H_

#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "contract/labels.h"
#include "proto/dispatch/v1/session.pb.h"

namespace dispatchd {
namespace controller {

// One container subscribed to an event.
struct Target {
  std::string agent_id;
  std::string container_id;
  std::string container_name;
  dispatch::v1::Container::State state = dispatch::v1::Container::STATE_UNSPECIFIED;
  contract::Subscription subscription;
};

// A subscriber as the index holds it, without copies: the pointers stay
// valid until the index next changes.
struct TargetRef {
  const std::string* agent_id = nullptr;
  const std::string* container_id = nullptr;
  const std::string* container_name = nullptr;
  dispatch::v1::Container::State state = dispatch::v1::Container::STATE_UNSPECIFIED;
  const contract::Subscription* subscription = nullptr;

  Target ToTarget() const {
    return Target{*agent_id, *container_id, *container_name, state, *subscription};
  }
};

// A container with labels for an event id, or almost (for explaining what
// an event would do): its labels for that id, its valid subscription to
// exactly that id if any, its invalid entries for that id, and the labels
// that almost match, each with why.
struct LabelMatch {
  std::string agent_id;
  std::string container_id;
  std::string container_name;
  dispatch::v1::Container::State state = dispatch::v1::Container::STATE_UNSPECIFIED;
  std::map<std::string, std::string> labels;
  std::optional<contract::Subscription> subscription;
  std::vector<contract::InvalidSubscription> invalid;
  std::vector<std::string> near_misses;  // "<label key>: <why>"
};

// An invalid subscription (or stray label) and the container it is on.
struct InvalidEntry {
  std::string agent_id;
  std::string container_id;
  std::string container_name;
  contract::InvalidSubscription invalid;
};

class SubscriptionIndex {
 public:
  // `label_namespace`: the `${ns}` of `${ns}.${eventId}.<suffix>` labels.
  explicit SubscriptionIndex(std::string label_namespace);

  SubscriptionIndex(const SubscriptionIndex&) = delete;
  SubscriptionIndex& operator=(const SubscriptionIndex&) = delete;

  // The agent's complete inventory: containers not in `containers` are
  // removed, the others upserted. A repeated id: the last one counts.
  void ReplaceAgentInventory(const std::string& agent_id,
                             const std::vector<dispatch::v1::Container>& containers);
  // Adds or updates one container (a delta). Unchanged labels and name
  // cost no re-parse: only the state is updated.
  void UpsertContainer(const std::string& agent_id, const dispatch::v1::Container& container);
  // Unknown ids are ignored.
  void RemoveContainer(const std::string& agent_id, const std::string& container_id);
  void RemoveAgent(const std::string& agent_id);

  // Every subscription to `event_id`, over all agents and containers
  // (running or not), sorted by agent id, container name, container id.
  // Scope::kHost subscriptions are included only when their agent is
  // `origin_agent_id`, the agent that observed the event.
  std::vector<Target> Lookup(absl::string_view event_id, absl::string_view origin_agent_id) const;
  // The same without copying (routing's hot path): `out` is cleared first.
  void LookupRefs(absl::string_view event_id, absl::string_view origin_agent_id,
                  std::vector<TargetRef>* out) const;

  // The current subscription of one container to `event_id`, if any
  // (regardless of scope): for re-checking a decision made earlier.
  std::optional<Target> Find(absl::string_view agent_id, absl::string_view container_id,
                             absl::string_view event_id) const;
  std::optional<TargetRef> FindRef(absl::string_view agent_id, absl::string_view container_id,
                                   absl::string_view event_id) const;

  // Every valid subscription, sorted by event id, agent id, container name,
  // container id. For the public API; O(subscriptions).
  std::vector<Target> All() const;

  // Every invalid subscription, sorted by agent id, container name,
  // container id, then as ParseSubscriptionLabels orders them.
  std::vector<InvalidEntry> Invalid() const;

  // Every container with a label of the namespace for `event_id`, or one
  // that almost matches (contract::NearMiss, or a misspelled suffix after
  // the id), sorted by agent id, container name, container id. O(labels).
  std::vector<LabelMatch> Near(absl::string_view event_id) const;

  size_t subscription_count() const { return subscription_count_; }
  size_t invalid_count() const { return invalid_count_; }
  size_t container_count() const { return container_count_; }

 private:
  struct ContainerEntry {
    std::string name;
    dispatch::v1::Container::State state = dispatch::v1::Container::STATE_UNSPECIFIED;
    // Only the labels under the namespace: all that parsing depends on.
    std::map<std::string, std::string> labels;
    absl::flat_hash_map<std::string, contract::Subscription> subscriptions;  // by event id
    std::vector<contract::InvalidSubscription> invalid;
  };
  using AgentContainers = absl::flat_hash_map<std::string, ContainerEntry>;  // by container id

  // A subscriber of one event id, in Lookup order.
  struct Ref {
    std::string agent_id;
    std::string container_name;
    std::string container_id;
    bool operator<(const Ref& o) const {
      return std::tie(agent_id, container_name, container_id) <
             std::tie(o.agent_id, o.container_name, o.container_id);
    }
  };

  void Unindex(const std::string& agent_id, const std::string& container_id,
               const ContainerEntry& entry);
  void Index(const std::string& agent_id, const std::string& container_id,
             const ContainerEntry& entry);
  // Removes the container; returns false if it was not there. Leaves an
  // empty agent map in place.
  bool EraseContainer(AgentContainers& containers, const std::string& agent_id,
                      const std::string& container_id);

  const std::string label_namespace_;
  const std::string label_prefix_;  // label_namespace_ + "."
  absl::flat_hash_map<std::string, AgentContainers> agents_;
  absl::flat_hash_map<std::string, std::set<Ref>> by_event_;
  size_t subscription_count_ = 0;
  size_t invalid_count_ = 0;
  size_t container_count_ = 0;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_SUBSCRIPTION_INDEX_H_
