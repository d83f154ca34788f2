// Dispatcher: the controller's core. It keeps the subscription index built
// from the agents' inventories, routes every observed event to its
// subscribers through the debouncer and a per-(event id, container) work
// queue with retries, sends Exec/Start commands to the agents that hold the
// target containers, and sends Settled to the agent that observed the event
// once every subscription has been delivered, coalesced or skipped.
//
// It knows nothing of gRPC: sessions reach it through AgentLink and the
// On*() calls; time reaches it through Clock and Poll(). Its state sits in
// single-threaded parts that it drives: the AgentTable (agents and their
// sessions), the SubscriptionIndex, the EventLedger (events until settled),
// the Debouncer and the DeliveryQueue (lanes, commands in flight, retries);
// BuildCommand makes the commands. Every transition crosses several parts,
// so all of them sit behind the Dispatcher's one mutex; every public method
// is thread-safe. Link methods are called with that mutex held, so
// AgentLink::Send must not block and must not call back into the
// Dispatcher.
#ifndef DISPATCHD_CONTROLLER_DISPATCHER_H_
#define DISPATCHD_CONTROLLER_DISPATCHER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/agent_requests.h"
#include "controller/agent_table.h"  // AgentLink, AgentInfo
#include "controller/api_backend.h"
#include "controller/debouncer.h"
#include "controller/delivery_queue.h"
#include "controller/dispatcher_metrics.h"
#include "controller/event_ledger.h"
#include "controller/recipient.h"
#include "controller/subscription_index.h"
#include "controller/watch_hub.h"
#include "proto/dispatch/v1/api.pb.h"
#include "proto/dispatch/v1/session.pb.h"
#include "sinks/sink.h"

namespace dispatchd {
namespace controller {

struct DispatcherOptions {
  std::string label_namespace = "subscription";
  // Agents send a heartbeat at this period; ~3 missed periods end a session.
  absl::Duration heartbeat_period = absl::Seconds(5);
  int missed_heartbeats = 3;
  // Events are held for this long after start-up, so agents of an earlier
  // run can reconnect before anything is routed (a controller restart must
  // not miss their subscribers). Zero where the agents are known to be
  // in-process (all-in-one). A disconnected agent is likewise waited for
  // heartbeat_period * missed_heartbeats before its containers are dropped.
  absl::Duration startup_grace = absl::ZeroDuration();
  // Agents to wait for (id -> host), as AgentTableOptions::expected_agents:
  // a new leader resumes as soon as these are back and fresh.
  std::map<std::string, std::string> expected_agents;
  // Asked before each command is sent; false holds it (a replica whose
  // leadership is ending). Null: always true.
  std::function<bool()> may_command;
  // Called when an agent becomes known or is forgotten (KnownAgents()
  // changed), with the Dispatcher's lock held: must not block or call it.
  std::function<void()> on_agents_changed;
  // Retry policy for retryable delivery failures (Docker errors, agent gone):
  // full-jitter exponential backoff between min and max, at most
  // max_attempts attempts; then the event is dead-lettered.
  absl::Duration retry_min_backoff = absl::Milliseconds(200);
  absl::Duration retry_max_backoff = absl::Seconds(30);
  int max_attempts = 8;
  // Payloads up to this size (without NUL bytes) go to handlers as
  // DISPATCH_EVENT_PAYLOAD.
  size_t max_env_payload_bytes = 4096;
  // Every observed event is written here once, when first seen (forwarding
  // destinations). Must not block: a Queue per destination. May be null.
  std::shared_ptr<sinks::Sink> forward;
  // An event's file is settled only once every destination let go of the
  // event written to `forward` (sent it, dead-lettered it or gave it up,
  // each logged and counted), so a controller that dies while a destination
  // is down loses nothing: the agents send the event to the next one, which
  // forwards it again. So that a destination that stays down cannot stop
  // the agents (they read no new files above their own bound of unsettled
  // events), at most this many events and bytes of payload wait so; beyond
  // that an event settles as soon as it is queued, and only the queue in
  // memory has it (logged; docs/reliability.md, "Bounds"). 0: none waits.
  size_t forward_hold_events = 1000;
  size_t forward_hold_bytes = size_t{16} << 20;
  // Metrics (normally a DispatcherMetrics), updated as things happen. Null
  // records nothing; otherwise must outlive the Dispatcher. (Gauges:
  // ExportDispatcherGauges.)
  DispatcherMetricsRecorder* metrics = nullptr;
};

// How one subscription of one event ended.
enum class DeliveryOutcome {
  kDelivered,
  kCoalesced,          // replaced by a later event (debounce)
  kSkippedGone,        // container removed (404, or gone from the inventory)
  kSkippedNotRunning,  // stopped and no container.start
  kSkippedRejected,    // the agent's own label check refused it
  kSkippedUnsubscribed,  // the subscription disappeared before delivery
  kFailed,             // retry budget exhausted
};
absl::string_view DeliveryOutcomeName(DeliveryOutcome outcome);

// Counters for tests, logs and the metrics layer. Monotonic unless noted.
struct DispatcherStats {
  uint64_t events_observed = 0;
  uint64_t events_duplicate = 0;  // re-sent by a reconnecting agent
  uint64_t events_settled_delivered = 0;
  uint64_t events_settled_no_subscribers = 0;
  uint64_t events_settled_dead_letter = 0;
  std::map<DeliveryOutcome, uint64_t> deliveries;  // by outcome
  uint64_t commands_sent = 0;
  uint64_t retries = 0;
  // Events that settled without waiting for forwarding (the hold was full).
  uint64_t events_forward_unheld = 0;
  // Gauges.
  uint64_t events_in_flight = 0;
  uint64_t events_held = 0;
  uint64_t debounce_pending = 0;
  uint64_t agents_connected = 0;
  uint64_t agents_fresh = 0;       // connected, with a fresh inventory
  uint64_t deliveries_queued = 0;  // in the work queue, not yet sent
  // Events whose files wait for the forwarding destinations to let go.
  uint64_t events_awaiting_forward = 0;
  uint64_t subscriptions_valid = 0;
  uint64_t subscriptions_invalid = 0;
};

// Helpers shared by dispatcher.cc and dispatcher_api.cc.
// Lanes and debounce state are per (event id, agent, container).
std::string LaneKey(absl::string_view event_id, absl::string_view agent_id,
                    absl::string_view container_id);
void FillRecipient(const Recipient& r, dispatch::v1::Recipient* out);
dispatch::v1::DeliveryOutcome ToApiOutcome(DeliveryOutcome outcome);
dispatch::v1::ContainerState ToApiState(dispatch::v1::Container::State state);

// The Dispatcher is also the API's backend (ApiBackend): Emit and the
// dead-letter calls go to agents as requests (AgentRequests) and complete
// when they answer; Watch reads the WatchHub the Dispatcher publishes each
// step of an event to (only while someone watches); ListEvents, GetEvent
// and Explain read the current state.
class Dispatcher final : public ApiBackend {
 public:
  Dispatcher(DispatcherOptions options, Clock* clock);
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;
  ~Dispatcher();

