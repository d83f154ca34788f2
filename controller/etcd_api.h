// EtcdApi: the few calls of etcd's v3 API that leader election and the
// agents' membership list need (docs/ha.md). An interface so that the
// election's timing can be tested on a fake clock against an in-memory
// etcd (controller/testing/fake_etcd.h); NewEtcdClient (etcd_client.h)
// speaks etcd's gRPC API to real members.
//
// Every call takes a deadline and returns DeadlineExceeded when it passes,
// Unavailable when no member could be reached (or none has quorum), and
// NotFound for a lease that no longer exists. Thread-safe.
#ifndef DISPATCHD_CONTROLLER_ETCD_API_H_
#define DISPATCHD_CONTROLLER_ETCD_API_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace dispatchd {
namespace controller {

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t lease = 0;  // 0: not bound to a lease
};

class EtcdApi {
 public:
  virtual ~EtcdApi() = default;

  // Grants a lease of `ttl` (etcd counts whole seconds: rounded up) and
  // returns its id.
  virtual absl::StatusOr<int64_t> Grant(absl::Duration ttl, absl::Time deadline) = 0;
  // Renews `lease` once; returns the TTL etcd gives it from now. NotFound
  // if the lease has expired or was revoked.
  virtual absl::StatusOr<absl::Duration> KeepAliveOnce(int64_t lease, absl::Time deadline) = 0;
  // Revokes `lease`, deleting the keys bound to it. OK if it is gone.
  virtual absl::Status Revoke(int64_t lease, absl::Time deadline) = 0;

  // Creates `key` = `value` bound to `lease` if the key does not exist
  // (one transaction: compare create_revision == 0). Returns whether it
  // was created and the key as it is after the call.
  struct CreateResult {
    bool created = false;
    EtcdKeyValue current;
  };
  virtual absl::StatusOr<CreateResult> CreateIfAbsent(const std::string& key,
                                                      const std::string& value, int64_t lease,
                                                      absl::Time deadline) = 0;
  // The key, or std::nullopt if it does not exist.
  virtual absl::StatusOr<std::optional<EtcdKeyValue>> Get(const std::string& key,
                                                          absl::Time deadline) = 0;
  // Every key that starts with `prefix`, in key order.
  virtual absl::StatusOr<std::vector<EtcdKeyValue>> GetPrefix(const std::string& prefix,
                                                              absl::Time deadline) = 0;
  // Puts `key` = `value`, not bound to a lease.
  virtual absl::Status Put(const std::string& key, const std::string& value,
                           absl::Time deadline) = 0;
  // Deletes `key`; OK if it did not exist.
  virtual absl::Status Delete(const std::string& key, absl::Time deadline) = 0;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_ETCD_API_H_
