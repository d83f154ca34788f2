#include "controller/dispatcher.h"

#include <algorithm>
#include <charconv>
#include <deque>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "controller/command_builder.h"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::CommandResult;
using dispatch::v1::ControllerMessage;

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

absl::string_view ShortId(absl::string_view id) { return id.substr(0, 12); }

// Appends `nanos` in milliseconds with three decimals, as "%.3f" would
// (to the nearest microsecond) at a fraction of its cost: it is in every
// "delivered" line.
void AppendMilliseconds(std::string* out, int64_t nanos) {
  uint64_t n = static_cast<uint64_t>(nanos);
  if (nanos < 0) n = ~n + 1;  // the magnitude, INT64_MIN included
  const uint64_t micros = n / 1000 + (n % 1000 >= 500 ? 1 : 0);
  if (nanos < 0) out->push_back('-');
  char digits[24];
  char* end = std::to_chars(digits, digits + sizeof(digits), micros / 1000).ptr;
  *end++ = '.';
  *end++ = static_cast<char>('0' + micros / 100 % 10);
  *end++ = static_cast<char>('0' + micros / 10 % 10);
  *end++ = static_cast<char>('0' + micros % 10);
  out->append(digits, static_cast<size_t>(end - digits));
}

// How often Poll looks for forwarded events let go while any is held.
constexpr absl::Duration kForwardReleasePoll = absl::Milliseconds(20);

}  // namespace

std::string LaneKey(absl::string_view event_id, absl::string_view agent_id,
                    absl::string_view container_id) {
  return absl::StrCat(event_id, "\x1f", agent_id, "\x1f", container_id);
}

absl::string_view DeliveryOutcomeName(DeliveryOutcome outcome) {
  switch (outcome) {
    case DeliveryOutcome::kDelivered: return "delivered";
    case DeliveryOutcome::kCoalesced: return "coalesced";
    case DeliveryOutcome::kSkippedGone: return "skipped_container_gone";
    case DeliveryOutcome::kSkippedNotRunning: return "skipped_not_running";
    case DeliveryOutcome::kSkippedRejected: return "skipped_rejected";
    case DeliveryOutcome::kSkippedUnsubscribed: return "skipped_unsubscribed";
    case DeliveryOutcome::kFailed: return "failed";
  }
  return "unknown";
}

Dispatcher::Dispatcher(DispatcherOptions options, Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      metrics_(options_.metrics != nullptr ? options_.metrics : NoDispatcherMetrics()),
      index_(options_.label_namespace),
      agents_(AgentTableOptions{.heartbeat_period = options_.heartbeat_period,
                                .missed_heartbeats = options_.missed_heartbeats,
                                .startup_grace = options_.startup_grace,
                                .expected_agents = options_.expected_agents},
              clock->Now()),
      ledger_(clock, EventLedgerOptions{.keep_payload_bytes = options_.max_env_payload_bytes}),
      queue_(DeliveryQueueOptions{.min_backoff = options_.retry_min_backoff,
                                  .max_backoff = options_.retry_max_backoff,
                                  .max_attempts = options_.max_attempts}) {}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_ != nullptr) return;
  stopping_ = false;
  thread_ = std::make_unique<std::thread>([this] {
    while (true) {
      absl::Time next = Poll();
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      if (!wake_) {
        clock_->AwaitWithDeadline(
            &mu_,
            absl::Condition(
                +[](Dispatcher* d) ABSL_NO_THREAD_SAFETY_ANALYSIS { return d->wake_ || d->stopping_; },
                this),
            next);
      }
      wake_ = false;
      if (stopping_) return;
    }
  });
}

void Dispatcher::Stop() {
  std::unique_ptr<std::thread> thread;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    thread = std::move(thread_);
  }
  if (thread != nullptr) thread->join();
  EndApiCalls();
}

void Dispatcher::EndApiCalls() {
  {
    absl::MutexLock lock(&mu_);
    for (AgentRequests::Completion& c :
         requests_.FailAll(absl::UnavailableError("the controller is shutting down"))) {
      completions_.push_back(std::move(c));
    }
  }
  RunCompletions();
  hub_.Close();
}

void Dispatcher::Wake() { wake_ = true; }

void Dispatcher::EndTerm(const std::string& reason) {
  {
    absl::MutexLock lock(&mu_);
    if (term_ended_.has_value()) return;
    term_ended_ = reason;
    for (const std::string& id : agents_.ConnectedIds()) agents_.Find(id)->link->Close(reason);
  }
  EndApiCalls();
}

std::map<std::string, std::string> Dispatcher::KnownAgents() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, std::string> known;
  for (const AgentInfo& info : agents_.Infos()) known[info.agent_id] = info.host;
  return known;
}

