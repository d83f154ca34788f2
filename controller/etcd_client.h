// NewEtcdClient: EtcdApi (etcd_api.h) over etcd's v3 gRPC API
// (proto/etcd/etcd.proto), for the controller's leader election against a
// real etcd cluster.
//
// Members. One gRPC channel per endpoint. Calls go to one member, the
// current one; a call that fails there with UNAVAILABLE (the member is down,
// or has no leader) or DEADLINE_EXCEEDED makes the next endpoint the current
// one, so a member cut off from quorum never pins the client. Every call
// carries etcd's "hasleader" metadata: a member that knows it has lost its
// leader answers at once with UNAVAILABLE ("etcdserver: no leader") instead
// of holding the call until the deadline. A channel whose connection failed
// is replaced by a new one, so a member that comes back is reached by the
// next call that tries it, without gRPC's reconnect backoff.
//
// Deadlines. Each call has exactly the caller's deadline; nothing is added.
// Within it, a call that meets UNAVAILABLE tries the next member, and after
// a round of members that all failed waits a little (25 ms, doubling up to
// 500 ms, never past the deadline) before the next round: a leader election
// after a member stopped is ridden out within one call. A member that does
// not answer at all (a partition, a stalled process) uses the rest of the
// deadline: the call returns DeadlineExceeded and the next call goes to the
// next member. When the deadline passes and every attempt was UNAVAILABLE,
// the call returns Unavailable naming each member's last error; when it
// passes inside an attempt, DeadlineExceeded.
//
// Latency. A call costs one round trip to the member, plus etcd's own work:
// writes and reads are linearizable (a read asks the leader; a write is
// committed by a quorum, each member syncing its log to disk). When the
// leader dies, a write already handed to it is answered only after etcd's
// request timeout (5 s + 2 election timeouts: 7 s with the defaults), so
// with a shorter deadline that call returns DeadlineExceeded and the next
// one goes to another member. A leader election itself takes about one
// election timeout (1 s by default).
//
// Retried writes. UNAVAILABLE can come after a member accepted a write
// ("etcdserver: request timed out", a connection cut mid-call), so a write
// may be applied twice: Put and Delete are idempotent; a Grant retried may
// leave an extra lease that expires on its own; a CreateIfAbsent retried
// after its first attempt created the key answers created=false with the
// key as this caller wrote it: compare `current.lease` with your own lease.
//
// Authentication. With a username, the client trades it and the password
// for a token (Auth.Authenticate) before its first call, and sends the token
// as the metadata "token" on every call. A token that members no longer know
// (etcd's simple tokens lapse after --auth-token-ttl without use, 300 s by
// default) is traded again, once per call. A wrong name or password is
// Unauthenticated, and so is a call without a username to a cluster that
// requires one. Over http the password crosses the network in the clear
// (logged as a warning at creation).
//
// TLS. https:// endpoints are verified against ca_file (the system's roots
// when empty); cert_file and key_file, when given, are presented to members
// that require client certificates.
//
// Errors name the member (its endpoint) and the call. gRPC codes map to the
// absl codes of the same name, except that a lease that does not exist is
// NotFound from every call that names it (Revoke: OK), and etcd's
// authentication failures are Unauthenticated.
//
// Thread-safe: calls may run concurrently from any threads.
#ifndef DISPATCHD_CONTROLLER_ETCD_CLIENT_H_
#define DISPATCHD_CONTROLLER_ETCD_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/etcd_api.h"

namespace dispatchd {
namespace controller {

struct EtcdClientOptions {
  // "http://host:port", "https://host:port" or "host:port" (http). At least
  // one; the first is where calls start.
  std::vector<std::string> endpoints;
  // PEM files for https endpoints: the CA that signed the members'
  // certificates (empty: the system's roots), and this client's certificate
  // and key (both or neither) for members that require one.
  std::string ca_file, cert_file, key_file;
  // etcd's authentication; empty username: none.
  std::string username, password;
};

// Checks the options and builds one channel per endpoint; does not connect
// (the first call does). InvalidArgument for no endpoint, an endpoint that
// is not [http[s]://]host:port, an endpoint listed twice, a password without
// a username or cert_file without key_file (or the reverse); the TLS files'
// errors (tls.h, ReadPemFile) when an https endpoint needs them.
absl::StatusOr<std::unique_ptr<EtcdApi>> NewEtcdClient(EtcdClientOptions options);

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_ETCD_CLIENT_H_
