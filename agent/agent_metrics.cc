#include "agent/agent_metrics.h"

namespace dispatchd {
namespace agent {
namespace {

Labels With(const Labels& base, const std::string& key, const std::string& value) {
  Labels labels = base;
  labels[key] = value;
  return labels;
}

class NullRecorder final : public AgentMetricsRecorder {
 public:
  void RecordFileObserved() override {}
  void RecordFileError(FileOperation) override {}
  void RecordSettled(Disposition) override {}
  void SetUnsettled(size_t) override {}
  void SetSessionUp(bool) override {}
  void RecordSessionAttempt(SessionResult) override {}
  void SetUnwatchedDirectories(size_t) override {}
  void SetInventoryFresh(bool) override {}
  void RecordInventoryStale() override {}
  void RecordCommand(CommandOutcome) override {}
};

}  // namespace

AgentMetricsRecorder* NullAgentMetrics() {
  static NullRecorder* recorder = new NullRecorder();
  return recorder;
}

AgentMetrics::AgentMetrics(Registry& registry, absl::string_view agent_id)
    : files_observed_(registry
                          .AddCounter("dispatchd_agent_files_observed_total",
                                      "Event files read and reported to the controller.")
                          .Add({{"agent", std::string(agent_id)}})),
      unsettled_(registry
                     .AddGauge("dispatchd_agent_unsettled_events",
                               "Events reported and not settled yet (their files wait).")
                     .Add({{"agent", std::string(agent_id)}})),
      session_up_(registry
                      .AddGauge("dispatchd_agent_session_up",
                                "1 while the session with the controller is up.")
                      .Add({{"agent", std::string(agent_id)}})),
      unwatched_(registry
                     .AddGauge("dispatchd_agent_unwatched_directories",
                               "Directories without an inotify watch (fs.inotify."
                               "max_user_watches reached), scanned periodically instead.")
                     .Add({{"agent", std::string(agent_id)}})),
      inventory_fresh_(registry
                           .AddGauge("dispatchd_agent_inventory_fresh",
                                     "1 while the Docker events stream is up and listed.")
                           .Add({{"agent", std::string(agent_id)}})),
      inventory_stale_(registry
                           .AddCounter("dispatchd_agent_inventory_stale_total",
                                       "Times the Docker inventory went stale (events stream "
                                       "lost or a call failed).")
                           .Add({{"agent", std::string(agent_id)}})) {
  const Labels agent = {{"agent", std::string(agent_id)}};
  Family<Counter>& errors = registry.AddCounter(
      "dispatchd_agent_file_errors_total", "Failures on event files, by operation.");
  file_errors_[FileOperation::kRead] = &errors.Add(With(agent, "operation", "read"));
  file_errors_[FileOperation::kDelete] = &errors.Add(With(agent, "operation", "delete"));
  file_errors_[FileOperation::kDeadLetter] = &errors.Add(With(agent, "operation", "dead_letter"));
  Family<Counter>& settled = registry.AddCounter(
      "dispatchd_agent_files_settled_total", "Event files settled, by disposition.");
  settled_[Disposition::kDeleted] = &settled.Add(With(agent, "disposition", "deleted"));
  settled_[Disposition::kDeadLettered] = &settled.Add(With(agent, "disposition", "dead_lettered"));
  Family<Counter>& sessions = registry.AddCounter(
      "dispatchd_agent_session_attempts_total", "Attempts to open the controller session.");
  sessions_[SessionResult::kOpened] = &sessions.Add(With(agent, "result", "opened"));
  sessions_[SessionResult::kFailed] = &sessions.Add(With(agent, "result", "failed"));
  Family<Counter>& commands = registry.AddCounter(
      "dispatchd_agent_commands_total", "Commands from the controller run here, by outcome.");
  commands_[CommandOutcome::kDelivered] = &commands.Add(With(agent, "outcome", "delivered"));
  commands_[CommandOutcome::kContainerGone] =
      &commands.Add(With(agent, "outcome", "container_gone"));
  commands_[CommandOutcome::kNotRunning] = &commands.Add(With(agent, "outcome", "not_running"));
  commands_[CommandOutcome::kRejected] = &commands.Add(With(agent, "outcome", "rejected"));
  commands_[CommandOutcome::kFailed] = &commands.Add(With(agent, "outcome", "failed"));
}

}  // namespace agent
}  // namespace dispatchd