void Dispatcher::AgentConnected(const std::string& agent_id, const std::string& host,
                                AgentLink* link) {
  absl::MutexLock lock(&mu_);
  if (term_ended_.has_value()) {
    link->Close(*term_ended_);
    return;
  }
  const absl::Time now = clock_->Now();
  // An agent coming back keeps its containers in the index until its
  // snapshot replaces them; it is not fresh before that snapshot.
  const AgentTable::Connection connection = agents_.Connect(agent_id, host, link, now);
  if (connection.replaced != nullptr) {
    LOG(WARNING) << "agent " << agent_id << " opened a new session; closing the old one";
    connection.replaced->Close("replaced by a new session of the same agent");
  }
  const bool was_away = connection.was_away;
  ControllerMessage welcome;
  welcome.mutable_welcome()->set_session_id(
      absl::StrCat(agent_id, "-", absl::ToUnixNanos(now)));
  welcome.mutable_welcome()->set_heartbeat_period_ms(
      absl::ToInt64Milliseconds(options_.heartbeat_period));
  welcome.mutable_welcome()->set_label_namespace(options_.label_namespace);
  welcome.mutable_welcome()->set_accepts_batches(true);
  link->Send(std::move(welcome));
  LOG(INFO) << "agent " << agent_id << " (host " << host << ") "
            << (was_away ? "reconnected" : "connected");
  if (!was_away && options_.on_agents_changed) options_.on_agents_changed();
  if (was_away) PumpAgentLanes(agent_id);
}

void Dispatcher::AgentDisconnected(const std::string& agent_id, AgentLink* link) {
  // Away, not gone: an agent that comes back within the grace period (about
  // `missed_heartbeats` periods) finds its deliveries waiting; events are
  // held meanwhile, since its containers may subscribe to them.
  {
    absl::MutexLock lock(&mu_);
    if (!agents_.Disconnect(agent_id, link, clock_->Now())) return;
    LOG(WARNING) << "agent " << agent_id << " disconnected; holding events for up to "
                 << absl::FormatDuration(agents_.away_grace()) << " while it may come back";
    Wake();
    // Commands in flight to that agent may never be answered: send them again
    // once it is back (at-least-once), without spending their retry budget.
    queue_.AbandonAgent(agent_id);
    // API requests waiting on it fail now; their callers may retry.
    for (AgentRequests::Completion& c : requests_.AgentGone(agent_id)) {
      completions_.push_back(std::move(c));
    }
  }
  RunCompletions();
}

void Dispatcher::PumpAgentLanes(const std::string& agent_id) {
  for (const std::string& key : queue_.LanesTo(agent_id)) {
    if (queue_.ClearRetry(key)) PumpLane(key);
  }
}

void Dispatcher::ExpireAwayAgents(absl::Time now) {
  const std::vector<std::string> expired = agents_.ExpiredAway(now);
  for (const std::string& id : expired) {
    agents_.Remove(id);
    index_.RemoveAgent(id);
    LOG(WARNING) << "agent " << id << " did not come back within "
                 << absl::FormatDuration(agents_.away_grace())
                 << ": its containers leave the index";
    PumpAgentLanes(id);  // their deliveries settle as unsubscribed
  }
  if (!expired.empty()) {
    if (options_.on_agents_changed) options_.on_agents_changed();
    RouteHeld();
  }
}

void Dispatcher::OnAgentMessage(const std::string& agent_id, const AgentMessage& message) {
  // The lines of a batch (a "delivered" line per result, say) leave with
  // one write, after the lock is released.
  LogBatch log_batch;
  {
    absl::MutexLock lock(&mu_);
    if (message.has_batch()) {
      for (const AgentMessage& m : message.batch().messages()) {
        if (!m.has_batch()) HandleAgentMessage(agent_id, m);
      }
    } else {
      HandleAgentMessage(agent_id, message);
    }
    if (completions_.empty()) return;
  }
  RunCompletions();
}

