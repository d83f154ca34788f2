// The Dispatcher's side of the API's event calls (ApiBackend): Emit and the
// dead-letter calls go to agents as requests (AgentRequests), Watch reads
// the WatchHub the Dispatcher publishes to, ListEvents/GetEvent and Explain
// read the current state under the lock.
#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "contract/event_id.h"
#include "controller/dispatcher.h"
#include "nlohmann/json.hpp"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::ControllerMessage;

constexpr absl::Duration kAgentAnswerTimeout = absl::Seconds(10);

absl::Status FromResult(int32_t code, const std::string& error) {
  if (code == 0) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(code), error);
}


// A dead-letter note (.error.json) read into the API's message.
void FillDeadLetter(const std::string& agent_id, const dispatch::v1::DeadLetterEntry& entry,
                    dispatch::v1::DeadLetter* out) {
  out->set_agent_id(agent_id);
  out->set_path(entry.path());
  out->set_size(entry.size());
  out->set_dead_lettered_unix_nanos(entry.dead_lettered_unix_nanos());
  nlohmann::json note =
      nlohmann::json::parse(entry.error_json(), nullptr, /*allow_exceptions=*/false);
  if (!note.is_object()) return;
  if (auto it = note.find("event_id"); it != note.end() && it->is_string()) {
    out->set_event_id(it->get<std::string>());
  }
  if (auto it = note.find("errors"); it != note.end() && it->is_array()) {
    for (const auto& e : *it) {
      if (e.is_string()) out->add_errors(e.get<std::string>());
    }
  }
  if (auto it = note.find("attempts"); it != note.end() && it->is_number_integer()) {
    out->set_attempts(it->get<int>());
  }
  if (auto it = note.find("observed_at"); it != note.end() && it->is_string()) {
    absl::Time t;
    std::string error;
    if (absl::ParseTime(absl::RFC3339_full, it->get<std::string>(), &t, &error)) {
      out->set_observed_unix_nanos(absl::ToUnixNanos(t));
    }
  }
}

}  // namespace

dispatch::v1::ContainerState ToApiState(dispatch::v1::Container::State state) {
  switch (state) {
    case dispatch::v1::Container::CREATED: return dispatch::v1::CONTAINER_STATE_CREATED;
    case dispatch::v1::Container::RUNNING: return dispatch::v1::CONTAINER_STATE_RUNNING;
    case dispatch::v1::Container::PAUSED: return dispatch::v1::CONTAINER_STATE_PAUSED;
    case dispatch::v1::Container::RESTARTING: return dispatch::v1::CONTAINER_STATE_RESTARTING;
    case dispatch::v1::Container::REMOVING: return dispatch::v1::CONTAINER_STATE_REMOVING;
    case dispatch::v1::Container::EXITED: return dispatch::v1::CONTAINER_STATE_EXITED;
    case dispatch::v1::Container::DEAD: return dispatch::v1::CONTAINER_STATE_DEAD;
    default: return dispatch::v1::CONTAINER_STATE_UNSPECIFIED;
  }
}

void FillRecipient(const Recipient& r, dispatch::v1::Recipient* out) {
  out->set_agent_id(r.agent_id);
  out->set_container_id(r.container_id);
  out->set_container_name(r.container_name);
}

dispatch::v1::DeliveryOutcome ToApiOutcome(DeliveryOutcome outcome) {
  switch (outcome) {
    case DeliveryOutcome::kDelivered: return dispatch::v1::DELIVERY_OUTCOME_DELIVERED;
    case DeliveryOutcome::kCoalesced: return dispatch::v1::DELIVERY_OUTCOME_COALESCED;
    case DeliveryOutcome::kSkippedGone:
      return dispatch::v1::DELIVERY_OUTCOME_SKIPPED_CONTAINER_GONE;
    case DeliveryOutcome::kSkippedNotRunning:
      return dispatch::v1::DELIVERY_OUTCOME_SKIPPED_NOT_RUNNING;
    case DeliveryOutcome::kSkippedRejected: return dispatch::v1::DELIVERY_OUTCOME_SKIPPED_REJECTED;
    case DeliveryOutcome::kSkippedUnsubscribed:
      return dispatch::v1::DELIVERY_OUTCOME_SKIPPED_UNSUBSCRIBED;
    case DeliveryOutcome::kFailed: return dispatch::v1::DELIVERY_OUTCOME_FAILED;
  }
  return dispatch::v1::DELIVERY_OUTCOME_UNSPECIFIED;
}

