#include "controller/agent_table.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include <algorithm>
#include <utility>

#include "common/logging.h"

namespace dispatchd {
namespace controller {

AgentTable::AgentTable(AgentTableOptions options, absl::Time started_at)
    : options_(std::move(options)), startup_grace_end_(started_at + options_.startup_grace) {
  for (const auto& [id, host] : options_.expected_agents) {
    Agent& agent = agents_[id];
    ++not_fresh_;  // new, so not fresh
    agent.host = host;
    agent.away_since = started_at;
    agent.last_heard = started_at;
  }
}

AgentTable::Connection AgentTable::Connect(const std::string& agent_id, const std::string& host,
                                           AgentLink* link, absl::Time now) {
  auto [it, inserted] = agents_.try_emplace(agent_id);
  Agent& agent = it->second;
  if (inserted) ++not_fresh_;  // a new agent is not fresh
  Connection connection;
  if (agent.link != nullptr && agent.link != link) connection.replaced = agent.link;
  connection.was_away = agent.link == nullptr && agent.away_since.has_value();
  agent.link = link;
  agent.host = host;
  SetFresh(agent, false);
  agent.away_since.reset();
  agent.last_heard = now;
  agent.last_heartbeat_sent = now;
  return connection;
}

bool AgentTable::Disconnect(const std::string& agent_id, AgentLink* link, absl::Time now) {
  auto it = agents_.find(agent_id);
  if (it == agents_.end() || it->second.link != link) return false;
  it->second.link = nullptr;
  SetFresh(it->second, false);
  it->second.away_since = now;
  return true;
}

void AgentTable::Remove(const std::string& agent_id) {
  auto it = agents_.find(agent_id);
  if (it == agents_.end()) return;
  if (!it->second.fresh) --not_fresh_;
  agents_.erase(it);
}

void AgentTable::SetFresh(Agent& agent, bool fresh) {
  if (agent.fresh == fresh) return;
  agent.fresh = fresh;
  if (fresh) {
    --not_fresh_;
  } else {
    ++not_fresh_;
  }
}

const AgentTable::Agent* AgentTable::Find(const std::string& agent_id) const {
  auto it = agents_.find(agent_id);
  return it == agents_.end() ? nullptr : &it->second;
}

const AgentTable::Agent* AgentTable::Heard(const std::string& agent_id, absl::Time now) {
  auto it = agents_.find(agent_id);
  if (it == agents_.end()) return nullptr;
  it->second.last_heard = now;
  return &it->second;
}

AgentTable::Agent& AgentTable::At(const std::string& agent_id) {
  auto it = agents_.find(agent_id);
  CHECK(it != agents_.end()) << "unknown agent " << agent_id;
  return it->second;
}

bool AgentTable::AcceptSnapshot(const std::string& agent_id, uint64_t seq) {
  Agent& agent = At(agent_id);
  agent.seq = seq;
  const bool was_fresh = agent.fresh;
  SetFresh(agent, true);
  return was_fresh;
}

AgentTable::DeltaOrder AgentTable::AcceptDelta(const std::string& agent_id, uint64_t seq) {
  Agent& agent = At(agent_id);
  if (seq <= agent.seq) return DeltaOrder::kCovered;
  if (seq != agent.seq + 1) {
    SetFresh(agent, false);
    return DeltaOrder::kGap;
  }
  agent.seq = seq;
  return DeltaOrder::kNext;
}

bool AgentTable::MarkStale(const std::string& agent_id) {
  Agent& agent = At(agent_id);
  const bool was_fresh = agent.fresh;
  SetFresh(agent, false);
  return was_fresh;
}

bool AgentTable::AllFresh(absl::Time now) const {
  // Until the start-up grace has passed, agents of an earlier run may still
  // be reconnecting: routing now could miss their subscribers.
  if (now < startup_grace_end_) return false;
  // Away agents are never fresh, so they count among the not fresh.
  return !agents_.empty() && not_fresh_ == 0;
}

std::vector<std::string> AgentTable::ExpiredAway(absl::Time now) const {
  std::vector<std::string> expired;
  for (const auto& [id, agent] : agents_) {
    if (agent.link == nullptr && agent.away_since.has_value() &&
        now - *agent.away_since >= away_grace()) {
      expired.push_back(id);
    }
  }
  return expired;
}

std::vector<AgentTable::HeartbeatAction> AgentTable::CheckHeartbeats(absl::Time now) {
  std::vector<HeartbeatAction> actions;
  const absl::Duration silence_limit = away_grace();
  for (auto& [id, agent] : agents_) {
    if (agent.link == nullptr) continue;
    if (now - agent.last_heard > silence_limit) {
      actions.push_back({HeartbeatAction::Kind::kCloseSilent, id, agent.link});
      agent.last_heard = now;  // Close once; the session reports its end.
      continue;
    }
    if (now - agent.last_heartbeat_sent >= options_.heartbeat_period) {
      actions.push_back({HeartbeatAction::Kind::kSendHeartbeat, id, agent.link});
      agent.last_heartbeat_sent = now;
    }
  }
  return actions;
}

absl::Time AgentTable::NextDeadline(absl::Time now) const {
  absl::Time next = now + options_.heartbeat_period;
  if (now < startup_grace_end_) next = std::min(next, startup_grace_end_);
  for (const auto& [id, agent] : agents_) {
    if (agent.away_since.has_value()) next = std::min(next, *agent.away_since + away_grace());
  }
  return next;
}

size_t AgentTable::connected_count() const {
  size_t n = 0;
  for (const auto& [id, agent] : agents_) n += agent.link != nullptr ? 1 : 0;
  return n;
}

std::vector<AgentInfo> AgentTable::Infos() const {
  std::vector<AgentInfo> out;
  for (const auto& [id, agent] : agents_) {
    out.push_back(
        AgentInfo{id, agent.host, agent.fresh, agent.seq, agent.last_heard, agent.link != nullptr});
  }
  return out;
}

std::vector<std::string> AgentTable::ConnectedIds() const {
  std::vector<std::string> out;
  for (const auto& [id, agent] : agents_) {
    if (agent.link != nullptr) out.push_back(id);
  }
  return out;  // std::map: already sorted
}

std::string AgentTable::NotFreshReason(absl::Time now) const {
  if (now < startup_grace_end_) {
    return absl::StrCat("the controller's start-up grace (agents of its previous run may come "
                        "back) lasts until ",
                        absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", startup_grace_end_,
                                         absl::UTCTimeZone()));
  }
  if (agents_.empty()) return "no agent is connected";
  std::vector<std::string> reasons;
  for (const auto& [id, agent] : agents_) {
    if (agent.link == nullptr) {
      reasons.push_back(absl::StrCat("agent ", id, " is away"));
    } else if (!agent.fresh) {
      reasons.push_back(absl::StrCat("agent ", id, "'s container inventory is not fresh"));
    }
  }
  return absl::StrJoin(reasons, "; ");
}

}  // namespace controller
}  // namespace dispatchd
