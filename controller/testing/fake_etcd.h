// FakeEtcd: an in-memory EtcdApi for fake-clock tests of leader election.
// Leases expire on the injected Clock (a lease granted or renewed at t
// with TTL d is gone at t + d, with the keys bound to it), revisions count
// up as etcd's do, and a test can cut the fake off (every call fails
// Unavailable, as with quorum lost) or make the next calls fail.
// Thread-safe.
#ifndef DISPATCHD_CONTROLLER_TESTING_FAKE_ETCD_H_
#define DISPATCHD_CONTROLLER_TESTING_FAKE_ETCD_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "controller/etcd_api.h"

namespace dispatchd {
namespace controller {

class FakeEtcd final : public EtcdApi {
 public:
  explicit FakeEtcd(const Clock* clock) : clock_(clock) {}

  // While cut off, every call fails with Unavailable (nothing changes, and
  // leases keep expiring on the clock).
  void SetCutOff(bool cut_off);
  // The lease of a key, as a test would see it in etcd; 0 if none.
  int64_t LeaseOf(const std::string& key);
  bool LeaseAlive(int64_t lease);
  // Calls made so far.
  int calls() const;

  absl::StatusOr<int64_t> Grant(absl::Duration ttl, absl::Time deadline) override;
  absl::StatusOr<absl::Duration> KeepAliveOnce(int64_t lease, absl::Time deadline) override;
  absl::Status Revoke(int64_t lease, absl::Time deadline) override;
  absl::StatusOr<CreateResult> CreateIfAbsent(const std::string& key, const std::string& value,
                                              int64_t lease, absl::Time deadline) override;
  absl::StatusOr<std::optional<EtcdKeyValue>> Get(const std::string& key,
                                                  absl::Time deadline) override;
  absl::StatusOr<std::vector<EtcdKeyValue>> GetPrefix(const std::string& prefix,
                                                      absl::Time deadline) override;
  absl::Status Put(const std::string& key, const std::string& value,
                   absl::Time deadline) override;
  absl::Status Delete(const std::string& key, absl::Time deadline) override;

 private:
  struct Lease {
    absl::Duration ttl;
    absl::Time expires;
  };
  // Counts the call, expires leases due at Now(); Unavailable when cut off.
  absl::Status Enter() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropLease(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* const clock_;
  mutable absl::Mutex mu_;
  bool cut_off_ ABSL_GUARDED_BY(mu_) = false;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_lease_ ABSL_GUARDED_BY(mu_) = 7001;
  std::map<int64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, EtcdKeyValue> keys_ ABSL_GUARDED_BY(mu_);
};

// One replica's view of an EtcdApi (a shared FakeEtcd), which a test can
// cut off on its own: a network partition between that replica and etcd.
class PartitionableEtcd final : public EtcdApi {
 public:
  explicit PartitionableEtcd(EtcdApi* etcd) : etcd_(etcd) {}
  void SetCutOff(bool cut) { cut_.store(cut); }

  absl::StatusOr<int64_t> Grant(absl::Duration ttl, absl::Time d) override {
    if (cut_.load()) return Cut();
    return etcd_->Grant(ttl, d);
  }
  absl::StatusOr<absl::Duration> KeepAliveOnce(int64_t lease, absl::Time d) override {
    if (cut_.load()) return Cut();
    return etcd_->KeepAliveOnce(lease, d);
  }
  absl::Status Revoke(int64_t lease, absl::Time d) override {
    if (cut_.load()) return Cut();
    return etcd_->Revoke(lease, d);
  }
  absl::StatusOr<CreateResult> CreateIfAbsent(const std::string& k, const std::string& v,
                                              int64_t lease, absl::Time d) override {
    if (cut_.load()) return Cut();
    return etcd_->CreateIfAbsent(k, v, lease, d);
  }
  absl::StatusOr<std::optional<EtcdKeyValue>> Get(const std::string& k, absl::Time d) override {
    if (cut_.load()) return Cut();
    return etcd_->Get(k, d);
  }
  absl::StatusOr<std::vector<EtcdKeyValue>> GetPrefix(const std::string& p,
                                                      absl::Time d) override {
    if (cut_.load()) return Cut();
    return etcd_->GetPrefix(p, d);
  }
  absl::Status Put(const std::string& k, const std::string& v, absl::Time d) override {
    if (cut_.load()) return Cut();
    return etcd_->Put(k, v, d);
  }
  absl::Status Delete(const std::string& k, absl::Time d) override {
    if (cut_.load()) return Cut();
    return etcd_->Delete(k, d);
  }

 private:
  static absl::Status Cut() { return absl::UnavailableError("partitioned from etcd"); }
  EtcdApi* const etcd_;
  std::atomic<bool> cut_{false};
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_TESTING_FAKE_ETCD_H_