// ---------------------------------------------------------------------------
// Watch

std::unique_ptr<WatchHub::Watcher> Dispatcher::Watch(WatchFilter filter, size_t buffer,
                                                     std::function<void()> wake) {
  return hub_.Subscribe(std::move(filter), buffer, std::move(wake));
}

dispatch::v1::WatchUpdate Dispatcher::NewUpdate(dispatch::v1::WatchUpdate::Kind kind,
                                                const EventRecord& record) const {
  dispatch::v1::WatchUpdate u;
  u.set_kind(kind);
  u.set_time_unix_nanos(absl::ToUnixNanos(clock_->Now()));
  u.set_event_id(record.event.event_id());
  u.set_path(record.event.key());
  u.set_agent_id(record.origin_agent);
  return u;
}

// ---------------------------------------------------------------------------
// Requests answered by agents

void Dispatcher::RunCompletions() {
  std::vector<AgentRequests::Completion> done;
  {
    absl::MutexLock lock(&mu_);
    done.swap(completions_);
  }
  for (AgentRequests::Completion& c : done) c.Run();
}

absl::StatusOr<std::string> Dispatcher::ChooseAgent(const std::string& host,
                                                    const std::string& key) const {
  if (!host.empty()) {
    const AgentTable::Agent* agent = agents_.Find(host);
    if (agent == nullptr || agent->link == nullptr) {
      return absl::NotFoundError(absl::StrCat("no agent named '", host,
                                              "' is connected (dispatchctl agents lists them)"));
    }
    return host;
  }
  const std::vector<std::string> ids = agents_.ConnectedIds();
  if (ids.empty()) return absl::UnavailableError("no agent is connected");
  if (ids.size() == 1 || key.empty()) return ids.front();
  // The same key goes to the same agent while the set of agents holds, so a
  // retry finds the first write in that agent's memory.
  return ids[absl::HashOf(key) % ids.size()];
}

void Dispatcher::SendRequest(
    const std::string& agent_id, ControllerMessage message,
    const std::function<void(ControllerMessage*, uint64_t)>& set_id, AgentRequests::Done done) {
  const uint64_t id = requests_.Add(agent_id, clock_->Now() + kAgentAnswerTimeout, std::move(done));
  set_id(&message, id);
  agents_.Find(agent_id)->link->Send(std::move(message));
  Wake();  // the poll thread learns the new deadline
}

void Dispatcher::Emit(const dispatch::v1::EmitRequest& request,
                      Done<dispatch::v1::EmitResponse> done) {
  // The generic rules here; the agent checks again in its event namespace.
  absl::StatusOr<std::string> rel =
      contract::EmitRelativePath(request.event_id(), request.path(), "");
  if (!rel.ok()) return done(rel.status());
  if (request.idempotency_key().size() > 128) {
    return done(absl::InvalidArgumentError("the idempotency key is longer than 128 bytes"));
  }
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<std::string> agent_id = ChooseAgent(request.host(), request.idempotency_key());
    if (!agent_id.ok()) {
      refused = agent_id.status();
    } else {
      ControllerMessage message;
      dispatch::v1::WriteEvent* write = message.mutable_write_event();
      write->set_event_id(request.event_id());
      write->set_path(request.path());
      write->set_payload(request.payload());
      write->set_idempotency_key(request.idempotency_key());
      const std::string agent = *agent_id;
      SendRequest(
          agent, std::move(message),
          [](ControllerMessage* m, uint64_t id) { m->mutable_write_event()->set_request_id(id); },
          [done, agent](absl::StatusOr<AgentMessage> answer) {
            if (!answer.ok()) return done(answer.status());
            const dispatch::v1::WriteEventResult& r = answer->write_event_result();
            if (absl::Status s = FromResult(r.code(), r.error()); !s.ok()) return done(s);
            dispatch::v1::EmitResponse response;
            response.set_event_id(r.event_id());
            response.set_path(r.path());
            response.set_agent_id(agent);
            response.set_duplicate(r.duplicate());
            response.set_written_unix_nanos(r.written_unix_nanos());
            done(std::move(response));
          });
    }
  }
  if (!refused.ok()) done(refused);
}