  // Session events. `link` must stay valid until AgentDisconnected(agent_id,
  // link) returns. A second session for the same agent id replaces the first
  // (whose link is closed).
  void AgentConnected(const std::string& agent_id, const std::string& host, AgentLink* link);
  void AgentDisconnected(const std::string& agent_id, AgentLink* link);
  // One message from the agent; an AgentBatch is handled as its messages,
  // in order, under one acquisition of the lock (a nested batch is ignored).
  void OnAgentMessage(const std::string& agent_id, const dispatch::v1::AgentMessage& message);

  // Runs what is due at Now(): debounced deliveries, retries, heartbeat
  // checks. Returns when it should run next.
  absl::Time Poll();

  // Runs Poll() on a thread of its own until Stop(), waking early when new
  // work has a nearer deadline.
  void Start();
  void Stop();
  // Ends the API's open calls (watch streams, requests waiting on agents)
  // so a server shutdown does not wait for them. Stop() does it too.
  void EndApiCalls() ABSL_LOCKS_EXCLUDED(mu_);
  // This Dispatcher's leadership term is over: every agent session is
  // closed with `reason`, a session that connects later is closed at once,
  // and the API's open calls end. The agents go to the new leader and send
  // it everything again. Stop() it afterwards.
  void EndTerm(const std::string& reason) ABSL_LOCKS_EXCLUDED(mu_);
  // Agents known now (connected, or away and waited for), id -> host.
  std::map<std::string, std::string> KnownAgents() const;

  DispatcherStats stats() const;
  std::vector<InvalidEntry> InvalidSubscriptions() const;
  std::vector<Target> Subscriptions() const;
  std::vector<AgentInfo> Agents() const;
  size_t subscription_count() const;

  // ApiBackend (controller/api_backend.h).
  void Emit(const dispatch::v1::EmitRequest& request,
            Done<dispatch::v1::EmitResponse> done) override;
  std::unique_ptr<WatchHub::Watcher> Watch(WatchFilter filter, size_t buffer,
                                           std::function<void()> wake) override;
  dispatch::v1::ListEventsResponse ListEvents() const override;
  absl::StatusOr<dispatch::v1::EventInfo> GetEvent(
      const dispatch::v1::GetEventRequest& request) const override;
  absl::StatusOr<dispatch::v1::ExplainResponse> Explain(
      const dispatch::v1::ExplainRequest& request) const override;
  void ListDeadLetters(const dispatch::v1::ListDeadLettersRequest& request,
                       Done<dispatch::v1::ListDeadLettersResponse> done) override;
  void ReplayDeadLetter(const dispatch::v1::ReplayDeadLetterRequest& request,
                        Done<dispatch::v1::ReplayDeadLetterResponse> done) override;
  void PurgeDeadLetter(const dispatch::v1::PurgeDeadLetterRequest& request,
                       Done<dispatch::v1::PurgeDeadLetterResponse> done) override;

 private:
  // Who an exec that may still report its exit went to, for EXEC_EXIT.
  struct ExecTarget {
    std::string event_id;
    std::string path;
    std::string origin_agent;
    Recipient recipient;
  };

