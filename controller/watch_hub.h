// WatchHub: fans the controller's WatchUpdates out to API watchers without
// ever making dispatching wait for them (README.md, "API and dispatchctl").
//
// Each watcher has a filter (event id exact or prefix, kinds) and a bounded
// buffer. Publish() appends to the buffers of the watchers whose filter
// matches and returns at once; a watcher whose buffer is full is marked
// overflowed and gets nothing more: its stream then ends with
// RESOURCE_EXHAUSTED saying how many updates it missed. Publish() assigns
// every update the next sequence number, matched or not.
//
// Thread-safe. Publish() takes the hub's own short lock and never blocks on
// a watcher, so the Dispatcher may call it under its lock.
#ifndef DISPATCHD_CONTROLLER_WATCH_HUB_H_
#define DISPATCHD_CONTROLLER_WATCH_HUB_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "proto/dispatch/v1/api.pb.h"

namespace dispatchd {
namespace controller {

struct WatchFilter {
  std::string event_id;         // exact; empty: any
  std::string event_id_prefix;  // empty: any
  std::set<dispatch::v1::WatchUpdate::Kind> kinds;  // empty: every kind
  bool Matches(const dispatch::v1::WatchUpdate& update) const;
};

class WatchHub {
 public:
  static constexpr size_t kDefaultBuffer = 1024;
  static constexpr size_t kMaxBuffer = 65536;

  // One watcher's end. Destroying it unsubscribes.
  class Watcher {
   public:
    ~Watcher();
    Watcher(const Watcher&) = delete;
    Watcher& operator=(const Watcher&) = delete;

    // Moves every buffered update into `out` (appending). Returns OK while
    // the watcher is healthy; RESOURCE_EXHAUSTED (how many were missed)
    // once it overflowed, after the updates buffered before that; CANCELLED
    // once the hub closed.
    absl::Status Take(std::vector<dispatch::v1::WatchUpdate>* out);

   private:
    friend class WatchHub;
    struct State;
    Watcher(WatchHub* hub, std::shared_ptr<State> state);
    WatchHub* const hub_;
    const std::shared_ptr<State> state_;
  };

  WatchHub() = default;
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // A new watcher. `buffer` 0 means kDefaultBuffer; larger than kMaxBuffer
  // is clamped. `wake` is called (from Publish's caller, under no lock of
  // the hub's) when updates or the end become available; it must not block.
  std::unique_ptr<Watcher> Subscribe(WatchFilter filter, size_t buffer,
                                     std::function<void()> wake);

  // Stamps `update` with the next sequence number and hands it to the
  // matching watchers. Never blocks on a watcher.
  void Publish(dispatch::v1::WatchUpdate update);

  // Ends every watcher (CANCELLED); later Publish() calls reach nobody.
  void Close();

  size_t watchers() const;
  // Lock-free: whether building an update is worth it at all.
  bool has_watchers() const { return count_.load(std::memory_order_relaxed) > 0; }
  // Updates published so far.
  uint64_t published() const;

 private:
  void Unsubscribe(const std::shared_ptr<Watcher::State>& state);

  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Watcher::State>> watchers_ ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<size_t> count_{0};  // watchers_.size()
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_WATCH_HUB_H_
