// LeaderElector: one controller replica's part in electing a leader on an
// etcd lease (docs/ha.md), with the timings of controller-runtime's leader
// election scaled to fail over in under 5 s.
//
// A candidate looks at the leader key every `retry_period`. While another
// replica holds it, it remembers who (for redirects). When the key is
// absent, it grants a lease of `lease_duration` and creates the key bound
// to it, in one transaction that only succeeds if the key still does not
// exist: at most one replica creates it, and that one leads.
//
// A leader renews its lease every `retry_period` and checks the key is
// still its own. It leads only while `Leading()`: until `renew_deadline`
// after the last renewal it *sent* that etcd accepted (the time is taken
// before the call goes out, so it is never later than when etcd renewed).
// Since renew_deadline < lease_duration, a leader that cannot renew stops
// leading before etcd can let the lease expire and another replica take
// the key: no two replicas lead at once, as long as the clocks of the
// replicas and etcd run at about the same rate. Leading() compares the
// clock itself, so a caller that asks (the Dispatcher, before each
// command) gets the answer at once even if the elector's own thread is
// held up in a call to etcd. Then the elector steps down: stopped_leading
// runs, the lease is revoked if etcd can be reached, and it is a candidate
// again.
//
// The key's value is this replica's identity and address, one per line.
//
// Time comes from the injected Clock; Step() is one round, so tests drive
// the elector on a FakeClock against a FakeEtcd without a thread. Start()
// runs the rounds on a thread of its own. Leading(), leader() and
// transitions() are thread-safe; Step() is called by one thread at a time.
#ifndef DISPATCHD_CONTROLLER_LEADER_ELECTION_H_
#define DISPATCHD_CONTROLLER_LEADER_ELECTION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/etcd_api.h"
#include "controller/leadership.h"  // LeaderInfo

namespace dispatchd {
namespace controller {

struct LeaderElectionOptions {
  // The key replicas campaign for (prefix + "/leader").
  std::string key = "/dispatchd/leader";
  // This replica, and where agents and API callers reach it.
  std::string identity;
  std::string address;
  // controller-runtime's 15 s / 10 s / 2 s, divided by five.
  absl::Duration lease_duration = absl::Seconds(3);
  absl::Duration renew_deadline = absl::Seconds(2);
  absl::Duration retry_period = absl::Milliseconds(500);
};

// The options' rules: renew_deadline < lease_duration, retry_period <
// renew_deadline, lease_duration >= 2 s (etcd's smallest TTL is about
// 1.5 s with its default timings), a non-empty key and identity.
absl::Status ValidateLeaderElectionOptions(const LeaderElectionOptions& options);

class LeaderElector {
 public:
  struct Callbacks {
    // This replica now leads; runs before Leading() turns true, on the
    // elector's thread. `deadline`: calls to etcd it makes should end by
    // then (the first renewal is due).
    std::function<void(absl::Time deadline)> started_leading;
    // This replica no longer leads (Leading() is already false).
    std::function<void(const std::string& why)> stopped_leading;
    // After each renewal while leading (keeping state in etcd up to date),
    // with the same kind of deadline.
    std::function<void(absl::Time deadline)> renewed;
  };

  LeaderElector(EtcdApi* etcd, Clock* clock, LeaderElectionOptions options,
                Callbacks callbacks);
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;
  // Stop()s.
  ~LeaderElector();

  // One round (campaign, or renew); returns when the next one is due.
  absl::Time Step();

  // Makes the thread run its next round now rather than when it is due
  // (a leader renews early, and keeps its state in etcd up to date at
  // once). Never blocks; may be called with other locks held.
  void Nudge();

  // Runs Step() on a thread until Stop(). Stop() steps down if leading,
  // revoking the lease so that another replica takes over at once, and
  // joins the thread. Idempotent.
  void Start();
  void Stop();

  bool Leading() const;
  LeaderInfo leader() const;
  // Times this replica started and stopped leading.
  uint64_t transitions() const { return transitions_.load(); }
  const LeaderElectionOptions& options() const { return options_; }

 private:
  absl::Time Campaign(absl::Time now);
  absl::Time Renew(absl::Time now);
  void StepDown(const std::string& why);
  void SetLeader(LeaderInfo info);

  EtcdApi* const etcd_;
  Clock* const clock_;
  const LeaderElectionOptions options_;
  const Callbacks callbacks_;

  // Leading() reads these without a lock.
  std::atomic<bool> leading_{false};
  std::atomic<int64_t> renewed_at_ns_{0};  // when the last accepted renewal was sent
  std::atomic<uint64_t> transitions_{0};
  int64_t lease_ = 0;  // Step()'s thread only

  mutable absl::Mutex mu_;
  LeaderInfo leader_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool nudged_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<std::thread> thread_;
};

// The value a leader writes to the key, and its reading.
std::string EncodeLeader(const LeaderInfo& info);
LeaderInfo DecodeLeader(const std::string& value);

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_LEADER_ELECTION_H_
