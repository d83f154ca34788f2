// Known agents: a lone controller's record of the agents it knows (agent
// id -> host), kept in a file of its state directory (--state-dir) so that
// after a restart it waits for exactly those agents
// (DispatcherOptions::expected_agents) and routes as soon as each is back
// with a fresh inventory, or has expired after the away grace, instead of
// holding every event for a fixed start-up grace. It is the lone
// controller's counterpart of the membership list a controller replica
// keeps in etcd (replica.h).
//
// The file, STATE_DIR/known-agents.json, is JSON:
//   {"version": 1, "agents": {"<agent id>": "<host>", ...}}
// It is replaced whole: written to a temporary file beside it, fsync'd,
// renamed over it, and the directory fsync'd, so a crash leaves the old
// list or the new one, never a mix. A missing file (the first start with
// the directory) or one that cannot be read leaves the fixed start-up
// grace, with a log line that says why.
//
// KnownAgentsWriter writes the file on a thread of its own. The Dispatcher
// calls DispatcherOptions::on_agents_changed under its lock whenever an
// agent becomes known or is forgotten; that only nudges the writer, which
// then asks Dispatcher::KnownAgents() and writes outside every lock of the
// Dispatcher: routing never waits for the disk.
#ifndef DISPATCHD_CONTROLLER_KNOWN_AGENTS_H_
#define DISPATCHD_CONTROLLER_KNOWN_AGENTS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/dispatcher.h"

namespace dispatchd {
namespace controller {

// Agent id -> host.
using AgentHosts = std::map<std::string, std::string>;

// STATE_DIR/known-agents.json.
std::string KnownAgentsPath(const std::string& state_dir);

// The list in the file at `path`. NotFound when there is no file; DataLoss
// when it is not such a list (truncated, not JSON, another version).
absl::StatusOr<AgentHosts> ReadKnownAgents(const std::string& path);

// Replaces the file at `path` with `agents`, atomically (see above). Its
// directory must exist.
absl::Status WriteKnownAgents(const std::string& path, const AgentHosts& agents);

// How a lone controller with a state directory starts: `state_dir` is
// created if missing (an error if it cannot be, or is not a directory);
// then, if its file holds a list, `options` waits for those agents
// (expected_agents) and has no start-up grace; if there is no file or it
// cannot be read (logged), `options` keeps its fixed start-up grace.
// Returns the list read (empty if none), which is what the file holds.
absl::StatusOr<AgentHosts> LoadKnownAgents(const std::string& state_dir,
                                           DispatcherOptions* options);

struct KnownAgentsWriterOptions {
  std::string path;  // KnownAgentsPath(state_dir)
  // What the file holds now (LoadKnownAgents' answer): an unchanged list
  // is not written again.
  AgentHosts written;
  // At most one write per this long: the first agents of a fleet connect
  // within a second, and one write can cover them all. An agent that
  // connected for the first time this shortly before a crash is not waited
  // for after the restart (it is treated as new, as without the file).
  absl::Duration min_interval = absl::Seconds(1);
  // After a failed write (logged), the next attempt, unless a change comes
  // first.
  absl::Duration retry_interval = absl::Seconds(10);
};

// Thread-safe.
class KnownAgentsWriter {
 public:
  // `known` gives the agents known now (normally Dispatcher::KnownAgents);
  // it is called only by WriteIfChanged: on the writer's thread, in Stop,
  // or by a test. It must not be called with the Dispatcher's lock held,
  // and never is.
  KnownAgentsWriter(KnownAgentsWriterOptions options, std::function<AgentHosts()> known,
                    Clock* clock);
  ~KnownAgentsWriter();  // Stop()
  KnownAgentsWriter(const KnownAgentsWriter&) = delete;
  KnownAgentsWriter& operator=(const KnownAgentsWriter&) = delete;

  // Starts the thread. Nudges before Start are not lost.
  void Start();
  // The known agents may have changed. Never blocks and never calls
  // `known`: safe under the Dispatcher's lock (on_agents_changed).
  void Nudge();
  // Stops the thread (if started), then writes the list once more if it
  // changed: a controller that is shutting down records its agents as they
  // are at the end. Idempotent.
  void Stop();

  // One pass on the calling thread: asks `known` and, if the list differs
  // from the one last written, writes it. OK when nothing needed writing.
  absl::Status WriteIfChanged();
  // Files written so far.
  uint64_t writes() const;

 private:
  void Loop();

  const KnownAgentsWriterOptions options_;
  Clock* const clock_;

  // Serializes WriteIfChanged; guards what the file holds.
  mutable absl::Mutex write_mu_;
  AgentHosts written_ ABSL_GUARDED_BY(write_mu_);
  uint64_t writes_ ABSL_GUARDED_BY(write_mu_) = 0;
  const std::function<AgentHosts()> known_;

  absl::Mutex mu_;
  bool nudged_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<std::thread> thread_;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_KNOWN_AGENTS_H_
