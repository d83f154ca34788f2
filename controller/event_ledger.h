// EventLedger: the events the controller has seen and not settled yet
// (README.md, "Event files": a file is settled once every subscription has
// been delivered, coalesced or skipped).
//
// Each new event gets a record and a sequence number, the Dispatcher's
// handle for it. An agent that reconnects re-sends every unsettled event
// (at-least-once), so an event is known by (agent, key, generation):
// - while its record lives, a re-sent event is a duplicate;
// - once it is settled, its Settled notice goes to its agent; if that agent
//   was away, the notice is kept and handed back when the event is re-sent,
//   instead of a second dispatch.
// Events wait in the held list while routing must wait (an inventory is not
// fresh). A routed record counts its outstanding subscriptions; when the
// last one is resolved the record is settled: deleted, or dead-lettered
// with a JSON note of the errors if any subscription failed for good.
//
// A record keeps the event's payload only while it may still be used: after
// admission the controller reads it only to pass it to handlers as
// DISPATCH_EVENT_PAYLOAD (command_builder.h), which takes at most
// max_env_payload_bytes (4 KiB); forwarding copied it already. A larger
// payload is dropped from the record (its `size` stays), so an unsettled
// event costs the controller at most keep_payload_bytes of payload however
// large its file is (docs/reliability.md, "Bounds").
//
// Not thread-safe: the Dispatcher calls it under its lock. Records are
// node-based: a reference stays valid until that record is settled, while
// others come and go. `clock` (the settling time of dead-letter notes) is
// not owned and must outlive the ledger.
#ifndef DISPATCHD_CONTROLLER_EVENT_LEDGER_H_
#define DISPATCHD_CONTROLLER_EVENT_LEDGER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/strings/string_view.h"
#include "common/clock.h"
#include "proto/dispatch/v1/session.pb.h"

namespace dispatchd {
namespace controller {

struct EventLedgerOptions {
  // Payloads larger than this are not kept (see above). Must be at least
  // DispatcherOptions::max_env_payload_bytes, or payloads in between no
  // longer reach handlers.
  size_t keep_payload_bytes = 4096;
};

// How an event was settled.
enum class SettleOutcome { kDelivered, kNoSubscribers, kDeadLettered };

// One observed event until it is settled.
struct EventRecord {
  uint64_t seq = 0;
  std::string origin_agent;  // the agent that observed it, and is told when it is settled
  std::string origin_host;
  // As observed, but without a payload over keep_payload_bytes: then
  // `payload` is empty and `size` is not 0 (PayloadDropped).
  dispatch::v1::ObservedEvent event;
  bool routed = false;
  int outstanding = 0;  // subscriptions not settled yet
  bool failed = false;  // some subscription exhausted its retries
  bool no_subscribers = false;
  // Its forwarded copy is still held by a destination (the Dispatcher's
  // forwarding hold): the file is settled once it is let go, with
  // forward_bytes of payload counted in the hold until then.
  bool awaiting_forward = false;
  size_t forward_bytes = 0;
  std::vector<std::string> errors;
  int attempts = 0;  // the most attempts a failed subscription took, for the dead-letter note
};

// True when the ledger dropped the payload of `event` (a record's): then it
// is not the file's content, and must not be passed on as if it were.
bool PayloadDropped(const dispatch::v1::ObservedEvent& event);

class EventLedger {
 public:
  explicit EventLedger(const Clock* clock, EventLedgerOptions options = EventLedgerOptions());
  EventLedger(const EventLedger&) = delete;
  EventLedger& operator=(const EventLedger&) = delete;

  // What Admit() made of an event.
  struct Admission {
    enum class Kind {
      kNew,             // recorded: `record` is it, to route or hold
      kDuplicate,       // re-sent while its record lives: ignore it
      kAlreadySettled,  // settled while its agent was away: send `settled` again
    };
    Kind kind;
    EventRecord* record = nullptr;                 // for kNew
    std::optional<dispatch::v1::Settled> settled;  // for kAlreadySettled (no longer kept)
  };
  // An event observed by `agent_id` on `origin_host`.
  Admission Admit(const std::string& agent_id, const std::string& origin_host,
                  const dispatch::v1::ObservedEvent& event);

  // The record of event `seq`; null once it is settled.
  EventRecord* Find(uint64_t seq);

  // Held events wait, in arrival order, until routing may go on.
  void Hold(uint64_t seq) { held_.push_back(seq); }
  std::deque<uint64_t> TakeHeld();

  // The event is routed to `subscriptions` subscribers; with none, it is
  // settled as such (by the caller's Settle()).
  void MarkRouted(EventRecord& record, size_t subscriptions);
  // One subscription of `record` failed for good: the event will be
  // dead-lettered, with `error` in its note.
  void RecordFailure(EventRecord& record, std::string error, int attempts = 0);
  // One subscription of `record` is settled (delivered, coalesced, skipped
  // or failed). Returns true when none is left: the caller settles it.
  bool Resolve(EventRecord& record);

  // The Settled notice of a record, and how it was settled.
  struct Settlement {
    std::string origin_agent;  // to send `settled` to
    dispatch::v1::Settled settled;
    SettleOutcome outcome;
  };
  // Settles `record` and forgets it: afterwards the record is gone and a
  // re-sent event is new again, unless KeepUnacked() keeps its notice.
  // Logs a dead-lettered event and one without subscribers.
  Settlement Settle(EventRecord& record);
  // The origin agent of `settled` is away: keep the notice until it
  // re-sends the event (Admit).
  void KeepUnacked(const std::string& agent_id, dispatch::v1::Settled settled);

  // Every record, in the order the events were observed (for the API).
  std::vector<const EventRecord*> Records() const;
  bool IsHeld(uint64_t seq) const;

  size_t in_flight() const { return events_.size(); }  // recorded, not settled
  size_t held() const { return held_.size(); }
  size_t unacked() const { return unacked_settled_.size(); }

 private:
  // (agent id, key, generation): how an agent's event is known again.
  using EventKey = std::tuple<std::string, std::string, uint64_t>;
  // The same, viewing strings held elsewhere: by_key_'s keys view their
  // record's origin_agent and event.key(), which do not change while the
  // record lives, so admitting and settling an event copies no string for
  // it (and the key is erased before the record is).
  using EventKeyView = std::tuple<absl::string_view, absl::string_view, uint64_t>;
  static EventKeyView KeyOf(const EventRecord& record) {
    return {record.origin_agent, record.event.key(), record.event.generation()};
  }

  const Clock* const clock_;
  const EventLedgerOptions options_;
  // Node-based: references to a record stay valid while others come and go.
  absl::node_hash_map<uint64_t, EventRecord> events_;
  // EventKey -> seq, for de-duplicating re-sent events.
  absl::flat_hash_map<EventKeyView, uint64_t> by_key_;
  // Settled notices whose origin agent was away.
  absl::flat_hash_map<EventKey, dispatch::v1::Settled> unacked_settled_;
  std::deque<uint64_t> held_;
  uint64_t next_seq_ = 1;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_EVENT_LEDGER_H_
