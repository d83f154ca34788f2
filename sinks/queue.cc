#include "sinks/queue.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "sinks/clock_notification.h"

namespace dispatchd {
namespace sinks {

// Everything the worker touches. The worker holds its own reference, so a
// worker abandoned by Close (stuck in the destination's Write) never
// outlives what it uses.
struct Queue::State {
  State(std::shared_ptr<Sink> d, Options o)
      : dst(std::move(d)),
        options(std::move(o)),
        clock(options.clock != nullptr ? options.clock : Clock::Real()) {}

  // Calls the dead-letter hook for `events` on the calling thread.
  void DeadLetter(const std::vector<EventPtr>& events, const absl::Status& reason) {
    if (!options.dead_letter) return;
    for (const EventPtr& event : events) options.dead_letter(event, reason);
  }

  const std::shared_ptr<Sink> dst;
  const Options options;
  const Clock* const clock;

  std::mutex mu;
  std::condition_variable work;  // worker: an event arrived or closing
  std::condition_variable room;  // blocked writers: room freed or closing
  std::condition_variable idle;  // Close: no thread is in the hook
  std::deque<EventPtr> pending ABSL_GUARDED_BY(mu);
  EventPtr in_flight ABSL_GUARDED_BY(mu);
  bool closing ABSL_GUARDED_BY(mu) = false;
  bool abandoned ABSL_GUARDED_BY(mu) = false;  // Close gave up on the worker
  int reporting ABSL_GUARDED_BY(mu) = 0;       // threads inside the hook

  SinkCounters counters;
  ClockNotification drained;  // the worker finished every event
};

Queue::Queue(std::shared_ptr<Sink> dst, Options options)
    : state_(std::make_shared<State>(std::move(dst), std::move(options))) {
  CHECK(state_->dst != nullptr) << "Queue needs a destination";
  worker_ = std::thread(&Queue::Run, state_);
}

Queue::~Queue() {
  Close().IgnoreError();  // OK at once if already closed
  if (worker_.joinable()) worker_.join();
}

absl::Status Queue::Write(EventPtr event) {
  if (event == nullptr) return absl::InvalidArgumentError("null event");
  State& s = *state_;
  EventPtr evicted;
  {
    std::unique_lock<std::mutex> lock(s.mu);
    if (s.closing) return ClosedError();
    s.counters.AddWritten();
    const size_t capacity = s.options.capacity;
    if (capacity > 0 && s.pending.size() >= capacity) {
      switch (s.options.policy) {
        case OverflowPolicy::kBlock:
          s.room.wait(lock, [&] { return s.closing || s.pending.size() < capacity; });
          if (s.closing) {
            s.counters.AddDropped();
            return ClosedError();
          }
          break;
        case OverflowPolicy::kReject:
          s.counters.AddDropped();
          return absl::ResourceExhaustedError(
              absl::StrCat("queue full: ", capacity, " events waiting"));
        case OverflowPolicy::kDropOldest:
          evicted = std::move(s.pending.front());
          s.pending.pop_front();
          s.counters.AddDropped();
          ++s.reporting;
          break;
      }
    }
    s.pending.push_back(std::move(event));
    s.work.notify_one();
  }
  if (evicted != nullptr) {
    s.DeadLetter({evicted}, absl::ResourceExhaustedError("evicted from a full queue"));
    std::lock_guard<std::mutex> lock(s.mu);
    --s.reporting;
    s.idle.notify_all();
  }
  return absl::OkStatus();
}

void Queue::Run(std::shared_ptr<State> state) {
  State& s = *state;
  while (true) {
    EventPtr event;
    {
      std::unique_lock<std::mutex> lock(s.mu);
      s.work.wait(lock, [&] { return s.closing || !s.pending.empty(); });
      if (s.abandoned) return;
      if (s.pending.empty()) break;  // closing and drained
      event = std::move(s.pending.front());
      s.pending.pop_front();
      s.in_flight = event;
      s.room.notify_one();
    }
    absl::Status status = s.dst->Write(event);
    {
      std::lock_guard<std::mutex> lock(s.mu);
      if (s.abandoned) return;  // Close already reported this event
      s.in_flight.reset();
      if (status.ok()) {
        s.counters.AddDelivered();
        continue;
      }
      s.counters.AddDropped();
      ++s.reporting;
    }
    s.DeadLetter({event}, status);
    std::lock_guard<std::mutex> lock(s.mu);
    --s.reporting;
    s.idle.notify_all();
  }
  s.drained.Notify();
}

absl::Status Queue::Close() { return Close(state_->clock->Now() + state_->options.close_timeout); }

absl::Status Queue::Close(absl::Time deadline) {
  State& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.closing) return absl::OkStatus();
    s.closing = true;
    s.work.notify_all();
    s.room.notify_all();
  }
  s.drained.WaitUntil(*s.clock, deadline);
  std::vector<EventPtr> undelivered;
  {
    std::unique_lock<std::mutex> lock(s.mu);
    // Decide under the lock: the worker may have finished just after the
    // deadline, and it accounts for an event only while not abandoned.
    if (s.in_flight != nullptr || !s.pending.empty()) {
      s.abandoned = true;
      if (s.in_flight != nullptr) undelivered.push_back(std::move(s.in_flight));
      for (EventPtr& event : s.pending) undelivered.push_back(std::move(event));
      s.pending.clear();
      s.counters.AddDropped(undelivered.size());
    }
    // No hook call may run after Close returns.
    s.idle.wait(lock, [&] { return s.reporting == 0; });
  }
  if (undelivered.empty()) {
    worker_.join();  // it has nothing left but to exit
    return s.dst->Close();
  }
  s.DeadLetter(undelivered,
               absl::DeadlineExceededError("queue closed before the event was delivered"));
  // Closing the destination is what unblocks a well-behaved stuck Write; the
  // worker then sees `abandoned` and exits on its own.
  s.dst->Close().IgnoreError();
  worker_.detach();
  return absl::DeadlineExceededError(absl::StrCat("queue close deadline passed with ",
                                                  undelivered.size(), " events undelivered"));
}

size_t Queue::size() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->pending.size();
}

SinkStats Queue::stats() const { return state_->counters.Snapshot(); }

}  // namespace sinks
}  // namespace dispatchd
