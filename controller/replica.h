// Replica: one controller replica under leader election (docs/ha.md). It
// runs the LeaderElector, owns the Dispatcher of the current leadership
// term, and keeps the agents' membership list in etcd.
//
// A term begins when the elector wins: the membership list
// (prefix/agents/<agent id> = host) is read, and a fresh Dispatcher waits
// for exactly those agents (DispatcherOptions::expected_agents) instead of
// a fixed start-up grace; with no list (the first leader ever, or etcd
// unreadable) it waits the full grace. Its commands are gated on
// Leading(). While it leads, each renewal brings the list in line with the
// agents the Dispatcher knows. A term ends when the elector steps down:
// the Dispatcher closes every agent session and API call and stops, and an
// idle Dispatcher stands in, so a standby has nothing to route: it only
// answers GetStatus and turns everything else away (leader_redirect.h).
//
// The sessions and API calls of a term hold its Dispatcher (shared_ptr)
// until they end, so an ended term is destroyed by whoever lets go last.
// Thread-safe.
#ifndef DISPATCHD_CONTROLLER_REPLICA_H_
#define DISPATCHD_CONTROLLER_REPLICA_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "controller/dispatcher.h"
#include "controller/etcd_api.h"
#include "controller/leader_election.h"
#include "controller/leadership.h"

namespace dispatchd {
namespace controller {

struct ReplicaOptions {
  LeaderElectionOptions election;
  // The etcd prefix: the leader key is election.key, the membership list
  // sits under prefix + "/agents/".
  std::string prefix = "/dispatchd";
  // The options every term's Dispatcher starts from (its start-up grace is
  // used only when there is no membership list).
  DispatcherOptions dispatcher;
  // dispatchd_leader and dispatchd_leader_transitions_total go here. May
  // be null; otherwise must outlive the Replica.
  Registry* registry = nullptr;
};

class Replica final : public Leadership {
 public:
  Replica(EtcdApi* etcd, Clock* clock, ReplicaOptions options);
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;
  ~Replica() override;

  // Starts campaigning. Stop() steps down (handing over at once) and ends
  // the term. Idempotent.
  void Start();
  void Stop();

  bool Leading() const override { return elector_.Leading(); }
  LeaderInfo leader() const override { return elector_.leader(); }
  const std::string& identity() const override { return options_.election.identity; }
  const std::string& address() const { return options_.election.address; }
  uint64_t transitions() const { return elector_.transitions(); }
  // The current term's Dispatcher (an idle one while standing by). Never null.
  std::shared_ptr<Dispatcher> dispatcher() const override;

  // For tests: one election round (see LeaderElector::Step).
  absl::Time Step() { return elector_.Step(); }

 private:
  void BeginTerm(absl::Time deadline);
  void EndTerm(const std::string& why);
  void SyncMembership(absl::Time deadline);
  // Destroys the retired terms nothing else holds.
  void Prune();
  std::string MemberKey(const std::string& agent_id) const;

  EtcdApi* const etcd_;
  Clock* const clock_;
  const ReplicaOptions options_;
  Gauge* leader_gauge_ = nullptr;
  Counter* became_leader_ = nullptr;
  Counter* became_standby_ = nullptr;

  mutable absl::Mutex mu_;
  std::shared_ptr<Dispatcher> dispatcher_ ABSL_GUARDED_BY(mu_);
  // Ended terms that sessions or API calls may still hold; each is
  // destroyed here, on the elector's thread, once nothing else holds it
  // (never on a thread of its own, which its destructor joins).
  std::vector<std::shared_ptr<Dispatcher>> retired_ ABSL_GUARDED_BY(mu_);
  // The membership list as this leader last wrote or read it (elector
  // thread only).
  std::map<std::string, std::string> members_;

  LeaderElector elector_;  // last: its thread calls back into the above
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_REPLICA_H_
