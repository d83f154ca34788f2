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
//     its inventory and every unsettled event (at-least-once), each with the
//     subscribers the controller said it was delivered to;
//   - what an unsettled event must keep across a restart of this process
//     (its generation and those subscribers) is kept with its file, in an
//     extended attribute (EventMark), so a restart re-sends the same event
//     and only what was running at the time can run twice;
//   - commands queued but not started when a session ends are dropped: the
//     controller sends them again (a new controller routes them again).
//
// The parts: Watcher (the files), Spool (read, delete, dead-letter),
// Inventory (Docker's containers), ControllerSession (the stream to the
// controller) and CommandRunner (one command against Docker), which the
// exec workers call for each command the session hands over.
//
// Thread-safe. Start() once, Stop() once (Stop is also run by the destructor);
// files that are not settled by then stay where they are and are dispatched
// again on the next start.
#ifndef DISPATCHD_AGENT_AGENT_H_
#define DISPATCHD_AGENT_AGENT_H_

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "agent/command_runner.h"
#include "agent/controller_session.h"
#include "agent/docker_api.h"
#include "agent/emit_memory.h"
#include "agent/file_requests.h"
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
  // Bounds of the unsettled events held in memory (with their payloads).
  // Above either, new files are not read: they wait on disk, and are picked
  // up by a rescan once half of the bound is free again.
  size_t max_unsettled_events = 10000;
  size_t max_unsettled_bytes = 64 << 20;
  // Prometheus metrics. May be null; must outlive the Agent.
  AgentMetrics* metrics = nullptr;
  // The controller replicas (host:port), in the order they are tried: the
  // session goes to whichever leads (controller_session.h). `channels`
  // makes the channel to one of them. Both are set by the constructor that
  // takes a channel.
  std::vector<std::string> controllers;
  ChannelFactory channels;
};

class Agent {
 public:
  // `docker` and `clock` must outlive the Agent. The session goes to
  // options.controllers through options.channels.
  Agent(AgentOptions options, DockerApi* docker, Clock* clock);
  // One controller behind `channel` (an in-process channel in all-in-one
  // mode); options.controllers and options.channels are replaced.
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
  // The controller the session is up with; empty while none is.
  std::string controller_address() const;
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
    // The identity in `st` (of a regular file).
    static FileIdentity Of(const struct stat& st);
    bool operator==(const FileIdentity& o) const {
      return device == o.device && inode == o.inode && size == o.size &&
             mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns;
    }
    // The same content: all but the ctime, which the event's mark changes.
    bool SameContent(const FileIdentity& o) const {
      return inode == o.inode && size == o.size && mtime_ns == o.mtime_ns;
    }
    // The mark of generation `generation` of this file, no delivery yet.
    dispatch::v1::EventMark Mark(uint64_t generation) const {
      dispatch::v1::EventMark mark;
      mark.set_generation(generation);
      mark.set_inode(inode);
      mark.set_size(size);
      mark.set_mtime_unix_nanos(mtime_ns);
      return mark;
    }
  };
  struct Pending {
    dispatch::v1::ObservedEvent event;
    FileIdentity identity;
  };

  // What the session sends first on every connect, and where what the
  // controller sends goes.
  ControllerSession::Callbacks SessionCallbacks();
  // kStillOpen: a writer holds the file; the watcher reports it again.
  Watcher::Report OnFile(const std::string& relative_path, absl::Time observed);
  std::optional<FileIdentity> Identify(const std::string& relative_path) const;
  void HandleSettled(const dispatch::v1::Settled& settled);
  void HandleDelivered(const dispatch::v1::Delivered& delivered);
  // Stores `mark` with the file of `key`; returns the file's identity
  // afterwards (the attribute changes its ctime), or nullopt if it could not
  // (logged once where marks cannot be kept). Through `file` when it is
  // open already (the file of `key`), else opened anew.
  std::optional<FileIdentity> WriteMark(const std::string& key,
                                        const dispatch::v1::EventMark& mark,
                                        EventFile* file = nullptr);
  // An exec worker: runs queued commands until Stop().
  void ExecWorker();
  void OnExecDie(const std::string& exec_id, int exit_code, absl::Time time);

  const AgentOptions options_;
  DockerApi* const docker_;
  Clock* const clock_;
  // options_.metrics, or a recorder that drops everything: never null.
  AgentMetricsRecorder* const metrics_;
  Spool spool_;
  EmitMemory emit_memory_;
  FileRequests file_requests_;  // Emit writes and dead-letter calls
  CommandRunner runner_;
  // Outgoing messages go through session_.Write(), in order; the inventory
  // is always the first message of a session (see controller_session.h).
  ControllerSession session_;
  std::unique_ptr<Inventory> inventory_;
  std::unique_ptr<Watcher> watcher_;

  // Never held while calling into the session or the runner; the session
  // calls the `inventory` callback with its queue locked, which then takes
  // only the inventory's own lock.
  // Serialises HandleDelivered (the session thread and the exec workers);
  // taken before mu_.
  absl::Mutex mark_mu_;
  mutable absl::Mutex mu_;
  std::map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<dispatch::v1::Command> commands_ ABSL_GUARDED_BY(mu_);
  // Commands being run, and the latest ones delivered (at most
  // kRecentDeliveries), by event identity and container: the same event for
  // the same container again (a restarted controller routing it anew) is
  // answered DELIVERED without running it twice.
  absl::flat_hash_set<std::string> running_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> delivered_recently_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> delivered_order_ ABSL_GUARDED_BY(mu_);
  // Random high half per process: generations of a later run never meet
  // those of an earlier one.
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_);
  size_t pending_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // payload bytes in pending_
  // Files were left on disk because the unsettled bound was reached.
  bool over_bound_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> marks_unavailable_logged_{false};
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;

  std::vector<std::thread> workers_;  // exec workers
};

}  // namespace agent
}  // namespace dispatchd

#endif  // DISPATCHD_AGENT_AGENT_H_