void Dispatcher::HandleAgentMessage(const std::string& agent_id, const AgentMessage& message) {
  const AgentTable::Agent* agent = agents_.Heard(agent_id, clock_->Now());
  if (agent == nullptr) return;  // session already replaced or ended
  // A message of a session that has ended (its last read and its end run on
  // different threads, so one can still arrive after AgentDisconnected):
  // ignored. An away agent must stay not fresh, and its next session sends
  // its inventory and every unsettled event again anyway.
  if (agent->link == nullptr) return;
  switch (message.msg_case()) {
    case AgentMessage::kHeartbeat:
    case AgentMessage::kHello:
      break;
    case AgentMessage::kInventorySnapshot: {
      const auto& snapshot = message.inventory_snapshot();
      std::vector<dispatch::v1::Container> containers(snapshot.containers().begin(),
                                                      snapshot.containers().end());
      index_.ReplaceAgentInventory(agent_id, containers);
      const bool was_fresh = agents_.AcceptSnapshot(agent_id, snapshot.seq());
      LOG(INFO) << "agent " << agent_id << " inventory: " << containers.size()
                << " containers, " << index_.subscription_count() << " subscriptions, "
                << index_.invalid_count() << " invalid";
      if (!was_fresh) RouteHeld();
      break;
    }
    case AgentMessage::kInventoryDelta: {
      const auto& delta = message.inventory_delta();
      const uint64_t previous = agent->seq;
      const AgentTable::DeltaOrder order = agents_.AcceptDelta(agent_id, delta.seq());
      if (order == AgentTable::DeltaOrder::kCovered) break;  // already in a snapshot
      if (order == AgentTable::DeltaOrder::kGap) {
        LOG(WARNING) << "agent " << agent_id << " inventory delta " << delta.seq() << " after "
                     << previous << ": holding events until its next snapshot";
        break;
      }
      for (const auto& c : delta.upserted()) {
        index_.UpsertContainer(agent_id, c);
        LOG(DEBUG) << "agent " << agent_id << " inventory " << delta.seq() << ": upserted "
                   << c.name() << " (" << dispatch::v1::Container::State_Name(c.state()) << ")";
      }
      for (const auto& id : delta.removed_ids()) {
        index_.RemoveContainer(agent_id, id);
        LOG(DEBUG) << "agent " << agent_id << " inventory " << delta.seq() << ": removed "
                   << ShortId(id);
      }
      break;
    }
    case AgentMessage::kInventoryStale:
      if (agents_.MarkStale(agent_id)) {
        LOG(WARNING) << "agent " << agent_id << " inventory is stale ("
                     << message.inventory_stale().reason() << "): holding events";
      }
      break;
    case AgentMessage::kEvent:
      HandleEvent(agent_id, *agent, message.event());
      break;
    case AgentMessage::kCommandResult:
      HandleResult(agent_id, message.command_result());
      break;
    case AgentMessage::kExecExit:
      HandleExecExit(agent_id, message.exec_exit());
      break;
    case AgentMessage::kWriteEventResult:
    case AgentMessage::kDeadLetterResult: {
      const uint64_t request_id = message.has_write_event_result()
                                      ? message.write_event_result().request_id()
                                      : message.dead_letter_result().request_id();
      if (std::optional<AgentRequests::Completion> c =
              requests_.Answer(request_id, agent_id, message)) {
        completions_.push_back(*std::move(c));
      }
      break;
    }
    case AgentMessage::kBatch:  // nested: never sent
    case AgentMessage::MSG_NOT_SET:
      break;
  }
}

bool Dispatcher::AllAgentsFresh() const { return agents_.AllFresh(clock_->Now()); }

void Dispatcher::HandleEvent(const std::string& agent_id, const AgentTable::Agent& agent,
                             const dispatch::v1::ObservedEvent& event) {
  EventLedger::Admission admission = ledger_.Admit(agent_id, agent.host, event);
  switch (admission.kind) {
    case EventLedger::Admission::Kind::kAlreadySettled: {
      // Settled while the agent was away: tell it again rather than re-dispatch.
      ControllerMessage message;
      *message.mutable_settled() = *std::move(admission.settled);
      agent.link->Send(std::move(message));
      return;
    }
    case EventLedger::Admission::Kind::kDuplicate:
      ++stats_.events_duplicate;
      metrics_->RecordEventDuplicate();
      return;
    case EventLedger::Admission::Kind::kNew:
      break;
  }
  const EventRecord& record = *admission.record;
  const uint64_t seq = record.seq;
  ++stats_.events_observed;
  metrics_->RecordEventObserved();
  if (options_.forward != nullptr) Forward(*admission.record, event);
  LOG(DEBUG) << "event " << event.event_id() << " observed by " << agent_id << " ("
             << event.key() << ", " << event.size() << " bytes)";
  if (hub_.has_watchers()) {
    dispatch::v1::WatchUpdate observed = NewUpdate(dispatch::v1::WatchUpdate::OBSERVED, record);
    observed.set_time_unix_nanos(event.observed_unix_nanos());
    observed.set_size(event.size());
    observed.set_payload_truncated(event.payload_truncated());
    hub_.Publish(std::move(observed));
  }
  if (AllAgentsFresh()) {
    Route(seq);
  } else {
    ledger_.Hold(seq);
    if (hub_.has_watchers()) {
      dispatch::v1::WatchUpdate held = NewUpdate(dispatch::v1::WatchUpdate::HELD, record);
      held.set_detail(agents_.NotFreshReason(clock_->Now()));
      hub_.Publish(std::move(held));
    }
    LOG(INFO) << "holding event " << event.event_id()
              << " until every agent's container inventory is fresh";
  }
}

