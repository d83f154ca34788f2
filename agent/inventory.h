// Inventory: the agent's level-triggered view of the host's containers, kept
// from a full list plus Docker's events stream.
//
// One thread per Inventory: it opens the events stream FIRST, then lists
// (so no change between the two is missed) and reports a snapshot; from then
// on every container event other than exec_* makes it inspect that container
// and report a delta if anything changed (a 404 means removed). `exec_die` is
// forwarded as is. When the stream breaks or a call fails, the view is stale:
// on_stale fires once per outage, and the thread retries with jittered
// exponential backoff on the injected Clock, relists and reports a new
// snapshot. Every snapshot and every delta takes the next sequence number.
//
// Thread-safety: all methods are safe to call concurrently. Callbacks run on
// the inventory thread, one at a time, in order; they must not call Stop().
// `docker` and `clock` must outlive the Inventory.
#ifndef DISPATCHD_AGENT_INVENTORY_H_
#define DISPATCHD_AGENT_INVENTORY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/docker_api.h"
#include "common/clock.h"

namespace dispatchd {
namespace agent {

struct InventoryOptions {
  // Backoff between reconnect attempts: doubles from min to max, jittered.
  absl::Duration min_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // Timeout of each events stream Next(): how often the thread checks Stop().
  absl::Duration poll = absl::Milliseconds(200);
};

class Inventory {
 public:
  struct Callbacks {
    // A complete view; replaces everything reported before.
    std::function<void(uint64_t seq, std::vector<ContainerInfo> all)> on_snapshot;
    // Changes since the previous snapshot or delta.
    std::function<void(uint64_t seq, std::vector<ContainerInfo> upserted,
                       std::vector<std::string> removed_ids)>
        on_delta;
    // The view stopped being trustworthy (stream broken, call failed).
    std::function<void(std::string reason)> on_stale;
    // An exec finished (from the `exec_die` event). May be empty.
    std::function<void(std::string exec_id, int exit_code, absl::Time time)> on_exec_die;
  };

  Inventory(DockerApi* docker, Clock* clock, InventoryOptions options, Callbacks callbacks);
  // Stops the thread.
  ~Inventory();

  Inventory(const Inventory&) = delete;
  Inventory& operator=(const Inventory&) = delete;

  // Starts the thread. REQUIRES: called at most once.
  void Start();
  // Stops the thread and waits for it: at most one stream poll or one Docker
  // call. Idempotent.
  void Stop();

  // True while the stream is up and a relist has completed since it opened.
  bool fresh() const;
  // Why the view is not fresh: the error that ended the last attempt (it
  // says what to fix, e.g. no Docker socket at a path); empty while fresh
  // or before the first attempt has ended.
  std::string last_error() const;
  // The container with this full id, as last seen.
  std::optional<ContainerInfo> Get(absl::string_view id) const;
  // The current sequence number and every container (sorted by id).
  std::pair<uint64_t, std::vector<ContainerInfo>> Snapshot() const;

 private:
  void Run();
  // One connection: open, list, follow events. Returns why it ended (OK when
  // stopping).
  absl::Status RunSession();
  absl::Status HandleEvent(const DockerEvent& event);
  absl::Duration Backoff(int failures);
  bool stopping() const;

  DockerApi* const docker_;
  Clock* const clock_;
  const InventoryOptions options_;
  const Callbacks callbacks_;
  absl::BitGen bitgen_;  // used by the inventory thread only

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool fresh_ ABSL_GUARDED_BY(mu_) = false;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, ContainerInfo, std::less<>> containers_ ABSL_GUARDED_BY(mu_);

  absl::Mutex thread_mu_;  // serialises Start/Stop around the thread
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);
};

}  // namespace agent
}  // namespace dispatchd

#endif  // DISPATCHD_AGENT_INVENTORY_H_
