#include "controller/subscription_index.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace dispatchd {
namespace controller {

SubscriptionIndex::SubscriptionIndex(std::string label_namespace)
    : label_namespace_(std::move(label_namespace)),
      label_prefix_(absl::StrCat(label_namespace_, ".")) {}

void SubscriptionIndex::ReplaceAgentInventory(
    const std::string& agent_id, const std::vector<dispatch::v1::Container>& containers) {
  absl::flat_hash_set<std::string> present;
  present.reserve(containers.size());
  for (const auto& c : containers) present.insert(c.id());

  auto agent = agents_.find(agent_id);
  if (agent != agents_.end()) {
    std::vector<std::string> vanished;
    for (const auto& [id, entry] : agent->second) {
      if (!present.contains(id)) vanished.push_back(id);
    }
    for (const auto& id : vanished) EraseContainer(agent->second, agent_id, id);
  }
  for (const auto& c : containers) UpsertContainer(agent_id, c);
  agent = agents_.find(agent_id);
  if (agent != agents_.end() && agent->second.empty()) agents_.erase(agent);
}

void SubscriptionIndex::UpsertContainer(const std::string& agent_id,
                                        const dispatch::v1::Container& container) {
  std::map<std::string, std::string> labels;
  for (const auto& [key, value] : container.labels()) {
    if (absl::StartsWith(key, label_prefix_)) labels.emplace(key, value);
  }

  AgentContainers& containers = agents_[agent_id];
  auto [it, inserted] = containers.try_emplace(container.id());
  ContainerEntry& entry = it->second;
  entry.state = container.state();
  if (!inserted && entry.name == container.name() && entry.labels == labels) return;

  std::vector<contract::InvalidSubscription> previously_invalid;
  if (inserted) {
    ++container_count_;
  } else {
    Unindex(agent_id, container.id(), entry);
    previously_invalid = std::move(entry.invalid);
  }

  contract::ParsedLabels parsed = contract::ParseSubscriptionLabels(labels, label_namespace_);
  entry.name = container.name();
  entry.labels = std::move(labels);
  entry.subscriptions.clear();
  for (contract::Subscription& s : parsed.subscriptions) {
    std::string event_id = s.event_id;
    entry.subscriptions.emplace(std::move(event_id), std::move(s));
  }
  entry.invalid = std::move(parsed.invalid);
  for (const contract::InvalidSubscription& inv : entry.invalid) {
    if (std::find(previously_invalid.begin(), previously_invalid.end(), inv) !=
        previously_invalid.end()) {
      continue;
    }
    LOG(INFO) << "invalid subscription skipped: container " << entry.name << " ("
              << container.id() << ") on agent " << agent_id << ", label " << inv.label << ": "
              << inv.reason;
  }
  Index(agent_id, container.id(), entry);
}

void SubscriptionIndex::RemoveContainer(const std::string& agent_id,
                                        const std::string& container_id) {
  auto agent = agents_.find(agent_id);
  if (agent == agents_.end()) return;
  EraseContainer(agent->second, agent_id, container_id);
  if (agent->second.empty()) agents_.erase(agent);
}

void SubscriptionIndex::RemoveAgent(const std::string& agent_id) {
  auto agent = agents_.find(agent_id);
  if (agent == agents_.end()) return;
  for (const auto& [id, entry] : agent->second) Unindex(agent_id, id, entry);
  container_count_ -= agent->second.size();
  agents_.erase(agent);
}

std::vector<Target> SubscriptionIndex::Lookup(absl::string_view event_id,
                                              absl::string_view origin_agent_id) const {
  std::vector<TargetRef> refs;
  LookupRefs(event_id, origin_agent_id, &refs);
  std::vector<Target> targets;
  targets.reserve(refs.size());
  for (const TargetRef& ref : refs) targets.push_back(ref.ToTarget());
  return targets;
}

void SubscriptionIndex::LookupRefs(absl::string_view event_id, absl::string_view origin_agent_id,
                                   std::vector<TargetRef>* out) const {
  out->clear();
  auto refs = by_event_.find(event_id);
  if (refs == by_event_.end()) return;
  out->reserve(refs->second.size());
  for (const Ref& ref : refs->second) {
    auto agent = agents_.find(ref.agent_id);
    auto container = agent->second.find(ref.container_id);
    const ContainerEntry& entry = container->second;
    const contract::Subscription& sub = entry.subscriptions.find(event_id)->second;
    if (sub.scope == contract::Scope::kHost && ref.agent_id != origin_agent_id) continue;
    out->push_back(TargetRef{&agent->first, &container->first, &entry.name, entry.state, &sub});
  }
}

std::optional<Target> SubscriptionIndex::Find(absl::string_view agent_id,
                                              absl::string_view container_id,
                                              absl::string_view event_id) const {
  std::optional<TargetRef> ref = FindRef(agent_id, container_id, event_id);
  if (!ref.has_value()) return std::nullopt;
  return ref->ToTarget();
}

std::optional<TargetRef> SubscriptionIndex::FindRef(absl::string_view agent_id,
                                                    absl::string_view container_id,
                                                    absl::string_view event_id) const {
  auto agent = agents_.find(agent_id);
  if (agent == agents_.end()) return std::nullopt;
  auto container = agent->second.find(container_id);
  if (container == agent->second.end()) return std::nullopt;
  auto sub = container->second.subscriptions.find(event_id);
  if (sub == container->second.subscriptions.end()) return std::nullopt;
  return TargetRef{&agent->first, &container->first, &container->second.name,
                   container->second.state, &sub->second};
}

std::vector<Target> SubscriptionIndex::All() const {
  std::vector<Target> out;
  out.reserve(subscription_count_);
  for (const auto& [event_id, refs] : by_event_) {
    for (const Ref& ref : refs) {
      const ContainerEntry& entry = agents_.at(ref.agent_id).at(ref.container_id);
      out.push_back(Target{ref.agent_id, ref.container_id, entry.name, entry.state,
                           entry.subscriptions.at(event_id)});
    }
  }
  std::sort(out.begin(), out.end(), [](const Target& a, const Target& b) {
    return std::tie(a.subscription.event_id, a.agent_id, a.container_name, a.container_id) <
           std::tie(b.subscription.event_id, b.agent_id, b.container_name, b.container_id);
  });
  return out;
}

std::vector<InvalidEntry> SubscriptionIndex::Invalid() const {
  // (agent, name, id) -> entry, for a deterministic order.
  std::map<std::tuple<std::string, std::string, std::string>, const ContainerEntry*> sorted;
  for (const auto& [agent_id, containers] : agents_) {
    for (const auto& [id, entry] : containers) {
      if (!entry.invalid.empty()) sorted.emplace(std::make_tuple(agent_id, entry.name, id), &entry);
    }
  }
  std::vector<InvalidEntry> out;
  out.reserve(invalid_count_);
  for (const auto& [key, entry] : sorted) {
    for (const contract::InvalidSubscription& inv : entry->invalid) {
      out.push_back({std::get<0>(key), std::get<2>(key), entry->name, inv});
    }
  }
  return out;
}

std::vector<LabelMatch> SubscriptionIndex::Near(absl::string_view event_id) const {
  const std::string exact_prefix = absl::StrCat(label_namespace_, ".", event_id, ".");
  std::map<std::tuple<std::string, std::string, std::string>, LabelMatch> sorted;
  for (const auto& [agent_id, containers] : agents_) {
    for (const auto& [id, entry] : containers) {
      LabelMatch match;
      for (const auto& [key, value] : entry.labels) {
        std::optional<std::string> label_id = contract::LabelEventId(key, label_namespace_);
        if (label_id.has_value() && *label_id == event_id) {
          match.labels.emplace(key, value);
        } else if (label_id.has_value()) {
          if (std::optional<std::string> why = contract::NearMiss(*label_id, event_id)) {
            match.labels.emplace(key, value);
            match.near_misses.push_back(absl::StrCat(key, ": ", *why));
          }
        } else if (absl::StartsWith(key, exact_prefix)) {
          match.labels.emplace(key, value);
          match.near_misses.push_back(absl::StrCat(
              key, ": no known suffix after the event id (expected container.command, "
                   "container.start, dispatching.debounce or dispatching.scope)"));
        }
      }
      if (match.labels.empty()) continue;
      auto subscription = entry.subscriptions.find(event_id);
      if (subscription != entry.subscriptions.end()) match.subscription = subscription->second;
      for (const contract::InvalidSubscription& inv : entry.invalid) {
        if (inv.event_id == event_id) match.invalid.push_back(inv);
      }
      match.agent_id = agent_id;
      match.container_id = id;
      match.container_name = entry.name;
      match.state = entry.state;
      sorted.emplace(std::make_tuple(agent_id, entry.name, id), std::move(match));
    }
  }
  std::vector<LabelMatch> out;
  out.reserve(sorted.size());
  for (auto& [key, match] : sorted) out.push_back(std::move(match));
  return out;
}

void SubscriptionIndex::Unindex(const std::string& agent_id, const std::string& container_id,
                                const ContainerEntry& entry) {
  const Ref ref{agent_id, entry.name, container_id};
  for (const auto& [event_id, sub] : entry.subscriptions) {
    auto refs = by_event_.find(event_id);
    CHECK(refs != by_event_.end()) << "subscription to " << event_id << " not indexed";
    refs->second.erase(ref);
    if (refs->second.empty()) by_event_.erase(refs);
  }
  subscription_count_ -= entry.subscriptions.size();
  invalid_count_ -= entry.invalid.size();
}

void SubscriptionIndex::Index(const std::string& agent_id, const std::string& container_id,
                              const ContainerEntry& entry) {
  for (const auto& [event_id, sub] : entry.subscriptions) {
    by_event_[event_id].insert(Ref{agent_id, entry.name, container_id});
  }
  subscription_count_ += entry.subscriptions.size();
  invalid_count_ += entry.invalid.size();
}

bool SubscriptionIndex::EraseContainer(AgentContainers& containers, const std::string& agent_id,
                                       const std::string& container_id) {
  auto it = containers.find(container_id);
  if (it == containers.end()) return false;
  Unindex(agent_id, container_id, it->second);
  containers.erase(it);
  --container_count_;
  return true;
}

}  // namespace controller
}  // namespace dispatchd