void Dispatcher::Forward(EventRecord& record, const dispatch::v1::ObservedEvent& event) {
  const size_t bytes = event.payload().size();
  const bool hold = forward_held_ < options_.forward_hold_events &&
                    forward_held_bytes_ + bytes <= options_.forward_hold_bytes;
  std::shared_ptr<sinks::Event> forwarded;
  if (hold) {
    // The deleter runs when the last destination lets go of the event: it
    // only reports, for Poll to settle the file (it may run right here,
    // under mu_, if Write fails).
    record.awaiting_forward = true;
    record.forward_bytes = bytes;
    ++forward_held_;
    forward_held_bytes_ += bytes;
    forward_hold_full_logged_ = false;
    forwarded = std::shared_ptr<sinks::Event>(
        new sinks::Event, [releases = forward_releases_, seq = record.seq](sinks::Event* e) {
          delete e;
          absl::MutexLock lock(&releases->mu);
          releases->seqs.push_back(seq);
        });
  } else {
    forwarded = std::make_shared<sinks::Event>();
    ++stats_.events_forward_unheld;
    if (!forward_hold_full_logged_) {
      forward_hold_full_logged_ = true;
      LOG(WARNING) << "forwarding is behind: " << forward_held_ << " events ("
                   << forward_held_bytes_ << " bytes) keep their files until the destinations "
                   << "take them; later events settle once queued, and a controller restart "
                   << "would lose those still queued (starting with " << event.event_id() << ")";
    }
  }
  forwarded->id = event.event_id();
  forwarded->payload = event.payload();
  forwarded->payload_truncated = event.payload_truncated();
  forwarded->source_host = record.origin_host;
  forwarded->path = event.key();
  forwarded->time = absl::FromUnixNanos(event.observed_unix_nanos());
  if (absl::Status status = options_.forward->Write(std::move(forwarded)); !status.ok()) {
    LOG(WARNING) << "forwarding " << event.event_id() << " failed: " << status;
  }
  if (hold && forward_held_ == 1) Wake();  // Poll looks for releases while any is held
}

void Dispatcher::TakeForwardReleases() {
  if (forward_held_ == 0) return;
  std::vector<uint64_t> seqs;
  {
    absl::MutexLock lock(&forward_releases_->mu);
    seqs.swap(forward_releases_->seqs);
  }
  for (uint64_t seq : seqs) {
    EventRecord* record = ledger_.Find(seq);
    if (record == nullptr || !record->awaiting_forward) continue;  // cannot happen
    record->awaiting_forward = false;
    --forward_held_;
    forward_held_bytes_ -= record->forward_bytes;
    if (record->routed && record->outstanding == 0) Settle(*record);
  }
}

void Dispatcher::RouteHeld() {
  if (ledger_.held() == 0 || !AllAgentsFresh()) return;
  const std::deque<uint64_t> held = ledger_.TakeHeld();
  LOG(INFO) << "inventories fresh: routing " << held.size() << " held events";
  for (uint64_t seq : held) Route(seq);
}

void Dispatcher::Route(uint64_t seq) {
  EventRecord* record = ledger_.Find(seq);
  if (record == nullptr) return;
  // The refs point into the index, which nothing below changes.
  std::vector<TargetRef> targets;
  index_.LookupRefs(record->event.event_id(), record->origin_agent, &targets);
  ledger_.MarkRouted(*record, targets.size());
  if (hub_.has_watchers()) {
    dispatch::v1::WatchUpdate routed = NewUpdate(dispatch::v1::WatchUpdate::ROUTED, *record);
    for (const TargetRef& t : targets) {
      dispatch::v1::Recipient* r = routed.add_recipients();
      r->set_agent_id(*t.agent_id);
      r->set_container_id(*t.container_id);
      r->set_container_name(*t.container_name);
    }
    if (targets.empty()) routed.set_detail("no subscribers");
    hub_.Publish(std::move(routed));
  }
  if (targets.empty()) {
    Settle(*record);
    return;
  }
  const absl::Time now = clock_->Now();
  const std::string event_id = record->event.event_id();
  const int64_t observed_unix_nanos = record->event.observed_unix_nanos();
  // Subscribers that already ran it before a restart (the origin agent kept
  // that with the file): not again.
  std::vector<std::pair<std::string, std::string>> already;
  for (const dispatch::v1::DeliveredTo& to : record->event.delivered()) {
    already.emplace_back(to.agent_id(), to.container_id());
  }
  // `record` may be settled (erased) by a synchronous resolution below.
  for (const TargetRef& target : targets) {
    if (!already.empty() &&
        std::find(already.begin(), already.end(),
                  std::make_pair(*target.agent_id, *target.container_id)) != already.end()) {
      Resolve(seq,
              Recipient{*target.agent_id, *target.container_id, *target.container_name, event_id},
              DeliveryOutcome::kDelivered, "already delivered before a restart");
      continue;
    }
    const std::string key = LaneKey(event_id, *target.agent_id, *target.container_id);
    const absl::Duration debounce = target.subscription->debounce;
    // Built only where it is kept or reported: a delivery that waits
    // behind a busy front shares the front's.
    auto recipient = [&] {
      return Recipient{*target.agent_id, *target.container_id, *target.container_name, event_id};
    };
    // By when it was written: one sent again out of order after a restart,
    // or from another host, does not replace a later write already waiting.
    Debouncer::Decision decision = debouncer_.Offer(
        key, debounce, seq, now,
        observed_unix_nanos != 0 ? absl::FromUnixNanos(observed_unix_nanos)
                                 : absl::InfiniteFuture());
    if (decision.action == Debouncer::Decision::Action::kCoalesced) {
      Resolve(seq, recipient(), DeliveryOutcome::kCoalesced,
              absl::StrCat("coalesced into a later event (debounce ",
                           absl::FormatDuration(debounce), ", written after it)"));
    } else if (decision.action == Debouncer::Decision::Action::kDeliverNow) {
      if (decision.coalesced.has_value()) {
        // This event took the place of a pending one (its time had come but
        // Poll had not taken it yet, or the period shrank to zero): that one
        // is coalesced, as when it is replaced while still waiting.
        debounce_targets_.erase(key);
        Resolve(*decision.coalesced, recipient(), DeliveryOutcome::kCoalesced,
                absl::StrCat("coalesced into a later event (debounce ",
                             absl::FormatDuration(debounce), ")"));
      }
      metrics_->RecordWorkQueueAdd();
      if (queue_.Add(key, seq, recipient, now)) PumpLane(key, &target);
    } else {
      const Recipient waiting = recipient();
      debounce_targets_[key] = waiting;
      Wake();
      if (decision.coalesced.has_value()) {
        Resolve(*decision.coalesced, waiting, DeliveryOutcome::kCoalesced,
                absl::StrCat("coalesced into a later event (debounce ",
                             absl::FormatDuration(debounce), ")"));
      }
    }
  }
}

