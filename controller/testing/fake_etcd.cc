#include "controller/testing/fake_etcd.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace dispatchd {
namespace controller {

void FakeEtcd::SetCutOff(bool cut_off) {
  absl::MutexLock lock(&mu_);
  cut_off_ = cut_off;
}

int64_t FakeEtcd::LeaseOf(const std::string& key) {
  absl::MutexLock lock(&mu_);
  (void)Enter();  // expire what is due; not counted as a failure
  --calls_;
  auto it = keys_.find(key);
  return it == keys_.end() ? 0 : it->second.lease;
}

bool FakeEtcd::LeaseAlive(int64_t lease) {
  absl::MutexLock lock(&mu_);
  (void)Enter();
  --calls_;
  return leases_.count(lease) != 0;
}

int FakeEtcd::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

absl::Status FakeEtcd::Enter() {
  ++calls_;
  const absl::Time now = clock_->Now();
  std::vector<int64_t> expired;
  for (const auto& [id, lease] : leases_) {
    if (lease.expires <= now) expired.push_back(id);
  }
  for (int64_t id : expired) DropLease(id);
  if (cut_off_) return absl::UnavailableError("etcd: no member reachable (cut off)");
  return absl::OkStatus();
}

void FakeEtcd::DropLease(int64_t id) {
  leases_.erase(id);
  for (auto it = keys_.begin(); it != keys_.end();) {
    if (it->second.lease == id) {
      it = keys_.erase(it);
      ++revision_;
    } else {
      ++it;
    }
  }
}

absl::StatusOr<int64_t> FakeEtcd::Grant(absl::Duration ttl, absl::Time /*deadline*/) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(); !s.ok()) return s;
  const absl::Duration whole = absl::Ceil(ttl, absl::Seconds(1));
  const int64_t id = next_lease_++;
  leases_[id] = Lease{whole, clock_->Now() + whole};
  return id;
}

absl::StatusOr<absl::Duration> FakeEtcd::KeepAliveOnce(int64_t lease, absl::Time /*deadline*/) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(); !s.ok()) return s;
  auto it = leases_.find(lease);
  if (it == leases_.end()) return absl::NotFoundError(absl::StrCat("lease ", lease, " not found"));
  it->second.expires = clock_->Now() + it->second.ttl;
  return it->second.ttl;
}

absl::Status FakeEtcd::Revoke(int64_t lease, absl::Time /*deadline*/) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(); !s.ok()) return s;
  DropLease(lease);
  return absl::OkStatus();
}

absl::StatusOr<EtcdApi::CreateResult> FakeEtcd::CreateIfAbsent(const std::string& key,
                                                               const std::string& value,
                                                               int64_t lease,
                                                               absl::Time /*deadline*/) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(); !s.ok()) return s;
  CreateResult result;
  auto it = keys_.find(key);
  if (it != keys_.end()) {
    result.current = it->second;
    return result;
  }
  if (lease != 0 && leases_.count(lease) == 0) {
    return absl::NotFoundError(absl::StrCat("lease ", lease, " not found"));
  }
  EtcdKeyValue kv{key, value, ++revision_, revision_, lease};
  keys_[key] = kv;
  result.created = true;
  result.current = kv;
  return result;
}

absl::StatusOr<std::optional<EtcdKeyValue>> FakeEtcd::Get(const std::string& key,
                                                          absl::Time /*deadline*/) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(); !s.ok()) return s;
  auto it = keys_.find(key);
  if (it == keys_.end()) return std::optional<EtcdKeyValue>();
  return std::optional<EtcdKeyValue>(it->second);
}

absl::StatusOr<std::vector<EtcdKeyValue>> FakeEtcd::GetPrefix(const std::string& prefix,
                                                              absl::Time /*deadline*/) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(); !s.ok()) return s;
  std::vector<EtcdKeyValue> out;
  for (auto it = keys_.lower_bound(prefix);
       it != keys_.end() && absl::StartsWith(it->first, prefix); ++it) {
    out.push_back(it->second);
  }
  return out;
}

absl::Status FakeEtcd::Put(const std::string& key, const std::string& value,
                           absl::Time /*deadline*/) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(); !s.ok()) return s;
  EtcdKeyValue& kv = keys_[key];
  const bool created = kv.key.empty();
  kv.key = key;
  kv.value = value;
  kv.mod_revision = ++revision_;
  if (created) kv.create_revision = revision_;
  kv.lease = 0;
  return absl::OkStatus();
}

absl::Status FakeEtcd::Delete(const std::string& key, absl::Time /*deadline*/) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Enter(); !s.ok()) return s;
  if (keys_.erase(key) != 0) ++revision_;
  return absl::OkStatus();
}

}  // namespace controller
}  // namespace dispatchd
