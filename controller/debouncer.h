// Debouncer: per-key debounce schedule (README.md, "Debounce"). A key is
// the caller's (event id, container) pair; an Item is the caller's handle
// for one event. The Debouncer only decides when; it delivers nothing.
//
// For a key with period D:
// - its first event is delivered now;
// - an event at least D after the last delivery is delivered now (the tie
//   at exactly D included);
// - otherwise the event becomes the key's pending item, replacing (i.e.
//   coalescing) any earlier pending one, and is due at last_delivery + D;
// - "earlier" is by when an event was written, which the caller may give
//   (it defaults to when it is offered): an event written before the
//   pending item, offered late (sent again after a restart, or from another
//   host), does not replace it but is coalesced itself.
// So the delay is at most D, there is at most one delivery per D, and the
// delivered item is always the latest written. D <= 0 delivers every event now.
// A pending item's delivery is recorded at its scheduled time, not when
// TakeDue() happens to run, so a late caller does not shift the schedule.
// If the clock steps backwards, a pending item is still due no later than
// D after the event that made it pending.
//
// Memory: a key with nothing pending whose last delivery is at least its
// period ago behaves exactly like an unknown key (its next event is
// delivered now), so Offer() and TakeDue() drop such keys as time passes;
// tracked_keys() stays bounded by the keys active within one period.
// (Should a key's period grow between events, an event arriving after the
// old period but within the new one is delivered now rather than held.)
//
// Not thread-safe: the caller serialises every call. Times come from the
// caller (normally its injected Clock), so tests need no sleeps.
#ifndef DISPATCHD_CONTROLLER_DEBOUNCER_H_
#define DISPATCHD_CONTROLLER_DEBOUNCER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace dispatchd {
namespace controller {

class Debouncer {
 public:
  // The caller's handle for an event.
  using Item = uint64_t;

  struct Decision {
    // kCoalesced: the offered item was written before the key's pending
    // item, which stays; the offered item is `coalesced`.
    enum class Action { kDeliverNow, kPending, kCoalesced };
    Action action;
    // When to deliver: == now for kDeliverNow; the pending item's time for
    // kCoalesced.
    absl::Time deliver_at;
    // The item that is not delivered: an earlier pending item of the same
    // key that this one replaced, or (kCoalesced) the offered item itself.
    // The caller settles it as coalesced.
    std::optional<Item> coalesced;
  };

  struct Due {
    std::string key;
    Item item;
  };

  Debouncer() = default;
  Debouncer(const Debouncer&) = delete;
  Debouncer& operator=(const Debouncer&) = delete;

  // Decides what happens to `item`, an event for `key` offered at `now` and
  // written at `written` (InfiniteFuture: now), under debounce `period`. A
  // kDeliverNow decision counts as delivered.
  Decision Offer(const std::string& key, absl::Duration period, Item item, absl::Time now,
                 absl::Time written = absl::InfiniteFuture());

  // Removes and returns the pending items due at `now` (deliver_at <= now),
  // in deliver_at order (ties by key). Each counts as delivered at its
  // deliver_at.
  std::vector<Due> TakeDue(absl::Time now);

  // The earliest pending deliver_at, if anything is pending: when the
  // caller should next call TakeDue().
  std::optional<absl::Time> NextDeadline() const;

  // When an event for `key` offered at `now` under `period` would be
  // delivered (`now` itself: at once), without changing anything: for
  // explaining what an event would do.
  absl::Time WouldDeliverAt(const std::string& key, absl::Duration period, absl::Time now) const;

  // The pending item of `key` and when it is due, if any.
  std::optional<std::pair<Item, absl::Time>> PendingOf(const std::string& key) const;

  // Number of pending items.
  size_t pending() const { return deadlines_.size(); }

  // Number of keys with state (pending, or delivered within their period).
  size_t tracked_keys() const { return keys_.size(); }

  // Drops all state of `key` (its subscription is gone); returns its
  // pending item, if any, which the caller settles itself.
  std::optional<Item> Forget(const std::string& key);

 private:
  struct KeyState {
    absl::Time last_delivery;
    absl::Duration period;
    std::optional<Item> pending;
    absl::Time deliver_at;       // meaningful while pending
    absl::Time pending_written;  // meaningful while pending
  };

  using TimedKey = std::pair<absl::Time, std::string>;

  // Records a delivery at `at`; the key then idles until at + period.
  void MarkDelivered(const std::string& key, KeyState* state, absl::Time at);
  // Drops idle keys whose last delivery is at least their period before `now`.
  void ExpireIdle(absl::Time now);

  absl::flat_hash_map<std::string, KeyState> keys_;
  // Pending items by (deliver_at, key).
  std::set<TimedKey> deadlines_;
  // Idle keys by (last_delivery + period, key): when they may be dropped.
  std::set<TimedKey> idle_until_;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_DEBOUNCER_H_