void Dispatcher::DeadLetterCall(
    const std::string& host, dispatch::v1::DeadLetterRequest::Op op, const std::string& path,
    std::function<void(absl::StatusOr<dispatch::v1::DeadLetterResult>)> done) {
  absl::Status refused;
  if (host.empty()) {
    refused = absl::InvalidArgumentError("name the agent (host) that holds the dead letter");
  }
  if (refused.ok()) {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<std::string> agent = ChooseAgent(host, "");
    if (!agent.ok()) {
      refused = agent.status();
    } else {
      ControllerMessage message;
      message.mutable_dead_letter_request()->set_op(op);
      message.mutable_dead_letter_request()->set_path(path);
      SendRequest(
          *agent, std::move(message),
          [](ControllerMessage* m, uint64_t id) {
            m->mutable_dead_letter_request()->set_request_id(id);
          },
          [done](absl::StatusOr<AgentMessage> answer) {
            if (!answer.ok()) return done(answer.status());
            const dispatch::v1::DeadLetterResult& r = answer->dead_letter_result();
            if (absl::Status s = FromResult(r.code(), r.error()); !s.ok()) return done(s);
            done(r);
          });
    }
  }
  if (!refused.ok()) done(refused);
}

void Dispatcher::ListDeadLetters(const dispatch::v1::ListDeadLettersRequest& request,
                                 Done<dispatch::v1::ListDeadLettersResponse> done) {
  // Every agent asked at once; the answer goes out when the last one is in.
  struct Gather {
    absl::Mutex mu;
    size_t remaining = 0;
    dispatch::v1::ListDeadLettersResponse response;
  };
  auto gather = std::make_shared<Gather>();
  auto finish = [gather, done] {
    auto* letters = gather->response.mutable_dead_letters();
    std::sort(letters->begin(), letters->end(),
              [](const dispatch::v1::DeadLetter& a, const dispatch::v1::DeadLetter& b) {
                return std::tie(a.agent_id(), a.path()) < std::tie(b.agent_id(), b.path());
              });
    done(std::move(gather->response));
  };
  std::vector<std::string> agents;
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (!request.host().empty()) {
      absl::StatusOr<std::string> agent = ChooseAgent(request.host(), "");
      if (!agent.ok()) {
        refused = agent.status();
      } else {
        agents.push_back(*agent);
      }
    } else {
      agents = agents_.ConnectedIds();
    }
    gather->remaining = agents.size();
    for (const std::string& agent : agents) {
      ControllerMessage message;
      message.mutable_dead_letter_request()->set_op(dispatch::v1::DeadLetterRequest::LIST);
      SendRequest(
          agent, std::move(message),
          [](ControllerMessage* m, uint64_t id) {
            m->mutable_dead_letter_request()->set_request_id(id);
          },
          [gather, finish, agent](absl::StatusOr<AgentMessage> answer) {
            bool last = false;
            {
              absl::MutexLock lock(&gather->mu);
              const bool ok = answer.ok() && answer->dead_letter_result().code() == 0;
              if (ok) {
                for (const auto& entry : answer->dead_letter_result().entries()) {
                  FillDeadLetter(agent, entry, gather->response.add_dead_letters());
                }
              } else {
                gather->response.add_unanswered_agents(agent);
              }
              last = --gather->remaining == 0;
            }
            if (last) finish();
          });
    }
  }
  if (!refused.ok()) return done(refused);
  if (agents.empty()) finish();
}

void Dispatcher::ReplayDeadLetter(const dispatch::v1::ReplayDeadLetterRequest& request,
                                  Done<dispatch::v1::ReplayDeadLetterResponse> done) {
  const std::string path = request.path();
  DeadLetterCall(request.host(), dispatch::v1::DeadLetterRequest::REPLAY, path,
                 [done, path](absl::StatusOr<dispatch::v1::DeadLetterResult> r) {
                   if (!r.ok()) return done(r.status());
                   dispatch::v1::ReplayDeadLetterResponse response;
                   response.set_event_id(r->event_id());
                   response.set_path(path);
                   done(std::move(response));
                 });
}

