// AgentMetrics: the agent's own Prometheus metrics (the Docker API has its
// own, see instrumented_docker_api.h). Every series carries the label
// agent="<agent id>" (one per host: bounded) and is created at 0.
//
//   dispatchd_agent_files_observed_total{agent}       event files read and reported
//   dispatchd_agent_file_errors_total{agent,operation} read, delete, dead_letter failures
//   dispatchd_agent_files_settled_total{agent,disposition}  deleted, dead_lettered
//   dispatchd_agent_unsettled_events{agent}           reported, not settled yet
//   dispatchd_agent_session_up{agent}                 1 while the controller session is up
//   dispatchd_agent_session_attempts_total{agent,result}  opened, failed
//   dispatchd_agent_unwatched_directories{agent}      directories without an inotify watch
//                                                     (watch limit), scanned periodically
//   dispatchd_agent_inventory_fresh{agent}            1 while the Docker inventory is fresh
//   dispatchd_agent_inventory_stale_total{agent}      Docker events stream lost
//   dispatchd_agent_commands_total{agent,outcome}     commands run: delivered, container_gone,
//                                                     not_running, rejected, failed
//
// Thread-safety: every method is lock-free and safe for concurrent use.
// Ownership: AgentMetrics' series live in `registry`, which must outlive it.
#ifndef DISPATCHD_AGENT_AGENT_METRICS_H_
#define DISPATCHD_AGENT_AGENT_METRICS_H_

#include <cstddef>
#include <map>
#include <string>

#include "absl/strings/string_view.h"
#include "common/metrics.h"

namespace dispatchd {
namespace agent {

// What the agent's parts record about themselves. The agent records
// unconditionally: AgentMetrics below exports to Prometheus, and
// NullAgentMetrics() stands in when there is nothing to export to.
//
// Thread-safety: implementations are safe for concurrent use.
class AgentMetricsRecorder {
 public:
  enum class FileOperation { kRead, kDelete, kDeadLetter };
  enum class Disposition { kDeleted, kDeadLettered };
  enum class SessionResult { kOpened, kFailed };
  enum class CommandOutcome { kDelivered, kContainerGone, kNotRunning, kRejected, kFailed };

  virtual ~AgentMetricsRecorder() = default;

  virtual void RecordFileObserved() = 0;
  virtual void RecordFileError(FileOperation operation) = 0;
  virtual void RecordSettled(Disposition disposition) = 0;
  virtual void SetUnsettled(size_t n) = 0;
  virtual void SetSessionUp(bool up) = 0;
  virtual void RecordSessionAttempt(SessionResult result) = 0;
  virtual void SetUnwatchedDirectories(size_t n) = 0;
  virtual void SetInventoryFresh(bool fresh) = 0;
  virtual void RecordInventoryStale() = 0;
  virtual void RecordCommand(CommandOutcome outcome) = 0;
};

// Records nothing. Stateless and process-wide: never null, never deleted.
AgentMetricsRecorder* NullAgentMetrics();

class AgentMetrics final : public AgentMetricsRecorder {
 public:
  AgentMetrics(Registry& registry, absl::string_view agent_id);
  AgentMetrics(const AgentMetrics&) = delete;
  AgentMetrics& operator=(const AgentMetrics&) = delete;

  void RecordFileObserved() override { files_observed_.Increment(); }
  void RecordFileError(FileOperation operation) override {
    file_errors_.at(operation)->Increment();
  }
  void RecordSettled(Disposition disposition) override { settled_.at(disposition)->Increment(); }
  void SetUnsettled(size_t n) override { unsettled_.Set(static_cast<double>(n)); }
  void SetSessionUp(bool up) override { session_up_.Set(up ? 1 : 0); }
  void RecordSessionAttempt(SessionResult result) override { sessions_.at(result)->Increment(); }
  void SetUnwatchedDirectories(size_t n) override { unwatched_.Set(static_cast<double>(n)); }
  void SetInventoryFresh(bool fresh) override { inventory_fresh_.Set(fresh ? 1 : 0); }
  void RecordInventoryStale() override { inventory_stale_.Increment(); }
  void RecordCommand(CommandOutcome outcome) override { commands_.at(outcome)->Increment(); }

 private:
  Counter& files_observed_;
  std::map<FileOperation, Counter*> file_errors_;
  std::map<Disposition, Counter*> settled_;
  Gauge& unsettled_;
  Gauge& session_up_;
  std::map<SessionResult, Counter*> sessions_;
  Gauge& unwatched_;
  Gauge& inventory_fresh_;
  Counter& inventory_stale_;
  std::map<CommandOutcome, Counter*> commands_;
};

}  // namespace agent
}  // namespace dispatchd

#endif  // DISPATCHD_AGENT_AGENT_METRICS_H_
