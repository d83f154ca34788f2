// EtcdCluster: a real etcd cluster of a test's own (1 or 3 members of
// Debian's /usr/bin/etcd as child processes), for tests of the controller's
// etcd client and of leader election against the real thing.
//
// Each member listens for clients and peers on free loopback ports
// (127.0.0.1) and keeps its data in <dir>/member-<i>.etcd, under a fresh
// /tmp/dispatchd-etcd-XXXXXX directory that the destructor removes. Its
// stdout and stderr are appended to <dir>/member-<i>.log across restarts;
// LogTails() gathers their ends for a failing test. Members run with etcd's
// default timing (heartbeat 100 ms, election timeout 1 s): the machines tests
// run on are often loaded, and a shorter election timeout brings elections
// nobody asked for.
//
// A member is started with PR_SET_PDEATHSIG: if the test process dies (a
// crash, Bazel's timeout), its members die with it and none is left behind.
// The signal follows the thread that started the member, so create the
// cluster and Start() members from a thread that outlives them (the test's
// own).
//
// Thread-compatible: one thread drives it.
#ifndef DISPATCHD_TESTS_TESTING_ETCD_CLUSTER_H_
#define DISPATCHD_TESTS_TESTING_ETCD_CLUSTER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/etcd_client.h"

namespace dispatchd {
namespace testing {

struct EtcdClusterOptions {
  int members = 1;  // 1 or 3
  // TLS for clients: with cert_file and key_file (a certificate for IP
  // 127.0.0.1), client URLs are https://. With ca_file too, members require
  // client certificates signed by it, and client_cert_file/client_key_file
  // are the ones this class presents (its readiness probe, Etcdctl()).
  // Peers always speak plain http.
  std::string cert_file, key_file;
  std::string ca_file, client_cert_file, client_key_file;
  // More flags for every member, e.g. "--auth-token-ttl=1".
  std::vector<std::string> extra_flags;
};

class EtcdCluster {
 public:
  // Starts every member and waits (at most 60 s) until each answers a call
  // with a leader elected. Ports that another process took in the meantime
  // are replaced (up to three tries). Errors hold the members' log tails.
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Create(EtcdClusterOptions options = {});

  // SIGKILLs the members still running (their data goes with the
  // directory, so there is nothing to stop cleanly) and removes the
  // directory.
  ~EtcdCluster();

  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  int size() const { return static_cast<int>(members_.size()); }
  // "http://127.0.0.1:<client port>" (https with TLS), in member order.
  std::vector<std::string> endpoints() const;
  std::string endpoint(int i) const;
  // Every endpoint, and the TLS files a client needs: what NewEtcdClient
  // takes to talk to this cluster (no username).
  controller::EtcdClientOptions client_options() const;

  // SIGTERM, then waits (at most 30 s; SIGKILL after that, and an error).
  // OK if the member is not running.
  absl::Status Stop(int i);
  // SIGKILL and reap. OK if the member is not running.
  absl::Status Kill(int i);
  // Starts a stopped member again on its data and ports, and waits (at most
  // 60 s) until it answers with a leader: a member announces itself through
  // the cluster, so this needs a quorum with it counted.
  absl::Status Start(int i);
  // SIGSTOP / SIGCONT: a member that holds its connections but answers
  // nothing, as behind a network partition or a stalled disk.
  absl::Status Pause(int i);
  absl::Status Resume(int i);
  bool running(int i) const { return members_[i].pid > 0; }
  pid_t pid(int i) const { return members_[i].pid; }

  // Runs etcdctl (API v3) against every endpoint, with the TLS files, and
  // returns its stdout (or an error holding its stderr).
  absl::StatusOr<std::string> Etcdctl(const std::vector<std::string>& args) const;

  // The whole log of member i, and the last `lines` lines of each member's
  // log under a heading naming it: what a failing test prints.
  std::string Log(int i) const;
  std::string LogTails(size_t lines = 40) const;

  // The temp directory (for a test's own scratch files).
  const std::string& dir() const { return dir_; }

 private:
  struct Member {
    std::string name;  // m0, m1, ...
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = -1;
  };

  EtcdCluster(EtcdClusterOptions options, std::string dir, std::string token);
  // Picks fresh, distinct ports for every member.
  void PickPorts();
  std::string peer_url(int i) const;
  std::string data_dir(int i) const;
  std::string log_path(int i) const;
  // Starts member i's process; does not wait.
  absl::Status Launch(int i);
  // Waits until member i answers a call (a leader elected), or it exits, or
  // `timeout` passes.
  absl::Status AwaitAnswer(int i, absl::Duration timeout);
  // True (and the member marked stopped) if member i's process has exited.
  bool Exited(int i);

  const EtcdClusterOptions options_;
  const std::string dir_;
  const std::string token_;  // --initial-cluster-token, unique per cluster
  std::vector<Member> members_;
};

}  // namespace testing
}  // namespace dispatchd

#endif  // DISPATCHD_TESTS_TESTING_ETCD_CLUSTER_H_