void Dispatcher::PumpLane(const std::string& lane_key, const TargetRef* known) {
  while (true) {
    Delivery* front = queue_.Ready(lane_key);
    if (front == nullptr) return;  // in flight, waiting for a retry, or empty
    const EventRecord* event = ledger_.Find(front->event_seq);
    if (event == nullptr) {  // cannot happen: records outlive their deliveries
      queue_.Finish(lane_key);
      continue;
    }
    // Level-triggered: deliver what the container's labels say now.
    const Recipient& to = front->recipient;
    std::optional<TargetRef> current;
    if (known != nullptr) {
      current = *known;
      known = nullptr;  // for this front only
    } else {
      current = index_.FindRef(to.agent_id, to.container_id, to.event_id);
    }
    if (!current.has_value()) {
      FinishFront(lane_key, DeliveryOutcome::kSkippedUnsubscribed,
                  "the container or its subscription is gone");
      return;
    }
    const AgentTable::Agent* agent = agents_.Find(to.agent_id);
    if (agent == nullptr) {
      RetryFront(lane_key, absl::StrCat("agent ", to.agent_id, " is not connected"));
      return;
    }
    if (agent->link == nullptr) return;  // away: pumped again when it is back
    if (options_.may_command && !options_.may_command()) {
      // Leadership is ending: the next leader sends it.
      if (!command_hold_logged_) {
        command_hold_logged_ = true;
        LOG(WARNING) << "not leading any more: commands are held";
      }
      return;
    }
    const absl::Time now = clock_->Now();
    const uint64_t command_id = queue_.MarkSent(lane_key, *front, to.agent_id, now);
    ControllerMessage message;
    BuildCommand(command_id, event->event, event->origin_agent, event->origin_host, to, *current->subscription,
                 options_.max_env_payload_bytes, message.mutable_command());
    ++stats_.commands_sent;
    metrics_->RecordCommandSent();
    metrics_->ObserveQueueDuration(now - front->ready_at);
    if (*current->container_name != to.container_name) {
      front->recipient.container_name = *current->container_name;  // renamed
    }
    agent->link->Send(std::move(message));
    return;
  }
}

void Dispatcher::FinishFront(const std::string& lane_key, DeliveryOutcome outcome,
                             const std::string& detail, absl::string_view exec_id) {
  bool next = false;
  std::optional<Delivery> delivery = queue_.Finish(lane_key, &next);
  if (!delivery.has_value()) return;
  Resolve(delivery->event_seq, delivery->recipient, outcome, detail, exec_id);
  // An emptied lane is gone: nothing to pump (an event resolved above adds
  // nothing to it; one routed later pumps its own lane).
  if (next) PumpLane(lane_key);
}

