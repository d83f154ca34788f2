// DeliveryQueue: the Dispatcher's work queue of deliveries, one event for
// one subscribing container each (client-go's workqueue with its per-item
// exponential rate limiter is the model).
//
// Deliveries sit in lanes, one per key (the Dispatcher's key is the
// (event id, agent, container) triple). A lane is FIFO with at most one
// delivery in flight: a container receives the events of one id in order,
// one at a time. Every delivery of a lane goes to the one recipient its key
// names: the lane keeps that recipient once, with its front, and of each
// delivery behind the front only its event and when it entered the queue
// (24 bytes; under load a lane holds thousands). The front of a lane is
// - ready: it may be sent (Ready() returns it);
// - in flight: the caller sent it as a command (MarkSent), whose id finds
//   the lane again when the answer comes (TakeAnswered);
// - waiting: a failed attempt was scheduled for another try (Retry) after
//   a full-jitter exponential backoff, uniform in [0, min(max_backoff,
//   min_backoff * 2^(attempts-1))), until the caller takes the due retry
//   (PopDueRetry) or ends the wait early (ClearRetry). Every failed attempt
//   counts; the one that reaches max_attempts spends the budget and the
//   caller finishes the delivery as failed.
// The queue builds no command and talks to no agent: the Dispatcher asks it
// what to send, tells it what it sent and what finished, and asks what is
// due at a given time (PopDueRetry, NextDeadline).
//
// Not thread-safe: the Dispatcher calls it under its lock. Times come from
// the caller, randomness from the injected source, so tests need no sleeps
// and see fixed backoffs. Pointers to deliveries (Ready, TakeAnswered,
// Retry) stay valid until the next call that adds or removes one.
#ifndef DISPATCHD_CONTROLLER_DELIVERY_QUEUE_H_
#define DISPATCHD_CONTROLLER_DELIVERY_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/random/random.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "controller/recipient.h"
#include "sinks/retry_strategy.h"

namespace dispatchd {
namespace controller {

// One event for one recipient, as the queue holds it.
struct Delivery {
  uint64_t event_seq = 0;  // the Dispatcher's handle for the event
  Recipient recipient;
  int attempts = 0;  // failed attempts so far
  // Attempts that found the target's Docker unreachable: not the
  // subscriber's failure, so they spend no budget (they only back off).
  int unreachable = 0;
  std::string last_error;
  absl::Time ready_at = absl::InfinitePast();  // last (re)entry into the queue
  // While it is in flight: the command that carries it (0: not in flight)
  // and when that was sent.
  uint64_t command_id = 0;
  absl::Time sent_at;
};

struct DeliveryQueueOptions {
  // Full-jitter exponential backoff between these bounds.
  absl::Duration min_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(30);
  // Attempts per delivery, the first included.
  int max_attempts = 8;
  // Uniform in [0, bound) for the backoff; empty: a generator of the
  // queue's own. Called only from the queue's methods.
  sinks::RandomSource random;
};

class DeliveryQueue {
 public:
  explicit DeliveryQueue(DeliveryQueueOptions options);
  DeliveryQueue(const DeliveryQueue&) = delete;
  DeliveryQueue& operator=(const DeliveryQueue&) = delete;

  // Appends a delivery of event `event_seq` to lane `key`, ready from
  // `now`. Returns true when the lane may send at once (nothing in flight,
  // no retry waiting): the caller then sends its front (Ready()). Behind a
  // front, only its event_seq is kept: the lane's deliveries share the
  // front's recipient, and `recipient` is called only for a new front (one
  // that waits behind a busy front costs no copy of its strings).
  bool Add(const std::string& key, uint64_t event_seq, absl::FunctionRef<Recipient()> recipient,
           absl::Time now);

  // The front of lane `key` if it may be sent: nothing in flight and no
  // retry waiting. Null otherwise; an empty lane is dropped.
  Delivery* Ready(const std::string& key);

  // The caller sent `front`, the front of lane `key` as Ready() returned
  // it, to `agent_id` at `now`: it is in flight until its answer
  // (TakeAnswered) or AbandonAgent(). Returns the command id for it.
  uint64_t MarkSent(const std::string& key, Delivery& front, const std::string& agent_id,
                    absl::Time now);