void Dispatcher::PurgeDeadLetter(const dispatch::v1::PurgeDeadLetterRequest& request,
                                 Done<dispatch::v1::PurgeDeadLetterResponse> done) {
  DeadLetterCall(request.host(), dispatch::v1::DeadLetterRequest::PURGE, request.path(),
                 [done](absl::StatusOr<dispatch::v1::DeadLetterResult> r) {
                   if (!r.ok()) return done(r.status());
                   done(dispatch::v1::PurgeDeadLetterResponse());
                 });
}

// ---------------------------------------------------------------------------
// Events and explanations

dispatch::v1::EventInfo Dispatcher::DescribeEvent(const EventRecord& record,
                                                   absl::Time now) const {
  dispatch::v1::EventInfo info;
  info.set_event_id(record.event.event_id());
  info.set_path(record.event.key());
  info.set_agent_id(record.origin_agent);
  info.set_observed_unix_nanos(record.event.observed_unix_nanos());
  info.set_size(record.event.size());
  if (!record.routed) {
    info.set_state(dispatch::v1::EventInfo::HELD);
    info.set_held_reason(agents_.NotFreshReason(now));
    return info;
  }
  info.set_state(record.outstanding == 0 && record.awaiting_forward
                     ? dispatch::v1::EventInfo::FORWARDING
                     : dispatch::v1::EventInfo::IN_FLIGHT);
  for (const DeliveryQueue::Position& p : queue_.PositionsOf(record.seq)) {
    dispatch::v1::RecipientState* r = info.add_recipients();
    FillRecipient(p.delivery.recipient, r->mutable_recipient());
    r->set_attempts(p.delivery.attempts);
    r->set_last_error(p.delivery.last_error);
    const AgentTable::Agent* agent = agents_.Find(p.delivery.recipient.agent_id);
    if (agent != nullptr && agent->link == nullptr) {
      r->set_state(dispatch::v1::RecipientState::AGENT_AWAY);
    } else if (p.state == DeliveryQueue::Position::State::kInFlight) {
      r->set_state(dispatch::v1::RecipientState::IN_FLIGHT);
    } else if (p.state == DeliveryQueue::Position::State::kRetryWait) {
      r->set_state(dispatch::v1::RecipientState::RETRY_WAIT);
      r->set_due_unix_nanos(absl::ToUnixNanos(p.retry_at));
    } else {
      r->set_state(dispatch::v1::RecipientState::QUEUED);
    }
  }
  for (const auto& [key, recipient] : debounce_targets_) {
    std::optional<std::pair<Debouncer::Item, absl::Time>> pending = debouncer_.PendingOf(key);
    if (!pending.has_value() || pending->first != record.seq) continue;
    dispatch::v1::RecipientState* r = info.add_recipients();
    FillRecipient(recipient, r->mutable_recipient());
    r->set_state(dispatch::v1::RecipientState::DEBOUNCED);
    r->set_due_unix_nanos(absl::ToUnixNanos(pending->second));
  }
  return info;
}

dispatch::v1::ListEventsResponse Dispatcher::ListEvents() const {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  dispatch::v1::ListEventsResponse response;
  for (const EventRecord* record : ledger_.Records()) {
    *response.add_events() = DescribeEvent(*record, now);
  }
  return response;
}

absl::StatusOr<dispatch::v1::EventInfo> Dispatcher::GetEvent(
    const dispatch::v1::GetEventRequest& request) const {
  absl::MutexLock lock(&mu_);
  for (const EventRecord* record : ledger_.Records()) {
    if (record->event.event_id() != request.event_id()) continue;
    if (!request.agent_id().empty() && record->origin_agent != request.agent_id()) continue;
    if (!request.path().empty() && record->event.key() != request.path()) continue;
    return DescribeEvent(*record, clock_->Now());
  }
  return absl::NotFoundError(absl::StrCat("no unsettled event ", request.event_id(),
                                          " (settled ones are gone; Watch shows their life)"));
}