void Dispatcher::RetryFront(const std::string& lane_key, const std::string& error, bool spend) {
  const DeliveryQueue::RetryPlan plan = queue_.Retry(lane_key, error, clock_->Now(), spend);
  switch (plan.verdict) {
    case DeliveryQueue::RetryPlan::Verdict::kNoLane:
      return;
    case DeliveryQueue::RetryPlan::Verdict::kBudgetExhausted:
      FinishFront(lane_key, DeliveryOutcome::kFailed,
                  absl::StrCat("gave up after ", plan.delivery->attempts, " attempts: ", error));
      return;
    case DeliveryQueue::RetryPlan::Verdict::kScheduled:
      break;
  }
  ++stats_.retries;
  metrics_->RecordRetry();
  metrics_->RecordWorkQueueAdd();
  const Delivery& front = *plan.delivery;
  LOG(WARNING) << "delivery of " << front.recipient.event_id << " to "
               << front.recipient.container_name << " failed (attempt " << front.attempts << "/"
               << options_.max_attempts << "): " << error << "; retrying at " << Rfc3339(plan.at);
  if (hub_.has_watchers()) {
    if (const EventRecord* record = ledger_.Find(front.event_seq)) {
      dispatch::v1::WatchUpdate retry = NewUpdate(dispatch::v1::WatchUpdate::RETRY, *record);
      FillRecipient(front.recipient, retry.mutable_recipient());
      retry.set_attempt(front.attempts);
      retry.set_detail(error);
      retry.set_retry_at_unix_nanos(absl::ToUnixNanos(plan.at));
      hub_.Publish(std::move(retry));
    }
  }
  Wake();
}

void Dispatcher::HandleResult(const std::string& agent_id, const CommandResult& result) {
  std::optional<DeliveryQueue::Answered> answered =
      queue_.TakeAnswered(result.command_id(), agent_id);
  if (!answered.has_value()) return;  // stale answer
  const std::string& lane_key = answered->key;
  int64_t observed_unix_nanos = 0;
  const EventRecord* record = ledger_.Find(answered->delivery->event_seq);
  if (record != nullptr) observed_unix_nanos = record->event.observed_unix_nanos();
  metrics_->ObserveWorkDuration(clock_->Now() - answered->delivery->sent_at);
  if (result.outcome() == CommandResult::DELIVERED && result.exec_start_sent_unix_nanos() != 0 &&
      observed_unix_nanos != 0) {
    metrics_->ObserveDeliveryLatency(
        absl::Nanoseconds(result.exec_start_sent_unix_nanos() - observed_unix_nanos));
  }
  switch (result.outcome()) {
    case CommandResult::DELIVERED: {
      // The detail only goes into the "delivered" INFO line: not built when
      // that line is not written.
      const bool log_detail = MinLogLevel() <= LogLevel::kInfo;
      std::string detail;
      if (log_detail) {
        detail.reserve(96);  // the whole detail below: one allocation
        if (result.exec_id().empty()) {
          detail = "container started";
        } else {
          absl::StrAppend(&detail, "exec ", ShortId(result.exec_id()));
        }
      }
      // dispatchd's own share of the latency, in the agent's clock: file
      // observed -> exec create request sent -> exec start request sent.
      if (log_detail && observed_unix_nanos != 0 && result.exec_create_sent_unix_nanos() != 0 &&
          result.exec_start_sent_unix_nanos() != 0) {
        detail.append("; file observed -> exec create sent ");
        AppendMilliseconds(&detail, result.exec_create_sent_unix_nanos() - observed_unix_nanos);
        detail.append(" ms, -> exec start sent ");
        AppendMilliseconds(&detail, result.exec_start_sent_unix_nanos() - observed_unix_nanos);
        detail.append(" ms");
      }
      if (hub_.has_watchers() && !result.exec_id().empty() && answered->delivery != nullptr) {
        // Kept for the exec's exit report (EXEC_EXIT), bounded.
        if (const EventRecord* record = ledger_.Find(answered->delivery->event_seq)) {
          exec_targets_[result.command_id()] =
              ExecTarget{record->event.event_id(), record->event.key(), record->origin_agent,
                         answered->delivery->recipient};
          exec_target_order_.push_back(result.command_id());
          if (exec_target_order_.size() > 10000) {
            exec_targets_.erase(exec_target_order_.front());
            exec_target_order_.pop_front();
          }
        }
      }
      // The origin agent keeps who got the event, with its file, so that a
      // restart of either side does not run it here again. Not for the
      // last subscription of an event that settles now: its Settled
      // follows on the same stream, in the same write unless a batch bound
      // falls between them, and the file goes with it.
      if (record != nullptr && (record->outstanding > 1 || record->awaiting_forward)) {
        const AgentTable::Agent* origin = agents_.Find(record->origin_agent);
        if (origin != nullptr && origin->link != nullptr) {
          ControllerMessage message;
          dispatch::v1::Delivered* delivered = message.mutable_delivered();
          delivered->set_key(record->event.key());
          delivered->set_generation(record->event.generation());
          delivered->mutable_to()->set_agent_id(answered->delivery->recipient.agent_id);
          delivered->mutable_to()->set_container_id(answered->delivery->recipient.container_id);
          origin->link->Send(std::move(message));
        }
      }
      FinishFront(lane_key, DeliveryOutcome::kDelivered, detail, result.exec_id());
      break;
    }
    case CommandResult::CONTAINER_GONE:
      FinishFront(lane_key, DeliveryOutcome::kSkippedGone, result.error());
      break;
    case CommandResult::NOT_RUNNING:
      FinishFront(lane_key, DeliveryOutcome::kSkippedNotRunning, result.error());
      break;
    case CommandResult::REJECTED:
      FinishFront(lane_key, DeliveryOutcome::kSkippedRejected, result.error());
      break;
    default:
      RetryFront(lane_key, result.error().empty() ? "agent reported a failure" : result.error(),
                 /*spend=*/!result.docker_unreachable());
      break;
  }
}