  // The answer to a command came.
  struct Answered {
    std::string key;           // its lane
    const Delivery* delivery;  // that lane's front, which the command carried
  };
  // Takes command `command_id`, sent to `agent_id`, out of flight. Nothing
  // for a command the queue does not know or that another agent was sent (a
  // stale answer, left as it is); nothing either, though it is forgotten,
  // when its lane no longer waits for it. After a result, the caller calls
  // Finish() or Retry() on the lane.
  std::optional<Answered> TakeAnswered(uint64_t command_id, absl::string_view agent_id);

  // Removes and returns the front of lane `key` (delivered, skipped or
  // failed for good): the lane is neither in flight nor waiting after it.
  // Nothing if the lane is empty or unknown. A lane left empty is removed
  // at once; `next`, if given, tells whether one behind became the front
  // (then the lane has a delivery to send).
  std::optional<Delivery> Finish(const std::string& key, bool* next = nullptr);

  // A failed attempt of the front of lane `key`.
  struct RetryPlan {
    enum class Verdict {
      kNoLane,           // the lane is empty or unknown: nothing done
      kScheduled,        // waits until `at`
      kBudgetExhausted,  // that was the last attempt: the caller Finish()es it
    };
    Verdict verdict = Verdict::kNoLane;
    const Delivery* delivery = nullptr;  // the front, attempts counted
    absl::Time at;                       // for kScheduled
  };
  // Counts the failed attempt (with `error`) and, while the budget lasts,
  // schedules the next one at `now` plus a backoff. With `spend` false (the
  // target's Docker daemon could not be reached), the attempt costs no
  // budget and the next one comes after a backoff of at most
  // kUnreachableMaxBackoff, until Docker is back.
  RetryPlan Retry(const std::string& key, std::string error, absl::Time now, bool spend = true);
  static constexpr absl::Duration kUnreachableMaxBackoff = absl::Seconds(5);

  // Takes the next lane whose retry is due at `now` and clears its wait, in
  // due-time order; nothing when none is left. The caller sends its front.
  std::optional<std::string> PopDueRetry(absl::Time now);

  // The earliest retry time, if any retry is scheduled: when the caller
  // should call PopDueRetry() next. (A wait cleared since may still show.)
  std::optional<absl::Time> NextDeadline() const;

  // The keys of the lanes whose front goes to `agent_id`.
  std::vector<std::string> LanesTo(absl::string_view agent_id) const;
  // Ends the wait of lane `key` for a retry, if any: its front may go now.
  // Returns false if there is no such lane.
  bool ClearRetry(const std::string& key);
  // Forgets every command in flight to `agent_id` (it is gone and may never
  // answer): their lanes may send their fronts again, without spending
  // attempts.
  void AbandonAgent(absl::string_view agent_id);

  // Where the deliveries of event `event_seq` stand (for the API):
  // O(deliveries).
  struct Position {
    Delivery delivery;
    enum class State { kQueued, kInFlight, kRetryWait } state;
    absl::Time retry_at;  // for kRetryWait
  };
  std::vector<Position> PositionsOf(uint64_t event_seq) const;

  // Deliveries waiting in the queue, those in flight excluded.
  size_t depth() const;
  // Lanes with deliveries; commands in flight.
  size_t lane_count() const { return lanes_.size(); }
  size_t in_flight_count() const { return in_flight_.size(); }

 private:
  // A delivery behind the front of its lane.
  struct Behind {
    uint64_t event_seq;
    absl::Time ready_at;
  };
  struct Lane {
    // The front alone may be in flight or wait for a retry; none: the lane
    // is empty (and nothing is behind).
    std::optional<Delivery> front;
    // Made when a first delivery waits behind the front: an empty deque
    // already allocates (its map and a first block), and most lanes hold
    // one delivery and go.
    std::unique_ptr<std::deque<Behind>> behind;
    std::optional<absl::Time> retry_at;  // the front waits until then

    bool in_flight() const { return front.has_value() && front->command_id != 0; }
    size_t behind_count() const { return behind == nullptr ? 0 : behind->size(); }
  };
  struct InFlight {
    std::string lane;
    std::string agent_id;
  };

  absl::Duration Backoff(int attempts);

  const DeliveryQueueOptions options_;
  absl::flat_hash_map<std::string, Lane> lanes_;
  std::set<std::pair<absl::Time, std::string>> retry_timers_;
  absl::flat_hash_map<uint64_t, InFlight> in_flight_;
  uint64_t next_command_id_ = 1;
  absl::BitGen bitgen_;  // when options_.random is empty
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_DELIVERY_QUEUE_H_