absl::StatusOr<dispatch::v1::ExplainResponse> Dispatcher::Explain(
    const dispatch::v1::ExplainRequest& request) const {
  if (request.event_id().empty()) return absl::InvalidArgumentError("give an event id");
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  dispatch::v1::ExplainResponse response;
  response.set_event_id(request.event_id());
  response.set_would_route_now(AllAgentsFresh());
  if (!response.would_route_now()) response.set_held_reason(agents_.NotFreshReason(now));
  // The observing agent: the one named, or the only one.
  std::string origin = request.host();
  if (origin.empty()) {
    const std::vector<std::string> ids = agents_.ConnectedIds();
    if (ids.size() == 1) origin = ids.front();
  }
  for (const LabelMatch& match : index_.Near(request.event_id())) {
    dispatch::v1::Explanation* x = response.add_containers();
    x->mutable_container()->set_agent_id(match.agent_id);
    x->mutable_container()->set_container_id(match.container_id);
    x->mutable_container()->set_container_name(match.container_name);
    x->set_container_state(ToApiState(match.state));
    for (const auto& [k, v] : match.labels) (*x->mutable_labels())[k] = v;
    auto not_delivered = [x](dispatch::v1::Explanation::Reason reason, std::string detail) {
      x->set_verdict(dispatch::v1::Explanation::NOT_DELIVERED);
      x->set_reason(reason);
      x->set_detail(std::move(detail));
    };
    if (!match.subscription.has_value()) {
      if (!match.invalid.empty()) {
        std::vector<std::string> reasons;
        for (const auto& inv : match.invalid) reasons.push_back(inv.reason);
        not_delivered(dispatch::v1::Explanation::INVALID_LABEL, absl::StrJoin(reasons, "; "));
      } else if (!match.near_misses.empty()) {
        not_delivered(dispatch::v1::Explanation::NEAR_MISS, absl::StrJoin(match.near_misses, "; "));
      } else {
        not_delivered(dispatch::v1::Explanation::REASON_UNSPECIFIED,
                      "its labels declare no command and no container.start=true");
      }
      continue;
    }
    const contract::Subscription& sub = *match.subscription;
    const AgentTable::Agent* agent = agents_.Find(match.agent_id);
    if (sub.scope == contract::Scope::kHost && match.agent_id != origin) {
      not_delivered(dispatch::v1::Explanation::OTHER_HOST,
                    origin.empty()
                        ? "dispatching.scope=host: only events observed on its own host (give --host)"
                        : absl::StrCat("dispatching.scope=host, and the event would be observed on ",
                                       origin, ", not ", match.agent_id));
    } else if (agent == nullptr || agent->link == nullptr) {
      not_delivered(dispatch::v1::Explanation::AGENT_AWAY,
                    absl::StrCat("agent ", match.agent_id,
                                 " is away: its deliveries wait until it is back"));
    } else if (!agent->fresh) {
      not_delivered(dispatch::v1::Explanation::INVENTORY_STALE,
                    absl::StrCat("agent ", match.agent_id,
                                 "'s container inventory is not fresh: events are held"));
    } else if (match.state != dispatch::v1::Container::RUNNING &&
               sub.start != contract::StartPolicy::kStartIfStopped) {
      not_delivered(dispatch::v1::Explanation::NOT_RUNNING,
                    "the container is not running and its container.start is not true");
    } else {
      const absl::Time at = debouncer_.WouldDeliverAt(
          LaneKey(request.event_id(), match.agent_id, match.container_id), sub.debounce, now);
      if (at > now) {
        x->set_verdict(dispatch::v1::Explanation::DELIVER_LATER);
        x->set_reason(dispatch::v1::Explanation::DEBOUNCE_PENDING);
        x->set_due_unix_nanos(absl::ToUnixNanos(at));
        x->set_detail(absl::StrCat("debounce ", absl::FormatDuration(sub.debounce),
                                   ": one delivery per period"));
      } else {
        x->set_verdict(dispatch::v1::Explanation::DELIVER);
      }
    }
    if (!match.near_misses.empty() && x->verdict() != dispatch::v1::Explanation::NOT_DELIVERED) {
      x->set_detail(absl::StrCat(x->detail(), x->detail().empty() ? "" : "; ",
                                 "also: ", absl::StrJoin(match.near_misses, "; ")));
    }
  }
  return response;
}

}  // namespace controller
}  // namespace dispatchd
