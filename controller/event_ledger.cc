#include "controller/event_ledger.h"

#include <algorithm>

#include <utility>

#include "absl/time/time.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::Settled;

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

}  // namespace

bool PayloadDropped(const dispatch::v1::ObservedEvent& event) {
  return event.payload().empty() && event.size() > 0;
}

EventLedger::EventLedger(const Clock* clock, EventLedgerOptions options)
    : clock_(clock), options_(options) {}

EventLedger::Admission EventLedger::Admit(const std::string& agent_id,
                                          const std::string& origin_host,
                                          const dispatch::v1::ObservedEvent& event) {
  if (!unacked_settled_.empty()) {
    auto unacked = unacked_settled_.find(EventKey{agent_id, event.key(), event.generation()});
    if (unacked != unacked_settled_.end()) {
      // Settled while the agent was away: tell it again rather than re-dispatch.
      Admission admission{Admission::Kind::kAlreadySettled, nullptr, std::move(unacked->second)};
      unacked_settled_.erase(unacked);
      return admission;
    }
  }
  if (by_key_.contains(EventKeyView{agent_id, event.key(), event.generation()})) {
    return {Admission::Kind::kDuplicate, nullptr, std::nullopt};
  }
  const uint64_t seq = next_seq_++;
  EventRecord& record = events_[seq];
  record.seq = seq;
  record.origin_agent = agent_id;
  record.origin_host = origin_host;
  record.event = event;
  if (const size_t bytes = event.payload().size(); bytes > options_.keep_payload_bytes) {
    // Released, not only cleared: the memory is what this is for.
    std::string().swap(*record.event.mutable_payload());
    // `size` is the file's; an agent that did not say gets the payload's,
    // so the payload reads as dropped rather than empty.
    if (record.event.size() < static_cast<int64_t>(bytes)) {
      record.event.set_size(static_cast<int64_t>(bytes));
    }
  }
  by_key_.emplace(KeyOf(record), seq);
  return {Admission::Kind::kNew, &record, std::nullopt};
}

EventRecord* EventLedger::Find(uint64_t seq) {
  auto it = events_.find(seq);
  return it == events_.end() ? nullptr : &it->second;
}

std::deque<uint64_t> EventLedger::TakeHeld() {
  std::deque<uint64_t> held;
  held.swap(held_);
  return held;
}

void EventLedger::MarkRouted(EventRecord& record, size_t subscriptions) {
  record.routed = true;
  if (subscriptions == 0) {
    record.no_subscribers = true;
  } else {
    record.outstanding = static_cast<int>(subscriptions);
  }
}

void EventLedger::RecordFailure(EventRecord& record, std::string error, int attempts) {
  record.failed = true;
  record.errors.push_back(std::move(error));
  record.attempts = std::max(record.attempts, attempts);
}

bool EventLedger::Resolve(EventRecord& record) { return --record.outstanding <= 0; }

EventLedger::Settlement EventLedger::Settle(EventRecord& record) {
  Settlement settlement;
  Settled& settled = settlement.settled;
  settled.set_generation(record.event.generation());
  if (record.failed) {
    settled.set_disposition(Settled::DEAD_LETTER);
    nlohmann::json note = {
        {"event_id", record.event.event_id()},
        {"path", record.event.key()},
        {"host", record.origin_host},
        {"observed_at", Rfc3339(absl::FromUnixNanos(record.event.observed_unix_nanos()))},
        {"settled_at", Rfc3339(clock_->Now())},
        {"errors", record.errors},
        {"attempts", record.attempts},
    };
    settled.set_error_json(note.dump(2));
    settlement.outcome = SettleOutcome::kDeadLettered;
    LOG(ERROR) << "event " << record.event.event_id() << " goes to the dead-letter directory";
  } else {
    settled.set_disposition(Settled::DELETE);
    if (record.no_subscribers) {
      settlement.outcome = SettleOutcome::kNoSubscribers;
      LOG(INFO) << "event " << record.event.event_id() << " (" << record.event.key()
                << ") has no subscribers";
    } else {
      settlement.outcome = SettleOutcome::kDelivered;
    }
  }
  by_key_.erase(KeyOf(record));
  // The record goes next: its strings are moved, not copied.
  settled.set_key(std::move(*record.event.mutable_key()));
  settlement.origin_agent = std::move(record.origin_agent);
  const uint64_t seq = record.seq;
  events_.erase(seq);  // `record` is gone
  return settlement;
}

void EventLedger::KeepUnacked(const std::string& agent_id, Settled settled) {
  EventKey key{agent_id, settled.key(), settled.generation()};
  unacked_settled_[std::move(key)] = std::move(settled);
}

std::vector<const EventRecord*> EventLedger::Records() const {
  std::vector<const EventRecord*> out;
  out.reserve(events_.size());
  for (const auto& [seq, record] : events_) out.push_back(&record);
  std::sort(out.begin(), out.end(),
            [](const EventRecord* a, const EventRecord* b) { return a->seq < b->seq; });
  return out;
}

bool EventLedger::IsHeld(uint64_t seq) const {
  return std::find(held_.begin(), held_.end(), seq) != held_.end();
}

}  // namespace controller
}  // namespace dispatchd