  // Publishes `update` to the watchers; callers check hub_.has_watchers()
  // first, so nothing is built while nobody watches.
  dispatch::v1::WatchUpdate NewUpdate(dispatch::v1::WatchUpdate::Kind kind,
                                      const EventRecord& record) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The agent an API request goes to: `host`, or one chosen by `key`.
  absl::StatusOr<std::string> ChooseAgent(const std::string& host, const std::string& key) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Registers `done` for an answer from `agent_id` and sends `message` with
  // the request's id set by `set_id`.
  void SendRequest(const std::string& agent_id, dispatch::v1::ControllerMessage message,
                   const std::function<void(dispatch::v1::ControllerMessage*, uint64_t)>& set_id,
                   AgentRequests::Done done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends one dead-letter operation to `host` and converts its answer.
  void DeadLetterCall(const std::string& host, dispatch::v1::DeadLetterRequest::Op op,
                      const std::string& path,
                      std::function<void(absl::StatusOr<dispatch::v1::DeadLetterResult>)> done);
  absl::Time PollLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs the request callbacks that completed under the lock, after it.
  void RunCompletions() ABSL_LOCKS_EXCLUDED(mu_);
  dispatch::v1::EventInfo DescribeEvent(const EventRecord& record, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // One message that is not a batch.
  void HandleAgentMessage(const std::string& agent_id, const dispatch::v1::AgentMessage& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleEvent(const std::string& agent_id, const AgentTable::Agent& agent,
                   const dispatch::v1::ObservedEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleResult(const std::string& agent_id, const dispatch::v1::CommandResult& result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleExecExit(const std::string& agent_id, const dispatch::v1::ExecExit& exit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AllAgentsFresh() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RouteHeld() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Route(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends the front of the lane if it may go. `known`: the front's target
  // as the index has it right now (Route just looked it up), which spares
  // looking it up again.
  void PumpLane(const std::string& lane_key, const TargetRef* known = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishFront(const std::string& lane_key, DeliveryOutcome outcome,
                   const std::string& detail, absl::string_view exec_id = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `spend` false: the target's Docker was unreachable, no budget spent.
  void RetryFront(const std::string& lane_key, const std::string& error, bool spend = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Resolve(uint64_t event_seq, const Recipient& recipient, DeliveryOutcome outcome,
               const std::string& detail, absl::string_view exec_id = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Settles `record` now, or once forwarding let go of it.
  void Settle(EventRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the event to options_.forward, holding its file while there is
  // room in the forwarding hold.
  void Forward(EventRecord& record, const dispatch::v1::ObservedEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Settles what waited only for forwarding that has let go since.
  void TakeForwardReleases() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PumpAgentLanes(const std::string& agent_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireAwayAgents(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Wake() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const DispatcherOptions options_;
  Clock* const clock_;
  // options_.metrics, or NoDispatcherMetrics(): never null.
  DispatcherMetricsRecorder* const metrics_;

  mutable absl::Mutex mu_;
  SubscriptionIndex index_ ABSL_GUARDED_BY(mu_);
  Debouncer debouncer_ ABSL_GUARDED_BY(mu_);
  // Debounce key -> the recipient of its pending item.
  absl::flat_hash_map<std::string, Recipient> debounce_targets_ ABSL_GUARDED_BY(mu_);
  AgentTable agents_ ABSL_GUARDED_BY(mu_);
  EventLedger ledger_ ABSL_GUARDED_BY(mu_);
  DeliveryQueue queue_ ABSL_GUARDED_BY(mu_);
  DispatcherStats stats_ ABSL_GUARDED_BY(mu_);
  AgentRequests requests_ ABSL_GUARDED_BY(mu_);
  // Callbacks of requests that ended under the lock; run by RunCompletions.
  std::vector<AgentRequests::Completion> completions_ ABSL_GUARDED_BY(mu_);
  // Command id -> where a delivered exec went, while watchers may want its
  // exit (filled only while someone watches; the oldest dropped past 10,000).
  absl::flat_hash_map<uint64_t, ExecTarget> exec_targets_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> exec_target_order_ ABSL_GUARDED_BY(mu_);
  // Its own lock; Publish never blocks on a watcher.
  WatchHub hub_;

  // Forwarded events that were held report here when the last destination
  // lets go of them (from a destination's thread, or from Write itself
  // under mu_): its own lock, and shared, so that an event let go after
  // the Dispatcher is gone finds it. Poll takes them.
  struct ForwardReleases {
    absl::Mutex mu;
    std::vector<uint64_t> seqs ABSL_GUARDED_BY(mu);
  };
  const std::shared_ptr<ForwardReleases> forward_releases_ =
      std::make_shared<ForwardReleases>();
  size_t forward_held_ ABSL_GUARDED_BY(mu_) = 0;
  size_t forward_held_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool forward_hold_full_logged_ ABSL_GUARDED_BY(mu_) = false;

  // EndTerm() was called; its reason.
  std::optional<std::string> term_ended_ ABSL_GUARDED_BY(mu_);
  bool command_hold_logged_ ABSL_GUARDED_BY(mu_) = false;

  // Poll thread.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<std::thread> thread_;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_DISPATCHER_H_
