// Agent: the per-host half of dispatchd. It watches the events directory,
// keeps the host's container inventory, holds the Docker socket, and speaks
// the session protocol to a controller:
//   - every file that appears becomes an ObservedEvent, kept (with its
//     payload) until the controller settles it; the file is deleted or moved
//     to .dead-letter/ only then;
//   - the inventory goes out as a snapshot after every (re)list and as deltas;
//   - Exec/Start commands run on a pool of workers, each re-checked against
//     the target container's own labels before anything runs;
//   - the session reconnects with jittered exponential backoff and re-sends
//     its inventory and every unsettled event (at-least-once).
//
// Thread-safe. Start() once, Stop() once (Stop is also run by the destructor);
// files that are not settled by then stay where they are and are dispatched
// again on the next start.
#ifndef DISPATCHD_AGENT_AGENT_H_
#define DISPATCHD_AGENT_AGENT_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "agent/command_runner.h"
#include "agent/docker_api.h"
#include "agent/inventory.h"
#include "agent/spool.h"
#include "agent/watcher.h"
#include "common/clock.h"
#include "proto/dispatch/v1/session.grpc.pb.h"

namespace dispatchd {
namespace agent {

struct AgentOptions {
  std::string agent_id;  // defaults to the host name
  std::string host;      // defaults to the host name
  std::string events_dir = "./events";
  std::string event_namespace;                  // DISPATCHER_EVENT_NAMESPACE
  std::string label_namespace = "subscription";  // DISPATCHER_LABEL_NAMESPACE
  int64_t max_payload_bytes = 1 << 20;
  std::string token;  // bearer token sent in Hello
  int exec_workers = 8;
  // How long `container.start` waits for a started container to run.
  absl::Duration start_timeout = absl::Seconds(30);
  absl::Duration reconnect_min_backoff = absl::Milliseconds(100);
  absl::Duration reconnect_max_backoff = absl::Seconds(10);
  InventoryOptions inventory;
  // Bounds of one AgentBatch: at most this many messages, and no more
  // messages once it holds this many bytes (a single larger message still
  // goes, alone).
  size_t max_batch_messages = 1000;
  size_t max_batch_bytes = 1 << 20;
  // Prometheus metrics. May be null; must outlive the Agent.
  AgentMetrics* metrics = nullptr;
};

class Agent {
 public:
  // `docker` and `clock` must outlive the Agent. `channel` reaches the
  // controller (an in-process channel in all-in-one mode).
  Agent(AgentOptions options, DockerApi* docker, Clock* clock,
        std::shared_ptr<grpc::ChannelInterface> channel);
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;
  ~Agent();

  // Starts the watcher, the inventory, the exec workers and the session.
  absl::Status Start();
  // Stops everything; unsettled files stay in place. Idempotent.
  void Stop();

  // Events observed and not yet settled.
  size_t unsettled() const;
  bool session_up() const;
  // Ready to serve: the session is up (Welcome received, inventory sent) and
  // the Docker inventory is fresh (Docker answers). Never blocks on I/O.
  // REQUIRES: Start() has returned.
  bool ready() const { return NotReadyReason().empty(); }
  // Empty when ready(); otherwise why not, in words for an operator (e.g.
  // "Docker: no Docker socket at /run/docker.sock (...)").
  std::string NotReadyReason() const;

 private:
  // What a file was when it was read: a report of the same path with the
  // same identity is a duplicate; a different one is a new write.
  struct FileIdentity {
    uint64_t device = 0;
    uint64_t inode = 0;
    int64_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const FileIdentity& o) const {
      return device == o.device && inode == o.inode && size == o.size &&
             mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns;
    }
  };
  struct Pending {
    dispatch::v1::ObservedEvent event;
    FileIdentity identity;
  };

  void OnFile(const std::string& relative_path, absl::Time observed);
  std::optional<FileIdentity> Identify(const std::string& relative_path) const;
  void SessionLoop();
  // Runs one session until it ends; true if it got as far as a Welcome.
  bool RunSession();
  void HandleControllerMessage(const dispatch::v1::ControllerMessage& message);
  void HandleSettled(const dispatch::v1::Settled& settled);
  void ExecWorker();
  void OnExecDie(const std::string& exec_id, int exit_code, absl::Time time);
  // Queues a message for the current session, behind every message queued
  // before it; false (dropped) when no session is up. Never blocks on I/O.
  bool Write(dispatch::v1::AgentMessage message) ABSL_LOCKS_EXCLUDED(write_mu_);
  // The writer thread: sends what is queued, as one AgentBatch per write
  // when the controller reads batches.
  void WriteLoop() ABSL_LOCKS_EXCLUDED(write_mu_);

  const AgentOptions options_;
  DockerApi* const docker_;
  Clock* const clock_;
  // options_.metrics, or a recorder that drops everything: never null.
  AgentMetricsRecorder* const metrics_;
  std::unique_ptr<dispatch::v1::AgentSession::Stub> stub_;
  Spool spool_;
  CommandRunner runner_;
  std::unique_ptr<Inventory> inventory_;
  std::unique_ptr<Watcher> watcher_;

  mutable absl::Mutex mu_;
  std::map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<dispatch::v1::Command> commands_ ABSL_GUARDED_BY(mu_);
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  absl::BitGen bitgen_ ABSL_GUARDED_BY(mu_);

  // The live session. Outgoing messages go through one ordered queue that
  // only the writer thread (WriteLoop) drains onto the stream, and only the
  // session thread (RunSession) reads, so the stream has one writer and one
  // reader as gRPC requires. Write() from any thread only queues: the
  // order of messages on the stream is the order in which Write() took
  // write_mu_. The queue holds messages only while a session is up
  // (stream_ set, no write failed); RunSession queues the inventory first,
  // in the same critical section that sets stream_, so nothing overtakes
  // it, and empties the queue and waits for the write in flight before the
  // stream is destroyed.
  // Lock order: write_mu_ before mu_ when both are held.
  mutable absl::Mutex write_mu_;
  grpc::ClientReaderWriter<dispatch::v1::AgentMessage, dispatch::v1::ControllerMessage>* stream_
      ABSL_GUARDED_BY(write_mu_) = nullptr;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(write_mu_) = nullptr;
  std::deque<dispatch::v1::AgentMessage> outgoing_ ABSL_GUARDED_BY(write_mu_);
  bool peer_reads_batches_ ABSL_GUARDED_BY(write_mu_) = false;
  bool writing_ ABSL_GUARDED_BY(write_mu_) = false;       // a write is in flight
  bool write_failed_ ABSL_GUARDED_BY(write_mu_) = false;  // this session's stream broke
  bool writer_stop_ ABSL_GUARDED_BY(write_mu_) = false;
  std::atomic<int64_t> last_heard_ns_{0};
  std::atomic<int64_t> heartbeat_period_ns_{0};
  std::atomic<bool> session_ready_{false};

  std::vector<std::thread> threads_;
};

}  // namespace agent
}  // namespace dispatchd

#endif  // DISPATCHD_AGENT_AGENT_H_