void Dispatcher::HandleExecExit(const std::string& agent_id, const dispatch::v1::ExecExit& exit) {
  metrics_->RecordExecExit(exit.error().empty(), exit.exit_code(),
                           absl::Milliseconds(exit.duration_ms()));
  if (auto target = exec_targets_.find(exit.command_id()); target != exec_targets_.end()) {
    if (hub_.has_watchers()) {
      dispatch::v1::WatchUpdate u;
      u.set_kind(dispatch::v1::WatchUpdate::EXEC_EXIT);
      u.set_time_unix_nanos(absl::ToUnixNanos(clock_->Now()));
      u.set_event_id(target->second.event_id);
      u.set_path(target->second.path);
      u.set_agent_id(target->second.origin_agent);
      FillRecipient(target->second.recipient, u.mutable_recipient());
      u.set_exit_code(exit.exit_code());
      u.set_duration_ms(exit.duration_ms());
      u.set_detail(exit.error());
      hub_.Publish(std::move(u));
    }
    exec_targets_.erase(target);  // its place in exec_target_order_ goes stale, harmlessly
  }
  if (!exit.error().empty()) {
    LOG(WARNING) << "agent " << agent_id << ": exit of command " << exit.command_id()
                 << " unknown: " << exit.error();
    return;
  }
 if (exit.exit_code() == 0) {
    LOG(DEBUG) << "agent " << agent_id << ": command " << exit.command_id() << " exited with 0 after "
               << exit.duration_ms() << " ms";
    return;
  }
  LOG(INFO) << "agent " << agent_id << ": command " << exit.command_id() << " exited with "
      << exit.exit_code() << " after " << exit.duration_ms() << " ms";
}

void Dispatcher::Resolve(uint64_t event_seq, const Recipient& recipient, DeliveryOutcome outcome,
                         const std::string& detail, absl::string_view exec_id) {
  ++stats_.deliveries[outcome];
  metrics_->RecordDelivery(outcome);
  EventRecord* record = ledger_.Find(event_seq);
  if (record == nullptr) return;
  if (hub_.has_watchers()) {
    dispatch::v1::WatchUpdate u = NewUpdate(dispatch::v1::WatchUpdate::DELIVERY, *record);
    FillRecipient(recipient, u.mutable_recipient());
    u.set_outcome(ToApiOutcome(outcome));
    u.set_detail(detail);
    u.set_exec_id(std::string(exec_id));
    hub_.Publish(std::move(u));
  }
  const std::string& event_id = record->event.event_id();
  switch (outcome) {
    case DeliveryOutcome::kDelivered:
      // One line per delivery: its pieces are appended as they are.
      if (MinLogLevel() <= LogLevel::kInfo) {
        LogMessage(LogLevel::kInfo, __FILE__, __LINE__)
            .Append({"delivered ", event_id, " to ", recipient.container_name, " (", detail, ")"});
      }
      break;
    case DeliveryOutcome::kCoalesced:
      LOG(DEBUG) << "event " << event_id << " for " << recipient.container_name << ": " << detail;
      break;
    case DeliveryOutcome::kFailed:
      LOG(ERROR) << "could not deliver " << event_id << " to " << recipient.container_name << ": "
                 << detail;
      // A delivery fails only once it spent its whole budget.
      ledger_.RecordFailure(*record, absl::StrCat(recipient.container_name, ": ", detail),
                            options_.max_attempts);
      break;
    default:
      LOG(INFO) << "skipped " << event_id << " for " << recipient.container_name << " ("
                << DeliveryOutcomeName(outcome) << "): " << detail;
      break;
  }
  if (ledger_.Resolve(*record)) Settle(*record);
}

