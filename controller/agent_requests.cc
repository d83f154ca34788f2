#include "controller/agent_requests.h"

#include "absl/strings/str_cat.h"

namespace dispatchd {
namespace controller {

uint64_t AgentRequests::Add(std::string agent_id, absl::Time deadline, Done done) {
  const uint64_t id = next_id_++;
  waiting_.emplace(id, Waiting{std::move(agent_id), deadline, std::move(done)});
  return id;
}

std::optional<AgentRequests::Completion> AgentRequests::Answer(uint64_t request_id,
                                                               absl::string_view agent_id,
                                                               dispatch::v1::AgentMessage answer) {
  auto it = waiting_.find(request_id);
  if (it == waiting_.end() || it->second.agent_id != agent_id) return std::nullopt;
  Completion completion{std::move(it->second.done), std::move(answer)};
  waiting_.erase(it);
  return completion;
}

std::vector<AgentRequests::Completion> AgentRequests::AgentGone(absl::string_view agent_id) {
  std::vector<Completion> out;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (it->second.agent_id != agent_id) {
      ++it;
      continue;
    }
    out.push_back({std::move(it->second.done),
                   absl::UnavailableError(absl::StrCat(
                       "agent ", agent_id,
                       " disconnected before answering; retry (with the same idempotency key "
                       "for an Emit)"))});
    it = waiting_.erase(it);
  }
  return out;
}

std::vector<AgentRequests::Completion> AgentRequests::Expire(absl::Time now) {
  std::vector<Completion> out;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    out.push_back({std::move(it->second.done),
                   absl::UnavailableError(absl::StrCat(
                       "agent ", it->second.agent_id,
                       " did not answer in time; retry (with the same idempotency key for an "
                       "Emit)"))});
    it = waiting_.erase(it);
  }
  return out;
}

std::vector<AgentRequests::Completion> AgentRequests::FailAll(const absl::Status& status) {
  std::vector<Completion> out;
  for (auto& [id, w] : waiting_) out.push_back({std::move(w.done), status});
  waiting_.clear();
  return out;
}

std::optional<absl::Time> AgentRequests::NextDeadline() const {
  std::optional<absl::Time> next;
  for (const auto& [id, w] : waiting_) {
    if (!next.has_value() || w.deadline < *next) next = w.deadline;
  }
  return next;
}

}  // namespace controller
}  // namespace dispatchd