void Dispatcher::Settle(EventRecord& record) {
  if (record.awaiting_forward) return;  // TakeForwardReleases settles it
  std::optional<dispatch::v1::WatchUpdate> settled_update;
  if (hub_.has_watchers()) {
    settled_update = NewUpdate(record.failed ? dispatch::v1::WatchUpdate::DEAD_LETTERED
                                             : dispatch::v1::WatchUpdate::SETTLED,
                               record);
    if (record.failed) {
      settled_update->set_detail(absl::StrJoin(record.errors, "; "));
    } else if (record.no_subscribers) {
      settled_update->set_detail("no subscribers: the file is deleted");
    }
  }
  EventLedger::Settlement settlement = ledger_.Settle(record);  // `record` is gone
  if (settled_update.has_value()) hub_.Publish(*std::move(settled_update));
  switch (settlement.outcome) {
    case SettleOutcome::kDeadLettered:
      ++stats_.events_settled_dead_letter;
      break;
    case SettleOutcome::kNoSubscribers:
      ++stats_.events_settled_no_subscribers;
      break;
    case SettleOutcome::kDelivered:
      ++stats_.events_settled_delivered;
      break;
  }
  metrics_->RecordEventSettled(settlement.outcome);
  const AgentTable::Agent* agent = agents_.Find(settlement.origin_agent);
  if (agent != nullptr && agent->link != nullptr) {
    ControllerMessage message;
    *message.mutable_settled() = std::move(settlement.settled);
    agent->link->Send(std::move(message));
  } else {
    ledger_.KeepUnacked(settlement.origin_agent, std::move(settlement.settled));
  }
}

absl::Time Dispatcher::Poll() {
  LogBatch log_batch;
  absl::Time next;
  {
    absl::MutexLock lock(&mu_);
    next = PollLocked();
  }
  RunCompletions();
  return next;
}

absl::Time Dispatcher::PollLocked() {
  const absl::Time now = clock_->Now();
  TakeForwardReleases();
  for (AgentRequests::Completion& c : requests_.Expire(now)) completions_.push_back(std::move(c));
  for (Debouncer::Due& due : debouncer_.TakeDue(now)) {
    auto target = debounce_targets_.find(due.key);
    if (target == debounce_targets_.end()) continue;
    metrics_->RecordWorkQueueAdd();
    const bool ready = queue_.Add(
        due.key, due.item, [&] { return std::move(target->second); }, clock_->Now());
    debounce_targets_.erase(target);
    if (ready) PumpLane(due.key);
  }
  while (std::optional<std::string> lane_key = queue_.PopDueRetry(now)) PumpLane(*lane_key);
  ExpireAwayAgents(now);
  if (ledger_.held() != 0) RouteHeld();  // the start-up grace may have ended
  for (const AgentTable::HeartbeatAction& action : agents_.CheckHeartbeats(now)) {
    switch (action.kind) {
      case AgentTable::HeartbeatAction::Kind::kCloseSilent:
        LOG(WARNING) << "agent " << action.agent_id << " missed " << options_.missed_heartbeats
                     << " heartbeats: ending its session";
        action.link->Close("missed heartbeats");
        break;
      case AgentTable::HeartbeatAction::Kind::kSendHeartbeat: {
        ControllerMessage heartbeat;
        heartbeat.mutable_heartbeat()->set_sent_unix_nanos(absl::ToUnixNanos(now));
        action.link->Send(std::move(heartbeat));
        break;
      }
    }
  }
  absl::Time next = agents_.NextDeadline(now);
  if (auto d = debouncer_.NextDeadline(); d.has_value()) next = std::min(next, *d);
  if (auto d = queue_.NextDeadline(); d.has_value()) next = std::min(next, *d);
  if (auto d = requests_.NextDeadline(); d.has_value()) next = std::min(next, *d);
  // Destinations let go of held events from their own threads, which must
  // not take mu_: look for them every kForwardReleasePoll while any is held.
  if (forward_held_ != 0) next = std::min(next, now + kForwardReleasePoll);
  return next;
}

DispatcherStats Dispatcher::stats() const {
  absl::MutexLock lock(&mu_);
  DispatcherStats stats = stats_;
  stats.events_in_flight = ledger_.in_flight();
  stats.events_held = ledger_.held();
  stats.debounce_pending = debouncer_.pending();
  stats.agents_connected = agents_.connected_count();
  stats.agents_fresh = agents_.fresh_count();
  stats.deliveries_queued = queue_.depth();
  stats.events_awaiting_forward = forward_held_;
  stats.subscriptions_valid = index_.subscription_count();
  stats.subscriptions_invalid = index_.invalid_count();
  return stats;
}

std::vector<InvalidEntry> Dispatcher::InvalidSubscriptions() const {
  absl::MutexLock lock(&mu_);
  return index_.Invalid();
}

std::vector<Target> Dispatcher::Subscriptions() const {
  absl::MutexLock lock(&mu_);
  return index_.All();
}

std::vector<AgentInfo> Dispatcher::Agents() const {
  absl::MutexLock lock(&mu_);
  return agents_.Infos();
}

size_t Dispatcher::subscription_count() const {
  absl::MutexLock lock(&mu_);
  return index_.subscription_count();
}

}  // namespace controller
}  // namespace dispatchd
